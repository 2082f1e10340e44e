//! The three-party harness (user agent, SP, broker, IdP, and both agents) running every DAME
//! journey in memory with real messages and signatures: first use, second use, both modes,
//! trigger orders, deferred integration with status reports, re-download after an update, the
//! virtual federation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::time::Duration;

use dame_protocol::broker::{BrokerPolicy, Event, Phase, TriggerOrder, UaReply};
use dame_protocol::registry::EntityPolicy;
use dame_protocol::trigger::TriggerAction;
use harness::*;
use saml_core::bindings::url_encode;

#[test]
fn first_use_exchanges_metadata_then_replays_authn_request1() {
    let mut w = World::new();
    let before = w.snapshot();
    let (flow, who) = w.first_use();
    assert_eq!(who, "alice");
    // Both sides integrated each other, IdP first (the draft's recommended order).
    assert_eq!(
        w.delivered,
        vec![
            (IDP.to_owned(), TriggerAction::FetchMetadata),
            (SP.to_owned(), TriggerAction::FetchMetadata)
        ]
    );
    assert_eq!(w.integrated(SP, IDP).unwrap().entity_id, IDP);
    assert_eq!(w.integrated(IDP, SP).unwrap().entity_id, SP);
    // LocalDynamic layout with the source URL beside each file.
    assert_eq!(
        sources(w.sp.agent.target()),
        vec![format!(
            "{BROKER_MDQ}entities/{}",
            mdq_client::url::encode_segment(IDP).unwrap()
        )]
    );
    assert!(w.broker.relationships.contains(IDP, SP));
    // The flow is finished and forgotten: it cannot be resumed.
    assert_eq!(w.broker.flow_count(), before.flows);
    assert!(w.broker.phase(&flow).is_none());
    let again = w.broker.handle_user_agent(&flow, w.now);
    assert_eq!(refusal(again), dame_protocol::Refusal::UnknownFlow);
    let events: Vec<Event> = std::iter::from_fn(|| w.broker.poll_event()).collect();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::UserAuthenticated { subject, .. } if subject == "alice"))
    );
    assert!(events.iter().any(
        |e| matches!(e, Event::RelationshipEstablished { idp, sp } if idp == IDP && sp == SP)
    ));
    assert!(matches!(events.last(), Some(Event::FlowDone { .. })));
}

#[test]
fn second_use_is_plain_sso_without_the_broker() {
    let mut w = World::new();
    w.first_use();
    while w.broker.poll_event().is_some() {}
    w.advance(Duration::from_secs(3600));
    // The SP knows the IdP now: its AuthnRequest goes straight to the IdP.
    let url = w.sp_direct_login(IDP);
    assert!(url.starts_with(IDP_SSO));
    let (form, acs) = w.idp_sso(IDP, &url).unwrap();
    assert_eq!(acs, SP_ACS);
    assert_eq!(w.sp_acs(IDP, &form).unwrap(), "alice");
    assert_eq!(w.broker.flow_count(), 0);
    assert!(w.broker.poll_transmit().is_none());
    assert!(w.broker.poll_event().is_none());
    // And discovery through the broker for a known pair answers at once, no exchange.
    let mut r = rng();
    let flow = match w
        .broker
        .handle_discovery(&w.sp_discovery(), UA_ADDR, w.now, &mut r)
        .unwrap()
    {
        UaReply::ChooseIdp { flow, .. } => flow,
        other => panic!("{other:?}"),
    };
    let back = redirect_of(
        w.broker
            .handle_idp_chosen(&flow, IDP, w.now, &mut r)
            .unwrap(),
    );
    assert_eq!(back, format!("{SP_DS}?entityID={}", url_encode(IDP)));
    assert_eq!(w.broker.flow_count(), 0);
}

