//! Every failure of a DAME journey in the three-party harness: each asserts the exact refusal
//! (or the failure the user agent is shown), that rollback triggers go out for what was
//! integrated, and that a refusal changes no state (flows, relationships, registry, files).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::time::Duration;

use dame_protocol::broker::{BrokerPolicy, FlowFailure, FlowId, Phase, UaReply};
use dame_protocol::mdi::MdiStatus;
use dame_protocol::policy::{DomainList, PeerPolicy};
use dame_protocol::registry::EntityPolicy;
use dame_protocol::trigger::{Trigger, TriggerAction};
use dame_protocol::{ErrorKind, Refusal};
use harness::*;
use saml_core::bindings::{MessageKind, post, redirect, url_encode};
use saml_core::protocol::idp::ResponseBuilder;
use saml_core::protocol::{AuthnRequest, NAMEID_TRANSIENT, NameId};
use testkit::signer::TestKey;

fn start(w: &mut World) -> FlowId {
    match w
        .broker
        .handle_discovery(&w.sp_discovery(), UA_ADDR, w.now, &mut rng())
        .unwrap()
    {
        UaReply::ChooseIdp { flow, .. } => flow,
        other => panic!("{other:?}"),
    }
}

/// Discovery, IdP chosen, AuthnRequest1 accepted: the flow waits for Response2. Returns the
/// flow and the AuthnRequest2 URL.
fn to_response2(w: &mut World) -> (FlowId, String) {
    let flow = start(w);
    let _ = w
        .broker
        .handle_idp_chosen(&flow, IDP, w.now, &mut rng())
        .unwrap();
    let a1 = w.sp_authn_request1(IDP);
    let (_, reply) = w
        .broker
        .handle_authenticate(Some(&flow), query_of(&a1), UA_ADDR, w.now, &mut rng())
        .unwrap();
    (flow, redirect_of(reply))
}

/// Up to the triggers: Response2 accepted, triggers queued (not delivered).
fn to_exchange(w: &mut World) -> FlowId {
    let (flow, to_idp) = to_response2(w);
    let (form, _) = w.idp_sso(IDP, &to_idp).unwrap();
    let _ = w
        .broker
        .handle_response2(&flow, &form, w.now, &mut rng())
        .unwrap();
    flow
}

fn failed(w: &mut World, flow: &FlowId) -> FlowFailure {
    match w.broker.handle_user_agent(flow, w.now).unwrap() {
        UaReply::Failed(f) => f,
        other => panic!("not failed: {other:?}"),
    }
}

#[test]
fn unregistered_sp_is_refused_everywhere() {
    let mut w = World::new();
    let before = w.snapshot();
    let stranger = "https://stranger.example/sp";
    let q = dame_protocol::discovery::DiscoveryRequest::new(
        stranger,
        Some("https://stranger.example/Shibboleth.sso/Login"),
    )
    .to_query();
    assert_eq!(
        refusal(w.broker.handle_discovery(&q, UA_ADDR, w.now, &mut rng())),
        Refusal::UnknownEntity
    );
    // An AuthnRequest1 from it, signed with its own key.
    let key = TestKey::rsa("stranger");
    let mut req = AuthnRequest::new("_s1".into(), stranger, w.now);
    req.acs_url = Some("https://stranger.example/acs".into());
    let url = dame_protocol::authenticate::AuthenticateRequest::url(
        BROKER_DAME,
        IDP,
        IDP_SSO,
        &req,
        None,
        &key.signing(),
    )
    .unwrap();
    assert_eq!(
        refusal(
            w.broker
                .handle_authenticate(None, query_of(&url), UA_ADDR, w.now, &mut rng())
        ),
        Refusal::UnknownEntity
    );
    assert_eq!(w.snapshot(), before);
}

#[test]
fn deny_listed_pairs_are_refused_by_either_side_or_the_broker() {
    let deny = PeerPolicy {
        deny: DomainList::new([".example.net"]),
        ..PeerPolicy::default()
    };
    // The SP's own policy.
    let mut w = World::with(
        EntityPolicy::default().with_peers(deny.clone()),
        BrokerPolicy::default(),
    );
    let flow = start(&mut w);
    let before = w.snapshot();
    assert_eq!(
        refusal(w.broker.handle_idp_chosen(&flow, IDP, w.now, &mut rng())),
        Refusal::NotPermitted
    );
    assert_eq!(w.broker.phase(&flow), Some(Phase::ChoosingIdp));
    let a1 = w.sp_authn_request1(IDP);
    assert_eq!(
        refusal(
            w.broker
                .handle_authenticate(None, query_of(&a1), UA_ADDR, w.now, &mut rng())
        ),
        Refusal::NotPermitted
    );
    assert_eq!(w.snapshot(), before);
    // The broker's policy.
    let mut w = World::with(
        EntityPolicy::default(),
        BrokerPolicy::default().with_peers(PeerPolicy {
            allow: DomainList::new([".example.org", "idp.other.example"]),
            ..PeerPolicy::default()
        }),
    );
    let flow = start(&mut w);
    assert_eq!(
        refusal(w.broker.handle_idp_chosen(&flow, IDP, w.now, &mut rng())),
        Refusal::NotPermitted
    );
    // ... while an allowed IdP passes.
    assert!(
        w.broker
            .handle_idp_chosen(&flow, IDP2, w.now, &mut rng())
            .is_ok()
    );
}

