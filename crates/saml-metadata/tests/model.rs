//! Model details on documents built here: DAME extension in both namespaces, index behaviour
//! (duplicates, expired entities, sha1 lookups), and one clear error per malformed value.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, UNIX_EPOCH};

use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use saml_core::dsig::{self, SignOptions, SigningKey, TrustedKeys};
use saml_metadata::Error;
use saml_metadata::load::{self, Policy, parse_unverified};
use saml_metadata::model::{ContactType, Metadata, sha1_hex};

const HEAD: &str = r#"<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:dame="urn:geant:dame" xmlns:remd="http://refeds.org/metadata" ID="_agg" validUntil="2030-01-01T00:00:00Z">"#;

fn sp(entity_id: &str, extra_attrs: &str) -> String {
    format!(
        r#"<md:EntityDescriptor entityID="{entity_id}"{extra_attrs}><md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp.example.org/acs" index="1" isDefault="false"/><md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp.example.org/acs2" index="2"/></md:SPSSODescriptor></md:EntityDescriptor>"#
    )
}

fn signed(body: &str) -> (Vec<u8>, TrustedKeys) {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = SigningKey::new(
        PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap(),
        None,
    )
    .unwrap();
    let doc = format!("{HEAD}{body}</md:EntitiesDescriptor>");
    let out = dsig::sign(doc.as_bytes(), &key, &SignOptions::default()).unwrap();
    let mut keys = TrustedKeys::new();
    keys.add_public_key(key.public_key().unwrap(), "fed")
        .unwrap();
    (out, keys)
}

fn now() -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

#[test]
fn dame_sync_location_in_both_namespaces_and_refeds_security_contact() {
    let idp = r#"<md:EntityDescriptor entityID="https://idp.example.net"><md:Extensions><dame:DAMEInfo><dame:MetadataSyncLocation>
        https://idp.example.net/idp/profile/SAML2/DAME </dame:MetadataSyncLocation></dame:DAMEInfo><ttp:TTPMetadataSyncLocation xmlns:ttp="urn:geant:lrz.de">https://idp.example.net/old</ttp:TTPMetadataSyncLocation></md:Extensions><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example.net/sso"/></md:IDPSSODescriptor><md:ContactPerson contactType="other" remd:contactType="http://refeds.org/metadata/contactType/security"><md:EmailAddress>mailto:cert@example.net</md:EmailAddress></md:ContactPerson></md:EntityDescriptor>"#;
    let (doc, keys) = signed(idp);
    let agg = load::load(&doc, &Policy::new(keys, now())).unwrap();
    let e = agg.get("https://idp.example.net").unwrap();
    assert_eq!(
        e.extensions.dame_sync_locations,
        [
            "https://idp.example.net/idp/profile/SAML2/DAME",
            "https://idp.example.net/old"
        ]
    );
    assert_eq!(e.contacts[0].contact_type, ContactType::Other);
    assert_eq!(
        e.contacts[0].refeds_type.as_deref(),
        Some("http://refeds.org/metadata/contactType/security")
    );
}

/// A `{sha1}` identifier is 40 hex digits and nothing else: `u8::from_str_radix`, which both
/// indexes used, takes a sign, so `+b` answered for the byte `0b` (a second spelling of the
/// identifier that no MDQ client sends and that a cache keyed on the text would miss).
#[test]
fn sha1_identifiers_take_hex_digits_only() {
    // SHA-1 of this entityID is ac5e671e900b7b7d...: the sixth byte is 0x0b.
    let id = "https://sp.example.org";
    let sha = sha1_hex(id);
    assert_eq!(&sha[10..12], "0b");
    let plus_form = format!("{}+b{}", &sha[..10], &sha[12..]);
    let (doc, keys) = signed(&sp(id, ""));
    let agg = load::load(&doc, &Policy::new(keys.clone(), now())).unwrap();
    assert!(agg.get_by_sha1(&sha).is_some());
    assert!(agg.get_by_sha1(&plus_form).is_none());
    assert!(agg.get_by_sha1(&format!("{{sha1}}{plus_form}")).is_none());
    let lazy = saml_metadata::lazy::load_lazy(&doc, &Policy::new(keys, now())).unwrap();
    assert!(lazy.get_by_sha1(&sha).unwrap().is_some());
    assert!(lazy.get_by_sha1(&plus_form).unwrap().is_none());
    // A multi-byte character where a digit pair should be: no panic on the char boundary.
    let wide = format!("{}é{}", &sha[..10], &sha[12..]);
    assert_eq!(wide.len(), 40);
    assert!(agg.get_by_sha1(&wide).is_none());
    assert!(lazy.get_by_sha1(&wide).unwrap().is_none());
}

