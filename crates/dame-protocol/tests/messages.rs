//! Every DAME message: parsed strictly, written, and each refusal typed; refused messages leave
//! no state behind (the replay windows are unchanged).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dame_protocol::authenticate::AuthenticateRequest;
use dame_protocol::discovery::{DiscoveryRequest, POLICY_SINGLE};
use dame_protocol::mdi::{MdiResponse, MdiStatus, StatusReport, StatusReports};
use dame_protocol::policy::{DomainList, PeerPolicy, RateLimiter, entity_host};
use dame_protocol::trigger::{Trigger, TriggerAction, TriggerVerifier};
use dame_protocol::{Error, ErrorKind, Refusal};
use saml_core::protocol::AuthnRequest;
use saml_metadata::builder::RoleBuilder as _;
use saml_metadata::model::{Binding, EntityDescriptor, SpSso};
use testkit::signer::TestKey;

const SP: &str = "https://sp.example.org/shibboleth";
const IDP: &str = "https://idp.example.net/idp/shibboleth";
const DS: &str = "https://sp.example.org/Shibboleth.sso/Login";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn rng() -> impl FnMut(&mut [u8]) {
    let mut n = 0u8;
    move |b: &mut [u8]| {
        for x in b.iter_mut() {
            n = n.wrapping_add(37);
            *x = n;
        }
    }
}

fn refusal<T: std::fmt::Debug>(r: Result<T, Error>) -> Refusal {
    match r {
        Err(e) => e.refusal().unwrap_or_else(|| panic!("not a refusal: {e}")),
        Ok(v) => panic!("accepted: {v:?}"),
    }
}

fn malformed<T: std::fmt::Debug>(r: Result<T, Error>) {
    match r {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Malformed, "{e}"),
        Ok(v) => panic!("accepted: {v:?}"),
    }
}

fn sp_metadata(key: &TestKey) -> EntityDescriptor {
    EntityDescriptor::builder(SP)
        .sp(SpSso::builder()
            .signing_certificate(key.cert_der())
            .acs(
                Binding::HttpPost,
                "https://sp.example.org/Shibboleth.sso/SAML2/POST",
            )
            .discovery_response(DS))
        .build()
        .unwrap()
}

// ---- discovery ----

#[test]
fn discovery_round_trip_and_answer() {
    let key = TestKey::rsa("sp");
    let sp = sp_metadata(&key);
    let ret = format!("{DS}?SAMLDS=1&target=ss%3Amem%3A42");
    let q = format!(
        "entityID={}&return={}&policy={}&returnIDParam=idp",
        saml_core::bindings::url_encode(SP),
        saml_core::bindings::url_encode(&ret),
        saml_core::bindings::url_encode(POLICY_SINGLE)
    );
    let d = DiscoveryRequest::parse(&q).unwrap();
    assert_eq!(d.entity_id, SP);
    assert_eq!(d.return_url.as_deref(), Some(ret.as_str()));
    assert_eq!(d.return_id_param, "idp");
    assert!(!d.is_passive);
    assert_eq!(DiscoveryRequest::parse(&d.to_query()).unwrap(), d);
    let answer = d.answer(&sp, Some(IDP)).unwrap();
    assert_eq!(
        answer,
        format!("{ret}&idp={}", saml_core::bindings::url_encode(IDP))
    );
    // No return: the SP's default DiscoveryResponse; no IdP chosen: no parameter.
    let bare = DiscoveryRequest::new(SP, None);
    assert_eq!(bare.answer(&sp, None).unwrap(), DS);
}

#[test]
fn discovery_return_must_be_a_registered_endpoint() {
    let sp = sp_metadata(&TestKey::rsa("sp"));
    for evil in [
        "https://evil.example/Shibboleth.sso/Login",
        "https://sp.example.org/Shibboleth.sso/LoginX",
        "https://sp.example.org/Shibboleth.sso/Login.evil.example/",
        "https://sp.example.org/Shibboleth.sso/Login#frag",
        "https://sp.example.org/Shibboleth.sso/Login?x=1#frag",
        "http://sp.example.org/Shibboleth.sso/Login",
    ] {
        let d = DiscoveryRequest::new(SP, Some(evil));
        assert_eq!(
            refusal(d.answer(&sp, Some(IDP))),
            Refusal::ReturnNotRegistered,
            "{evil}"
        );
    }
    let other = DiscoveryRequest::new("https://other.example/sp", Some(DS));
    assert_eq!(refusal(other.return_to(&sp)), Refusal::UnknownEntity);
}