#[test]
fn forged_and_unsigned_authn_request1_are_refused_without_state_change() {
    let mut w = World::new();
    let flow = start(&mut w);
    let _ = w
        .broker
        .handle_idp_chosen(&flow, IDP, w.now, &mut rng())
        .unwrap();
    let before = w.snapshot();
    let mut req = AuthnRequest::new("_f1".into(), SP, w.now);
    req.acs_url = Some(SP_ACS.into());
    // Signed by someone else's key.
    let forged = dame_protocol::authenticate::AuthenticateRequest::url(
        BROKER_DAME,
        IDP,
        IDP_SSO,
        &req,
        None,
        &TestKey::rsa("mallory").signing(),
    )
    .unwrap();
    assert_eq!(
        refusal(w.broker.handle_authenticate(
            Some(&flow),
            query_of(&forged),
            UA_ADDR,
            w.now,
            &mut rng()
        )),
        Refusal::BadSignature
    );
    // Unsigned.
    let saml = redirect::encode(
        MessageKind::Request,
        req.to_xml().as_bytes(),
        None,
        None,
        None,
    )
    .unwrap();
    let unsigned = format!("action=authenticate&idpEntityID={}&{saml}", url_encode(IDP));
    assert_eq!(
        refusal(
            w.broker
                .handle_authenticate(Some(&flow), &unsigned, UA_ADDR, w.now, &mut rng())
        ),
        Refusal::Unsigned
    );
    // For another IdP than the one chosen in this flow.
    let other = w.sp_authn_request1(IDP2);
    assert_eq!(
        refusal(w.broker.handle_authenticate(
            Some(&flow),
            query_of(&other),
            UA_ADDR,
            w.now,
            &mut rng()
        )),
        Refusal::WrongFlow
    );
    // Addressed (Destination) to somewhere else than the IdP.
    let elsewhere = AuthnRequest::new("_f2".into(), SP, w.now);
    let url = dame_protocol::authenticate::AuthenticateRequest::url(
        BROKER_DAME,
        IDP,
        "https://evil.example/sso",
        &elsewhere,
        None,
        &w.sp.key.signing(),
    )
    .unwrap();
    assert_eq!(
        refusal(w.broker.handle_authenticate(
            Some(&flow),
            query_of(&url),
            UA_ADDR,
            w.now,
            &mut rng()
        )),
        Refusal::WrongFlow
    );
    // Review B2: signed, naming the IdP in its IDPList, but without a Destination (SAML
    // Bindings §3.4.5.2 requires one on a signed message; a Shibboleth IdP refused the replay
    // at the last step of the flow). Refused at the broker, before anything is exchanged.
    let mut bare = AuthnRequest::new("_f3".into(), SP, w.now);
    bare.scoping = Some(saml_core::protocol::authn_request::Scoping {
        idp_list: vec![IDP.into()],
        ..Default::default()
    });
    let saml = redirect::encode(
        MessageKind::Request,
        bare.to_xml().as_bytes(),
        None,
        Some(&w.sp.key.signing()),
        None,
    )
    .unwrap();
    let query = format!("action=authenticate&idpEntityID={}&{saml}", url_encode(IDP));
    assert_eq!(
        refusal(
            w.broker
                .handle_authenticate(Some(&flow), &query, UA_ADDR, w.now, &mut rng())
        ),
        Refusal::WrongFlow
    );
    assert_eq!(w.broker.phase(&flow), Some(Phase::AwaitingAuthnRequest1));
    assert_eq!(w.snapshot(), before);
    // The genuine one still goes through.
    let a1 = w.sp_authn_request1(IDP);
    assert!(
        w.broker
            .handle_authenticate(Some(&flow), query_of(&a1), UA_ADDR, w.now, &mut rng())
            .is_ok()
    );
}

