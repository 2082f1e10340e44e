//! DAME messages on untrusted input (dame-protocol): the bytes as a discovery request, an
//! `action=authenticate` request (verified against a fixed SP), a trigger at the entity (the
//! broker key pinned), a status report at the broker, and an MDI response body with a status
//! code from the first byte, and an MDQ request (path, Accept, If-None-Match lines) at the
//! broker's metadata service, conversion rule sets (JSON, evaluated) and rule queries, and a registration upload (metadata checked before a challenge). Errors are fine, panics are not; nothing signed by a key other than
//! the fixture's may be accepted, and a trigger is accepted at most once.
#![no_main]

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dame_protocol::authenticate::AuthenticateRequest;
use dame_protocol::conversion::{Attributes, RuleSet, RulesQuery};
use dame_protocol::discovery::DiscoveryRequest;
use dame_protocol::mdi::{MdiResponse, StatusReports};
use dame_protocol::mdq_service::{DocumentSource, MdqRequest, MdqService, SignedDocument};
use dame_protocol::registration::{Operation, Registrations};
use dame_protocol::registry::{EntityPolicy, Registry};
use dame_protocol::trigger::TriggerVerifier;
use libfuzzer_sys::fuzz_target;
use saml_core::dsig::TrustedKeys;
use saml_fuzz::{signing_key, trusted_keys};
use saml_metadata::model::{EntityDescriptor, Metadata};

fn keys() -> &'static TrustedKeys {
    static K: OnceLock<TrustedKeys> = OnceLock::new();
    #[allow(clippy::expect_used)]
    K.get_or_init(|| trusted_keys(&signing_key().expect("key")).expect("trusted"))
}

fn sp() -> &'static EntityDescriptor {
    static S: OnceLock<EntityDescriptor> = OnceLock::new();
    #[allow(clippy::expect_used, clippy::panic)]
    S.get_or_init(|| {
        let md = r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:idpdisc="urn:oasis:names:tc:SAML:profiles:SSO:idp-discovery-protocol" entityID="https://sp.example.org/shibboleth"><md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:Extensions><idpdisc:DiscoveryResponse Binding="urn:oasis:names:tc:SAML:profiles:SSO:idp-discovery-protocol" Location="https://sp.example.org/Shibboleth.sso/Login" index="1"/></md:Extensions><md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp.example.org/acs" index="0"/></md:SPSSODescriptor></md:EntityDescriptor>"#;
        match saml_metadata::load::parse_unverified(md.as_bytes()).expect("fixture") {
            Metadata::Entity(e) => *e,
            _ => panic!("fixture"),
        }
    })
}

fn verifier() -> &'static Mutex<TriggerVerifier> {
    static V: OnceLock<Mutex<TriggerVerifier>> = OnceLock::new();
    V.get_or_init(|| {
        Mutex::new(TriggerVerifier::new(
            keys().clone(),
            "https://idp.example.net/idp/shibboleth",
        ))
    })
}

struct One;

impl DocumentSource for One {
    fn by_sha1(&self, h: &str) -> Option<SignedDocument> {
        (h == "0123456789abcdef0123456789abcdef01234567").then(|| SignedDocument {
            xml: b"<x/>".as_slice().into(),
            etag: "e".into(),
        })
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    if let Ok(d) = DiscoveryRequest::parse(&text) {
        // What was parsed writes back to an equal request.
        assert_eq!(DiscoveryRequest::parse(&d.to_query()).ok(), Some(d.clone()));
        let _ = d.answer(sp(), Some("https://idp.example.net/idp/shibboleth"));
    }
    if let Ok(a) = AuthenticateRequest::parse(&text) {
        let _ = a.issuer();
        let _ = a.verify(sp(), true);
    }
    if let Ok(mut v) = verifier().lock() {
        if let Ok(t) = v.accept(&text, now) {
            // Accepted once: the same query again is a replay.
            assert!(
                v.accept(&text, now).is_err(),
                "trigger accepted twice: {t:?}"
            );
        }
    }
    let mut reports = StatusReports::default();
    let _ = reports.accept(&text, keys(), now);
    let code = [200u16, 202, 403, 500][usize::from(data.first().copied().unwrap_or(0) % 4)];
    let _ = MdiResponse::from_http(code, &text);
    let (path, rest) = text.split_once('\n').unwrap_or((&text, ""));
    let a = MdqService::new("/").answer(
        &MdqRequest {
            method: "GET",
            path,
            accept: rest.lines().next(),
            if_none_match: rest.lines().nth(1),
        },
        &One,
    );
    assert!(matches!(a.status, 200 | 304 | 400 | 404 | 406));
    // Conversion rules and rule queries: bounded, and evaluating a parsed rule never panics.
    if let Ok(set) = RuleSet::from_json(data) {
        let mut a = Attributes::default();
        a.insert("urn:oid:0.9.2342.19200300.100.1.1", ["Alice", "a,b,c@d"]);
        for r in &set.rules {
            if let Ok(v) = r.evaluate(&a) {
                assert!(v.len() <= dame_protocol::conversion::MAX_VALUES);
            }
        }
        // Both generators, on whatever parsed: an answer or a refusal, never a panic.
        let names = std::collections::BTreeMap::new();
        let scopes = vec!["example.org".to_owned()];
        let out = dame_protocol::conversion::Output::new(&names, &scopes);
        let refs: Vec<_> = set.rules.iter().collect();
        let _ = dame_protocol::conversion::simplesamlphp::authproc(&refs, &out);
        let _ = dame_protocol::conversion::shibboleth::resolver(&refs, &out);
    }
    if let Ok(q) = RulesQuery::parse(&text) {
        assert_eq!(RulesQuery::parse(&q.to_query()).ok(), Some(q.clone()));
        let _ = q.answer(sp(), &RuleSet::default());
    }
    if let Ok(key) = signing_key() {
        let registry = Registry::new(key);
        let mut store = Registrations::new();
        let mut n = 0u8;
        let mut rng = |b: &mut [u8]| {
            for x in b.iter_mut() {
                n = n.wrapping_add(101);
                *x = n;
            }
        };
        let begun = store.begin(
            Operation::Register,
            data,
            EntityPolicy::default(),
            &registry,
            "fuzzer",
            now,
            &mut rng,
        );
        if let Ok(c) = begun {
            // A challenge was issued only for metadata the registry would accept, and only its
            // secret with the same metadata opens it.
            assert_eq!(store.len(), 1);
            assert!(store.challenge(&c.entity_id, &c.secret, Some(data)).is_ok());
            assert!(store.challenge(&c.entity_id, "", Some(data)).is_err());
        } else {
            assert!(store.is_empty());
        }
    }
    let _: SystemTime = now;
});