#[test]
fn authenticate_without_a_discovery_flow() {
    // An SP with its own discovery sends AuthnRequest1 straight to the broker.
    let mut w = World::new();
    let mut r = rng();
    let a1 = w.sp_authn_request1(IDP);
    let (flow, reply) = w
        .broker
        .handle_authenticate(None, query_of(&a1), UA_ADDR, w.now, &mut r)
        .unwrap();
    let to_idp = redirect_of(reply);
    let (form, _) = w.idp_sso(IDP, &to_idp).unwrap();
    let _ = w
        .broker
        .handle_response2(&flow, &form, w.now, &mut r)
        .unwrap();
    w.run_triggers();
    let replay = redirect_of(w.broker.handle_user_agent(&flow, w.now).unwrap());
    let (form, _) = w.idp_sso(IDP, &replay).unwrap();
    assert_eq!(w.sp_acs(IDP, &form).unwrap(), "alice");
}

#[test]
fn unmodified_sp_mode_answers_discovery_after_the_exchange() {
    let mut w = World::with(
        EntityPolicy::default().with_unmodified_sp(true),
        BrokerPolicy::default(),
    );
    let mut r = rng();
    let now = w.now;
    let flow = match w
        .broker
        .handle_discovery(&w.sp_discovery(), UA_ADDR, now, &mut r)
        .unwrap()
    {
        UaReply::ChooseIdp { flow, .. } => flow,
        other => panic!("{other:?}"),
    };
    // A new pair: the broker sends the user to the IdP itself.
    let to_idp = redirect_of(w.broker.handle_idp_chosen(&flow, IDP, now, &mut r).unwrap());
    assert!(to_idp.starts_with(IDP_SSO));
    let (form, acs) = w.idp_sso(IDP, &to_idp).unwrap();
    assert_eq!(acs, BROKER_ACS);
    let _ = w
        .broker
        .handle_response2(&flow, &form, now, &mut r)
        .unwrap();
    w.run_triggers();
    // Then the discovery answer; the stock SP's own AuthnRequest goes to the IdP.
    let back = redirect_of(w.broker.handle_user_agent(&flow, now).unwrap());
    assert_eq!(back, format!("{SP_DS}?entityID={}", url_encode(IDP)));
    let url = w.sp_direct_login(IDP);
    let (form, _) = w.idp_sso(IDP, &url).unwrap();
    assert_eq!(w.sp_acs(IDP, &form).unwrap(), "alice");
    assert!(w.broker.relationships.contains(IDP, SP));
}

#[test]
fn unmodified_mode_is_off_by_default() {
    let mut w = World::new();
    let mut r = rng();
    let flow = match w
        .broker
        .handle_discovery(&w.sp_discovery(), UA_ADDR, w.now, &mut r)
        .unwrap()
    {
        UaReply::ChooseIdp { flow, .. } => flow,
        other => panic!("{other:?}"),
    };
    let back = redirect_of(
        w.broker
            .handle_idp_chosen(&flow, IDP, w.now, &mut r)
            .unwrap(),
    );
    assert!(
        back.starts_with(SP_DS),
        "draft mode answers discovery: {back}"
    );
    assert_eq!(w.broker.phase(&flow), Some(Phase::AwaitingAuthnRequest1));
}

#[test]
fn both_at_once_order_triggers_in_one_round() {
    let mut w = World::with(
        EntityPolicy::default(),
        BrokerPolicy::default().with_trigger_order(TriggerOrder::Both),
    );
    let (_, who) = w.first_use();
    assert_eq!(who, "alice");
    assert_eq!(w.delivered.len(), 2);
}

#[test]
fn deferred_integration_is_confirmed_by_a_signed_status_report() {
    let mut w = World::new();
    w.defer_for = vec![IDP.to_owned(), SP.to_owned()];
    let (_, who) = w.first_use();
    assert_eq!(who, "alice");
    assert!(w.reports.is_empty(), "every report was delivered");
}