#[test]
fn index_lookups_duplicates_and_expired_entities() {
    let body = format!(
        "{}{}",
        sp("https://a.example.org", ""),
        sp(
            "https://b.example.org",
            r#" validUntil="2020-01-01T00:00:00Z""#
        )
    );
    let (doc, keys) = signed(&body);
    let agg = load::load(&doc, &Policy::new(keys.clone(), now())).unwrap();
    assert_eq!(agg.len(), 1);
    assert_eq!(agg.expired_entities(), ["https://b.example.org"]);
    let a = agg.get("https://a.example.org").unwrap();
    assert_eq!(a.sp().unwrap().default_acs().unwrap().index, 2);
    let sha = sha1_hex("https://a.example.org");
    assert!(agg.get_by_sha1(&sha).is_some());
    assert!(
        agg.get_by_sha1(&format!("{{sha1}}{}", sha.to_uppercase()))
            .is_some()
    );
    assert!(agg.get_by_sha1("{sha1}zz").is_none());
    assert!(agg.get_by_sha1(&format!("{sha}0")).is_none());
    assert_eq!(agg.sps().count(), 1);
    assert_eq!(agg.idps().count(), 0);
    // The lazy index the same way (its `{sha1}` index is built on the first such lookup): the
    // expired entity is found neither by entityID nor by `{sha1}`.
    let lazy = saml_metadata::lazy::load_lazy(&doc, &Policy::new(keys, now())).unwrap();
    assert_eq!(lazy.expired_entities(), ["https://b.example.org"]);
    let by_sha1 = |id: &str| lazy.get_by_sha1(id).unwrap().map(|e| e.entity_id.clone());
    assert_eq!(by_sha1(&sha).as_deref(), Some("https://a.example.org"));
    assert_eq!(
        by_sha1(&format!("{{sha1}}{}", sha.to_uppercase())).as_deref(),
        Some("https://a.example.org")
    );
    assert_eq!(by_sha1(&sha1_hex("https://b.example.org")), None);
    assert_eq!(by_sha1("{sha1}zz"), None);
    assert_eq!(by_sha1(&format!("{sha}0")), None);
    assert!(lazy.get("https://b.example.org").unwrap().is_none());

    let dup = format!(
        "{}{}",
        sp("https://a.example.org", ""),
        sp("https://a.example.org", "")
    );
    let (doc, keys) = signed(&dup);
    assert!(
        matches!(load::load(&doc, &Policy::new(keys, now())), Err(Error::DuplicateEntityId(id)) if id == "https://a.example.org")
    );
}

#[test]
fn unsigned_or_tampered_documents_do_not_load() {
    let (doc, keys) = signed(&sp("https://a.example.org", ""));
    let unsigned = format!(
        "{HEAD}{}</md:EntitiesDescriptor>",
        sp("https://a.example.org", "")
    );
    assert!(matches!(
        load::load(unsigned.as_bytes(), &Policy::new(keys.clone(), now())),
        Err(Error::Core(_))
    ));
    let tampered = String::from_utf8(doc).unwrap().replace("acs2", "evil");
    assert!(matches!(
        load::load(tampered.as_bytes(), &Policy::new(keys, now())),
        Err(Error::Core(_))
    ));
}