#[test]
fn an_unsigned_authn_request1_passes_only_by_the_sps_policy() {
    let mut w = World::with(
        EntityPolicy::default().with_unsigned_authn_request(true),
        BrokerPolicy::default(),
    );
    let mut req = AuthnRequest::new("_u1".into(), SP, w.now);
    req.acs_url = Some(SP_ACS.into());
    let saml = redirect::encode(
        MessageKind::Request,
        req.to_xml().as_bytes(),
        None,
        None,
        None,
    )
    .unwrap();
    let unsigned = format!("action=authenticate&idpEntityID={}&{saml}", url_encode(IDP));
    assert!(
        w.broker
            .handle_authenticate(None, &unsigned, UA_ADDR, w.now, &mut rng())
            .is_ok()
    );
    // Review B6: not for an SP whose metadata says it signs its requests, whatever its policy.
    let mut sp = sp_entity(&w.sp.key, SP, Some(SP_SYNC));
    for role in &mut sp.roles {
        if let saml_metadata::model::Role::Sp(r) = role {
            r.authn_requests_signed = Some(true);
        }
    }
    w.broker
        .update_entity(
            sp,
            EntityPolicy::default().with_unsigned_authn_request(true),
            w.now,
            &mut rng(),
        )
        .unwrap();
    let mut req = AuthnRequest::new("_u2".into(), SP, w.now);
    req.acs_url = Some(SP_ACS.into());
    let saml = redirect::encode(
        MessageKind::Request,
        req.to_xml().as_bytes(),
        None,
        None,
        None,
    )
    .unwrap();
    let unsigned = format!("action=authenticate&idpEntityID={}&{saml}", url_encode(IDP));
    assert_eq!(
        refusal(
            w.broker
                .handle_authenticate(None, &unsigned, UA_ADDR, w.now, &mut rng())
        ),
        Refusal::Unsigned
    );
}

/// A Response for the broker's AuthnRequest2 built by `issuer` signing with `key`.
fn response_from(w: &World, to_idp: &str, issuer: &str, key: &TestKey) -> String {
    let m = redirect::decode(query_of(to_idp), 1 << 16).unwrap();
    let req = AuthnRequest::parse(&m.xml).unwrap();
    let xml = ResponseBuilder::for_request(
        &req,
        issuer,
        BROKER_ACS,
        NameId::new("mallory", NAMEID_TRANSIENT),
    )
    .build(&key.signing(), w.now, &mut rng())
    .unwrap();
    format!("SAMLResponse={}", url_encode(&post::encode(&xml)))
}

#[test]
fn response2_from_the_wrong_idp_or_forged_is_refused_and_the_flow_waits() {
    let mut w = World::new();
    let (flow, to_idp) = to_response2(&mut w);
    let before = w.snapshot();
    // Another registered IdP answering with its own key and name.
    let other = response_from(&w, &to_idp, IDP2, &w.idp2.key);
    let e = w
        .broker
        .handle_response2(&flow, &other, w.now, &mut rng())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected, "{e}");
    // The right name, the wrong key.
    let forged = response_from(&w, &to_idp, IDP, &w.idp2.key);
    let e = w
        .broker
        .handle_response2(&flow, &forged, w.now, &mut rng())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected, "{e}");
    assert_eq!(w.broker.phase(&flow), Some(Phase::AwaitingResponse2));
    assert_eq!(w.snapshot(), before);
    assert!(w.broker.poll_transmit().is_none());
    // The genuine Response2 still completes the flow.
    let (form, _) = w.idp_sso(IDP, &to_idp).unwrap();
    let _ = w
        .broker
        .handle_response2(&flow, &form, w.now, &mut rng())
        .unwrap();
    assert_eq!(w.broker.phase(&flow), Some(Phase::Exchanging));
}

#[test]
fn replayed_response2_is_refused_in_its_flow_and_in_any_other() {
    let mut w = World::new();
    let (flow, to_idp) = to_response2(&mut w);
    let (form, _) = w.idp_sso(IDP, &to_idp).unwrap();
    let _ = w
        .broker
        .handle_response2(&flow, &form, w.now, &mut rng())
        .unwrap();
    // Again in the same flow: the flow moved on.
    assert_eq!(
        refusal(w.broker.handle_response2(&flow, &form, w.now, &mut rng())),
        Refusal::WrongState
    );
    // In another user's flow (session hijacking with an overheard Response2): it does not
    // answer that flow's AuthnRequest2.
    let (other, _) = to_response2(&mut w);
    let e = w
        .broker
        .handle_response2(&other, &form, w.now, &mut rng())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected, "{e}");
    assert_eq!(w.broker.phase(&other), Some(Phase::AwaitingResponse2));
}