#[test]
fn a_status_report_cannot_be_replayed_or_forged() {
    let mut w = World::new();
    w.defer_for = vec![IDP.to_owned()];
    let mut r = rng();
    let now = w.now;
    let a1 = w.sp_authn_request1(IDP);
    let (flow, reply) = w
        .broker
        .handle_authenticate(None, query_of(&a1), UA_ADDR, now, &mut r)
        .unwrap();
    let to_idp = redirect_of(reply);
    let (form, _) = w.idp_sso(IDP, &to_idp).unwrap();
    let _ = w
        .broker
        .handle_response2(&flow, &form, now, &mut r)
        .unwrap();
    w.run_triggers();
    assert_eq!(w.broker.phase(&flow), Some(Phase::Exchanging));
    let report = w.reports.pop().unwrap();
    // Forged: the same report signed by the SP's key instead of the IdP's.
    let forged = {
        let q = query_of(&report);
        let (head, _) = q.split_once("&SigAlg=").unwrap();
        let _ = head;
        dame_protocol::mdi::StatusReport::new(
            IDP,
            SP,
            dame_protocol::mdi::MdiStatus::Integrated,
            "",
            now,
            &mut r,
        )
        .url(BROKER_DAME, &w.sp.key.signing())
        .unwrap()
    };
    assert_eq!(
        refusal(
            w.broker
                .handle_status_report(query_of(&forged), now, &mut r)
        ),
        dame_protocol::Refusal::BadSignature
    );
    assert_eq!(w.broker.phase(&flow), Some(Phase::Exchanging));
    let _ = w
        .broker
        .handle_status_report(query_of(&report), now, &mut r)
        .unwrap();
    // Replayed: the IdP leg is no longer pending, so nothing takes it.
    assert!(
        w.broker
            .handle_status_report(query_of(&report), now, &mut r)
            .is_err()
    );
    w.run_triggers();
    let replay = redirect_of(w.broker.handle_user_agent(&flow, now).unwrap());
    assert!(replay.starts_with(IDP_SSO));
}

#[test]
fn an_update_triggers_redownload_at_every_peer_and_federation_is_signed() {
    let mut w = World::new();
    w.first_use();
    let mut r = rng();
    w.advance(Duration::from_secs(60));
    // The IdP's metadata changes (a new SSO endpoint host would be refused; a new key is fine).
    let new_key = testkit::signer::TestKey::rsa("idp-rollover");
    let updated = idp_entity(&new_key, IDP, Some(IDP_SYNC));
    let n = w
        .broker
        .update_entity(updated, EntityPolicy::default(), w.now, &mut r)
        .unwrap();
    assert_eq!(n, 1);
    let t = w.broker.poll_transmit().unwrap();
    assert_eq!(
        (t.to.as_str(), t.action, t.flow.is_none()),
        (SP, TriggerAction::FetchMetadata, true)
    );
    w.deliver(t);
    let idp_at_sp = w.integrated(SP, IDP).unwrap();
    assert_eq!(
        idp_at_sp.roles,
        w.broker.registry.get(IDP).unwrap().entity.roles
    );
    assert_eq!(
        saml_metadata::sso::idp_signing_keys(&idp_at_sp)
            .unwrap()
            .len(),
        1
    );
    // The SP's virtual federation: itself and its IdP, signed by the broker.
    let fed = w
        .broker
        .relationships
        .federation(
            SP,
            &w.broker.registry,
            "urn:dame:federation:sp",
            w.now + Duration::from_secs(86400),
        )
        .unwrap();
    let agg = saml_metadata::load::load(
        &fed,
        &saml_metadata::load::Policy::new(w.broker_key.trusted(), w.now),
    )
    .unwrap();
    let mut ids: Vec<&str> = agg.entities().map(|e| e.entity_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![IDP, SP]);
}