#[test]
fn discovery_requests_are_strict() {
    let e = saml_core::bindings::url_encode(SP);
    malformed(DiscoveryRequest::parse(""));
    malformed(DiscoveryRequest::parse(&format!(
        "entityID={e}&entityID={e}"
    )));
    malformed(DiscoveryRequest::parse(&format!(
        "entityID={e}&isPassive=yes"
    )));
    malformed(DiscoveryRequest::parse(&format!(
        "entityID={e}&policy=urn%3Aother"
    )));
    malformed(DiscoveryRequest::parse(&format!(
        "entityID={e}&returnIDParam=a%26b"
    )));
    malformed(DiscoveryRequest::parse(&format!("entityID={e}&x")));
    malformed(DiscoveryRequest::parse(&format!(
        "entityID={e}&pad={}",
        "a".repeat(dame_protocol::MAX_QUERY_LEN)
    )));
    let many: String = (0..=dame_protocol::MAX_PARAMS)
        .map(|i| format!("&p{i}=1"))
        .collect();
    malformed(DiscoveryRequest::parse(&format!("entityID={e}{many}")));
    let passive = DiscoveryRequest::parse(&format!("entityID={e}&isPassive=true")).unwrap();
    assert!(passive.is_passive);
}

// ---- action=authenticate ----

fn authn_request(issuer: &str) -> AuthnRequest {
    let mut r = AuthnRequest::new("_req1".into(), issuer, now());
    r.acs_url = Some("https://sp.example.org/Shibboleth.sso/SAML2/POST".into());
    r
}

#[test]
fn authenticate_request_verified_with_the_sp_metadata() {
    let key = TestKey::rsa("sp");
    let sp = sp_metadata(&key);
    let url = AuthenticateRequest::url(
        "https://broker.example/DAME",
        IDP,
        "https://idp.example.net/sso",
        &authn_request(SP),
        Some("rs-1"),
        &key.signing(),
    )
    .unwrap();
    let query = url.split_once('?').unwrap().1;
    let parsed = AuthenticateRequest::parse(query).unwrap();
    assert_eq!(parsed.idp_entity_id, IDP);
    assert_eq!(parsed.issuer().unwrap(), SP);
    let v = parsed.verify(&sp, false).unwrap();
    assert!(v.signed);
    assert_eq!(v.request.id, "_req1");
    assert_eq!(v.relay_state.as_deref(), Some("rs-1"));

    // Signed by another key: refused.
    let other = TestKey::rsa("other");
    let forged = AuthenticateRequest::url(
        "https://b/DAME",
        IDP,
        "https://idp.example.net/sso",
        &authn_request(SP),
        None,
        &other.signing(),
    )
    .unwrap();
    let q = forged.split_once('?').unwrap().1;
    assert_eq!(
        refusal(AuthenticateRequest::parse(q).unwrap().verify(&sp, false)),
        Refusal::BadSignature
    );
    // Issuer of another SP, signed by this SP's key: refused.
    let wrong = AuthenticateRequest::url(
        "https://b/DAME",
        IDP,
        "https://idp.example.net/sso",
        &authn_request("https://other.example/sp"),
        None,
        &key.signing(),
    )
    .unwrap();
    let q = wrong.split_once('?').unwrap().1;
    assert_eq!(
        refusal(AuthenticateRequest::parse(q).unwrap().verify(&sp, false)),
        Refusal::IssuerMismatch
    );
    // Unsigned: refused unless the SP's policy allows it.
    let unsigned = saml_core::bindings::redirect::encode(
        saml_core::bindings::MessageKind::Request,
        authn_request(SP).to_xml().as_bytes(),
        None,
        None,
        None,
    )
    .unwrap();
    let q = format!(
        "action=authenticate&idpEntityID={}&{unsigned}",
        saml_core::bindings::url_encode(IDP)
    );
    assert_eq!(
        refusal(AuthenticateRequest::parse(&q).unwrap().verify(&sp, false)),
        Refusal::Unsigned
    );
    assert!(
        !AuthenticateRequest::parse(&q)
            .unwrap()
            .verify(&sp, true)
            .unwrap()
            .signed
    );
    malformed(AuthenticateRequest::parse(
        &q.replace("action=authenticate", "action=other"),
    ));
    malformed(AuthenticateRequest::parse(&format!(
        "action=authenticate&{unsigned}"
    )));
}