/// The IdP's error Response (status Responder/`second`, signed) to the AuthnRequest2 at
/// `to_idp`, as the HTTP-POST form the user agent brings to the broker.
fn idp_error(w: &World, to_idp: &str, second: saml_core::protocol::StatusCode) -> String {
    let m = redirect::decode(query_of(to_idp), 1 << 16).unwrap();
    let req = AuthnRequest::parse(&m.xml).unwrap();
    let mut b =
        ResponseBuilder::for_request(&req, IDP, BROKER_ACS, NameId::new("x", NAMEID_TRANSIENT));
    b.status = saml_core::protocol::Status {
        code: saml_core::protocol::StatusCode::Responder,
        second: Some(second),
        message: None,
    };
    let xml = b.build(&w.idp.key.signing(), w.now, &mut rng()).unwrap();
    format!("SAMLResponse={}", url_encode(&post::encode(&xml)))
}

#[test]
fn an_error_status_from_the_idp_fails_the_flow_only_for_its_request() {
    let mut w = World::new();
    let (flow, to_idp) = to_response2(&mut w);
    let form = idp_error(&w, &to_idp, saml_core::protocol::StatusCode::AuthnFailed);
    // Posted into another flow, it is refused there and changes nothing.
    let (other, _) = to_response2(&mut w);
    assert!(
        w.broker
            .handle_response2(&other, &form, w.now, &mut rng())
            .is_err()
    );
    assert_eq!(w.broker.phase(&other), Some(Phase::AwaitingResponse2));
    let reply = w
        .broker
        .handle_response2(&flow, &form, w.now, &mut rng())
        .unwrap();
    assert!(
        matches!(
            reply,
            UaReply::Failed(FlowFailure::AuthenticationFailed { .. })
        ),
        "{reply:?}"
    );
    // Nothing was integrated, so nothing is rolled back.
    assert!(w.broker.poll_transmit().is_none());
}

/// Review S4 (session 28): an unsigned error status failed the flow when its bytes held
/// `InResponseTo="<the request's ID>"` anywhere (a StatusMessage, a comment), and not when the
/// attribute was written with single quotes. The root's attribute as parsed decides now.
#[test]
fn an_unsigned_error_status_answers_a_flow_by_its_in_response_to_attribute() {
    let mut w = World::new();
    let (flow, to_idp) = to_response2(&mut w);
    let m = redirect::decode(query_of(&to_idp), 1 << 16).unwrap();
    let id = AuthnRequest::parse(&m.xml).unwrap().id;
    let issued = saml_core::time::format_datetime(w.now);
    let unsigned = |attr: &str, message: &str, code: &str| {
        let xml = format!(
            r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_r{}" Version="2.0" IssueInstant="{issued}" Destination="{BROKER_ACS}"{attr}><saml:Issuer>{IDP}</saml:Issuer><samlp:Status><samlp:StatusCode Value="{code}"/><samlp:StatusMessage>{message}</samlp:StatusMessage></samlp:Status></samlp:Response>"#,
            attr.len()
        );
        format!("SAMLResponse={}", url_encode(&post::encode(xml.as_bytes())))
    };
    // The ID in the message only: it answers nothing.
    let requester = "urn:oasis:names:tc:SAML:2.0:status:Requester";
    let forged = unsigned("", &format!("InResponseTo=\"{id}\""), requester);
    assert!(
        w.broker
            .handle_response2(&flow, &forged, w.now, &mut rng())
            .is_err()
    );
    assert_eq!(w.broker.phase(&flow), Some(Phase::AwaitingResponse2));
    // The attribute, in single quotes: it answers this flow's request. Its code, 60 KB that
    // anyone could post, is kept at most 256 bytes long (review G1).
    let long_code = format!("urn:x:{}", "c".repeat(60_000));
    let real = unsigned(&format!(" InResponseTo='{id}'"), "no", &long_code);
    let reply = w
        .broker
        .handle_response2(&flow, &real, w.now, &mut rng())
        .unwrap();
    let UaReply::Failed(FlowFailure::AuthenticationFailed { status }) = reply else {
        panic!("not an authentication failure");
    };
    assert_eq!(status, format!("{}…", &long_code[..256]));
}

