//! Proof of ownership: the challenge names one https URL on the entityID's host, only global
//! addresses are fetched (unless the operator allows private ones), and the answer must be the
//! random content, in time, within the allowed attempts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dame_protocol::Refusal;
use dame_protocol::registration::{OwnershipChallenge, is_global};

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn rng() -> impl FnMut(&mut [u8]) {
    let mut n = 7u8;
    move |b: &mut [u8]| {
        for x in b.iter_mut() {
            n = n.wrapping_mul(31).wrapping_add(17);
            *x = n;
        }
    }
}

#[test]
fn the_challenge_is_answered_with_its_content_only() {
    let mut c =
        OwnershipChallenge::new("https://IdP.Example.org/idp/shibboleth", now(), &mut rng())
            .unwrap();
    assert_eq!(c.host, "idp.example.org");
    assert_eq!(c.name.len(), 32);
    assert_eq!(c.content.len(), 64);
    assert_eq!(
        c.fetch_plan(),
        format!(
            "https://idp.example.org/.well-known/dame-ownership/{}",
            c.name
        )
    );
    let t = now() + Duration::from_secs(10);
    let refused = |r: Result<(), dame_protocol::Error>| r.unwrap_err().refusal();
    assert_eq!(refused(c.verify(t, 404, b"")), Some(Refusal::NotPermitted));
    assert_eq!(refused(c.verify(t, 302, b"")), Some(Refusal::NotPermitted));
    assert_eq!(
        refused(c.verify(t, 200, b"wrong")),
        Some(Refusal::NotPermitted)
    );
    let body = format!("{}\n", c.content);
    assert!(c.verify(t, 200, body.as_bytes()).is_ok());
    // Attempts are bounded: five in all.
    assert!(c.verify(t, 200, body.as_bytes()).is_ok());
    assert_eq!(
        refused(c.verify(t, 200, body.as_bytes())),
        Some(Refusal::RateLimited)
    );
    // Expired.
    let mut late = OwnershipChallenge::new("https://sp.example.com/sp", now(), &mut rng()).unwrap();
    let body = late.content.clone();
    assert_eq!(
        refused(late.verify(now() + Duration::from_secs(3600), 200, body.as_bytes())),
        Some(Refusal::Stale)
    );
    assert!(late.verify(now(), 200, &vec![b'a'; 2000]).is_err());
}