// ---- triggers ----

fn broker() -> TestKey {
    TestKey::rsa("broker")
}

fn trigger_query(key: &TestKey, to: &str, at: SystemTime, seed: u8) -> String {
    let mut n = seed;
    let mut r = move |b: &mut [u8]| {
        for x in b.iter_mut() {
            n = n.wrapping_add(11);
            *x = n;
        }
    };
    Trigger::new(TriggerAction::FetchMetadata, SP, to, at, &mut r)
        .sign(&key.signing())
        .unwrap()
}

#[test]
fn triggers_from_the_pinned_broker_are_accepted_once() {
    let b = broker();
    let mut v = TriggerVerifier::new(b.trusted(), IDP);
    let q = trigger_query(&b, IDP, now(), 1);
    let t = v.accept(&q, now() + Duration::from_secs(2)).unwrap();
    assert_eq!(t.action, TriggerAction::FetchMetadata);
    assert_eq!((t.peer.as_str(), t.to.as_str()), (SP, IDP));
    // The same trigger again: a replay.
    assert_eq!(
        refusal(v.accept(&q, now() + Duration::from_secs(3))),
        Refusal::Replayed
    );
    // The URL form, with a query in the sync location.
    let mut r = rng();
    let url = Trigger::new(TriggerAction::Rollback, SP, IDP, now(), &mut r)
        .url("https://idp.example.net/DAME?x=1", &b.signing())
        .unwrap();
    assert!(url.starts_with("https://idp.example.net/DAME?x=1&action=rollback&"));
}

/// Agent review L2: the nonces a verifier remembered lived in memory only. What a restarted
/// verifier is given back refuses the replay; an expired or malformed nonce is not taken.
#[test]
fn remembered_nonces_survive_a_restart() {
    let b = broker();
    let mut v = TriggerVerifier::new(b.trusted(), IDP);
    let q = trigger_query(&b, IDP, now(), 1);
    let t = v.accept(&q, now()).unwrap();
    let kept = v.live_nonces(now());
    assert_eq!(kept, vec![(t.nonce.clone(), v.nonce_until(&t))]);
    let mut restarted = TriggerVerifier::new(b.trusted(), IDP);
    let later = now() + Duration::from_secs(30);
    for (nonce, until) in &kept {
        assert!(restarted.restore_nonce(nonce, *until, later));
    }
    assert_eq!(refusal(restarted.accept(&q, later)), Refusal::Replayed);
    // Past its time the nonce is not taken back (the time check refuses the trigger anyway),
    // nor is anything that is not a nonce.
    let mut fresh = TriggerVerifier::new(b.trusted(), IDP);
    assert!(!fresh.restore_nonce(&t.nonce, kept[0].1, kept[0].1));
    assert!(!fresh.restore_nonce("not a nonce", later + Duration::from_secs(60), later));
    assert!(fresh.live_nonces(later).is_empty());
    assert!(fresh.accept(&q, later).is_ok());
}

#[test]
fn each_trigger_fault_is_refused_and_remembers_nothing() {
    let b = broker();
    let mut v = TriggerVerifier::new(b.trusted(), IDP);
    let at = now() + Duration::from_secs(1);
    // Wrong key.
    let evil = TestKey::rsa("evil");
    assert_eq!(
        refusal(v.accept(&trigger_query(&evil, IDP, now(), 2), at)),
        Refusal::BadSignature
    );
    // Tampered peer (the signed octets change).
    let q = trigger_query(&b, IDP, now(), 3);
    let tampered = q.replacen(
        &saml_core::bindings::url_encode(SP),
        &saml_core::bindings::url_encode("https://evil.example/sp"),
        1,
    );
    assert_ne!(q, tampered);
    assert_eq!(refusal(v.accept(&tampered, at)), Refusal::BadSignature);
    // For another entity.
    assert_eq!(
        refusal(v.accept(
            &trigger_query(&b, "https://other.example/idp", now(), 4),
            at
        )),
        Refusal::NotForUs
    );
    // Stale and from the future.
    let old = trigger_query(&b, IDP, now() - Duration::from_secs(3600), 5);
    assert_eq!(refusal(v.accept(&old, at)), Refusal::Stale);
    let future = trigger_query(&b, IDP, now() + Duration::from_secs(3600), 6);
    assert_eq!(refusal(v.accept(&future, at)), Refusal::FromFuture);
    // Unsigned (a broker of the draft's bare GET), legacy action name.
    let bare = format!(
        "action=fetchmeta&entityID={}",
        saml_core::bindings::url_encode(SP)
    );
    assert_eq!(refusal(v.accept(&bare, at)), Refusal::Unsigned);
    // Parameters reordered or added: malformed.
    let reordered = q.replacen("action=fetchmetadata&", "", 1) + "&action=fetchmetadata";
    malformed(v.accept(&reordered, at));
    malformed(v.accept(&format!("{q}&extra=1"), at));
    // None of these was remembered: the good trigger still passes once.
    let good = trigger_query(&b, IDP, now(), 3);
    assert!(v.accept(&good, at).is_ok());
    // The stale one stays stale and the future one is accepted once its time has come.
    assert!(v.accept(&future, now() + Duration::from_secs(3600)).is_ok());
}