/// Review S2 (session 28): the broker kept Response2's NameID, of any length (a signed
/// Response2 of 256 KiB could carry one; saml-core takes at most 4 KiB now), whole in its per-user rate-limit key and in the
/// `UserAuthenticated` event it logs and audits. The key is a digest now and the event
/// carries at most 256 bytes of the name. Review S6: a Response2 without a NameID put every
/// such user of the IdP in one rate-limit bucket; it is refused with a clear error.
#[test]
fn a_long_name_id_is_not_kept_whole() {
    let mut w = World::new();
    w.user = "u".repeat(saml_core::protocol::MAX_NAME_ID);
    let flow = to_exchange(&mut w);
    assert_ne!(w.broker.phase(&flow), Some(Phase::AwaitingResponse2));
    let events: Vec<dame_protocol::broker::Event> =
        std::iter::from_fn(|| w.broker.poll_event()).collect();
    let subjects: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            dame_protocol::broker::Event::UserAuthenticated { subject, .. } => Some(subject),
            _ => None,
        })
        .collect();
    assert_eq!(subjects.len(), 1);
    assert_eq!(*subjects[0], format!("{}…", "u".repeat(256)));
}

/// Review S6, through the broker: a Response2 whose Subject holds only an `EncryptedID`
/// (which saml-core does not read) fails the flow; it put every such user of the IdP in one
/// rate-limit bucket. The same Response with its NameID is accepted (the edit is what the
/// builder writes, signed the same way).
#[test]
fn a_response2_with_only_an_encrypted_id_fails_the_flow() {
    for encrypted in [false, true] {
        let mut w = World::new();
        let (flow, to_idp) = to_response2(&mut w);
        let (form, _) = w
            .idp_sso_edited(IDP, &to_idp, |xml| {
                if !encrypted {
                    return xml;
                }
                let start = xml.find("<saml:NameID").unwrap();
                let end = xml.find("</saml:NameID>").unwrap() + "</saml:NameID>".len();
                format!(
                    "{}<saml:EncryptedID><xenc:EncryptedData xmlns:xenc=\"http://www.w3.org/2001/04/xmlenc#\"><xenc:CipherData><xenc:CipherValue>AAAA</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData></saml:EncryptedID>{}",
                    &xml[..start],
                    &xml[end..]
                )
            })
            .unwrap();
        let reply = w
            .broker
            .handle_response2(&flow, &form, w.now, &mut rng())
            .unwrap();
        if encrypted {
            // Failed for the missing NameID, not for another reason (review H7).
            assert!(
                matches!(
                    &reply,
                    UaReply::Failed(FlowFailure::AuthenticationFailed { status })
                        if status.contains("no saml:NameID")
                ),
                "{reply:?}"
            );
            assert!(w.broker.poll_transmit().is_none());
            assert!(w.integrated(SP, IDP).is_none());
        } else {
            assert!(matches!(reply, UaReply::Wait { .. }), "{reply:?}");
        }
    }
}

/// Review B11: an SP's passive AuthnRequest1 (`IsPassive="true"`: no one may take visible
/// control of the user agent, SAML Core §3.4.1) made the broker send the user to the IdP's
/// login page with an interactive AuthnRequest2. AuthnRequest2 now carries `IsPassive`; the
/// IdP's `NoPassive` fails the flow and nothing is exchanged. A request that is not passive
/// still asks for nothing.
#[test]
fn a_passive_authn_request1_makes_a_passive_authn_request2() {
    let mut w = World::new();
    let (_, to_idp) = to_response2(&mut w);
    let m = redirect::decode(query_of(&to_idp), 1 << 16).unwrap();
    assert_eq!(AuthnRequest::parse(&m.xml).unwrap().is_passive, None);

    let a1 = w.sp_authn_request1_with(IDP, |r| r.is_passive = Some(true));
    let (flow, reply) = w
        .broker
        .handle_authenticate(None, query_of(&a1), UA_ADDR, w.now, &mut rng())
        .unwrap();
    let to_idp = redirect_of(reply);
    let m = redirect::decode(query_of(&to_idp), 1 << 16).unwrap();
    assert_eq!(AuthnRequest::parse(&m.xml).unwrap().is_passive, Some(true));
    // The IdP cannot authenticate the user without asking: NoPassive.
    let form = idp_error(&w, &to_idp, saml_core::protocol::StatusCode::NoPassive);
    let reply = w
        .broker
        .handle_response2(&flow, &form, w.now, &mut rng())
        .unwrap();
    assert!(
        matches!(
            reply,
            UaReply::Failed(FlowFailure::AuthenticationFailed { .. })
        ),
        "{reply:?}"
    );
    assert!(w.broker.poll_transmit().is_none());
    assert!(w.integrated(SP, IDP).is_none());
}