#[test]
fn only_https_dns_entity_ids_can_be_proven() {
    for bad in [
        "http://idp.example.org/idp",
        "urn:mace:example:idp",
        "https://192.0.2.7/idp",
        "https://localhost/idp",
        "https://user@idp.example.org/",
    ] {
        assert!(
            OwnershipChallenge::new(bad, now(), &mut rng()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn private_and_special_addresses_are_not_fetched() {
    let c = OwnershipChallenge::new("https://idp.example.org/idp", now(), &mut rng()).unwrap();
    for ip in [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "198.18.0.1",
        "224.0.0.1",
        "192.0.2.1",
        "::1",
        "fe80::1",
        "fd00::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "2001:db8::1",
    ] {
        let ip: IpAddr = ip.parse().unwrap();
        assert!(!is_global(ip), "{ip}");
        assert_eq!(
            c.check_address(ip, false),
            Err(Refusal::NotPermitted),
            "{ip}"
        );
        assert_eq!(c.check_address(ip, true), Ok(()));
    }
    for ip in ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"] {
        let ip: IpAddr = ip.parse().unwrap();
        assert!(is_global(ip), "{ip}");
        assert_eq!(c.check_address(ip, false), Ok(()));
    }
}

mod store {
    use super::{now, rng};
    use dame_protocol::Refusal;
    use dame_protocol::registration::{Operation, RegistrationEvent, Registrations};
    use dame_protocol::registry::{EntityPolicy, Registry};
    use saml_metadata::builder::RoleBuilder as _;
    use saml_metadata::model::{
        AuthorityRole, Binding, Endpoint, EntityDescriptor, IdpSso, IndexedEndpoint, Role,
        RoleCommon, SpSso, Uri,
    };
    use testkit::signer::TestKey;

    const IDP: &str = "https://idp.example.net/idp/shibboleth";

    fn upload(sync: &str, sso: &str) -> Vec<u8> {
        let key = TestKey::rsa("idp");
        EntityDescriptor::builder(IDP)
            .idp(
                IdpSso::builder()
                    .signing_certificate(key.cert_der())
                    .sso(Binding::HttpRedirect, sso),
            )
            .dame_sync_location(sync)
            .build()
            .unwrap()
            .to_xml()
            .unwrap()
            .into_bytes()
    }

    fn good() -> Vec<u8> {
        upload(
            "https://idp.example.net/dame",
            "https://idp.example.net/idp/profile/SAML2/Redirect/SSO",
        )
    }

    /// Review K2: a self-registration could upload 256 KiB of metadata (real SP and IdP
    /// metadata is 3 to 30 KiB), held twice in memory by every instance, for up to 100,000
    /// entities. The default limit is 64 KiB, configurable up to the 256 KiB the operator's
    /// imports keep; beyond it the upload is refused, naming the limit.
    #[test]
    fn a_self_registration_upload_beyond_the_limit_is_refused() {
        let reg = Registry::new(TestKey::rsa("broker").signing());
        let mut xml = good();
        let pad = (100 << 10) - xml.len();
        xml.extend(std::iter::repeat_n(b' ', pad));
        assert_eq!(xml.len(), 100 << 10);
        let mut store = Registrations::new();
        assert_eq!(store.max_upload(), 64 << 10);
        let err = store
            .begin(
                Operation::Register,
                &xml,
                EntityPolicy::default(),
                &reg,
                "198.51.100.1",
                now(),
                &mut rng(),
            )
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("larger than the self-registration limit of 65536 bytes"),
            "{err}"
        );
        // Configured higher, the same upload goes on to its proof.
        let mut store = Registrations::new().with_max_upload(128 << 10);
        let c = store
            .begin(
                Operation::Register,
                &xml,
                EntityPolicy::default(),
                &reg,
                "198.51.100.1",
                now(),
                &mut rng(),
            )
            .unwrap();
        assert!(!c.secret.is_empty());
        assert_eq!(
            Registrations::new().with_max_upload(1 << 20).max_upload(),
            256 << 10
        );
    }

    #[test]
    fn register_update_delete_each_need_the_proof() {
        let md = good();
        let mut reg = Registry::new(TestKey::rsa("broker").signing());
        let mut store = Registrations::new();
        let c = store
            .begin(
                Operation::Register,
                &md,
                EntityPolicy::default(),
                &reg,
                "owner",
                now(),
                &mut rng(),
            )
            .unwrap();
        assert!(reg.is_empty(), "nothing registered before the proof");
        // Missing (404) and wrong content: refused, nothing registered.
        assert_eq!(
            store
                .complete(IDP, &c.secret, Some(&md[..]), 404, b"", &mut reg, now())
                .unwrap_err()
                .refusal(),
            Some(Refusal::NotPermitted)
        );
        assert_eq!(
            store
                .complete(
                    IDP,
                    &c.secret,
                    Some(&md[..]),
                    200,
                    b"guess",
                    &mut reg,
                    now()
                )
                .unwrap_err()
                .refusal(),
            Some(Refusal::NotPermitted)
        );
        assert!(reg.is_empty());
        assert_eq!(
            store
                .complete(
                    IDP,
                    &c.secret,
                    Some(&md[..]),
                    200,
                    c.content.as_bytes(),
                    &mut reg,
                    now()
                )
                .unwrap(),
            Operation::Register
        );
        assert!(reg.get(IDP).is_some());
        // A second registration of the same entityID is refused before any challenge.
        assert_eq!(
            store
                .begin(
                    Operation::Register,
                    &md,
                    EntityPolicy::default(),
                    &reg,
                    "owner",
                    now(),
                    &mut rng()
                )
                .unwrap_err()
                .refusal(),
            Some(Refusal::Duplicate)
        );
        // Update and delete with their own proofs.
        let c = store
            .begin(
                Operation::Update,
                &md,
                EntityPolicy::default(),
                &reg,
                "owner",
                now(),
                &mut rng(),
            )
            .unwrap();
        store
            .complete(
                IDP,
                &c.secret,
                Some(&md[..]),
                200,
                c.content.as_bytes(),
                &mut reg,
                now(),
            )
            .unwrap();
        let c = store
            .begin_delete(IDP, &reg, "owner", now(), &mut rng())
            .unwrap();
        assert!(reg.get(IDP).is_some());
        store
            .complete(
                IDP,
                &c.secret,
                None,
                200,
                c.content.as_bytes(),
                &mut reg,
                now(),
            )
            .unwrap();
        assert!(reg.get(IDP).is_none());
        let events: Vec<_> = std::iter::from_fn(|| store.poll_event()).collect();
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, RegistrationEvent::Done { .. }))
                .count(),
            3
        );
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, RegistrationEvent::Refused { .. }))
                .count(),
            3
        );
    }

    #[test]
    fn invalid_uploads_get_no_challenge() {
        let md = good();
        let reg = Registry::new(TestKey::rsa("broker").signing());
        let mut store = Registrations::new();
        for bad in [
            upload("http://idp.example.net/dame", "https://idp.example.net/sso"),
            upload("https://idp.example.net/dame", "http://idp.example.net/sso"),
            b"<EntityDescriptor".to_vec(),
            vec![b' '; 300 << 10],
        ] {
            assert!(
                store
                    .begin(
                        Operation::Register,
                        &bad,
                        EntityPolicy::default(),
                        &reg,
                        "owner",
                        now(),
                        &mut rng()
                    )
                    .is_err()
            );
        }
        assert!(store.is_empty());
        // An update of what is not registered.
        assert_eq!(
            store
                .begin(
                    Operation::Update,
                    &md,
                    EntityPolicy::default(),
                    &reg,
                    "owner",
                    now(),
                    &mut rng()
                )
                .unwrap_err()
                .refusal(),
            Some(Refusal::UnknownEntity)
        );
    }

    #[test]
    fn an_exhausted_or_expired_proof_is_forgotten() {
        let md = good();
        let mut reg = Registry::new(TestKey::rsa("broker").signing());
        let mut store = Registrations::new();
        let c = store
            .begin(
                Operation::Register,
                &md,
                EntityPolicy::default(),
                &reg,
                "owner",
                now(),
                &mut rng(),
            )
            .unwrap();
        for _ in 0..5 {
            assert!(
                store
                    .complete(IDP, &c.secret, Some(&md[..]), 200, b"no", &mut reg, now())
                    .is_err()
            );
        }
        assert!(store.is_empty());
        assert_eq!(
            store
                .complete(
                    IDP,
                    &c.secret,
                    Some(&md[..]),
                    200,
                    c.content.as_bytes(),
                    &mut reg,
                    now()
                )
                .unwrap_err()
                .refusal(),
            Some(Refusal::UnknownEntity)
        );
        let c = store
            .begin(
                Operation::Register,
                &md,
                EntityPolicy::default(),
                &reg,
                "owner",
                now(),
                &mut rng(),
            )
            .unwrap();
        let late = now() + std::time::Duration::from_secs(3601);
        assert_eq!(
            store
                .complete(
                    IDP,
                    &c.secret,
                    Some(&md[..]),
                    200,
                    c.content.as_bytes(),
                    &mut reg,
                    late
                )
                .unwrap_err()
                .refusal(),
            Some(Refusal::Stale)
        );
        assert!(store.is_empty() && reg.is_empty());
    }

    const ATTACKER: &str = "https://idp.attacker.example/idp";

    /// An IdP upload for [`ATTACKER`] with `scopes` (value, regexp) on its IdP role, and
    /// optionally an entity category and a registration authority naming a federation.
    fn attacker(scopes: &[(&str, bool)], category: bool, registrar: bool) -> Vec<u8> {
        let key = TestKey::rsa("attacker");
        let mut idp = IdpSso::builder().signing_certificate(key.cert_der()).sso(
            Binding::HttpRedirect,
            "https://idp.attacker.example/idp/profile/SAML2/Redirect/SSO",
        );
        for (v, re) in scopes {
            idp = idp.scope(v, *re);
        }
        let mut b = EntityDescriptor::builder(ATTACKER)
            .idp(idp)
            .dame_sync_location("https://idp.attacker.example/dame");
        if category {
            b = b.entity_attribute(
                "http://macedir.org/entity-category-support",
                "http://refeds.org/category/research-and-scholarship",
            );
        }
        if registrar {
            b = b.registration("https://federation.victim.example", None);
        }
        b.build().unwrap().to_xml().unwrap().into_bytes()
    }

    /// `md` with a vendor's extension element after the `nth` start of an `md:Extensions`
    /// (counting opening tags only).
    fn with_extension(md: Vec<u8>, tag: &str, nth: usize) -> Vec<u8> {
        let text = String::from_utf8(md).unwrap();
        let open = format!("<md:{tag}");
        let at = text
            .match_indices(&open)
            .nth(nth - 1)
            .map(|(i, _)| i + open.len())
            .unwrap_or_else(|| panic!("no {nth}th {open} in {text}"));
        let mut out = text[..at].to_owned();
        out.push_str(r#"<v:TrustHint xmlns:v="urn:example:vendor">anything</v:TrustHint>"#);
        out.push_str(&text[at..]);
        out.into_bytes()
    }

    /// `md` with `xml` before the end tag of its EntityDescriptor.
    fn before_end(md: Vec<u8>, xml: &str) -> Vec<u8> {
        let text = String::from_utf8(md).unwrap();
        let at = text.rfind("</md:EntityDescriptor>").unwrap();
        format!("{}{xml}{}", &text[..at], &text[at..]).into_bytes()
    }

    fn begin(store: &mut Registrations, reg: &Registry, md: &[u8]) -> Result<String, String> {
        store
            .begin(
                Operation::Register,
                md,
                EntityPolicy::default(),
                reg,
                "attacker",
                now(),
                &mut rng(),
            )
            .map(|c| c.secret)
            .map_err(|e| {
                assert!(
                    matches!(e, dame_protocol::Error::Unvouched { .. }),
                    "refused for the claim, not something else: {e}"
                );
                e.to_string()
            })
    }

    /// Finding: the broker re-signed a self-registered IdP's scopes, entity categories and
    /// registration info unchecked, so proving `idp.attacker.example` let an IdP assert
    /// `alice@victim.example` to every SP that trusts the broker's signature.
    #[test]
    fn self_registered_metadata_claims_only_what_the_proof_backs() {
        let mut reg = Registry::new(TestKey::rsa("broker").signing());
        let mut store = Registrations::new();
        for (md, claim) in [
            (
                attacker(&[("victim.example", false)], false, false),
                "victim.example",
            ),
            (attacker(&[(".*", true)], false, false), "regexp"),
            (
                attacker(&[("attacker\\.example$", true)], false, false),
                "regexp",
            ),
            (attacker(&[("example", false)], false, false), "\"example\""),
            (
                attacker(&[("ttacker.example", false)], false, false),
                "ttacker",
            ),
            (
                attacker(
                    &[("attacker.example", false), ("victim.example", false)],
                    false,
                    false,
                ),
                "victim.example",
            ),
            (attacker(&[], true, false), "mdattr:EntityAttributes"),
            (attacker(&[], false, true), "mdrpi:RegistrationInfo"),
            // An extension element the broker does not interpret, in the entity's and in the
            // role's md:Extensions (seventh round, still open then: it was re-signed as it
            // came, up to the upload limit).
            (
                with_extension(attacker(&[], false, false), "Extensions>", 1),
                "{urn:example:vendor}TrustHint",
            ),
            (
                with_extension(
                    attacker(&[("attacker.example", false)], false, false),
                    "Extensions>",
                    2,
                ),
                "which the broker does not interpret",
            ),
            // In md:Organization's and md:ContactPerson's md:Extensions too (second review of
            // the eighth round, F1), and more metadata named elsewhere.
            (
                before_end(
                    attacker(&[], false, false),
                    r#"<md:Organization><md:Extensions><v:TrustHint xmlns:v="urn:example:vendor"/></md:Extensions><md:OrganizationName xml:lang="en">A</md:OrganizationName><md:OrganizationDisplayName xml:lang="en">A</md:OrganizationDisplayName><md:OrganizationURL xml:lang="en">https://idp.attacker.example/</md:OrganizationURL></md:Organization>"#,
                ),
                "TrustHint",
            ),
            (
                before_end(
                    attacker(&[], false, false),
                    r#"<md:ContactPerson contactType="technical"><md:Extensions><mdattr:EntityAttributes xmlns:mdattr="urn:oasis:names:tc:SAML:metadata:attribute"><saml:Attribute xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" Name="http://macedir.org/entity-category"><saml:AttributeValue>http://refeds.org/category/research-and-scholarship</saml:AttributeValue></saml:Attribute></mdattr:EntityAttributes></md:Extensions><md:EmailAddress>mailto:a@attacker.example</md:EmailAddress></md:ContactPerson>"#,
                ),
                "EntityAttributes",
            ),
            // A role's own md:ContactPerson (second review of the eighth round, N10).
            (
                String::from_utf8(attacker(&[], false, false))
                    .unwrap()
                    .replacen(
                        "<md:SingleSignOnService",
                        r#"<md:ContactPerson contactType="support"><md:Extensions><v:TrustHint xmlns:v="urn:example:vendor"/></md:Extensions></md:ContactPerson><md:SingleSignOnService"#,
                        1,
                    )
                    .into_bytes(),
                "TrustHint",
            ),
            (
                before_end(
                    attacker(&[], false, false),
                    r#"<md:AdditionalMetadataLocation namespace="urn:oasis:names:tc:SAML:2.0:metadata">https://elsewhere.example/md.xml</md:AdditionalMetadataLocation>"#,
                ),
                "AdditionalMetadataLocation",
            ),
            // A shibmd element not modelled (a trust anchor).
            (
                String::from_utf8(attacker(&[], false, false))
                    .unwrap()
                    .replacen(
                        "Extensions>",
                        "Extensions><shibmd:KeyAuthority xmlns:shibmd=\"urn:mace:shibboleth:metadata:1.0\" VerifyDepth=\"5\"/>",
                        1,
                    )
                    .into_bytes(),
                "KeyAuthority",
            ),
        ] {
            let why = begin(&mut store, &reg, &md).unwrap_err();
            assert!(why.contains(claim), "{claim}: {why}");
        }
        assert!(store.is_empty(), "no challenge issued for refused claims");
        // The entityID's host and its parent domain are what the proof backs.
        for scopes in [
            &[("attacker.example", false)][..],
            &[
                ("idp.attacker.example", false),
                ("Attacker.Example.", false),
            ][..],
        ] {
            let md = attacker(scopes, false, false);
            let secret = begin(&mut store, &reg, &md).unwrap();
            let c = store
                .challenge(ATTACKER, &secret, Some(&md[..]))
                .unwrap()
                .clone();
            store
                .complete(
                    ATTACKER,
                    &secret,
                    Some(&md[..]),
                    200,
                    c.content.as_bytes(),
                    &mut reg,
                    now(),
                )
                .unwrap();
            assert!(reg.remove(ATTACKER));
        }
    }

    /// A minimal IdP upload for `https://{host}/idp`.
    fn idp_at(host: &str) -> Vec<u8> {
        let key = TestKey::rsa("idp");
        EntityDescriptor::builder(&format!("https://{host}/idp"))
            .idp(
                IdpSso::builder()
                    .signing_certificate(key.cert_der())
                    .sso(Binding::HttpRedirect, &format!("https://{host}/sso")),
            )
            .dame_sync_location(&format!("https://{host}/dame"))
            .build()
            .unwrap()
            .to_xml()
            .unwrap()
            .into_bytes()
    }

    /// Distinct secrets for proofs pending together.
    fn random(b: &mut [u8]) {
        openssl::rand::rand_bytes(b).unwrap();
    }

    /// Registers `https://{host}/idp` by proof of ownership: the refusal if any.
    fn register(store: &mut Registrations, reg: &mut Registry, host: &str) -> Option<Refusal> {
        let md = idp_at(host);
        let id = format!("https://{host}/idp");
        let c = match store.begin(
            Operation::Register,
            &md,
            EntityPolicy::default(),
            reg,
            host,
            now(),
            &mut random,
        ) {
            Ok(c) => c,
            Err(e) => return Some(e.refusal().expect("a refusal")),
        };
        store
            .complete(
                &id,
                &c.secret,
                Some(&md[..]),
                200,
                c.content.as_bytes(),
                reg,
                now(),
            )
            .err()
            .map(|e| e.refusal().expect("a refusal"))
    }

    /// Finding: proof of ownership is free for every host of a wildcard DNS zone, so one
    /// registrant could register entities until the registry was full (100,000) and every
    /// other organisation's registration was refused. A registrable domain (Public Suffix
    /// List) now holds at most `max_per_domain`; other domains, also under a multi-label
    /// public suffix, go on, and a deletion makes room.
    #[test]
    fn one_domain_cannot_fill_the_registry() {
        let mut reg = Registry::new(TestKey::rsa("broker").signing());
        reg.max_per_domain = 3;
        let mut store = Registrations::new();
        for host in [
            "a.attacker.example",
            "b.attacker.example",
            "c.x.attacker.example",
        ] {
            assert_eq!(register(&mut store, &mut reg, host), None, "{host}");
        }
        assert_eq!(
            register(&mut store, &mut reg, "d.attacker.example"),
            Some(Refusal::DomainFull)
        );
        assert_eq!(reg.len(), 3);
        // A proof begun while there was room is refused at completion once the room is gone.
        let mut reg2 = Registry::new(TestKey::rsa("broker").signing());
        reg2.max_per_domain = 1;
        let md = idp_at("e.attacker.example");
        let c = store
            .begin(
                Operation::Register,
                &md,
                EntityPolicy::default(),
                &reg2,
                "e",
                now(),
                &mut random,
            )
            .unwrap();
        assert_eq!(register(&mut store, &mut reg2, "f.attacker.example"), None);
        let late = store.complete(
            "https://e.attacker.example/idp",
            &c.secret,
            Some(&md[..]),
            200,
            c.content.as_bytes(),
            &mut reg2,
            now(),
        );
        assert_eq!(late.unwrap_err().refusal(), Some(Refusal::DomainFull));
        assert_eq!(reg2.len(), 1);
        // Other registrable domains, two universities under ac.uk among them.
        for host in ["idp.ox.ac.uk", "idp.cam.ac.uk", "idp.uni.example"] {
            assert_eq!(register(&mut store, &mut reg, host), None, "{host}");
        }
        assert_eq!(reg.per_domain("attacker.example"), 3);
        assert_eq!(reg.per_domain("ox.ac.uk"), 1);
        // A deletion makes room in the domain.
        assert!(reg.remove("https://b.attacker.example/idp"));
        assert_eq!(register(&mut store, &mut reg, "d.attacker.example"), None);
    }

    /// Review K2: the registry was bounded in entities, not in bytes, and a private suffix
    /// (`github.io`) gives every user a registrable domain of its own. The self-registered
    /// entities' metadata is now bounded in bytes together: a registration, or an owner's
    /// update, beyond `max_self_registered_bytes` is refused (`Capacity`), at the beginning
    /// and at completion; a deletion makes room, and the operator's imports do not count.
    #[test]
    fn self_registered_bytes_are_bounded() {
        let size = idp_at("h1.uni.example").len();
        let mut reg = Registry::new(TestKey::rsa("broker").signing());
        reg.max_self_registered_bytes = 4 * size + size / 2;
        let mut store = Registrations::new();
        for host in [
            "h1.uni.example",
            "h2.uni.example",
            "h3.uni.example",
            "h4.uni.example",
        ] {
            assert_eq!(register(&mut store, &mut reg, host), None, "{host}");
        }
        assert_eq!(reg.self_registered_bytes(), 4 * size);
        assert_eq!(
            register(&mut store, &mut reg, "h5.uni.example"),
            Some(Refusal::Capacity)
        );
        // An owner's update to twice the size does not fit either.
        let mut bigger = idp_at("h2.uni.example");
        bigger.resize(2 * size, b' ');
        let update = store.begin(
            Operation::Update,
            &bigger,
            EntityPolicy::default(),
            &reg,
            "h2",
            now(),
            &mut random,
        );
        assert_eq!(update.unwrap_err().refusal(), Some(Refusal::Capacity));
        // The operator's import does not count; a deletion makes room.
        let entity = match saml_metadata::load::parse_unverified(&idp_at("op.uni.example")) {
            Ok(saml_metadata::model::Metadata::Entity(e)) => *e,
            _ => unreachable!(),
        };
        reg.insert(entity, EntityPolicy::default(), now(), false)
            .unwrap();
        assert_eq!(reg.self_registered_bytes(), 4 * size);
        assert!(reg.remove("https://h1.uni.example/idp"));
        assert_eq!(reg.self_registered_bytes(), 3 * size);
        assert_eq!(register(&mut store, &mut reg, "h5.uni.example"), None);
    }

    /// An operator's import is the operator's word: it keeps every claim.
    #[test]
    fn an_operator_import_keeps_scopes_categories_and_registration_info() {
        let mut reg = Registry::new(TestKey::rsa("broker").signing());
        let md = attacker(&[("victim.example", false), (".*", true)], true, true);
        let entity = match saml_metadata::load::parse_unverified(&md).unwrap() {
            saml_metadata::model::Metadata::Entity(e) => *e,
            _ => unreachable!(),
        };
        assert!(dame_protocol::registry::validate_self_registered(&entity).is_err());
        let r = reg
            .insert(entity, EntityPolicy::default(), now(), false)
            .unwrap();
        assert!(String::from_utf8_lossy(&r.document.xml).contains("victim.example"));
        assert!(String::from_utf8_lossy(&r.document.xml).contains("federation.victim.example"));
        assert!(String::from_utf8_lossy(&r.document.xml).contains("research-and-scholarship"));
    }

    /// An [`ATTACKER`] IdP (no scopes), changed by `f` before it is written.
    fn attacker_with(f: impl FnOnce(&mut EntityDescriptor)) -> Vec<u8> {
        let mut e = match saml_metadata::load::parse_unverified(&attacker(&[], false, false)) {
            Ok(saml_metadata::model::Metadata::Entity(e)) => *e,
            other => panic!("{other:?}"),
        };
        f(&mut e);
        e.to_xml().unwrap().into_bytes()
    }

    fn endpoint(binding: Binding, location: &str, response: Option<&str>) -> Endpoint {
        Endpoint {
            binding,
            location: Uri::parse(location).unwrap(),
            response_location: response.map(|r| Uri::parse(r).unwrap()),
        }
    }

    /// The IdP role of an entity built from one.
    fn idp_of(e: &mut EntityDescriptor) -> &mut IdpSso {
        e.roles
            .iter_mut()
            .find_map(|r| match r {
                Role::Idp(i) => Some(i),
                _ => None,
            })
            .unwrap()
    }

    /// Conversion review M9: only the IdP's SingleSignOnService and the SP's ACS and
    /// DiscoveryResponse were checked, so a self-registered IdP could name an
    /// ArtifactResolutionService or a SOAP SingleLogoutService at `http://10.0.0.1/` or on
    /// anybody's host, and every SP that integrated it sent SOAP requests there from its own
    /// host (blind SSRF). Every endpoint of a self-registered entity is now https within the
    /// entityID's registrable domain, and back-channel-only roles are refused.
    #[test]
    fn self_registered_endpoints_stay_https_within_the_entity_domain() {
        let mut reg = Registry::new(TestKey::rsa("broker").signing());
        let mut store = Registrations::new();
        let refused: Vec<(Vec<u8>, &str, &str)> = vec![
            (
                attacker_with(|e| {
                    idp_of(e).common.artifact_resolution.push(IndexedEndpoint {
                        endpoint: endpoint(Binding::Soap, "http://10.0.0.1/", None),
                        index: 0,
                        is_default: None,
                    })
                }),
                "ArtifactResolutionService at \"http://10.0.0.1/\"",
                "http://10.0.0.1/",
            ),
            (
                attacker_with(|e| {
                    idp_of(e).common.single_logout.push(endpoint(
                        Binding::Soap,
                        "https://intranet.victim.example/slo",
                        None,
                    ))
                }),
                "SingleLogoutService at \"https://intranet.victim.example/slo\"",
                "https://intranet.victim.example/slo",
            ),
            (
                attacker_with(|e| {
                    idp_of(e).common.single_logout.push(endpoint(
                        Binding::HttpRedirect,
                        "https://idp.attacker.example/slo",
                        Some("http://127.0.0.1:8080/admin"),
                    ))
                }),
                "SingleLogoutService at \"http://127.0.0.1:8080/admin\"",
                "http://127.0.0.1:8080/admin",
            ),
            (
                attacker_with(|e| {
                    idp_of(e).common.manage_name_id.push(endpoint(
                        Binding::Soap,
                        "https://169.254.169.254/latest/meta-data/",
                        None,
                    ))
                }),
                "ManageNameIDService",
                "https://169.254.169.254/latest/meta-data/",
            ),
            (
                attacker_with(|e| {
                    idp_of(e).name_id_mapping.push(endpoint(
                        Binding::Soap,
                        "http://idp.attacker.example/nim",
                        None,
                    ))
                }),
                "NameIDMappingService",
                "http://idp.attacker.example/nim",
            ),
            (
                attacker_with(|e| {
                    idp_of(e).assertion_id_request.push(endpoint(
                        Binding::Uri,
                        "https://[::1]/aid",
                        None,
                    ))
                }),
                "AssertionIDRequestService",
                "https://[::1]/aid",
            ),
            (
                attacker_with(|e| {
                    idp_of(e).single_sign_on.push(endpoint(
                        Binding::HttpPost,
                        "https://login.victim.example/sso",
                        None,
                    ))
                }),
                "SingleSignOnService",
                "https://login.victim.example/sso",
            ),
            (
                attacker_with(|e| {
                    e.roles.push(Role::AttributeAuthority(AuthorityRole {
                        common: RoleCommon {
                            protocols: vec!["urn:oasis:names:tc:SAML:2.0:protocol".into()],
                            ..RoleCommon::default()
                        },
                        services: vec![endpoint(
                            Binding::Soap,
                            "https://idp.attacker.example/aa",
                            None,
                        )],
                        ..AuthorityRole::default()
                    }))
                }),
                "AttributeAuthorityDescriptor",
                "https://idp.attacker.example/aa",
            ),
        ];
        for (md, claim, _) in &refused {
            let why = begin(&mut store, &reg, md).unwrap_err();
            assert!(why.contains(claim), "{claim}: {why}");
        }
        assert!(
            store.is_empty(),
            "no challenge issued for refused endpoints"
        );

        // Back-channel endpoints on the entityID's host (another port) or elsewhere in its
        // registrable domain are what the proof backs: registered, and published as uploaded.
        let md = attacker_with(|e| {
            let idp = idp_of(e);
            idp.common.artifact_resolution.push(IndexedEndpoint {
                endpoint: endpoint(
                    Binding::Soap,
                    "https://idp.attacker.example:8443/idp/profile/SAML2/SOAP/ArtifactResolution",
                    None,
                ),
                index: 1,
                is_default: None,
            });
            idp.common.single_logout.push(endpoint(
                Binding::Soap,
                "https://logout.attacker.example/slo",
                Some("https://logout.attacker.example/slo/done"),
            ));
        });
        let secret = begin(&mut store, &reg, &md).unwrap();
        let c = store
            .challenge(ATTACKER, &secret, Some(&md[..]))
            .unwrap()
            .clone();
        store
            .complete(
                ATTACKER,
                &secret,
                Some(&md[..]),
                200,
                c.content.as_bytes(),
                &mut reg,
                now(),
            )
            .unwrap();
        let published =
            String::from_utf8_lossy(&reg.get(ATTACKER).unwrap().document.xml).into_owned();
        assert!(published.contains(":8443/idp/profile/SAML2/SOAP/ArtifactResolution"));
        assert!(published.contains("https://logout.attacker.example/slo/done"));

        // An SP's endpoints alike: its ACS, its SingleLogoutService, a RequestInitiator.
        let sp = |f: &dyn Fn(&mut SpSso)| {
            let key = TestKey::rsa("sp");
            let mut e = EntityDescriptor::builder("https://sp.attacker.example/shibboleth")
                .sp(SpSso::builder()
                    .signing_certificate(key.cert_der())
                    .acs(Binding::HttpPost, "https://sp.attacker.example/acs"))
                .dame_sync_location("https://sp.attacker.example/dame")
                .build()
                .unwrap();
            let Some(Role::Sp(r)) = e.roles.first_mut() else {
                unreachable!()
            };
            f(r);
            e.to_xml().unwrap().into_bytes()
        };
        assert!(begin(&mut store, &reg, &sp(&|_| {})).is_ok());
        for (md, claim) in [
            (
                sp(&|r| {
                    r.common.single_logout.push(endpoint(
                        Binding::Soap,
                        "https://127.0.0.1/slo",
                        None,
                    ))
                }),
                "SingleLogoutService",
            ),
            (
                sp(&|r| {
                    r.assertion_consumer.push(IndexedEndpoint {
                        endpoint: endpoint(
                            Binding::HttpPost,
                            "https://sp.victim.example/acs",
                            None,
                        ),
                        index: 1,
                        is_default: None,
                    })
                }),
                "AssertionConsumerService",
            ),
            (
                sp(&|r| {
                    r.common.extensions.present = true;
                    r.common.extensions.request_initiators.push(endpoint(
                        Binding::Other("urn:oasis:names:tc:SAML:profiles:SSO:request-init".into()),
                        "http://sp.attacker.example/Login",
                        None,
                    ))
                }),
                "RequestInitiator",
            ),
        ] {
            let why = begin(&mut store, &reg, &md).unwrap_err();
            assert!(why.contains(claim), "{claim}: {why}");
        }

        // The operator's import is the operator's word: the same endpoints are kept.
        let mut reg = Registry::new(TestKey::rsa("broker").signing());
        for (md, claim, kept) in refused {
            let entity = match saml_metadata::load::parse_unverified(&md).unwrap() {
                saml_metadata::model::Metadata::Entity(e) => *e,
                _ => unreachable!(),
            };
            assert!(dame_protocol::registry::validate_self_registered(&entity).is_err());
            let r = reg
                .insert(entity, EntityPolicy::default(), now(), true)
                .unwrap_or_else(|e| panic!("{claim}: {e}"));
            let xml = String::from_utf8_lossy(&r.document.xml);
            assert!(
                xml.contains(&format!("Location=\"{kept}\"")),
                "{claim}: {xml}"
            );
        }
    }
}