/// Two broker instances sharing a store: the flow starts on one, is written out as JSON, and
/// finishes on the other (the user agent's next request went to the other instance).
#[cfg(feature = "serde")]
#[test]
fn a_flow_continues_on_another_instance_from_its_record() {
    let mut w = World::new();
    let mut other = w.broker.clone();
    let mut r = rng();
    let now = w.now;
    let flow = match w
        .broker
        .handle_discovery(&w.sp_discovery(), UA_ADDR, now, &mut r)
        .unwrap()
    {
        UaReply::ChooseIdp { flow, .. } => flow,
        other => panic!("{other:?}"),
    };
    let _ = w.broker.handle_idp_chosen(&flow, IDP, now, &mut r).unwrap();
    let a1 = w.sp_authn_request1(IDP);
    let (_, reply) = w
        .broker
        .handle_authenticate(Some(&flow), query_of(&a1), UA_ADDR, now, &mut r)
        .unwrap();
    let to_idp = redirect_of(reply);
    // Instance A writes the flow to the store and forgets it.
    let json = serde_json::to_string(&w.broker.export_flow(&flow).unwrap()).unwrap();
    assert!(w.broker.forget_flow(&flow));
    // Instance B reads it and receives Response2.
    let record: dame_protocol::broker::FlowRecord = serde_json::from_str(&json).unwrap();
    other.import_flow(record, now).unwrap();
    assert_eq!(other.phase(&flow), Some(Phase::AwaitingResponse2));
    let (form, _) = w.idp_sso(IDP, &to_idp).unwrap();
    let _ = other.handle_response2(&flow, &form, now, &mut r).unwrap();
    std::mem::swap(&mut w.broker, &mut other);
    w.settle();
    let replay = redirect_of(w.broker.handle_user_agent(&flow, now).unwrap());
    let (form, _) = w.idp_sso(IDP, &replay).unwrap();
    assert_eq!(w.sp_acs(IDP, &form).unwrap(), "alice");
    // An expired record is not taken over.
    let late = w.broker.export_flow(&flow);
    assert!(late.is_none(), "a finished flow is gone");
}

/// After the exchange the IdP lacks eduPersonPrincipalName, which the SP requests; the broker
/// answers with the rule that makes it from uid, and the rule works on the user's attributes.
#[test]
fn the_idp_asks_the_broker_for_conversion_rules_after_the_exchange() {
    use dame_protocol::conversion::{Attributes, RuleSet, RulesQuery};
    let mut w = World::new();
    w.broker.rules = RuleSet::from_json(
        br#"{"rules": [
        {"id": "eppn-from-uid", "target": {"name": "urn:oid:1.3.6.1.4.1.5923.1.1.1.6"},
         "sources": ["urn:oid:0.9.2342.19200300.100.1.1"],
         "ops": [{"op": "lowercase"}, {"op": "scope_add", "scope": "example.net"}]},
        {"id": "eppn-from-mail", "target": {"name": "urn:oid:1.3.6.1.4.1.5923.1.1.1.6"},
         "sources": ["urn:oid:0.9.2342.19200300.100.1.3"]}
    ]}"#,
    )
    .unwrap();
    w.first_use();
    let sp = w.integrated(IDP, SP).unwrap();
    let have = ["urn:oid:0.9.2342.19200300.100.1.1"];
    let missing = dame_protocol::agent::missing_attributes(&sp, &have);
    assert_eq!(missing.len(), 1);
    let q = RulesQuery {
        sp: SP.to_owned(),
        have: have.iter().map(|s| (*s).to_owned()).collect(),
    };
    // As it goes on the wire: JSON, signed over the question and the body with the broker's
    // key, which the IdP's agent pins.
    let query = q.to_query();
    let (json, signature) = w.broker.rules_answer(&query, w.now).unwrap();
    dame_protocol::conversion::verify_answer(
        &query,
        json.as_bytes(),
        Some(&signature),
        &w.broker_key.trusted(),
        w.now,
    )
    .unwrap();
    let rules = RuleSet::from_json(json.as_bytes()).unwrap();
    assert_eq!(rules, w.broker.handle_rules_query(&query).unwrap());
    assert_eq!(rules.rules.len(), 1);
    assert_eq!(rules.rules[0].id, "eppn-from-uid");
    let mut a = Attributes::default();
    a.insert("urn:oid:0.9.2342.19200300.100.1.1", ["Alice"]);
    assert_eq!(
        rules.rules[0].evaluate(&a).unwrap(),
        vec!["alice@example.net"]
    );
    // An unregistered SP is refused.
    let stranger = RulesQuery {
        sp: "https://nobody.example/sp".into(),
        have: Default::default(),
    };
    assert!(w.broker.handle_rules_query(&stranger.to_query()).is_err());
}