#[test]
fn forged_replayed_stale_and_misaddressed_triggers_are_refused_by_the_agent() {
    let mut w = World::new();
    let now = w.now;
    let before = w.snapshot();
    let mut r = rng();
    let t = Trigger::new(TriggerAction::FetchMetadata, SP, IDP, now, &mut r);
    // Signed by another key than the broker's pinned one (a faked broker).
    let forged = t
        .url(IDP_SYNC, &TestKey::rsa("fake-broker").signing())
        .unwrap();
    assert_eq!(
        refusal(
            w.idp
                .agent
                .handle_trigger(query_of(&forged), BROKER_ADDR, now)
        ),
        Refusal::BadSignature
    );
    // Unsigned (the draft's bare GET).
    let bare = format!("action=fetchmetadata&entityID={}", url_encode(SP));
    assert_eq!(
        refusal(w.idp.agent.handle_trigger(&bare, BROKER_ADDR, now)),
        Refusal::Unsigned
    );
    // For another entity.
    let to_sp = Trigger::new(TriggerAction::FetchMetadata, IDP, SP, now, &mut r)
        .url(SP_SYNC, &w.broker_key.signing())
        .unwrap();
    assert_eq!(
        refusal(
            w.idp
                .agent
                .handle_trigger(query_of(&to_sp), BROKER_ADDR, now)
        ),
        Refusal::NotForUs
    );
    // Stale.
    let genuine = t.url(IDP_SYNC, &w.broker_key.signing()).unwrap();
    assert_eq!(
        refusal(w.idp.agent.handle_trigger(
            query_of(&genuine),
            BROKER_ADDR,
            now + Duration::from_secs(600)
        )),
        Refusal::Stale
    );
    assert_eq!(w.idp.agent.pending(), 0);
    // Accepted once, then replayed.
    assert!(
        w.idp
            .agent
            .handle_trigger(query_of(&genuine), BROKER_ADDR, now)
            .is_ok()
    );
    assert_eq!(
        refusal(
            w.idp
                .agent
                .handle_trigger(query_of(&genuine), BROKER_ADDR, now)
        ),
        Refusal::Replayed
    );
    assert_eq!(w.snapshot(), before);
}

#[test]
fn a_failing_peer_fetch_fails_the_flow_and_rolls_back_what_was_integrated() {
    let mut w = World::new();
    w.fetch_fails_for = vec![SP.to_owned()];
    let flow = to_exchange(&mut w);
    w.settle();
    // IdP integrated the SP, the SP could not fetch the IdP: both told to roll back.
    assert_eq!(
        w.delivered,
        vec![
            (IDP.to_owned(), TriggerAction::FetchMetadata),
            (SP.to_owned(), TriggerAction::FetchMetadata),
            (IDP.to_owned(), TriggerAction::Rollback),
            (SP.to_owned(), TriggerAction::Rollback),
        ]
    );
    assert!(w.idp.agent.target().files.is_empty(), "rolled back");
    assert!(w.sp.agent.target().files.is_empty());
    match failed(&mut w, &flow) {
        FlowFailure::Integration { entity, status, .. } => {
            assert_eq!((entity.as_str(), status), (SP, MdiStatus::Error));
        }
        other => panic!("{other:?}"),
    }
    assert!(w.broker.relationships.is_empty());
    assert!(
        w.broker.phase(&flow).is_none(),
        "a failed flow is forgotten"
    );
}

#[test]
fn an_mdi_error_at_the_idp_halts_before_the_sp_is_touched() {
    let mut w = World::new();
    w.fetch_fails_for = vec![IDP.to_owned()];
    let flow = to_exchange(&mut w);
    w.settle();
    assert_eq!(
        w.delivered,
        vec![
            (IDP.to_owned(), TriggerAction::FetchMetadata),
            (IDP.to_owned(), TriggerAction::Rollback),
        ]
    );
    assert!(matches!(
        failed(&mut w, &flow),
        FlowFailure::Integration { entity, .. } if entity == IDP
    ));
}

#[test]
fn a_garbled_mdi_answer_is_an_unreachable_entity() {
    let mut w = World::new();
    let flow = to_exchange(&mut w);
    let t = w.broker.poll_transmit().unwrap();
    w.broker
        .handle_trigger_answer(&flow, &t.to, 200, "<html>oops</html>", w.now, &mut rng())
        .unwrap();
    assert!(matches!(
        failed(&mut w, &flow),
        FlowFailure::Unreachable { entity, .. } if entity == IDP
    ));
    // A rollback goes to the IdP, whose trigger was sent and may have been processed.
    let rb = w.broker.poll_transmit().unwrap();
    assert_eq!((rb.to.as_str(), rb.action), (IDP, TriggerAction::Rollback));
}

