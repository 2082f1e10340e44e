//! The GÉANT-TrustBroker risk analysis, threat by threat (papers/dame-risk-management): each
//! test plays the attack against the sans-IO broker and agents and asserts it fails without
//! leaving state behind.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::time::Duration;

use dame_protocol::agent::{Agent, FetchOutcome, Side, TriggerStep};
use dame_protocol::authenticate::AuthenticateRequest;
use dame_protocol::broker::{BrokerPolicy, FlowId, OwedPlan, UaReply};
use dame_protocol::integration::{IntegrationTarget, MemoryTarget, loc_file, metadata_file};
use dame_protocol::mdi::MdiStatus;
use dame_protocol::policy::{DomainList, PeerPolicy, entity_host};
use dame_protocol::registration::{Operation, Registrations};
use dame_protocol::registry::{EntityPolicy, Registry};
use dame_protocol::trigger::{Trigger, TriggerAction};
use dame_protocol::{ErrorKind, Refusal};
use harness::*;
use mdq_client::response::HttpResponse;
use saml_core::dsig::SignOptions;
use saml_core::protocol::AuthnRequest;
use saml_metadata::model::Metadata;
use testkit::signer::TestKey;

/// Lets the IdP's agent fetch `body` (status 200) for an accepted trigger to integrate `peer`.
fn agent_fetches(w: &mut World, peer: &str, body: &[u8]) -> dame_protocol::mdi::MdiResponse {
    let now = w.now;
    let url = Trigger::new(TriggerAction::FetchMetadata, peer, IDP, now, &mut rng())
        .url(IDP_SYNC, &w.broker_key.signing())
        .unwrap();
    let TriggerStep::Fetch(req) = w
        .idp
        .agent
        .handle_trigger(query_of(&url), BROKER_ADDR, now)
        .unwrap()
    else {
        panic!("no fetch")
    };
    let headers = vec![(
        "Content-Type".to_owned(),
        "application/samlmetadata+xml".to_owned(),
    )];
    match w
        .idp
        .agent
        .handle_fetched(
            req.token,
            &req.url,
            &HttpResponse {
                status: 200,
                headers: &headers,
                body,
            },
            now,
            &mut rng(),
        )
        .unwrap()
    {
        FetchOutcome::Answer(a) => a,
        other => panic!("{other:?}"),
    }
}

#[test]
fn flooding_the_broker_is_bounded_by_rate_flow_and_memory_caps() {
    // Per source, per user, flows at once, and the rate tables themselves are bounded.
    let mut w = World::with(
        EntityPolicy::default(),
        BrokerPolicy::default().with_max_flows(50),
    );
    let mut refused = 0;
    for i in 0..2_000u32 {
        let src = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
        match w
            .broker
            .handle_discovery(&w.sp_discovery(), &src, w.now, &mut rng())
        {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.refusal(), Some(Refusal::Capacity));
                refused += 1;
            }
        }
    }
    assert_eq!(w.broker.flow_count(), 50);
    assert_eq!(refused, 1_950);
    // Expired flows make room again.
    w.advance(Duration::from_secs(601));
    w.broker.handle_timeout(w.now, &mut rng());
    assert_eq!(w.broker.flow_count(), 0);
    // The agent: fetches in flight are capped before a trigger's nonce is used.
    let mut w = World::new();
    let now = w.now;
    for i in 0..dame_protocol::agent::MAX_PENDING {
        let peer = format!("https://sp{i}.example.org/sp");
        let url = Trigger::new(TriggerAction::FetchMetadata, &peer, IDP, now, &mut rng())
            .url(IDP_SYNC, &w.broker_key.signing())
            .unwrap();
        assert!(matches!(
            w.idp
                .agent
                .handle_trigger(query_of(&url), &format!("192.0.2.{}", i % 200), now),
            Ok(TriggerStep::Fetch(_))
        ));
    }
    let url = Trigger::new(TriggerAction::FetchMetadata, SP, IDP, now, &mut rng())
        .url(IDP_SYNC, &w.broker_key.signing())
        .unwrap();
    assert_eq!(
        refusal(
            w.idp
                .agent
                .handle_trigger(query_of(&url), "192.0.2.250", now)
        ),
        Refusal::Capacity
    );
}

#[test]
fn faked_metadata_is_never_integrated() {
    let mut w = World::new();
    // Signed by someone else than the broker.
    let mallory = TestKey::rsa("mallory");
    let fake_sp = sp_entity(&mallory, SP, Some(SP_SYNC));
    let signed_by_mallory = fake_sp
        .sign(&mallory.signing(), &SignOptions::default())
        .unwrap();
    let a = agent_fetches(&mut w, SP, &signed_by_mallory);
    assert_eq!(a.status, MdiStatus::Refused, "{a:?}");
    // Signed by the broker, but for another entity than the trigger named.
    let other = sp_entity(&mallory, "https://other.example.org/sp", Some(SP_SYNC))
        .sign(&w.broker_key.signing(), &SignOptions::default())
        .unwrap();
    let a = agent_fetches(&mut w, SP, &other);
    assert_eq!(a.status, MdiStatus::Refused, "{a:?}");
    // Signed by the broker, the right entityID, valid for a week, but an IdP given to an
    // IdP's agent.
    let mut idp_as_sp = idp_entity(&mallory, SP, Some(SP_SYNC));
    idp_as_sp.valid_until = Some(w.now + std::time::Duration::from_secs(7 * 86_400));
    let idp_as_sp = idp_as_sp
        .sign(&w.broker_key.signing(), &SignOptions::default())
        .unwrap();
    let a = agent_fetches(&mut w, SP, &idp_as_sp);
    assert_eq!(a.status, MdiStatus::Refused, "{a:?}");
    assert!(a.reason.unwrap().contains("role"));
    assert!(w.idp.agent.target().files.is_empty());
}

#[test]
fn faked_registration_needs_the_host_and_cannot_take_an_existing_entity() {
    let broker = TestKey::rsa("broker");
    let mut reg = Registry::new(broker.signing());
    let mut store = Registrations::new();
    let victim = idp_entity(&TestKey::rsa("idp"), IDP, Some(IDP_SYNC));
    let xml = victim.to_xml().unwrap();
    // Mallory uploads the victim's entityID with her key; she cannot publish on its host, so
    // whatever she answers is not the random content.
    let c = store
        .begin(
            Operation::Register,
            xml.as_bytes(),
            EntityPolicy::default(),
            &reg,
            "mallory",
            t0(),
            &mut rng(),
        )
        .unwrap();
    assert_eq!(c.fetch_plan().split('/').nth(2), Some("idp.example.net"));
    for guess in [&b"x"[..], c.name.as_bytes(), b""] {
        let r = store.complete(
            IDP,
            &c.secret,
            Some(xml.as_bytes()),
            200,
            guess,
            &mut reg,
            t0(),
        );
        assert!(r.is_err());
    }
    assert!(reg.is_empty());
    // The fetch never goes to the broker's own network.
    for ip in ["127.0.0.1", "10.1.2.3", "169.254.169.254", "::1", "fd00::1"] {
        assert_eq!(
            c.check_address(ip.parse().unwrap(), false),
            Err(Refusal::NotPermitted),
            "{ip}"
        );
    }
    // Once the real owner registered, a second registration is refused outright.
    let c = store
        .begin(
            Operation::Register,
            xml.as_bytes(),
            EntityPolicy::default(),
            &reg,
            "owner",
            t0(),
            &mut rng(),
        )
        .unwrap();
    store
        .complete(
            IDP,
            &c.secret,
            Some(xml.as_bytes()),
            200,
            c.content.as_bytes(),
            &mut reg,
            t0(),
        )
        .unwrap();
    let again = store.begin(
        Operation::Register,
        xml.as_bytes(),
        EntityPolicy::default(),
        &reg,
        "owner",
        t0(),
        &mut rng(),
    );
    assert_eq!(again.unwrap_err().refusal(), Some(Refusal::Duplicate));
}

#[test]
fn look_alike_names_do_not_pass_domain_lists_or_the_brokers_key() {
    let allow = PeerPolicy {
        allow: DomainList::new([".example.net"]),
        ..PeerPolicy::default()
    };
    for fake in [
        "https://idp.example.net.evil.example/idp",
        "https://idp.example.net@evil.example/idp",
        "https://evil-example.net/idp",
        "https://idp.exаmple.net/idp", // Cyrillic a
        "https://xn--idp-example-net.evil/idp",
        "urn:mace:example.net:idp",
    ] {
        assert_eq!(allow.check(fake), Err(Refusal::NotPermitted), "{fake}");
    }
    assert!(allow.check("https://IdP.Example.NET./idp").is_ok());
    assert_eq!(entity_host("https://idp.exаmple.net/"), None);
    // A federation aggregate with a familiar name is trusted by the key that signed it, never
    // by its name.
    let w = World::new();
    let mallory = TestKey::rsa("mallory");
    let agg = saml_metadata::model::EntitiesDescriptor::combine(
        "urn:mace:incommon",
        [idp_entity(&mallory, IDP, Some(IDP_SYNC))],
        None,
    )
    .unwrap()
    .sign(&mallory.signing(), &SignOptions::default())
    .unwrap();
    assert!(
        saml_metadata::load::load(
            &agg,
            &saml_metadata::load::Policy::new(w.broker_key.trusted(), w.now)
        )
        .is_err()
    );
}