#[test]
fn legacy_action_name_is_accepted_when_signed() {
    let b = broker();
    let instant = saml_core::time::format_datetime(now());
    let mut v = TriggerVerifier::new(b.trusted(), IDP);
    // Sign a fetchmeta trigger by hand through the same machinery.
    let t = Trigger::new(TriggerAction::FetchMetadata, SP, IDP, now(), &mut rng());
    let q = t.sign(&b.signing()).unwrap();
    assert!(q.contains(&saml_core::bindings::url_encode(&instant)));
    let legacy = q.replacen("action=fetchmetadata", "action=fetchmeta", 1);
    // Renaming changes the signed octets: refused, so a legacy name must be signed as such.
    assert_eq!(refusal(v.accept(&legacy, now())), Refusal::BadSignature);
    assert!(v.accept(&q, now()).is_ok());
}

// ---- MDI responses and status reports ----

#[test]
fn mdi_responses_agree_with_their_status_code() {
    for (status, code) in [
        (MdiStatus::Integrated, 200),
        (MdiStatus::AcceptedPending, 202),
        (MdiStatus::Refused, 403),
        (MdiStatus::Error, 500),
    ] {
        let r = MdiResponse {
            status,
            reason: (code >= 400).then(|| "deny-listed: evil.example".to_owned()),
        };
        let (c, body) = r.to_http().unwrap();
        assert_eq!(c, code);
        assert_eq!(MdiResponse::from_http(c, &body).unwrap(), r);
    }
    malformed(MdiResponse::from_http(200, "status=error"));
    malformed(MdiResponse::from_http(200, "status=done"));
    malformed(MdiResponse::from_http(200, ""));
    malformed(MdiResponse::from_http(200, &"x".repeat(5000)));
    let control = MdiResponse {
        status: MdiStatus::Error,
        reason: Some("line\nbreak".into()),
    };
    malformed(control.to_http());
}

#[test]
fn status_reports_are_signed_by_the_reporter_and_accepted_once() {
    let idp_key = TestKey::rsa("idp");
    let mut reports = StatusReports::default();
    let r = StatusReport::new(IDP, SP, MdiStatus::Integrated, "", now(), &mut rng());
    let url = r
        .url("https://broker.example/DAME", &idp_key.signing())
        .unwrap();
    let q = url.split_once('?').unwrap().1;
    assert_eq!(StatusReport::reporter_of(q).unwrap(), IDP);
    let got = reports.accept(q, &idp_key.trusted(), now()).unwrap();
    assert_eq!(got, r);
    assert_eq!(
        refusal(reports.accept(q, &idp_key.trusted(), now())),
        Refusal::Replayed
    );
    let other = TestKey::rsa("other");
    let r2 = StatusReport::new(IDP, SP, MdiStatus::Error, "fetch failed", now(), &mut rng());
    let url = r2
        .url("https://broker.example/DAME", &other.signing())
        .unwrap();
    let q2 = url.split_once('?').unwrap().1;
    assert_eq!(
        refusal(reports.accept(q2, &idp_key.trusted(), now())),
        Refusal::BadSignature
    );
    assert_eq!(
        refusal(reports.accept(q2, &other.trusted(), now() + Duration::from_secs(900))),
        Refusal::Stale
    );
    // A pending status is not a report.
    let pending = StatusReport::new(IDP, SP, MdiStatus::AcceptedPending, "", now(), &mut rng());
    malformed(pending.url("https://broker.example/DAME", &idp_key.signing()));
}

// ---- policy ----