#[test]
fn confirmations_after_the_deadline_time_out_with_rollback() {
    let mut w = World::new();
    let flow = to_exchange(&mut w);
    let t = w.broker.poll_transmit().unwrap();
    assert_eq!(t.to, IDP);
    w.advance(Duration::from_secs(121));
    assert!(w.broker.poll_timeout().unwrap() <= w.now);
    w.broker.handle_timeout(w.now, &mut rng());
    let rb = w.broker.poll_transmit().unwrap();
    assert_eq!((rb.to.as_str(), rb.action), (IDP, TriggerAction::Rollback));
    // The late answer changes nothing.
    w.deliver(t);
    assert_eq!(failed(&mut w, &flow), FlowFailure::Timeout);
}

#[test]
fn flows_expire_and_cannot_be_resumed() {
    let mut w = World::new();
    let flow = start(&mut w);
    w.advance(Duration::from_secs(601));
    assert_eq!(
        refusal(w.broker.handle_idp_chosen(&flow, IDP, w.now, &mut rng())),
        Refusal::UnknownFlow
    );
    w.broker.handle_timeout(w.now, &mut rng());
    assert_eq!(w.broker.flow_count(), 0);
    assert_eq!(
        refusal(w.broker.handle_user_agent(&FlowId::from_text("00"), w.now)),
        Refusal::UnknownFlow
    );
}

#[test]
fn messages_in_the_wrong_state_change_nothing() {
    let mut w = World::new();
    let flow = start(&mut w);
    let (form, _) = {
        let (f2, to_idp) = to_response2(&mut w);
        let _ = f2;
        w.idp_sso(IDP, &to_idp).unwrap()
    };
    assert_eq!(
        refusal(w.broker.handle_response2(&flow, &form, w.now, &mut rng())),
        Refusal::WrongState
    );
    assert_eq!(
        refusal(w.broker.handle_user_agent(&flow, w.now)),
        Refusal::WrongState
    );
    let _ = w
        .broker
        .handle_idp_chosen(&flow, IDP, w.now, &mut rng())
        .unwrap();
    assert_eq!(
        refusal(w.broker.handle_idp_chosen(&flow, IDP, w.now, &mut rng())),
        Refusal::WrongState
    );
    assert_eq!(w.broker.phase(&flow), Some(Phase::AwaitingAuthnRequest1));
}

#[test]
fn rate_limits_and_the_flow_cap_refuse_floods() {
    let mut w = World::new();
    for _ in 0..20 {
        let _ = start(&mut w);
    }
    let before = w.snapshot();
    assert_eq!(
        refusal(
            w.broker
                .handle_discovery(&w.sp_discovery(), UA_ADDR, w.now, &mut rng())
        ),
        Refusal::RateLimited
    );
    assert_eq!(w.snapshot(), before);
    // Another address still gets through, until the flow cap.
    let mut w = World::with(
        EntityPolicy::default(),
        BrokerPolicy::default().with_max_flows(3),
    );
    for i in 0..3 {
        let _ = w
            .broker
            .handle_discovery(
                &w.sp_discovery(),
                &format!("192.0.2.{i}"),
                w.now,
                &mut rng(),
            )
            .unwrap();
    }
    assert_eq!(
        refusal(
            w.broker
                .handle_discovery(&w.sp_discovery(), "192.0.2.99", w.now, &mut rng())
        ),
        Refusal::Capacity
    );
    assert_eq!(w.broker.flow_count(), 3);
}

#[test]
fn one_user_cannot_drive_unbounded_exchanges() {
    let mut w = World::with(
        EntityPolicy::default(),
        BrokerPolicy::default().with_rates((100.0, 100), (0.0, 2)),
    );
    for _ in 0..2 {
        let _ = to_exchange(&mut w);
    }
    let (flow, to_idp) = to_response2(&mut w);
    let (form, _) = w.idp_sso(IDP, &to_idp).unwrap();
    assert_eq!(
        refusal(w.broker.handle_response2(&flow, &form, w.now, &mut rng())),
        Refusal::RateLimited
    );
    assert_eq!(w.broker.phase(&flow), Some(Phase::AwaitingResponse2));
}

/// The recipients of the rollback triggers the broker planned.
fn rollbacks_planned(w: &mut World) -> Vec<String> {
    std::iter::from_fn(|| w.broker.poll_transmit())
        .filter(|t| t.action == TriggerAction::Rollback)
        .map(|t| t.to)
        .collect()
}