#[test]
fn session_hijacking_needs_the_flow_secret_and_the_flows_own_request() {
    let mut w = World::new();
    let flow = match w
        .broker
        .handle_discovery(&w.sp_discovery(), UA_ADDR, w.now, &mut rng())
        .unwrap()
    {
        UaReply::ChooseIdp { flow, .. } => flow,
        other => panic!("{other:?}"),
    };
    // 128 random bits; a guess is an unknown flow.
    assert_eq!(flow.as_str().len(), 32);
    for guess in [
        "",
        "0",
        "00000000000000000000000000000000",
        &flow.as_str()[..31],
    ] {
        assert_eq!(
            refusal(
                w.broker
                    .handle_idp_chosen(&FlowId::from_text(guess), IDP, w.now, &mut rng())
            ),
            Refusal::UnknownFlow
        );
    }
    // The victim's flow, the attacker's own Response2 (a real login of the attacker): it
    // answers the attacker's AuthnRequest2, not the victim's.
    let _ = w
        .broker
        .handle_idp_chosen(&flow, IDP, w.now, &mut rng())
        .unwrap();
    let a1 = w.sp_authn_request1(IDP);
    let (_, to_idp) = w
        .broker
        .handle_authenticate(Some(&flow), query_of(&a1), UA_ADDR, w.now, &mut rng())
        .unwrap();
    let _ = to_idp;
    let a1b = w.sp_authn_request1(IDP);
    let (attacker, to_idp_b) = w
        .broker
        .handle_authenticate(None, query_of(&a1b), "203.0.113.66", w.now, &mut rng())
        .unwrap();
    let (form_b, _) = w.idp_sso(IDP, &redirect_of(to_idp_b)).unwrap();
    let e = w
        .broker
        .handle_response2(&flow, &form_b, w.now, &mut rng())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected);
    assert_ne!(attacker, flow);
}

#[test]
fn replay_of_overheard_messages_is_refused() {
    let mut w = World::new();
    // AuthnRequest1: the same authenticate URL twice.
    let a1 = w.sp_authn_request1(IDP);
    let _ = w
        .broker
        .handle_authenticate(None, query_of(&a1), UA_ADDR, w.now, &mut rng())
        .unwrap();
    let flows = w.broker.flow_count();
    assert_eq!(
        refusal(
            w.broker
                .handle_authenticate(None, query_of(&a1), UA_ADDR, w.now, &mut rng())
        ),
        Refusal::Replayed
    );
    assert_eq!(w.broker.flow_count(), flows);
    // ... and an old one.
    let old = w.sp_authn_request1(IDP);
    w.advance(Duration::from_secs(400));
    assert_eq!(
        refusal(
            w.broker
                .handle_authenticate(None, query_of(&old), UA_ADDR, w.now, &mut rng())
        ),
        Refusal::Stale
    );
    // Triggers and status reports: see failures.rs and flows.rs; Response2: failures.rs.
}