/// Two users make the same pair's first use at once: the IdP's agent fetches the SP once; the
/// second trigger joins that fetch (accepted-pending) and one signed status report completes
/// the second flow.
#[test]
fn concurrent_first_uses_of_one_pair_share_the_fetch() {
    use dame_protocol::agent::{FetchOutcome, TriggerStep};
    use dame_protocol::mdi::MdiStatus;
    let mut w = World::new();
    let mut r = rng();
    let now = w.now;
    let mut flows = Vec::new();
    for _ in 0..2 {
        let a1 = w.sp_authn_request1(IDP);
        let (flow, reply) = w
            .broker
            .handle_authenticate(None, query_of(&a1), UA_ADDR, now, &mut r)
            .unwrap();
        let (form, _) = w.idp_sso(IDP, &redirect_of(reply)).unwrap();
        let _ = w
            .broker
            .handle_response2(&flow, &form, now, &mut r)
            .unwrap();
        flows.push(flow);
    }
    let t1 = w.broker.poll_transmit().unwrap();
    let t2 = w.broker.poll_transmit().unwrap();
    assert_eq!((t1.to.as_str(), t2.to.as_str()), (IDP, IDP));
    let TriggerStep::Fetch(req) = w
        .idp
        .agent
        .handle_trigger(query_of(&t1.url), BROKER_ADDR, now)
        .unwrap()
    else {
        panic!("first trigger fetches")
    };
    let TriggerStep::Answer(joined) = w
        .idp
        .agent
        .handle_trigger(query_of(&t2.url), BROKER_ADDR, now)
        .unwrap()
    else {
        panic!("second trigger joins")
    };
    assert_eq!(joined.status, MdiStatus::AcceptedPending);
    let (code, body) = joined.to_http().unwrap();
    w.broker
        .handle_trigger_answer(t2.flow.as_ref().unwrap(), IDP, code, &body, now, &mut r)
        .unwrap();
    let (status, headers, body) = w.mdq(&req.url, &req.headers);
    let FetchOutcome::Answer(a) = w
        .idp
        .agent
        .handle_fetched(
            req.token,
            &req.url,
            &mdq_client::response::HttpResponse {
                status,
                headers: &headers,
                body: &body,
            },
            now,
            &mut r,
        )
        .unwrap()
    else {
        panic!("answered in time")
    };
    let (code, body) = a.to_http().unwrap();
    w.broker
        .handle_trigger_answer(t1.flow.as_ref().unwrap(), IDP, code, &body, now, &mut r)
        .unwrap();
    let report = w
        .idp
        .agent
        .poll_report()
        .expect("a report for the joined trigger");
    assert!(w.idp.agent.poll_report().is_none());
    let _ = w
        .broker
        .handle_status_report(query_of(&report), now, &mut r)
        .unwrap();
    w.settle();
    for flow in &flows {
        let replay = redirect_of(w.broker.handle_user_agent(flow, now).unwrap());
        assert!(replay.starts_with(IDP_SSO));
    }
}

/// An agent restarted on the same directory re-fetches every integrated entity by `{sha1}`
/// from the broker (the `.xml.loc` files say which), without any trigger.
#[test]
fn a_restarted_agent_reinitialises_from_its_loc_files() {
    use dame_protocol::agent::FetchOutcome;
    use dame_protocol::integration::metadata_file;
    use dame_protocol::mdi::MdiStatus;
    let mut w = World::new();
    w.first_use();
    let files = w.sp.agent.target().clone();
    let mut restarted = restarted_sp(&w, files);
    let reqs = restarted.reinitialise().unwrap();
    assert_eq!(reqs.len(), 1);
    for req in reqs {
        assert!(req.url.contains("%7Bsha1%7D"), "{}", req.url);
        let out = w.answer_fetch(&mut restarted, &req, &mut rng()).unwrap();
        assert!(matches!(out, FetchOutcome::Answer(a) if a.status == MdiStatus::Integrated));
    }
    assert!(restarted.target().files.contains_key(&metadata_file(IDP)));
    assert_eq!(restarted.pending(), 0);
}