/// Review A7's rest: an endpoint whose `Location` (or `ResponseLocation`) is not an absolute
/// URI made `load` refuse the whole aggregate, so one entity's typo took a federation's
/// thousands of entities away. Such an endpoint is left out of its entity (nothing can be
/// sent there), the rest of the entity and the aggregate stand.
#[test]
fn an_endpoint_that_is_not_an_absolute_uri_is_left_out() {
    let relative = sp("https://a.example.org", "").replace(
        "Location=\"https://sp.example.org/acs\"",
        "Location=\"/Shibboleth.sso/SAML2/POST\"",
    );
    let bad_response = sp("https://c.example.org", "").replace(
        "Location=\"https://sp.example.org/acs\"",
        "Location=\"https://sp.example.org/acs\" ResponseLocation=\"not a url\"",
    );
    let doc = format!(
        "{HEAD}{relative}{}{bad_response}</md:EntitiesDescriptor>",
        sp("https://b.example.org", "")
    );
    let Metadata::Entities(g) = parse_unverified(doc.as_bytes()).unwrap() else {
        panic!("an aggregate")
    };
    let entities = g.entities();
    assert_eq!(entities.len(), 3);
    let acs = |e: &saml_metadata::model::EntityDescriptor| e.sp().unwrap().assertion_consumer.len();
    let whole = acs(entities[1]);
    assert!(whole >= 1);
    assert_eq!(acs(entities[0]), whole - 1);
    assert_eq!(acs(entities[2]), whole - 1);
}