#[test]
fn injection_into_the_store_has_no_path_or_line_to_break_out_of() {
    let mut t = MemoryTarget::default();
    for hostile in [
        "../../etc/passwd",
        "https://x/'; DROP TABLE entities; --",
        "https://x/\u{0}\n.xml",
        "/absolute/path",
    ] {
        let f = metadata_file(hostile);
        assert_eq!(f.len(), 44, "{f}");
        assert!(f[..40].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(loc_file(hostile), format!("{f}.loc"));
    }
    // The source line cannot carry a second line or a non-https URL.
    for bad in [
        "https://broker/x\nhttps://evil/",
        "file:///etc/passwd",
        "http://broker/x",
        "http://127.0.0.1.evil.example/x",
        "http://localhost@evil.example/x",
        "http://localhost:80@evil.example/x",
    ] {
        assert!(t.integrate("https://x/", b"<x/>", bad).is_err(), "{bad}");
    }
    assert!(t.files.is_empty());
    // The registry refuses what it would publish wrongly (non-https entityIDs and endpoints).
    let mut reg = Registry::new(TestKey::rsa("broker").signing());
    let bad = sp_entity(
        &TestKey::rsa("x"),
        "https://sp.example.org/sp",
        Some("javascript:alert(1)"),
    );
    assert!(
        reg.insert(bad, EntityPolicy::default(), t0(), false)
            .is_err()
    );
    assert!(reg.is_empty());
}

#[test]
fn a_faked_broker_cannot_trigger_or_feed_an_agent() {
    let mut w = World::new();
    let fake = TestKey::rsa("fake-broker");
    let now = w.now;
    let url = Trigger::new(TriggerAction::Rollback, SP, IDP, now, &mut rng())
        .url(IDP_SYNC, &fake.signing())
        .unwrap();
    assert_eq!(
        refusal(w.idp.agent.handle_trigger(query_of(&url), BROKER_ADDR, now)),
        Refusal::BadSignature
    );
    // Nothing for the service to withdraw (the rules it wrote for the SP stay) ...
    assert_eq!(w.idp.agent.poll_rolled_back(), None);
    // ... as they go on the broker's own rollback, once (still open after the sixth round:
    // the rules of a rolled-back SP stayed).
    let url = Trigger::new(TriggerAction::Rollback, SP, IDP, now, &mut rng())
        .url(IDP_SYNC, &w.broker_key.signing())
        .unwrap();
    assert!(matches!(
        w.idp.agent.handle_trigger(query_of(&url), BROKER_ADDR, now),
        Ok(TriggerStep::Answer(_))
    ));
    assert_eq!(w.idp.agent.poll_rolled_back().as_deref(), Some(SP));
    assert_eq!(w.idp.agent.poll_rolled_back(), None);
    // An agent configured with the real broker refuses documents of the fake one; one
    // configured with the fake broker is the operator's mistake, not the protocol's.
    let doc = sp_entity(&fake, SP, Some(SP_SYNC))
        .sign(&fake.signing(), &SignOptions::default())
        .unwrap();
    let a = agent_fetches(&mut w, SP, &doc);
    assert_eq!(a.status, MdiStatus::Refused);
    let mut honest = Agent::new(
        IDP,
        Side::Idp,
        w.broker_key.trusted(),
        BROKER_MDQ,
        BROKER_DAME,
        w.idp.key.signing(),
        MemoryTarget::default(),
    )
    .unwrap();
    assert_eq!(honest.pending(), 0);
    assert!(honest.target_mut().files.is_empty());
    // The trusted aggregate of the broker parses only with its key.
    let ok = w.broker.registry.get(SP).unwrap().document.xml.clone();
    let agg = saml_metadata::load::load(
        &ok,
        &saml_metadata::load::Policy::new(w.broker_key.trusted(), w.now),
    )
    .unwrap();
    assert!(matches!(agg.metadata(), Metadata::Entity(_)));
    assert!(
        saml_metadata::load::load(
            &ok,
            &saml_metadata::load::Policy::new(fake.trusted(), w.now)
        )
        .is_err()
    );
}

#[test]
fn undrained_audit_events_are_bounded() {
    let mut w = World::with(
        EntityPolicy::default(),
        BrokerPolicy::default()
            .with_rates((1e9, u32::MAX), (1e9, u32::MAX))
            .with_max_flows(20_000),
    );
    for _ in 0..(dame_protocol::broker::MAX_EVENTS + 5) {
        let _ = w
            .broker
            .handle_discovery(&w.sp_discovery(), UA_ADDR, w.now, &mut rng())
            .unwrap();
    }
    assert_eq!(w.broker.events_dropped(), 5);
    let n = std::iter::from_fn(|| w.broker.poll_event()).count();
    assert_eq!(n, dame_protocol::broker::MAX_EVENTS);
}

/// Audit of 2026-12-05, findings 1 and 5: the verify step could be called by anyone, so a third
/// party calling it between the owner's publishing and the owner's own call completed the
/// owner's registration (and, at the service, received the entity token); and a third party's
/// begin for the same entityID replaced the owner's pending proof. Now only the holder of the
/// requester's secret completes a proof, and proofs for one entityID coexist.
#[test]
fn only_the_requester_completes_a_proof_and_nobody_cancels_it() {
    let broker = TestKey::rsa("broker");
    let mut reg = Registry::new(broker.signing());
    let mut store = Registrations::new();
    let owner_xml = idp_entity(&TestKey::rsa("idp"), IDP, Some(IDP_SYNC))
        .to_xml()
        .unwrap();
    let mallory_xml = idp_entity(&TestKey::rsa("mallory"), IDP, Some(IDP_SYNC))
        .to_xml()
        .unwrap();
    let begin = |store: &mut Registrations, xml: &str, who: &str, reg: &Registry| {
        store
            .begin(
                Operation::Register,
                xml.as_bytes(),
                EntityPolicy::default(),
                reg,
                who,
                t0(),
                &mut rng(),
            )
            .unwrap()
    };
    let owner = begin(&mut store, &owner_xml, "192.0.2.1", &reg);
    // Mallory begins for the same entityID with her own key: the owner's proof stays.
    let mallory = begin(&mut store, &mallory_xml, "198.51.100.7", &reg);
    assert_ne!(owner.secret, mallory.secret);
    assert_eq!(store.len(), 2);
    // The owner published her content. Mallory asks for completion: with her own secret the
    // content is not hers (an attempt of hers used), without the owner's secret nothing of the
    // owner's is even found, with her metadata or the owner's.
    let published = owner.content.as_bytes();
    let r = store.complete(
        IDP,
        &mallory.secret,
        Some(mallory_xml.as_bytes()),
        200,
        published,
        &mut reg,
        t0(),
    );
    assert_eq!(r.unwrap_err().refusal(), Some(Refusal::NotPermitted));
    for (secret, xml) in [
        ("", owner_xml.as_bytes()),
        (&"0".repeat(64), owner_xml.as_bytes()),
        (&mallory.secret, owner_xml.as_bytes()),
    ] {
        let r = store.complete(IDP, secret, Some(xml), 200, published, &mut reg, t0());
        assert!(r.is_err(), "{secret:?}");
        assert!(reg.is_empty());
    }
    // None of that touched the owner's attempts: five wrong fetches with another secret...
    for _ in 0..5 {
        let _ = store.complete(
            IDP,
            &mallory.secret,
            Some(mallory_xml.as_bytes()),
            200,
            b"no",
            &mut reg,
            t0(),
        );
    }
    assert_eq!(
        store
            .challenge(IDP, &owner.secret, Some(owner_xml.as_bytes()))
            .unwrap()
            .attempts_left,
        5
    );
    // ... and the owner's metadata must come with the owner's secret (not Mallory's).
    assert!(
        store
            .challenge(IDP, &owner.secret, Some(mallory_xml.as_bytes()))
            .is_err()
    );
    assert_eq!(
        store
            .complete(
                IDP,
                &owner.secret,
                Some(owner_xml.as_bytes()),
                200,
                published,
                &mut reg,
                t0(),
            )
            .unwrap(),
        Operation::Register
    );
    // The owner's key is registered, and every other pending proof of the entityID is gone.
    let registered = reg.get(IDP).unwrap().entity.to_xml().unwrap();
    assert_eq!(registered, owner_xml);
    assert!(store.is_empty());
}

/// Audit of 2026-12-05, finding 4: a pending proof held the parsed upload (about 376 KiB for a
/// 255 KiB upload) for an hour, up to 10,000 of them from anyone (3.6 GiB), and 10,000 junk
/// begins refused every registrant. Now a pending proof keeps the upload's SHA-256 and a
/// requester has at most `MAX_PENDING_PER_REQUESTER` proofs pending.
#[test]
fn pending_proofs_hold_no_uploads_and_are_bounded_per_requester() {
    use dame_protocol::registration::{MAX_PENDING_PER_REQUESTER, MAX_UPLOAD};
    use saml_metadata::builder::RoleBuilder as _;
    use saml_metadata::model::{Binding, EntityDescriptor, SpSso};

    fn rss_kib() -> u64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
    let broker = TestKey::rsa("broker");
    let reg = Registry::new(broker.signing());
    let key = TestKey::rsa("m");
    // An SP upload just under the size limit (requested attributes for padding).
    let mut sp = SpSso::builder()
        .signing_certificate(key.cert_der())
        .acs(Binding::HttpPost, "https://a0.example.org/acs");
    for i in 0..450 {
        let name = format!("urn:oid:1.3.6.1.4.1.{i}.{}", "9".repeat(330));
        sp = sp.requested_attribute("en", "x", &name, Some("f"), false);
    }
    let big = EntityDescriptor::builder("https://a0.example.org/sp")
        .sp(sp)
        .dame_sync_location("https://a0.example.org/dame")
        .build()
        .unwrap()
        .to_xml()
        .unwrap();
    assert!(
        (MAX_UPLOAD * 3 / 4..=MAX_UPLOAD).contains(&big.len()),
        "{}",
        big.len()
    );
    // At the largest limit a broker may configure (review K2 lowered the default to 64 KiB).
    let mut store = Registrations::new().with_max_upload(MAX_UPLOAD);
    let n = 160;
    let before = rss_kib();
    for i in 0..n {
        let xml = big.replace("a0.example.org", &format!("a{i}.example.org"));
        let who = format!("203.0.113.{}", i / MAX_PENDING_PER_REQUESTER);
        let _challenge = store
            .begin(
                Operation::Register,
                xml.as_bytes(),
                EntityPolicy::default(),
                &reg,
                &who,
                t0(),
                &mut rng(),
            )
            .unwrap();
    }
    let grown_kib = rss_kib().saturating_sub(before);
    // Holding the uploads would be n x 200+ KiB = 32+ MiB (the parsed model 58 MiB).
    assert!(
        grown_kib < 8 << 10,
        "{n} pending proofs grew RSS by {grown_kib} KiB"
    );
    assert_eq!(store.len(), n);
    // One more from a requester that has its share: refused; another requester: accepted.
    let xml = big.replace("a0.example.org", "late.example.org");
    let r = store.begin(
        Operation::Register,
        xml.as_bytes(),
        EntityPolicy::default(),
        &reg,
        "203.0.113.0",
        t0(),
        &mut rng(),
    );
    assert_eq!(r.unwrap_err().refusal(), Some(Refusal::RateLimited));
    let r = store.begin(
        Operation::Register,
        xml.as_bytes(),
        EntityPolicy::default(),
        &reg,
        "192.0.2.200",
        t0(),
        &mut rng(),
    );
    assert!(r.is_ok());
    // Expired proofs are forgotten at the next challenge, so a requester's share comes back.
    let later = t0() + Duration::from_secs(3601);
    let r = store.begin(
        Operation::Register,
        xml.replace("late.", "later.").as_bytes(),
        EntityPolicy::default(),
        &reg,
        "203.0.113.0",
        later,
        &mut rng(),
    );
    assert!(r.is_ok());
    assert_eq!(store.len(), 1);
}

/// Audit of 2026-12-05, finding 7: a metadata update planned a re-download trigger to every
/// established peer, even one whose policy had since come to deny the pair (incident
/// response), while a new login for the pair was refused. Now the update asks today's policies
/// and sends such a peer a rollback instead; a deletion rolls every peer back.
#[test]
fn an_update_or_a_deletion_respects_the_peers_current_policy() {
    let mut w = World::new();
    w.first_use();
    assert!(w.broker.relationships.contains(IDP, SP));
    while w.broker.poll_transmit().is_some() {}
    // The SP now denies the IdP's domain.
    w.broker
        .registry
        .set_policy(
            SP,
            EntityPolicy::default().with_peers(PeerPolicy {
                allow: DomainList::default(),
                deny: DomainList::new(["idp.example.net"]),
            }),
        )
        .unwrap();
    let now = w.now;
    let idp = w.idp.entity.clone();
    let n = w
        .broker
        .update_entity(idp, EntityPolicy::default(), now, &mut rng())
        .unwrap();
    assert_eq!(n, 0, "no re-download for a pair today's policy refuses");
    let t = w.broker.poll_transmit().unwrap();
    assert_eq!((t.to.as_str(), t.action), (SP, TriggerAction::Rollback));
    assert!(w.broker.poll_transmit().is_none());
    // Allowed again: the update is fetched.
    w.broker
        .registry
        .set_policy(SP, EntityPolicy::default())
        .unwrap();
    let idp = w.idp.entity.clone();
    let n = w
        .broker
        .update_entity(idp, EntityPolicy::default(), now, &mut rng())
        .unwrap();
    assert_eq!(n, 1);
    let t = w.broker.poll_transmit().unwrap();
    assert_eq!(
        (t.to.as_str(), t.action),
        (SP, TriggerAction::FetchMetadata)
    );
    // The IdP deleted: gone with its relationships, and the SP told to roll back.
    assert_eq!(w.broker.remove_entity(IDP, now, &mut rng()), 1);
    assert!(w.broker.registry.get(IDP).is_none());
    assert!(!w.broker.relationships.contains(IDP, SP));
    let t = w.broker.poll_transmit().unwrap();
    assert_eq!((t.to.as_str(), t.action), (SP, TriggerAction::Rollback));
    assert!(
        t.url.contains(&saml_core::bindings::url_encode(IDP)),
        "{}",
        t.url
    );
}

/// Audit of 2026-12-05: the policy was captured when an update's proof began, so completing it
/// undid a policy set meanwhile (by the entity, or by the operator responding to an incident).
#[test]
fn a_proven_update_keeps_the_policy_set_while_it_was_pending() {
    let broker = TestKey::rsa("broker");
    let mut reg = Registry::new(broker.signing());
    let mut store = Registrations::new();
    let xml = idp_entity(&TestKey::rsa("idp"), IDP, Some(IDP_SYNC))
        .to_xml()
        .unwrap();
    let proven = |store: &mut Registrations, reg: &mut Registry, op| {
        let policy = reg.get(IDP).map(|r| r.policy.clone()).unwrap_or_default();
        let c = store
            .begin(op, xml.as_bytes(), policy, reg, "owner", t0(), &mut rng())
            .unwrap();
        (c.secret.clone(), c.content.clone())
    };
    let (secret, content) = proven(&mut store, &mut reg, Operation::Register);
    store
        .complete(
            IDP,
            &secret,
            Some(xml.as_bytes()),
            200,
            content.as_bytes(),
            &mut reg,
            t0(),
        )
        .unwrap();
    let (secret, content) = proven(&mut store, &mut reg, Operation::Update);
    let deny = EntityPolicy::default().with_peers(PeerPolicy {
        allow: DomainList::default(),
        deny: DomainList::new(["sp.example.org"]),
    });
    reg.set_policy(IDP, deny.clone()).unwrap();
    store
        .complete(
            IDP,
            &secret,
            Some(xml.as_bytes()),
            200,
            content.as_bytes(),
            &mut reg,
            t0(),
        )
        .unwrap();
    assert_eq!(reg.get(IDP).unwrap().policy, deny);
}

/// A registered SP that signs AuthnRequest1 after AuthnRequest1 (each from its own address,
/// within the rate limits) fills only its own share of the broker's replay table: the next is
/// refused, and another SP's users still log in. Before the table was shared by all SPs (100,000
/// IDs), so one SP filling it had every login refused for the 7 minutes an ID is held.
#[test]
fn one_registered_sp_cannot_fill_the_authn_request1_replay_table_for_all() {
    const SP2: &str = "https://sp.second.example/shibboleth";
    let mut w = World::with(
        EntityPolicy::default(),
        BrokerPolicy::default().with_max_requests1(20, 1_000),
    );
    let key2 = TestKey::rsa("sp2");
    let sp2 = sp_entity(&key2, SP2, Some("https://sp.second.example/dame"));
    let now = w.now;
    w.broker
        .registry
        .insert(sp2, EntityPolicy::default(), now, false)
        .unwrap();
    for i in 0..20u32 {
        let a1 = w.sp_authn_request1(IDP);
        let _ = w
            .broker
            .handle_authenticate(
                None,
                query_of(&a1),
                &format!("192.0.2.{i}"),
                now,
                &mut rng(),
            )
            .unwrap();
    }
    let a1 = w.sp_authn_request1(IDP);
    assert_eq!(
        refusal(
            w.broker
                .handle_authenticate(None, query_of(&a1), "192.0.2.100", now, &mut rng())
        ),
        Refusal::Capacity
    );
    let flows = w.broker.flow_count();
    let mut req = AuthnRequest::new(saml_core::protocol::new_id(&mut rng()), SP2, now);
    req.acs_url = Some("https://sp.second.example/Shibboleth.sso/SAML2/POST".to_owned());
    req.protocol_binding = Some(saml_core::protocol::BINDING_HTTP_POST.into());
    let a1 =
        AuthenticateRequest::url(BROKER_DAME, IDP, IDP_SSO, &req, None, &key2.signing()).unwrap();
    let _ = w
        .broker
        .handle_authenticate(None, query_of(&a1), "192.0.2.101", now, &mut rng())
        .unwrap();
    assert_eq!(w.broker.flow_count(), flows + 1);
}

/// The registry's bound ([`Registry::max_entities`]): a new entity beyond it is refused with
/// nothing changed, an update of a registered one goes on, and `admits` says so beforehand
/// (what a service that stores the entity first asks).
#[test]
fn a_full_registry_refuses_new_entities_and_still_takes_updates() {
    let mut w = World::new();
    let now = w.now;
    let held = w.broker.registry.entity_ids().count();
    w.broker.registry.max_entities = held;
    let mut other = w.idp.entity.clone();
    other.entity_id = "https://idp2.example.net/idp".into();
    let refused = w.broker.registry.admits(&other.entity_id, true);
    assert_eq!(refused.unwrap_err().refusal(), Some(Refusal::Capacity));
    let refused = w
        .broker
        .update_entity(other, EntityPolicy::default(), now, &mut rng());
    assert_eq!(refused.unwrap_err().refusal(), Some(Refusal::Capacity));
    assert_eq!(w.broker.registry.entity_ids().count(), held);
    assert!(
        w.broker
            .registry
            .get("https://idp2.example.net/idp")
            .is_none()
    );
    w.broker.registry.admits(IDP, true).unwrap();
    let idp = w.idp.entity.clone();
    w.broker
        .update_entity(idp, EntityPolicy::default(), now, &mut rng())
        .unwrap();
    assert_eq!(w.broker.registry.entity_ids().count(), held);
}

/// The triggers the broker planned, as (to, action), by recipient.
fn told(w: &mut World) -> Vec<(String, TriggerAction)> {
    let mut told: Vec<(String, TriggerAction)> = std::iter::from_fn(|| w.broker.poll_transmit())
        .map(|t| (t.to, t.action))
        .collect();
    told.sort_by(|a, b| a.0.cmp(&b.0));
    told
}

/// A policy change that now refuses an established pair rolls it back on both sides (a denied
/// IdP's metadata leaves the SP's agent, and the SP's leaves the IdP's); before, only a
/// metadata upload did, and `PUT /admin/policy` left the pair integrated. Allowed again, both
/// sides fetch each other's metadata again. A change that moves no pair tells nobody.
#[test]
fn a_policy_that_now_denies_a_peer_rolls_the_pair_back() {
    let mut w = World::new();
    w.first_use();
    assert!(w.broker.relationships.contains(IDP, SP));
    while w.broker.poll_transmit().is_some() {}
    let now = w.now;
    let deny = EntityPolicy::default().with_peers(PeerPolicy {
        allow: DomainList::default(),
        deny: DomainList::new(["idp.example.net"]),
    });
    let n = w.broker.change_policy(SP, deny, now, &mut rng()).unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        told(&mut w),
        [
            (IDP.to_owned(), TriggerAction::Rollback),
            (SP.to_owned(), TriggerAction::Rollback)
        ]
    );
    // Allowed again: both sides fetch each other's metadata again (nothing rolled back); an
    // unknown entity changes nothing.
    let n = w
        .broker
        .change_policy(SP, EntityPolicy::default(), now, &mut rng())
        .unwrap();
    assert_eq!(n, 0);
    assert_eq!(
        told(&mut w),
        [
            (IDP.to_owned(), TriggerAction::FetchMetadata),
            (SP.to_owned(), TriggerAction::FetchMetadata)
        ]
    );
    // A change that leaves the pair allowed tells nobody (every policy change, by the entity
    // with its token, sent two triggers per established peer).
    let other = EntityPolicy::default()
        .with_peers(PeerPolicy {
            allow: DomainList::default(),
            deny: DomainList::new(["idp.elsewhere.example"]),
        })
        .with_unmodified_sp(true);
    assert_eq!(
        w.broker.change_policy(SP, other, now, &mut rng()).unwrap(),
        0
    );
    assert_eq!(told(&mut w), []);
    assert!(
        w.broker
            .change_policy(
                "https://nobody.example/sp",
                EntityPolicy::default(),
                now,
                &mut rng()
            )
            .is_err()
    );
}