/// Review K3: a policy's peer lists had no bound (one `PUT /admin/policy` of 256 KiB held
/// about 43,000 entries, each scanned per login step); one from outside is now refused beyond
/// 256 entries or with an entry that is not a DNS name, also when deserialized.
#[test]
fn domain_lists_from_outside_are_bounded_and_dns_names() {
    let many: Vec<String> = (0..300).map(|i| format!("h{i}.example.org")).collect();
    let err = DomainList::try_new(&many).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Malformed);
    assert!(err.to_string().contains("more than 256 entries"), "{err}");
    let full = DomainList::try_new(&many[..256]).unwrap();
    assert_eq!(full.len(), 256);
    assert!(full.matches("h255.example.org"));
    assert!(!full.matches("h256.example.org"));
    for bad in [
        "*.example.org",
        "exa mple.org",
        "a..b",
        "-a.example.org",
        "under_score.example",
        &format!("{}.org", "a".repeat(64)),
        &format!("{}org", "a.".repeat(130)),
    ] {
        assert!(DomainList::try_new([bad]).is_err(), "{bad}");
    }
    let ok = DomainList::try_new(["IdP.Example.org.", " .example.edu", "", "192.0.2.1"]).unwrap();
    assert_eq!(
        ok,
        DomainList::new(["idp.example.org", ".example.edu", "192.0.2.1"])
    );
    #[cfg(feature = "serde")]
    {
        use dame_protocol::registry::EntityPolicy;
        let body = serde_json::json!({ "peers": { "allow": many, "deny": [] } });
        let err = serde_json::from_value::<EntityPolicy>(body).unwrap_err();
        assert!(err.to_string().contains("more than 256 entries"), "{err}");
        let body = serde_json::json!({ "peers": { "allow": &many[..256], "deny": [] } });
        let policy: EntityPolicy = serde_json::from_value(body).unwrap();
        let back: EntityPolicy =
            serde_json::from_str(&serde_json::to_string(&policy).unwrap()).unwrap();
        assert_eq!(back, policy);
    }
}

#[test]
fn domain_lists_match_hosts_and_subdomains_only() {
    assert_eq!(
        entity_host("https://IdP.Example.org:8443/idp").as_deref(),
        Some("idp.example.org")
    );
    assert_eq!(entity_host("urn:mace:example"), None);
    assert_eq!(entity_host("https://user@evil.example/"), None);
    let l = DomainList::new(["idp.example.org", ".example.edu"]);
    assert!(l.matches("idp.example.org"));
    assert!(!l.matches("x.idp.example.org"));
    assert!(l.matches("sso.example.edu"));
    assert!(!l.matches("example.edu"));
    assert!(!l.matches("badexample.edu"));
    assert!(l.matches("a.b.sso.example.edu"));
    assert!(!l.matches(".example.edu"));
    assert!(!l.matches("edu"));
    let p = PeerPolicy {
        allow: DomainList::new([".example.edu"]),
        deny: DomainList::new(["evil.example.edu"]),
    };
    assert!(p.check("https://sso.example.edu/idp").is_ok());
    assert_eq!(
        p.check("https://evil.example.edu/idp"),
        Err(Refusal::NotPermitted)
    );
    assert_eq!(p.check("https://other.org/idp"), Err(Refusal::NotPermitted));
    assert_eq!(p.check("urn:x:y"), Err(Refusal::NotPermitted));
    assert!(PeerPolicy::default().check("urn:x:y").is_ok());
}

#[test]
fn rate_limits_refill_and_memory_is_bounded() {
    let t0 = now();
    let mut l = RateLimiter::new(1.0, 3, 2);
    for _ in 0..3 {
        assert!(l.check("198.51.100.7", t0).is_ok());
    }
    assert_eq!(l.check("198.51.100.7", t0), Err(Refusal::RateLimited));
    assert!(l.retry_after("198.51.100.7", t0) > Duration::ZERO);
    assert!(l.check("198.51.100.7", t0 + Duration::from_secs(1)).is_ok());
    for _ in 0..3 {
        assert!(l.check("203.0.113.9", t0).is_ok());
    }
    // Two live keys held: a third is refused rather than evicting someone's limit.
    assert_eq!(
        l.check("192.0.2.1", t0 + Duration::from_secs(1)),
        Err(Refusal::Capacity)
    );
    assert_eq!(l.len(), 2);
    // Once the buckets are full again they are forgotten and new keys fit.
    assert!(l.check("192.0.2.1", t0 + Duration::from_secs(60)).is_ok());
    assert!(l.len() <= 2);
}