/// The agent's answer to a fetch can be verified apart from it: `Agent::verifier` gives a
/// `Send` verifier that runs on another thread while the agent serves other calls (the
/// service verified under its core lock, so one large document held every trigger and report
/// behind it), and `Agent::handle_verified` applies the result as `handle_fetched` does. A
/// token that is not in flight has no verifier.
#[test]
fn a_fetch_is_verified_apart_from_the_agent() {
    use dame_protocol::agent::FetchOutcome;
    use dame_protocol::integration::metadata_file;
    use dame_protocol::mdi::MdiStatus;
    let mut w = World::new();
    w.first_use();
    let files = w.sp.agent.target().clone();
    let mut restarted = restarted_sp(&w, files);
    let reqs = restarted.reinitialise().unwrap();
    assert_eq!(reqs.len(), 1);
    let req = reqs.into_iter().next().unwrap();
    let (status, headers, body) = w.mdq(&req.url, &req.headers);
    let verifier = restarted.verifier(req.token, w.now).unwrap();
    let verifying = std::thread::spawn(move || {
        verifier.verify(&mdq_client::response::HttpResponse {
            status,
            headers: &headers,
            body: &body,
        })
    });
    // The agent is free meanwhile.
    assert!(restarted.poll_report().is_none());
    assert_eq!(restarted.pending(), 1);
    let verified = verifying.join().unwrap();
    let out = restarted
        .handle_verified(req.token, &req.url, verified, w.now, &mut rng())
        .unwrap();
    assert!(matches!(out, FetchOutcome::Answer(a) if a.status == MdiStatus::Integrated));
    assert!(restarted.target().files.contains_key(&metadata_file(IDP)));
    assert_eq!(restarted.pending(), 0);
    // Completed: no verifier for it any more.
    assert!(restarted.verifier(req.token, w.now).is_err());
}

/// Review of 2026-12-06's agent changes: (1) the agent wrote the peer's document from the MDQ
/// client's persistent-cache snapshot, which is `None` for an answer with `Cache-Control:
/// no-store`, so a broker (or a proxy in front of it) sending it made every integration fail;
/// (2) `handle_verified` with an answer verified for another fetch removed this fetch's entry
/// before the client refused the mismatch, leaving a fetch in flight that later triggers for
/// the peer joined and nobody reported on. The document is now taken whatever the answer says
/// about persistent caches, and the mismatch is refused before anything changes.
#[test]
fn a_no_store_answer_integrates_and_a_mismatched_completion_changes_nothing() {
    use dame_protocol::agent::FetchOutcome;
    use dame_protocol::integration::metadata_file;
    use dame_protocol::mdi::MdiStatus;
    let mut w = World::new();
    w.first_use();
    let mut files = w.sp.agent.target().clone();
    // A second entity integrated before the restart (one the broker does not know).
    files.files.insert(
        format!("{}.xml.loc", "0".repeat(40)),
        format!("{BROKER_MDQ}entities/%7Bsha1%7D{}", "0".repeat(40)).into_bytes(),
    );
    let mut restarted = restarted_sp(&w, files);
    let reqs = restarted.reinitialise().unwrap();
    assert_eq!(reqs.len(), 2);
    let idp_sha1 = saml_metadata::model::sha1_hex(IDP);
    let (a, b): (Vec<_>, Vec<_>) = reqs.into_iter().partition(|r| r.url.contains(&idp_sha1));
    let (a, b) = (&a[0], &b[0]);
    let (status, mut headers, body) = w.mdq(&a.url, &a.headers);
    headers.push(("Cache-Control".into(), "no-store".into()));
    let answer = |v: &mdq_client::client::Verifier| {
        v.verify(&mdq_client::response::HttpResponse {
            status,
            headers: &headers,
            body: &body,
        })
    };
    // A's answer handed in as B's: refused, both fetches still in flight.
    let for_a = answer(&restarted.verifier(a.token, w.now).unwrap());
    assert!(
        restarted
            .handle_verified(b.token, &b.url, for_a, w.now, &mut rng())
            .is_err()
    );
    assert_eq!(restarted.pending(), 2);
    // A's answer, with no-store, integrates.
    let for_a = answer(&restarted.verifier(a.token, w.now).unwrap());
    let out = restarted
        .handle_verified(a.token, &a.url, for_a, w.now, &mut rng())
        .unwrap();
    assert!(
        matches!(&out, FetchOutcome::Answer(x) if x.status == MdiStatus::Integrated),
        "{out:?}"
    );
    assert!(restarted.target().files.contains_key(&metadata_file(IDP)));
    // B completes too (the broker does not know it).
    let out = w.answer_fetch(&mut restarted, b, &mut rng()).unwrap();
    assert!(
        matches!(&out, FetchOutcome::Answer(x) if x.status != MdiStatus::Integrated),
        "{out:?}"
    );
    assert_eq!(restarted.pending(), 0);
}