// Agent review (second): what the SP's agent does with triggers about IDP, driven by hand.

/// A trigger of `action` about `peer`, signed by the broker, issued at `at`, to the SP's agent
/// at `now`.
fn sp_trigger(
    w: &mut World,
    action: TriggerAction,
    peer: &str,
    at: std::time::SystemTime,
    now: std::time::SystemTime,
) -> Result<TriggerStep, dame_protocol::Error> {
    let url = Trigger::new(action, peer, SP, at, &mut rng())
        .url(SP_SYNC, &w.broker_key.signing())
        .unwrap();
    w.sp.agent.handle_trigger(query_of(&url), BROKER_ADDR, now)
}

/// The SP's agent completes fetch `req` with `status`/`body`, or with the broker's MDQ answer
/// when `status` is `None`.
fn sp_completes(
    w: &mut World,
    req: &mdq_client::client::FetchRequest,
    answer: Option<(u16, Vec<u8>)>,
    now: std::time::SystemTime,
) -> FetchOutcome {
    let (status, headers, body) = match answer {
        None => w.mdq(&req.url, &req.headers),
        Some((s, b)) => (
            s,
            vec![(
                "Content-Type".to_owned(),
                "application/samlmetadata+xml".to_owned(),
            )],
            b,
        ),
    };
    w.sp.agent
        .handle_fetched(
            req.token,
            &req.url,
            &HttpResponse {
                status,
                headers: &headers,
                body: &body,
            },
            now,
            &mut rng(),
        )
        .unwrap()
}