#[test]
fn malformed_values_name_the_element() {
    let cases = [
        (
            sp("https://a.example.org", "").replace("Location=\"https://sp.example.org/acs\"", ""),
            "AssertionConsumerService",
            "Location",
        ),
        (
            sp("https://a.example.org", r#" cacheDuration="6 hours""#),
            "EntityDescriptor",
            "xs:duration",
        ),
        (
            sp("https://a.example.org", r#" validUntil="tomorrow""#),
            "EntityDescriptor",
            "xs:dateTime",
        ),
        (
            sp("https://a.example.org", "").replace("index=\"1\"", "index=\"70000\""),
            "AssertionConsumerService",
            "unsignedShort",
        ),
        (
            sp("https://a.example.org", "").replace("isDefault=\"false\"", "isDefault=\"maybe\""),
            "AssertionConsumerService",
            "boolean",
        ),
        (
            sp("https://a.example.org", "").replace(
                " protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\"",
                "",
            ),
            "SPSSODescriptor",
            "protocolSupportEnumeration",
        ),
        (
            sp("https://a.example.org", "").replace("entityID=\"https://a.example.org\"", ""),
            "EntityDescriptor",
            "entityID",
        ),
        (
            sp("https://a.example.org", "").replace("<md:AssertionConsumerService ", "<md:Bogus "),
            "Bogus",
            "unexpected element",
        ),
        (sp("", ""), "EntityDescriptor", "1 to 1024"),
        (
            "<md:EntityDescriptor entityID=\"https://x.example\"/>".to_owned(),
            "EntityDescriptor",
            "at least one role",
        ),
    ];
    for (body, element, msg) in cases {
        let doc = format!("{HEAD}{body}</md:EntitiesDescriptor>");
        match parse_unverified(doc.as_bytes()) {
            Err(Error::Invalid {
                element: el,
                message,
                ..
            }) => {
                assert_eq!(el, element, "{message}");
                assert!(message.contains(msg), "{element}: {message}");
            }
            other => panic!("{element}/{msg}: {other:?}"),
        }
    }
    assert!(matches!(
        parse_unverified(b"<x/>"),
        Err(Error::Invalid { .. })
    ));
    assert!(matches!(
        parse_unverified(b"<!DOCTYPE x><x/>"),
        Err(Error::Core(_))
    ));
    let Ok(Metadata::Entities(_)) =
        parse_unverified(format!("{HEAD}</md:EntitiesDescriptor>").as_bytes())
    else {
        panic!()
    };
}

#[test]
fn filters_compose() {
    use saml_metadata::filter::{Filter, RoleKind};
    let idp = r#"<md:EntityDescriptor entityID="https://idp.example.net"><md:Extensions><mdrpi:RegistrationInfo xmlns:mdrpi="urn:oasis:names:tc:SAML:metadata:rpi" registrationAuthority="https://fed.example.org"/><mdattr:EntityAttributes xmlns:mdattr="urn:oasis:names:tc:SAML:metadata:attribute"><saml:Attribute xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" Name="http://macedir.org/entity-category"><saml:AttributeValue>http://refeds.org/category/research-and-scholarship</saml:AttributeValue></saml:Attribute></mdattr:EntityAttributes></md:Extensions><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example.net/sso"/></md:IDPSSODescriptor></md:EntityDescriptor>"#;
    let body = format!(
        "{idp}{}{}",
        sp("https://a.example.org", ""),
        sp("https://b.example.org", "")
    );
    let (doc, keys) = signed(&body);
    let agg = load::load(&doc, &Policy::new(keys, now())).unwrap();
    let ids = |f: &Filter| {
        agg.select(f)
            .map(|e| e.entity_id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(&Filter::role(RoleKind::Idp)),
        ["https://idp.example.net"]
    );
    assert_eq!(
        ids(&Filter::category(
            "http://refeds.org/category/research-and-scholarship"
        )),
        ["https://idp.example.net"]
    );
    assert_eq!(
        ids(&Filter::registration_authority("https://fed.example.org")),
        ["https://idp.example.net"]
    );
    assert_eq!(
        ids(&Filter::role(RoleKind::Sp).and(Filter::deny(["https://a.example.org"]))),
        ["https://b.example.org"]
    );
    assert_eq!(
        ids(&Filter::allow(["https://a.example.org"]).or(Filter::role(RoleKind::Idp))),
        ["https://idp.example.net", "https://a.example.org"]
    );
    assert_eq!(ids(&Filter::role(RoleKind::Idp).not()).len(), 2);
    assert_eq!(
        ids(&Filter::predicate(|e| e
            .entity_id
            .ends_with("b.example.org"))),
        ["https://b.example.org"]
    );
    assert!(
        format!(
            "{:?}",
            Filter::role(RoleKind::Sp).and(Filter::predicate(|_| true))
        )
        .contains("Predicate")
    );
}

/// Issue 13 item 8: a caller-chosen clock skew or maximum validity too large for `SystemTime`
/// arithmetic saturates ("not expired", "not too long") instead of panicking, on the document's
/// validUntil and on every entity's, in `load` and `load_lazy` alike.
#[test]
fn huge_clock_skew_and_max_validity_do_not_panic() {
    let (doc, keys) = signed(&sp(
        "https://sp.example.org",
        r#" validUntil="2020-01-01T00:00:00Z""#,
    ));
    let mut policy = Policy::new(keys, now());
    policy.clock_skew = Duration::MAX;
    policy.max_validity = Some(Duration::MAX);
    let agg = load::load(&doc, &policy).unwrap();
    assert!(agg.get("https://sp.example.org").is_some());
    let lazy = saml_metadata::lazy::load_lazy(&doc, &policy).unwrap();
    assert!(lazy.get("https://sp.example.org").unwrap().is_some());
    policy.clock_skew = Duration::ZERO;
    let agg = load::load(&doc, &policy).unwrap();
    assert!(agg.get("https://sp.example.org").is_none());
}

/// Entity attribute values (entity categories) are trimmed of XML white space only: a value
/// that differs by a Unicode space (U+00A0, U+3000, U+2028, U+0085) is a different category, so
/// a look-alike cannot put an entity into R&S (issue 13 item 3, here for metadata).
#[test]
fn entity_categories_are_not_trimmed_of_unicode_spaces() {
    const RS: &str = "http://refeds.org/category/research-and-scholarship";
    let doc = |value: &str| {
        format!(
            r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:mdattr="urn:oasis:names:tc:SAML:metadata:attribute" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" entityID="https://sp.example.org/sp"><md:Extensions><mdattr:EntityAttributes><saml:Attribute Name="http://macedir.org/entity-category" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:uri"><saml:AttributeValue>{value}</saml:AttributeValue></saml:Attribute></mdattr:EntityAttributes></md:Extensions><md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp.example.org/acs" index="0"/></md:SPSSODescriptor></md:EntityDescriptor>"#
        )
    };
    let categories = |value: &str| -> Vec<String> {
        let Metadata::Entity(e) = parse_unverified(doc(value).as_bytes()).unwrap() else {
            panic!("not an entity")
        };
        e.extensions
            .entity_attribute("http://macedir.org/entity-category")
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(categories(&format!("\n  {RS}\t ")), vec![RS.to_owned()]);
    for c in ['\u{a0}', '\u{3000}', '\u{2028}', '\u{85}'] {
        let got = categories(&format!("{RS}{c}"));
        assert_eq!(got, vec![format!("{RS}{c}")], "U+{:04X}", c as u32);
        assert_ne!(got[0], RS);
    }
}

/// Review G3: a refused entity kept its reason whole, for the life of the aggregate; a reason
/// echoes attacker values escaped (an `index` of 30 KiB of U+0301 became a reason of about
/// 105 KiB). It is cut (512 bytes, then `…`) on every path that names refused entities; the
/// entityID, which names the entity, is kept whole (review H1).
#[test]
fn a_refused_entity_keeps_a_bounded_reason() {
    let echoed = sp("https://b.example.org", "").replace(
        "index=\"1\"",
        &format!("index=\"{}\"", "\u{301}".repeat(15_000)),
    );
    let long_id = format!("https://c.example.org/{}", "i".repeat(4000));
    let body = format!(
        "{}{echoed}{}",
        sp("https://a.example.org", ""),
        sp(&long_id, "")
    );
    let (doc, keys) = signed(&body);
    let check = |refused: &[saml_metadata::nested_signatures::RefusedEntity]| {
        assert_eq!(refused.len(), 2);
        assert_eq!(refused[0].entity_id, "https://b.example.org");
        assert!(
            refused[0].reason.len() <= 512 + 3,
            "{}",
            refused[0].reason.len()
        );
        assert!(refused[0].reason.ends_with('…'));
        // The entityID is kept whole: it names the entity (review H1).
        assert_eq!(refused[1].entity_id, long_id);
        assert!(refused[1].reason.contains("1024"), "{}", refused[1].reason);
    };
    for parallel in [None, Some(0)] {
        let mut policy = Policy::new(keys.clone(), now());
        policy.verify.parallel_min_size = parallel;
        let agg = load::load(&doc, &policy).unwrap();
        assert_eq!(agg.entities().count(), 1);
        check(agg.refused_entities());
    }
    let lazy = saml_metadata::lazy::load_lazy(&doc, &Policy::new(keys, now())).unwrap();
    check(&lazy.invalid_models(2).unwrap());
}

/// One entity whose model is invalid (a bad `index`, a missing role, a missing `Location`, a
/// second `md:Extensions`) refused the whole aggregate in `load`, whatever its other ten
/// thousand entities, while `samlmd verify` (which does not model entities) said OK. It is
/// left out and named in `refused_entities`, on one thread and on several, in `load` and
/// `load_owned`; two entities of one entityID still refuse the aggregate, one of them
/// broken or not, and so does one without an entityID to name it.
#[test]
fn an_entity_whose_model_is_invalid_is_left_out() {
    let bad_index = sp("https://b.example.org", "").replace("index=\"1\"", "index=\"x\"");
    let no_role = "<md:EntityDescriptor entityID=\"https://d.example.org\"/>";
    let no_location =
        sp("https://f.example.org", "").replace("Location=\"https://sp.example.org/acs2\"", "");
    let two_extensions = sp("https://g.example.org", "").replace(
        "<md:SPSSODescriptor",
        "<md:Extensions/><md:Extensions/><md:SPSSODescriptor",
    );
    let body = format!(
        "{}{bad_index}<md:EntitiesDescriptor Name=\"inner\">{}{no_role}</md:EntitiesDescriptor>{}{no_location}{two_extensions}",
        sp("https://a.example.org", ""),
        sp("https://c.example.org", ""),
        sp("https://e.example.org", ""),
    );
    let (doc, keys) = signed(&body);
    for parallel in [None, Some(0)] {
        let mut policy = Policy::new(keys.clone(), now());
        policy.verify.parallel_min_size = parallel;
        for owned in [false, true] {
            let agg = if owned {
                load::load_owned(doc.clone(), &policy)
            } else {
                load::load(&doc, &policy)
            }
            .unwrap_or_else(|e| panic!("{parallel:?} {owned}: {e}"));
            let ids: Vec<&str> = agg.entities().map(|e| e.entity_id.as_str()).collect();
            assert_eq!(
                ids,
                [
                    "https://a.example.org",
                    "https://c.example.org",
                    "https://e.example.org"
                ],
                "{parallel:?} {owned}"
            );
            let refused: Vec<(&str, bool)> = agg
                .refused_entities()
                .iter()
                .map(|r| (r.entity_id.as_str(), r.invalid_model))
                .collect();
            assert_eq!(
                refused,
                [
                    ("https://b.example.org", true),
                    ("https://d.example.org", true),
                    ("https://f.example.org", true),
                    ("https://g.example.org", true)
                ],
                "{parallel:?} {owned}"
            );
            let reasons: Vec<&str> = agg
                .refused_entities()
                .iter()
                .map(|r| r.reason.as_str())
                .collect();
            assert!(reasons[0].contains("unsignedShort"), "{reasons:?}");
            assert!(reasons[1].contains("at least one role"), "{reasons:?}");
            assert!(reasons[2].contains("Location"), "{reasons:?}");
            assert!(reasons[3].contains("Extensions"), "{reasons:?}");
            assert!(agg.get("https://b.example.org").is_none());
        }
    }
    // The lazy index models the same entities when asked (`samlmd verify --models`), on one
    // thread and on two.
    let lazy = saml_metadata::lazy::load_lazy(&doc, &Policy::new(keys.clone(), now())).unwrap();
    for threads in [1, 2] {
        let ids: Vec<String> = lazy
            .invalid_models(threads)
            .unwrap()
            .into_iter()
            .map(|r| r.entity_id)
            .collect();
        assert_eq!(
            ids,
            [
                "https://b.example.org",
                "https://d.example.org",
                "https://f.example.org",
                "https://g.example.org"
            ]
        );
    }
    // A broken entity beside a good one of its entityID: ambiguous, as two good ones are.
    let (doc, keys) = signed(&format!(
        "{}{}",
        sp("https://a.example.org", ""),
        sp("https://a.example.org", "").replace("index=\"1\"", "index=\"x\"")
    ));
    assert!(matches!(
        load::load(&doc, &Policy::new(keys, now())),
        Err(Error::DuplicateEntityId(id)) if id == "https://a.example.org"
    ));
    // Nothing to name it by: the document is refused.
    let (doc, keys) = signed(&format!(
        "{}{}",
        sp("https://a.example.org", ""),
        sp("https://b.example.org", "").replace("entityID=\"https://b.example.org\"", "")
    ));
    assert!(matches!(
        load::load(&doc, &Policy::new(keys, now())),
        Err(Error::Invalid { .. })
    ));
}

/// CI's fuzz run of the twelfth round: for a document of one entity, `invalid_models` modelled
/// the root entity as a fragment of the signed content, an error ("not inside the signed
/// content") where `load` took the document. The root entity was modelled at load, and its
/// errors are the document's: it is never listed.
#[test]
fn invalid_models_of_a_root_entity_is_empty() {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = SigningKey::new(
        PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap(),
        None,
    )
    .unwrap();
    let one = sp(
        "https://one.example.org",
        r#" xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" ID="_one" validUntil="2030-01-01T00:00:00Z""#,
    );
    let doc = dsig::sign(one.as_bytes(), &key, &SignOptions::default()).unwrap();
    let mut keys = TrustedKeys::new();
    keys.add_public_key(key.public_key().unwrap(), "fed")
        .unwrap();
    let lazy = saml_metadata::lazy::load_lazy(&doc, &Policy::new(keys, now())).unwrap();
    assert_eq!(lazy.len(), 1);
    for threads in [1, 2] {
        assert!(lazy.invalid_models(threads).unwrap().is_empty());
    }
}