/// The SP's agent started again on `files` (what its directory held), as after a restart.
fn restarted_sp(
    w: &World,
    files: dame_protocol::integration::MemoryTarget,
) -> dame_protocol::agent::Agent<dame_protocol::integration::MemoryTarget> {
    dame_protocol::agent::Agent::new(
        SP,
        dame_protocol::agent::Side::Sp,
        w.broker_key.trusted(),
        BROKER_MDQ,
        BROKER_DAME,
        w.sp.key.signing(),
        files,
    )
    .unwrap()
}

/// A trigger that joins a restarted agent's re-initialisation fetch (by `{sha1}`, which names
/// no peer) is answered `accepted-pending`, and the status report that follows the fetch names
/// the trigger's peer: it named none, and the broker could not match it to the pair. (This
/// trigger is an update's, which no user flow waits for; the broker matches reports of flow
/// triggers by reporter and peer, as `concurrent_first_uses_of_one_pair_share_the_fetch` shows.)
#[test]
fn a_trigger_joining_a_restart_fetch_is_reported_with_its_peer() {
    use dame_protocol::agent::{FetchOutcome, TriggerStep};
    use dame_protocol::mdi::MdiStatus;
    let mut w = World::new();
    w.first_use();
    let mut r = rng();
    let files = w.sp.agent.target().clone();
    let mut restarted = restarted_sp(&w, files);
    let reqs = restarted.reinitialise().unwrap();
    assert_eq!(reqs.len(), 1);
    let req = reqs.into_iter().next().unwrap();
    // While that fetch is in flight, the IdP's metadata changes and the broker triggers the SP.
    w.advance(Duration::from_secs(60));
    let new_key = testkit::signer::TestKey::rsa("idp-rollover");
    let updated = idp_entity(&new_key, IDP, Some(IDP_SYNC));
    w.broker
        .update_entity(updated, EntityPolicy::default(), w.now, &mut r)
        .unwrap();
    let t = w.broker.poll_transmit().unwrap();
    assert_eq!(
        (t.to.as_str(), t.action),
        (SP, TriggerAction::FetchMetadata)
    );
    let TriggerStep::Answer(joined) = restarted
        .handle_trigger(query_of(&t.url), BROKER_ADDR, w.now)
        .unwrap()
    else {
        panic!("the trigger joins the restart's fetch")
    };
    assert_eq!(joined.status, MdiStatus::AcceptedPending);
    let out = w.answer_fetch(&mut restarted, &req, &mut r).unwrap();
    assert!(
        matches!(&out, FetchOutcome::Answer(a) if a.status == MdiStatus::Integrated),
        "{out:?}"
    );
    let report = restarted
        .poll_report()
        .expect("a report for the joined trigger");
    assert!(restarted.poll_report().is_none());
    let peer = url_param(&report, "peer");
    assert_eq!(peer.as_deref(), Some(IDP), "{report}");
    assert_eq!(url_param(&report, "entityID").as_deref(), Some(SP));
}

/// The percent-decoded value of query parameter `name` in `url`.
fn url_param(url: &str, name: &str) -> Option<String> {
    query_of(url).split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| saml_core::bindings::url_decode(v).unwrap())
    })
}