/// Two flows for the same new pair, both exchanging; A completes (relationship recorded, both
/// agents integrated), B's triggers are held back. Returns B and its held triggers.
fn a_completes_while_b_is_exchanging(
    w: &mut World,
) -> (FlowId, Vec<dame_protocol::broker::Transmit>) {
    let a = to_exchange(w);
    let b = to_exchange(w);
    let mut held = Vec::new();
    while let Some(t) = w.broker.poll_transmit() {
        if t.flow.as_ref() == Some(&b) {
            held.push(t);
        } else {
            w.deliver(t);
        }
    }
    assert!(w.broker.relationships.contains(IDP, SP));
    assert!(matches!(
        w.broker.handle_user_agent(&a, w.now).unwrap(),
        UaReply::Redirect { .. }
    ));
    assert!(w.integrated(IDP, SP).is_some() && w.integrated(SP, IDP).is_some());
    assert!(!held.is_empty());
    (b, held)
}

/// Finding: a failing flow rolled back every leg it had sent when its pair was new at its
/// Response2, even if a concurrent flow had established the pair since: the agents lost what
/// the other flow integrated while the relationship stayed, and later logins took the plain
/// SSO shortcut to a peer the agents no longer knew. Now a leg whose pair is established is
/// not rolled back, whether B fails by a trigger failure or by its deadline.
#[test]
fn a_failed_flow_does_not_roll_back_a_pair_another_flow_established() {
    let mut w = World::new();
    let (b, held) = a_completes_while_b_is_exchanging(&mut w);
    w.broker
        .handle_trigger_failure(&b, &held[0].to, "connection refused", w.now, &mut rng())
        .unwrap();
    assert!(matches!(
        failed(&mut w, &b),
        FlowFailure::Unreachable { .. }
    ));
    assert_eq!(
        rollbacks_planned(&mut w),
        Vec::<String>::new(),
        "no rollback of an established pair"
    );
    assert!(w.broker.relationships.contains(IDP, SP));

    // The same when B runs out of time.
    let mut w = World::new();
    let (b, _held) = a_completes_while_b_is_exchanging(&mut w);
    w.advance(Duration::from_secs(121));
    w.broker.handle_timeout(w.now, &mut rng());
    assert_eq!(failed(&mut w, &b), FlowFailure::Timeout);
    assert_eq!(
        rollbacks_planned(&mut w),
        Vec::<String>::new(),
        "no rollback of an established pair"
    );
    assert!(w.integrated(IDP, SP).is_some() && w.integrated(SP, IDP).is_some());
}

/// Broker review M2: two first logins for one new pair, both exchanging; A's trigger to the
/// IdP integrated, then B's failed. B rolled back the IdP's leg (issued later, so the agent
/// took it) and removed what A had integrated; A then completed and the pair was recorded
/// established with the IdP no longer knowing the SP. A leg another exchanging flow of the
/// pair has sent is left to that flow.
#[test]
fn a_failing_flow_does_not_roll_back_what_a_concurrent_flow_is_integrating() {
    let mut w = World::new();
    let a = to_exchange(&mut w);
    let b = to_exchange(&mut w);
    let queued: Vec<_> = std::iter::from_fn(|| w.broker.poll_transmit()).collect();
    let (a_ts, b_ts): (Vec<_>, Vec<_>) = queued
        .into_iter()
        .partition(|t| t.flow.as_ref() == Some(&a));
    // A's trigger to the IdP is answered: the IdP integrates the SP.
    for t in a_ts.iter().filter(|t| t.to == IDP).cloned() {
        w.deliver(t);
    }
    assert!(w.integrated(IDP, SP).is_some());
    // B's trigger to the IdP fails.
    let b_idp = b_ts
        .iter()
        .find(|t| t.to == IDP)
        .expect("B's trigger to the IdP");
    w.broker
        .handle_trigger_failure(&b, &b_idp.to, "connection refused", w.now, &mut rng())
        .unwrap();
    let after: Vec<_> = std::iter::from_fn(|| w.broker.poll_transmit()).collect();
    let planned: Vec<&str> = after
        .iter()
        .filter(|t| t.action == TriggerAction::Rollback)
        .map(|t| t.to.as_str())
        .collect();
    assert!(!planned.contains(&IDP), "{planned:?}");
    // A's remaining triggers go out and are answered: the pair is established, and both
    // agents hold each other.
    for t in a_ts
        .iter()
        .filter(|t| t.to != IDP)
        .cloned()
        .chain(after.into_iter().filter(|t| t.flow.as_ref() == Some(&a)))
    {
        w.deliver(t);
    }
    w.settle();
    assert!(w.broker.relationships.contains(IDP, SP));
    assert!(w.integrated(IDP, SP).is_some(), "the IdP lost the SP");
    assert!(w.integrated(SP, IDP).is_some());
}