/// A fetch trigger about `peer` issued and received at `at`: the fetch it starts.
fn sp_fetches(
    w: &mut World,
    peer: &str,
    at: std::time::SystemTime,
) -> mdq_client::client::FetchRequest {
    fetch_req(sp_trigger(w, TriggerAction::FetchMetadata, peer, at, at))
}

fn answer_of(o: FetchOutcome) -> dame_protocol::mdi::MdiResponse {
    match o {
        FetchOutcome::Answer(a) => a,
        other => panic!("{other:?}"),
    }
}

fn fetch_req(s: Result<TriggerStep, dame_protocol::Error>) -> mdq_client::client::FetchRequest {
    match s.unwrap() {
        TriggerStep::Fetch(req) => req,
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_operators_static_file_survives_rollbacks_and_fetches() {
    // Agent review M4: no `.xml.loc`, so the `.xml` is the operator's.
    let mut w = World::new();
    let now = w.now;
    let mine = b"<md:EntityDescriptor entityID='hand-vetted'/>".to_vec();
    w.sp.agent
        .target_mut()
        .files
        .insert(metadata_file(IDP), mine.clone());
    let s = sp_trigger(&mut w, TriggerAction::Rollback, IDP, now, now).unwrap();
    assert!(matches!(s, TriggerStep::Answer(_)), "{s:?}");
    assert_eq!(
        w.sp.agent.target().files.get(&metadata_file(IDP)),
        Some(&mine)
    );
    let req = sp_fetches(&mut w, IDP, now);
    let a = answer_of(sp_completes(&mut w, &req, None, now));
    assert_eq!(a.status, MdiStatus::Refused, "{a:?}");
    assert!(a.reason.unwrap().contains("statically configured"));
    assert_eq!(w.sp.agent.target().files.len(), 1);
    assert_eq!(
        w.sp.agent.target().files.get(&metadata_file(IDP)),
        Some(&mine)
    );
}

#[test]
fn a_failed_fetch_never_integrates_the_cached_copy() {
    // Agent review M3: only a fresh verified 200, or a 304 revalidating the cached entry, is
    // integrated; a rollback forgets the cached copy.
    let mut w = World::new();
    let now = w.now;
    let mallory = TestKey::rsa("mallory");
    let forged = idp_entity(&mallory, IDP, Some(IDP_SYNC))
        .sign(&mallory.signing(), &SignOptions::default())
        .unwrap();
    let bad: [(u16, Vec<u8>); 4] = [
        (502, Vec::new()),
        (503, b"<html>restarting</html>".to_vec()),
        (200, forged),
        (404, Vec::new()),
    ];
    for (i, (status, body)) in bad.into_iter().enumerate() {
        let at = now + Duration::from_secs(10 * i as u64);
        let req = sp_fetches(&mut w, IDP, at);
        let a = answer_of(sp_completes(&mut w, &req, None, at));
        assert_eq!(a.status, MdiStatus::Integrated, "{a:?}");
        // Without a rollback, a bad answer to the next trigger is an error, not the cached copy.
        let at = at + Duration::from_secs(1);
        let req = sp_fetches(&mut w, IDP, at);
        let a = answer_of(sp_completes(&mut w, &req, Some((status, body.clone())), at));
        assert_ne!(a.status, MdiStatus::Integrated, "{status}: {a:?}");
        // A rollback, then a new trigger that is answered badly: nothing comes back.
        let at = at + Duration::from_secs(1);
        let _ = sp_trigger(&mut w, TriggerAction::Rollback, IDP, at, at).unwrap();
        assert!(w.sp.agent.target().files.is_empty());
        let at = at + Duration::from_secs(1);
        let req = sp_fetches(&mut w, IDP, at);
        let a = answer_of(sp_completes(&mut w, &req, Some((status, body)), at));
        assert_ne!(a.status, MdiStatus::Integrated, "{status}: {a:?}");
        assert!(w.sp.agent.target().files.is_empty(), "{status}");
    }
}

#[test]
fn a_rollback_during_the_fetch_cancels_it_unless_a_newer_trigger_joined() {
    // Agent review M1: fetch F (t), rollback R (t+1) while F runs, then F completes.
    let mut w = World::new();
    let t = w.now;
    let s1 = Duration::from_secs(1);
    let req = sp_fetches(&mut w, IDP, t);
    let r = sp_trigger(&mut w, TriggerAction::Rollback, IDP, t + s1, t + s1).unwrap();
    assert!(matches!(r, TriggerStep::Answer(_)), "{r:?}");
    let a = answer_of(sp_completes(&mut w, &req, None, t + 2 * s1));
    assert_ne!(a.status, MdiStatus::Integrated, "{a:?}");
    assert!(a.reason.unwrap().contains("rolled back while fetching"));
    assert!(w.sp.agent.target().files.is_empty());
    assert_eq!(w.sp.agent.pending(), 0);
    // A fetch trigger issued after the rollback that joins the fetch: it integrates, and the
    // joined trigger gets its report.
    let t = t + Duration::from_secs(10);
    let req = sp_fetches(&mut w, IDP, t);
    let _ = sp_trigger(&mut w, TriggerAction::Rollback, IDP, t + s1, t + s1).unwrap();
    let j = sp_trigger(
        &mut w,
        TriggerAction::FetchMetadata,
        IDP,
        t + 2 * s1,
        t + 2 * s1,
    );
    assert!(
        matches!(&j, Ok(TriggerStep::Answer(a)) if a.status == MdiStatus::AcceptedPending),
        "{j:?}"
    );
    let a = answer_of(sp_completes(&mut w, &req, None, t + 3 * s1));
    assert_eq!(a.status, MdiStatus::Integrated, "{a:?}");
    assert!(w.integrated(SP, IDP).is_some());
    assert!(w.sp.agent.poll_report().is_some());
}

#[test]
fn many_rollbacks_at_once_and_a_full_fetch_table_do_not_refuse_a_rollback() {
    // Agent review M2: the broker's verified triggers are not charged to its address's rate
    // limit, and a rollback needs no fetch slot.
    let mut w = World::new();
    let now = w.now;
    for i in 0..60 {
        let peer = format!("https://idp{i}.example.net/idp");
        let r = sp_trigger(&mut w, TriggerAction::Rollback, &peer, now, now);
        assert!(matches!(r, Ok(TriggerStep::Answer(_))), "#{i}: {r:?}");
    }
    let mut reqs = Vec::new();
    for i in 0..dame_protocol::agent::MAX_PENDING {
        let peer = format!("https://idp{i}.example.net/idp");
        reqs.push(sp_fetches(&mut w, &peer, now));
    }
    assert_eq!(
        refusal(sp_trigger(
            &mut w,
            TriggerAction::FetchMetadata,
            IDP,
            now,
            now
        )),
        Refusal::Capacity
    );
    let r = sp_trigger(&mut w, TriggerAction::Rollback, IDP, now, now);
    assert!(matches!(r, Ok(TriggerStep::Answer(_))), "{r:?}");
    // What fails verification is still charged to its source.
    let forged = Trigger::new(TriggerAction::Rollback, IDP, SP, now, &mut rng())
        .url(SP_SYNC, &TestKey::rsa("mallory").signing())
        .unwrap();
    let refusals: Vec<Refusal> = (0..60)
        .map(|_| refusal(w.sp.agent.handle_trigger(query_of(&forged), UA_ADDR, now)))
        .collect();
    assert_eq!(refusals[0], Refusal::BadSignature);
    assert_eq!(refusals[59], Refusal::RateLimited);
    drop(reqs);
}

#[test]
fn an_aggregate_holding_the_peer_is_not_integrated() {
    // Agent review L4: only the peer's own EntityDescriptor is written as its file.
    let mut w = World::new();
    let now = w.now;
    let agg = saml_metadata::model::EntitiesDescriptor::combine(
        "urn:example:two",
        [
            idp_entity(&w.idp.key, IDP, Some(IDP_SYNC)),
            idp_entity(&TestKey::rsa("idp2"), IDP2, None),
        ],
        None,
    )
    .unwrap()
    .sign(&w.broker_key.signing(), &SignOptions::default())
    .unwrap();
    let req = sp_fetches(&mut w, IDP, now);
    let a = answer_of(sp_completes(&mut w, &req, Some((200, agg)), now));
    assert_ne!(a.status, MdiStatus::Integrated, "{a:?}");
    assert!(w.sp.agent.target().files.is_empty());
}

#[test]
fn a_trigger_about_the_agents_own_entity_is_refused() {
    // Agent review L5.
    let mut w = World::new();
    let now = w.now;
    assert_eq!(
        refusal(sp_trigger(
            &mut w,
            TriggerAction::FetchMetadata,
            SP,
            now,
            now
        )),
        Refusal::WrongFlow
    );
    assert_eq!(
        refusal(sp_trigger(&mut w, TriggerAction::Rollback, SP, now, now)),
        Refusal::WrongFlow
    );
    assert_eq!(w.sp.agent.pending(), 0);
}

#[test]
fn a_long_multibyte_reason_still_makes_an_answer() {
    // Agent review L6: the reason is cut to MAX_REASON_LEN bytes on a character boundary.
    let err = dame_protocol::Error::Malformed {
        what: "x",
        reason: "€".repeat(300),
    };
    let a = Agent::<MemoryTarget>::answer_for(&err);
    assert!(a.reason.as_ref().unwrap().len() <= dame_protocol::mdi::MAX_REASON_LEN);
    assert!(a.to_http().is_ok());
    let r = dame_protocol::mdi::StatusReport::new(
        SP,
        IDP,
        a.status,
        a.reason.as_deref().unwrap(),
        t0(),
        &mut rng(),
    );
    assert!(r.url(BROKER_DAME, &TestKey::rsa("sp").signing()).is_ok());
}

/// Agent review M1, second part: triggers about one peer were applied in the order they
/// arrived, not the order the broker decided them. A fetch trigger delayed in the network (or
/// a retry of a lost rollback) arriving after a later decision undid it: a rollback issued
/// before an accepted fetch removed what the fetch integrated; a fetch issued before an
/// accepted rollback integrated the peer again. The later decision now stands.
#[test]
fn an_older_trigger_does_not_undo_a_later_decision() {
    let mut w = World::new();
    let t = w.now;
    let s = Duration::from_secs;
    // Fetch at t+2 integrates; a rollback issued at t+1 arrives after it.
    let req = sp_fetches(&mut w, IDP, t + s(2));
    let a = answer_of(sp_completes(&mut w, &req, None, t + s(2)));
    assert_eq!(a.status, MdiStatus::Integrated, "{a:?}");
    let late = sp_trigger(&mut w, TriggerAction::Rollback, IDP, t + s(1), t + s(3));
    assert_eq!(late.unwrap_err().refusal(), Some(Refusal::Superseded));
    assert!(w.integrated(SP, IDP).is_some(), "the later fetch stands");
    // A rollback at t+10, then a fetch trigger issued at t+5 arrives: refused, nothing fetched.
    let r = sp_trigger(&mut w, TriggerAction::Rollback, IDP, t + s(10), t + s(10)).unwrap();
    assert!(matches!(r, TriggerStep::Answer(_)), "{r:?}");
    assert!(w.sp.agent.target().files.is_empty());
    let late = sp_trigger(
        &mut w,
        TriggerAction::FetchMetadata,
        IDP,
        t + s(5),
        t + s(11),
    );
    assert_eq!(late.unwrap_err().refusal(), Some(Refusal::Superseded));
    assert_eq!(w.sp.agent.pending(), 0);
    assert!(
        w.sp.agent.target().files.is_empty(),
        "the later rollback stands"
    );
    // Triggers of the same instant, and later ones, apply as they come; other peers are not
    // held back by this one's.
    let req = sp_fetches(&mut w, IDP, t + s(10));
    let a = answer_of(sp_completes(&mut w, &req, None, t + s(12)));
    assert_eq!(a.status, MdiStatus::Integrated, "{a:?}");
    let other = sp_trigger(&mut w, TriggerAction::Rollback, IDP2, t + s(4), t + s(12));
    assert!(other.is_ok(), "{other:?}");
}

/// Agent review M2, the broker's side: a rollback the agent never acknowledged (lost on the
/// way, the agent restarting) was not sent again, and the denied IdP stayed integrated.
/// `Broker::retransmit` signs it again (a fresh nonce, the decision's own instant) while the
/// pair's standing still asks for it; the agent takes the retry, and refuses one that comes
/// after a later decision about the peer.
#[test]
fn a_lost_rollback_is_sent_again_while_it_still_stands() {
    let mut w = World::new();
    w.first_use();
    assert!(w.integrated(SP, IDP).is_some());
    while w.broker.poll_transmit().is_some() {}
    let now = w.now;
    let deny = EntityPolicy::default().with_peers(PeerPolicy {
        allow: DomainList::default(),
        deny: DomainList::new(["idp.example.net"]),
    });
    w.broker.change_policy(SP, deny, now, &mut rng()).unwrap();
    let sent: Vec<_> = std::iter::from_fn(|| w.broker.poll_transmit()).collect();
    let to_sp = sent.iter().find(|t| t.to == SP).unwrap().clone();
    assert_eq!(
        (to_sp.action, to_sp.about.as_str()),
        (TriggerAction::Rollback, IDP)
    );
    // The one to the SP's agent is lost; the retry is the same decision, signed anew.
    for t in sent.into_iter().filter(|t| t.to != SP) {
        w.deliver(t);
    }
    assert!(w.integrated(SP, IDP).is_some(), "lost: still integrated");
    let again = w.broker.retransmit(&to_sp, &mut rng()).unwrap();
    assert_eq!(
        (again.to.as_str(), again.action, again.issued),
        (SP, TriggerAction::Rollback, to_sp.issued)
    );
    assert_ne!(again.url, to_sp.url, "a fresh nonce");
    w.advance(Duration::from_secs(30));
    w.deliver(again.clone());
    assert!(w.integrated(SP, IDP).is_none(), "the retry rolled it back");
    // Allowed again: the pair's standing no longer asks for the rollback, so no retry; and a
    // retry signed earlier arriving after the later fetch is refused by the agent.
    let late = w.broker.retransmit(&to_sp, &mut rng()).unwrap();
    w.advance(Duration::from_secs(1));
    w.broker
        .change_policy(SP, EntityPolicy::default(), w.now, &mut rng())
        .unwrap();
    w.run_triggers();
    assert!(w.integrated(SP, IDP).is_some(), "allowed again: fetched");
    assert!(w.broker.retransmit(&to_sp, &mut rng()).is_none());
    let step =
        w.sp.agent
            .handle_trigger(query_of(&late.url), BROKER_ADDR, w.now);
    assert_eq!(step.unwrap_err().refusal(), Some(Refusal::Superseded));
    assert!(w.integrated(SP, IDP).is_some(), "the later decision stands");
}

/// A rollback whose retries all went unanswered (the SP's agent down for longer than its
/// 5-minute window for the decision's issue instant) was lost for good: the agent kept the
/// denied IdP, and its refresh fetched it again from the broker's MDQ service, which serves
/// every registered entity. `Broker::plan_owed_trigger` plans it again, signed now, while the
/// pair's standing asks for it; never while a flow of the pair is exchanging.
#[test]
fn a_rollback_given_up_is_planned_again_with_a_fresh_issue_instant() {
    let mut w = World::new();
    w.first_use();
    while w.broker.poll_transmit().is_some() {}
    let deny = EntityPolicy::default().with_peers(PeerPolicy {
        allow: DomainList::default(),
        deny: DomainList::new(["idp.example.net"]),
    });
    w.broker.change_policy(SP, deny, w.now, &mut rng()).unwrap();
    let sent: Vec<_> = std::iter::from_fn(|| w.broker.poll_transmit()).collect();
    let to_sp = sent.iter().find(|t| t.to == SP).unwrap().clone();
    for t in sent.into_iter().filter(|t| t.to != SP) {
        w.deliver(t);
    }
    // The SP's agent was down past the retries; the last one is now outside its window.
    w.advance(Duration::from_secs(600));
    let stale = w.broker.retransmit(&to_sp, &mut rng()).unwrap();
    assert!(
        w.sp.agent
            .handle_trigger(query_of(&stale.url), BROKER_ADDR, w.now)
            .is_err()
    );
    // Left alone, the agent keeps the IdP through its refreshes, days later.
    w.advance(Duration::from_secs(4 * 86_400));
    w.refresh_agent(SP);
    assert!(w.integrated(SP, IDP).is_some(), "kept by the refresh");
    // Planned again: signed now, taken, the IdP gone.
    assert_eq!(
        w.broker
            .plan_owed_trigger(TriggerAction::Rollback, SP, IDP, w.now, &mut rng()),
        OwedPlan::Planned
    );
    let again = w.broker.poll_transmit().unwrap();
    assert_eq!(
        (
            again.to.as_str(),
            again.action,
            again.issued,
            again.flow.clone()
        ),
        (SP, TriggerAction::Rollback, w.now, None)
    );
    w.deliver(again);
    assert!(w.integrated(SP, IDP).is_none(), "rolled back");
    // A re-download is not owed to a refused pair.
    assert_eq!(
        w.broker
            .plan_owed_trigger(TriggerAction::FetchMetadata, SP, IDP, w.now, &mut rng()),
        OwedPlan::NotWanted
    );

    // While a flow of a new pair is exchanging, its outcome decides: an older flow's
    // rollback is not planned again (it would undo what the new flow integrates), nor a
    // re-download; once the pair stands, a rollback is not owed and a re-download is.
    let mut w = World::new();
    let flow = match w
        .broker
        .handle_discovery(&w.sp_discovery(), UA_ADDR, w.now, &mut rng())
        .unwrap()
    {
        UaReply::ChooseIdp { flow, .. } => flow,
        other => panic!("{other:?}"),
    };
    let _ = w
        .broker
        .handle_idp_chosen(&flow, IDP, w.now, &mut rng())
        .unwrap();
    let a1 = w.sp_authn_request1(IDP);
    let (_, reply) = w
        .broker
        .handle_authenticate(Some(&flow), query_of(&a1), UA_ADDR, w.now, &mut rng())
        .unwrap();
    let (form, _) = w.idp_sso(IDP, &redirect_of(reply)).unwrap();
    let wait = w
        .broker
        .handle_response2(&flow, &form, w.now, &mut rng())
        .unwrap();
    assert!(matches!(wait, UaReply::Wait { .. }), "{wait:?}");
    assert_eq!(
        w.broker
            .plan_owed_trigger(TriggerAction::Rollback, IDP, SP, w.now, &mut rng()),
        OwedPlan::Later
    );
    assert_eq!(
        w.broker
            .plan_owed_trigger(TriggerAction::FetchMetadata, IDP, SP, w.now, &mut rng()),
        OwedPlan::Later
    );
    w.settle();
    assert!(w.broker.relationships.contains(IDP, SP), "{flow:?}");
    while w.broker.poll_transmit().is_some() {}
    assert_eq!(
        w.broker
            .plan_owed_trigger(TriggerAction::Rollback, IDP, SP, w.now, &mut rng()),
        OwedPlan::NotWanted
    );
    assert_eq!(
        w.broker
            .plan_owed_trigger(TriggerAction::FetchMetadata, IDP, SP, w.now, &mut rng()),
        OwedPlan::Planned
    );
    // Nothing is owed to an entity no longer registered.
    w.broker.remove_entity(IDP, w.now, &mut rng());
    while w.broker.poll_transmit().is_some() {}
    assert_eq!(
        w.broker
            .plan_owed_trigger(TriggerAction::Rollback, IDP, SP, w.now, &mut rng()),
        OwedPlan::NotWanted
    );
}

/// Broker review H1: `idpEntityID` is outside the SP's Redirect-binding signature and a DAME
/// SP sends no Destination, so a user could take the SP's signed AuthnRequest1 for an IdP the
/// SP accepts, name their own registered IdP instead, and the SP's agent then integrated an
/// IdP the SP never asked for. The SP names the IdP inside the signed request
/// (`Scoping/IDPList`); the broker refuses a signed request naming another IdP, or none.
#[test]
fn the_idp_a_signed_authn_request1_names_cannot_be_swapped() {
    let mut w = World::new();
    let a1 = w.sp_authn_request1(IDP);
    let enc = |s: &str| saml_core::bindings::url_encode(s);
    assert!(a1.contains(&format!("idpEntityID={}", enc(IDP))), "{a1}");
    let swapped = a1.replace(
        &format!("idpEntityID={}", enc(IDP)),
        &format!("idpEntityID={}", enc(IDP2)),
    );
    assert_ne!(swapped, a1);
    let flows = w.broker.flow_count();
    assert_eq!(
        refusal(
            w.broker
                .handle_authenticate(None, query_of(&swapped), UA_ADDR, w.now, &mut rng())
        ),
        Refusal::WrongFlow
    );
    assert_eq!(w.broker.flow_count(), flows);
    // A signed request naming no IdP at all (an SP built before the IDPList): refused too.
    let mut req = AuthnRequest::new(saml_core::protocol::new_id(&mut rng()), SP, w.now);
    req.acs_url = Some(SP_ACS.to_owned());
    let bare = saml_core::bindings::redirect::encode(
        saml_core::bindings::MessageKind::Request,
        req.to_xml().as_bytes(),
        None,
        Some(&w.sp.key.signing()),
        None,
    )
    .unwrap();
    let q = format!("action=authenticate&idpEntityID={}&{bare}", enc(IDP2));
    assert_eq!(
        refusal(
            w.broker
                .handle_authenticate(None, &q, UA_ADDR, w.now, &mut rng())
        ),
        Refusal::WrongFlow
    );
    // The request as the SP made it goes on.
    assert!(
        w.broker
            .handle_authenticate(None, query_of(&a1), UA_ADDR, w.now, &mut rng())
            .is_ok()
    );
}

/// Broker review M4: every rules query about an SP looks up each of its RequestedAttributes;
/// nothing bounded how many a registrant listed (a 256 KiB upload holds thousands), and the
/// lookup was quadratic. Registered metadata lists at most MAX_REQUESTED_ATTRIBUTES.
#[test]
fn an_sp_with_thousands_of_requested_attributes_is_not_registered() {
    use saml_metadata::builder::RoleBuilder as _;
    use saml_metadata::model::{Binding, EntityDescriptor, SpSso};
    let key = TestKey::rsa("sp");
    let sp = |n: usize| {
        let mut b = SpSso::builder()
            .signing_certificate(key.cert_der())
            .acs(Binding::HttpPost, SP_ACS);
        for i in 0..n {
            b = b.requested_attribute("en", "SP", &format!("urn:oid:1.3.6.1.4.1.{i}"), None, false);
        }
        EntityDescriptor::builder(SP)
            .sp(b)
            .dame_sync_location(SP_SYNC)
            .build()
            .unwrap()
    };
    let max = dame_protocol::registry::MAX_REQUESTED_ATTRIBUTES;
    dame_protocol::registry::validate_with(&sp(max), false).unwrap();
    let e = dame_protocol::registry::validate_with(&sp(max + 1), false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Malformed);
}

/// Broker review L5: a self-registered SP could name any https URL as its DiscoveryResponse,
/// and the broker's discovery service redirected users there from its own origin (an open
/// redirector). A self-registered SP's DiscoveryResponse is within its entityID's domain.
#[test]
fn a_self_registered_sp_returns_discovery_within_its_domain() {
    use saml_metadata::builder::RoleBuilder as _;
    use saml_metadata::model::{Binding, EntityDescriptor, SpSso};
    let key = TestKey::rsa("sp");
    let sp = |ds: &str| {
        EntityDescriptor::builder("https://sp.uni.example/shibboleth")
            .sp(SpSso::builder()
                .signing_certificate(key.cert_der())
                .acs(Binding::HttpPost, "https://sp.uni.example/acs")
                .discovery_response(ds))
            .dame_sync_location("https://sp.uni.example/dame")
            .build()
            .unwrap()
    };
    use dame_protocol::registry::validate_self_registered as check;
    assert!(check(&sp("https://sp.uni.example/Shibboleth.sso/Login")).is_ok());
    assert!(check(&sp("https://app.uni.example/login")).is_ok());
    let e = check(&sp("https://phish.example/")).unwrap_err();
    assert!(e.to_string().contains("DiscoveryResponse"), "{e}");
}

/// Broker review L6: events carried the flow ID in their `Debug` form, which the service
/// writes to its log and audit table for 90 days: the bearer secret of every user's cookie.
/// The `Debug` form is a digest prefix.
#[test]
fn events_do_not_show_the_flow_secret() {
    let mut w = World::new();
    let (flow, _) = w.first_use();
    let secret = flow.as_str().to_owned();
    assert!(!format!("{flow:?}").contains(&secret));
    let events: Vec<String> = std::iter::from_fn(|| w.broker.poll_event())
        .map(|e| format!("{e:?}"))
        .collect();
    assert!(!events.is_empty());
    for e in &events {
        assert!(!e.contains(&secret), "{e}");
    }
    // The same flow, the same digest: log lines of one flow still go together.
    assert_eq!(format!("{flow:?}"), format!("{:?}", flow.clone()));
}

/// Broker review L4: the pending-proof table (MAX_PENDING) was filled by many requesters at
/// their share (1,250 IPv6 /64s of one /48, eight each), and every registration, update and
/// deletion was refused for an hour. When full, the requester holding the most gives way.
#[test]
fn many_requesters_at_their_share_do_not_close_registration() {
    use dame_protocol::registration::{MAX_PENDING, MAX_PENDING_PER_REQUESTER};
    let broker = TestKey::rsa("broker");
    let mut reg = Registry::new(broker.signing());
    let key = TestKey::rsa("sp");
    reg.insert(
        sp_entity(&key, SP, Some(SP_SYNC)),
        EntityPolicy::default(),
        t0(),
        false,
    )
    .unwrap();
    let mut store = Registrations::new();
    for i in 0..MAX_PENDING {
        let who = format!("2001:db8:0:{:x}::/64", i / MAX_PENDING_PER_REQUESTER);
        let _challenge = store
            .begin_delete(SP, &reg, &who, t0(), &mut rng())
            .unwrap();
    }
    assert_eq!(store.len(), MAX_PENDING);
    // A fresh requester still gets its challenge; the table stays at its bound.
    let _challenge = store
        .begin_delete(SP, &reg, "198.51.100.7", t0(), &mut rng())
        .unwrap();
    assert_eq!(store.len(), MAX_PENDING);
}

/// Conversion review M7: the broker published documents with `validUntil` only, so a
/// Shibboleth SP's `LocalDynamic` provider kept an integrated entity up to its
/// `maxCacheDuration` (8 h by default) after a rollback deleted the file. Every published
/// document now carries `cacheDuration` (`Registry::cache_duration`, 10 minutes by default; a
/// shorter one in the registered metadata is kept), and still verifies with the broker's key.
/// (Shibboleth also needs its cleanup settings to let go of a copy whose file is gone:
/// `dame-server/tests/peers.rs` shows the whole rollback with a stock Shibboleth SP.)
#[test]
fn published_documents_carry_a_short_cache_duration() {
    use dame_protocol::integration::accept_peer;
    let broker = TestKey::rsa("broker");
    let mut reg = Registry::new(broker.signing());
    let ten_minutes = Duration::from_secs(600);
    assert_eq!(reg.cache_duration, ten_minutes);
    let key = TestKey::rsa("sp");
    let publish = |reg: &mut Registry, cache: Option<Duration>| {
        let mut sp = sp_entity(&key, SP, Some(SP_SYNC));
        sp.cache_duration = cache;
        let xml = reg
            .insert(sp, EntityPolicy::default(), t0(), true)
            .unwrap()
            .document
            .xml
            .clone();
        let e = accept_peer(&xml, SP, &broker.trusted(), t0()).unwrap();
        (String::from_utf8_lossy(&xml).into_owned(), e.cache_duration)
    };
    let (xml, cache) = publish(&mut reg, None);
    assert!(xml.contains(r#"cacheDuration="PT10M""#), "{xml}");
    assert_eq!(cache, Some(ten_minutes));
    // A registrant's day is cut to the broker's ten minutes; its minute is kept.
    let day = Duration::from_secs(86400);
    assert_eq!(publish(&mut reg, Some(day)).1, Some(ten_minutes));
    let minute = Duration::from_secs(60);
    assert_eq!(publish(&mut reg, Some(minute)).1, Some(minute));
    // The operator's setting.
    reg.cache_duration = Duration::from_secs(300);
    assert_eq!(
        publish(&mut reg, Some(day)).1,
        Some(Duration::from_secs(300))
    );
}

/// Review K1: a self-registered role could carry any number of certificates (190 copies of one
/// slow key fit in an upload), every one tried on each signed message; and a key with a huge
/// RSA exponent cost 170 times a usual one per try. At most four distinct signing certificates
/// and eight in all per role (a Shibboleth IdP rolling both its keys lists five: review F7),
/// keys only as certificates (a `ds:KeyValue` was signed unchecked: F2), and every
/// certificate's key within saml-core's bounds, encryption ones too (F2).
#[test]
fn a_self_registered_role_carries_few_usual_keys() {
    use saml_metadata::builder::RoleBuilder as _;
    use saml_metadata::model::{Binding, EntityDescriptor, KeyDescriptor, KeyUse, SpSso};
    let keys: Vec<TestKey> = (0..9).map(|i| TestKey::rsa(&format!("sp{i}"))).collect();
    let sp = |b: saml_metadata::builder::SpBuilder| {
        EntityDescriptor::builder("https://sp.uni.example/shibboleth")
            .sp(b.acs(Binding::HttpPost, "https://sp.uni.example/acs"))
            .dame_sync_location("https://sp.uni.example/dame")
            .build()
            .unwrap()
    };
    let with = |signing: usize, repeat: usize, encryption: usize| {
        let mut b = SpSso::builder();
        for k in &keys[..signing] {
            for _ in 0..repeat {
                b = b.signing_certificate(k.cert_der());
            }
        }
        for k in &keys[signing..signing + encryption] {
            b = b.encryption_certificate(k.cert_der());
        }
        sp(b)
    };
    use dame_protocol::registry::validate_self_registered as check;
    assert!(check(&with(4, 1, 0)).is_ok());
    // The same certificate repeated is one.
    assert!(check(&with(1, 190, 0)).is_ok());
    // A Shibboleth-shaped rollover: three signing, two encryption.
    assert!(check(&with(3, 1, 2)).is_ok());
    assert!(check(&with(4, 1, 4)).is_ok());
    let e = check(&with(5, 1, 0)).unwrap_err().to_string();
    assert!(e.contains("5 signing and 5 certificates in all"), "{e}");
    let e = check(&with(4, 1, 5)).unwrap_err().to_string();
    assert!(e.contains("4 signing and 9 certificates in all"), "{e}");
    // A key given as a KeyValue.
    let key_value = SpSso::builder()
        .signing_certificate(keys[0].cert_der())
        .key(KeyDescriptor {
            key_use: KeyUse::Signing,
            certificates: vec![],
            key_names: vec![],
            other_key_info: vec![saml_metadata::ext::RawXml {
                name: (
                    "http://www.w3.org/2000/09/xmldsig#".into(),
                    "KeyValue".into(),
                ),
                xml: "<ds:KeyValue xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"/>".into(),
            }],
            encryption_methods: vec![],
        });
    let e = check(&sp(key_value)).unwrap_err().to_string();
    assert!(e.contains("KeyValue"), "{e}");
    // An encryption certificate whose key has a 3070-bit exponent.
    let slow = testkit::signer::slow_exponent_certificate()
        .to_der()
        .unwrap();
    let b = SpSso::builder()
        .signing_certificate(keys[0].cert_der())
        .encryption_certificate(slow);
    let e = check(&sp(b)).unwrap_err().to_string();
    assert!(e.contains("RSA public exponent"), "{e}");
}

/// Review K5: self-registered metadata could carry `mdui:DomainHint`s for any domain, and
/// IP and geolocation hints for any network or place, which the broker signed as the
/// federation's word (sasl-saml20's resolver takes a DomainHint as it takes a Scope). A
/// domain hint is held to the proven host as a scope is; the others are refused.
#[test]
fn self_registered_discovery_hints_stay_within_the_proven_host() {
    use saml_metadata::builder::RoleBuilder as _;
    use saml_metadata::ext::DiscoHints;
    use saml_metadata::model::{Binding, EntityDescriptor, IdpSso};
    let key = TestKey::rsa("idp");
    let idp = |hints: DiscoHints| {
        let mut e = EntityDescriptor::builder("https://idp.uni.example/idp")
            .idp(
                IdpSso::builder()
                    .signing_certificate(key.cert_der())
                    .sso(Binding::HttpRedirect, "https://idp.uni.example/sso"),
            )
            .dame_sync_location("https://idp.uni.example/dame")
            .build()
            .unwrap();
        e.extensions.disco_hints = Some(Box::new(hints));
        e
    };
    use dame_protocol::registry::validate_self_registered as check;
    let domains = |d: &[&str]| DiscoHints {
        domain_hints: d.iter().map(|s| (*s).to_owned()).collect(),
        ..DiscoHints::default()
    };
    assert!(check(&idp(domains(&["uni.example", "idp.uni.example"]))).is_ok());
    for bad in ["victim.example", "example", "other.uni.example"] {
        let e = check(&idp(domains(&[bad]))).unwrap_err();
        assert!(
            matches!(e, dame_protocol::Error::Unvouched { .. }),
            "{bad}: {e}"
        );
        assert!(e.to_string().contains("DomainHint"), "{e}");
    }
    let e = check(&idp(DiscoHints {
        ip_hints: vec!["192.0.2.0/24".into()],
        ..DiscoHints::default()
    }))
    .unwrap_err();
    assert!(e.to_string().contains("IPHint"), "{e}");
    let e = check(&idp(DiscoHints {
        geolocation_hints: vec!["geo:47.37,8.55".into()],
        ..DiscoHints::default()
    }))
    .unwrap_err();
    assert!(e.to_string().contains("GeolocationHint"), "{e}");
}
