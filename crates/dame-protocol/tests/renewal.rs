//! Conversion review M6: integrated metadata carries the broker's `validUntil` (7 days after it
//! signed), and nothing renewed it while broker and agents ran, so every DAME relationship
//! stopped working 7 days after the broker last started. The broker now re-signs its documents
//! at half their validity (`Registry::refresh_documents`), and each agent re-fetches its
//! integrated peers before their copies expire (`Agent::refresh_due`), without any trigger.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::time::{Duration, SystemTime};

use dame_protocol::agent::{FetchOutcome, REFRESH_RETRY};
use dame_protocol::mdi::MdiStatus;
use harness::*;
use saml_metadata::load::{self, Policy};
use saml_metadata::model::Metadata;

const DAY: Duration = Duration::from_secs(86_400);
const HOUR: Duration = Duration::from_secs(3600);
/// The registry's default validity.
const VALIDITY: Duration = Duration::from_secs(7 * 86_400);

fn mdq_url(entity_id: &str) -> String {
    format!(
        "{BROKER_MDQ}entities/{}",
        mdq_client::url::encode_segment(entity_id).unwrap()
    )
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .unwrap()
}

/// The `validUntil` of a document the broker served, checked with its key at `now`.
fn served_valid_until(w: &World, body: &[u8]) -> SystemTime {
    let agg = load::load(body, &Policy::new(w.broker_key.trusted(), w.now)).unwrap();
    match agg.metadata() {
        Metadata::Entity(e) => e.valid_until.unwrap(),
        other => panic!("{other:?}"),
    }
}

fn integrated(outcomes: &[FetchOutcome]) -> bool {
    !outcomes.is_empty()
        && outcomes
            .iter()
            .all(|o| matches!(o, FetchOutcome::Answer(a) if a.status == MdiStatus::Integrated))
}

/// The broker re-signs a published document once less than half its validity is left: the
/// MDQ answer then carries a later `validUntil` and a new ETag (a revalidation of the old copy
/// gets the new document, not a 304). Nothing is re-signed before, `limit` bounds one call,
/// and the registry's revision stays (nothing derived from it changed).
#[test]
fn the_broker_re_signs_documents_past_half_their_validity() {
    let mut w = World::new();
    let url = mdq_url(IDP);
    let (status, headers, body) = w.mdq(&url, &[]);
    assert_eq!(status, 200);
    assert_eq!(served_valid_until(&w, &body), w.now + VALIDITY);
    let etag = header(&headers, "ETag").to_owned();
    let revision = w.broker.registry.revision();

    w.advance(VALIDITY / 2 - HOUR);
    assert_eq!(w.broker.registry.refresh_documents(w.now, usize::MAX), 0);
    assert_eq!(w.mdq(&url, &[]).2, body);

    w.advance(2 * HOUR);
    // Three entities are due; at most two are re-signed in one call, the third in the next.
    assert_eq!(w.broker.registry.refresh_documents(w.now, 2), 2);
    assert_eq!(w.broker.registry.refresh_documents(w.now, usize::MAX), 1);
    assert_eq!(w.broker.registry.refresh_documents(w.now, usize::MAX), 0);
    assert_eq!(w.broker.registry.revision(), revision);
    assert_eq!(
        w.broker.registry.get(IDP).unwrap().valid_until,
        w.now + VALIDITY
    );

    let (status, headers, fresh) = w.mdq(&url, &[("If-None-Match".into(), etag.clone())]);
    assert_eq!(status, 200, "the old ETag no longer matches");
    assert_eq!(served_valid_until(&w, &fresh), w.now + VALIDITY);
    let new_etag = header(&headers, "ETag").to_owned();
    assert_ne!(new_etag, etag);
    let (status, _, _) = w.mdq(&url, &[("If-None-Match".into(), new_etag)]);
    assert_eq!(status, 304);
    // Still good where the old one has expired.
    w.advance(VALIDITY / 2 + DAY);
    assert!(served_valid_until(&w, &fresh) > w.now);
    assert!(load::load(&body, &Policy::new(w.broker_key.trusted(), w.now)).is_err());
}

/// An agent re-fetches an integrated peer once half of its copy's remaining validity has
/// passed, without a trigger, and writes the broker's re-signed document: the SP's copy of
/// the IdP and the IdP's copy of the SP get the new `validUntil`. It does not ask again right
/// after.
#[test]
fn an_agent_re_fetches_an_integrated_peer_before_its_copy_expires() {
    let mut w = World::new();
    w.first_use();
    let before = w.integrated_valid_until(SP, IDP).unwrap();
    assert_eq!(before, w.now + VALIDITY);
    assert_eq!(w.integrated_valid_until(IDP, SP).unwrap(), before);
    // Not due yet.
    assert_eq!(w.refresh_agents(), 0);
    w.advance(VALIDITY / 2 - HOUR);
    assert_eq!(w.refresh_agents(), 0);

    w.advance(2 * HOUR);
    assert_eq!(w.broker.registry.refresh_documents(w.now, usize::MAX), 3);
    assert!(integrated(&w.refresh_agent(SP)));
    assert!(integrated(&w.refresh_agent(IDP)));
    assert_eq!(w.integrated_valid_until(SP, IDP).unwrap(), w.now + VALIDITY);
    assert_eq!(w.integrated_valid_until(IDP, SP).unwrap(), w.now + VALIDITY);
    assert_eq!(w.refresh_agents(), 0);
    assert_eq!(w.sp.agent.pending() + w.idp.agent.pending(), 0);
}

/// With the broker's and the agents' timers running, a pair established once keeps working
/// past the documents' validity: after 8 days (more than the 7 of validity), in 6-hour steps,
/// neither copy has ever expired and the second use is plain SSO.
#[test]
fn with_refreshes_a_pair_outlives_the_documents_validity() {
    let mut w = World::new();
    w.first_use();
    let start = w.now;
    while w.now < start + 8 * DAY {
        w.advance(6 * HOUR);
        w.broker.registry.refresh_documents(w.now, usize::MAX);
        w.refresh_agents();
        for (who, peer) in [(SP, IDP), (IDP, SP)] {
            let until = w.integrated_valid_until(who, peer).unwrap();
            assert!(
                until > w.now + DAY,
                "{who}'s copy of {peer} expires in less than a day, {:?} after the start",
                w.now.duration_since(start).unwrap()
            );
        }
    }
    let url = w.sp_direct_login(IDP);
    let (form, acs) = w.idp_sso(IDP, &url).unwrap();
    assert_eq!(acs, SP_ACS);
    assert_eq!(w.sp_acs(IDP, &form).unwrap(), "alice");
}

/// A refresh that reaches the broker before it re-signed gets the same document (a 304): the
/// copy stays, the next refresh is due after half of what is left, and that one brings the
/// re-signed document. Never more often than `REFRESH_RETRY`.
#[test]
fn a_refresh_before_the_broker_re_signed_is_repeated_later() {
    let mut w = World::new();
    w.first_use();
    let before = w.integrated_valid_until(SP, IDP).unwrap();
    w.advance(VALIDITY / 2 + HOUR);
    assert!(integrated(&w.refresh_agent(SP)));
    assert_eq!(w.integrated_valid_until(SP, IDP).unwrap(), before);
    assert!(w.refresh_agent(SP).is_empty());
    w.advance(REFRESH_RETRY);
    assert!(
        w.refresh_agent(SP).is_empty(),
        "due after half of what is left"
    );
    assert_eq!(w.broker.registry.refresh_documents(w.now, usize::MAX), 3);
    let re_signed = w.now + VALIDITY;
    w.advance(before.duration_since(w.now).unwrap() / 2);
    assert!(integrated(&w.refresh_agent(SP)));
    assert_eq!(w.integrated_valid_until(SP, IDP).unwrap(), re_signed);
}

/// A refresh that fails in transport leaves the copy as it was and is tried again after
/// `REFRESH_RETRY`, not before.
#[test]
fn a_failed_refresh_is_tried_again_after_the_retry_interval() {
    let mut w = World::new();
    w.first_use();
    let before = w.integrated_valid_until(SP, IDP).unwrap();
    w.advance(VALIDITY / 2 + HOUR);
    w.broker.registry.refresh_documents(w.now, usize::MAX);
    w.fetch_fails_for.push(SP.to_owned());
    let failed = w.refresh_agent(SP);
    assert_eq!(failed.len(), 1);
    assert!(!integrated(&failed));
    assert_eq!(w.integrated_valid_until(SP, IDP).unwrap(), before);
    assert_eq!(w.sp.agent.pending(), 0);
    w.fetch_fails_for.clear();
    w.advance(REFRESH_RETRY - Duration::from_secs(1));
    assert!(w.refresh_agent(SP).is_empty());
    w.advance(Duration::from_secs(1));
    assert!(integrated(&w.refresh_agent(SP)));
    assert!(w.integrated_valid_until(SP, IDP).unwrap() > before);
}

/// A refresh joins a fetch of the peer already in flight (a restart's re-initialisation)
/// instead of asking twice; that fetch's integration schedules the next refresh.
#[test]
fn a_refresh_joins_a_fetch_in_flight() {
    let mut w = World::new();
    w.first_use();
    let files = w.sp.agent.target().clone();
    let mut restarted = dame_protocol::agent::Agent::new(
        SP,
        dame_protocol::agent::Side::Sp,
        w.broker_key.trusted(),
        BROKER_MDQ,
        BROKER_DAME,
        w.sp.key.signing(),
        files,
    )
    .unwrap();
    let reqs = restarted.reinitialise().unwrap();
    assert_eq!(reqs.len(), 1);
    // Not yet known to this run: due, but joined to the restart's fetch.
    assert!(restarted.refresh_due(w.now).unwrap().is_empty());
    assert_eq!(restarted.pending(), 1);
    let req = &reqs[0];
    let out = w.answer_fetch(&mut restarted, req, &mut rng()).unwrap();
    assert!(integrated(&[out]));
    // Recorded: not due until half the validity has passed.
    w.advance(REFRESH_RETRY + HOUR);
    assert!(restarted.refresh_due(w.now).unwrap().is_empty());
    w.advance(VALIDITY / 2);
    assert_eq!(restarted.refresh_due(w.now).unwrap().len(), 1);
}

/// A peer rolled back (the broker removed it) is no longer refreshed: nothing of it is asked
/// from the broker again.
#[test]
fn a_rolled_back_peer_is_not_refreshed() {
    let mut w = World::new();
    w.first_use();
    let n = w.broker.remove_entity(IDP, w.now, &mut rng());
    assert!(n > 0);
    w.settle();
    assert!(w.integrated_valid_until(SP, IDP).is_none());
    w.advance(VALIDITY);
    assert!(w.refresh_agent(SP).is_empty());
}

/// A service lists its directory without holding the agent (`refresh_due_listed`: 10,000
/// peers took about 100 ms under the lock). A peer rolled back after the listing is not
/// fetched again (it would be integrated again), and a peer the listing missed but the agent
/// still holds keeps its schedule (it is not fetched at once as if it were unknown).
#[test]
fn a_listing_made_outside_the_agent_is_checked_again_for_what_it_fetches() {
    use dame_protocol::integration::IntegrationTarget as _;
    use std::collections::BTreeSet;
    let mut w = World::new();
    w.first_use();
    // Listed before any peer: the integrated IdP keeps its schedule (not due for days).
    assert!(
        w.sp.agent
            .refresh_due_listed(&BTreeSet::new(), w.now)
            .unwrap()
            .is_empty()
    );
    assert!(w.sp.agent.refresh_due(w.now).unwrap().is_empty());
    // Listed with the IdP, then the IdP is rolled back before the agent is asked.
    let listed: BTreeSet<String> =
        w.sp.agent
            .target_mut()
            .sources()
            .unwrap()
            .into_keys()
            .collect();
    assert_eq!(listed.len(), 1);
    assert!(w.broker.remove_entity(IDP, w.now, &mut rng()) > 0);
    w.settle();
    assert!(w.integrated_valid_until(SP, IDP).is_none());
    w.advance(VALIDITY);
    assert!(
        w.sp.agent
            .refresh_due_listed(&listed, w.now)
            .unwrap()
            .is_empty()
    );
    assert_eq!(w.sp.agent.pending(), 0);
}

/// A peer the broker deleted while its rollback did not reach the agent (the agent was down,
/// or the broker gave up its retries) was fetched again every retry interval for good, its
/// copy kept. The broker's 404 (not signed) removes nothing while the copy is valid; once the
/// copy has expired, the next 404 removes it as a rollback would, and it is reported for the
/// service to withdraw what it derived (still open after the seventh round).
#[test]
fn a_peer_the_broker_deleted_goes_once_its_copy_expired() {
    let mut w = World::new();
    w.first_use();
    let until = w.integrated_valid_until(SP, IDP).unwrap();
    // Deleted at the broker; the rollback triggers it plans are never delivered.
    assert!(w.broker.remove_entity(IDP, w.now, &mut rng()) > 0);
    w.advance(VALIDITY / 2 + HOUR);
    assert_eq!(w.refresh_agent(SP).len(), 1);
    assert_eq!(
        w.integrated_valid_until(SP, IDP),
        Some(until),
        "still valid: kept"
    );
    assert_eq!(w.sp.agent.poll_rolled_back(), None);
    // Expired, then the broker's 404 again: removed, reported once, not fetched any more.
    w.advance(VALIDITY / 2);
    assert_eq!(w.refresh_agent(SP).len(), 1);
    assert!(w.integrated_valid_until(SP, IDP).is_none());
    assert_eq!(w.sp.agent.poll_rolled_back().as_deref(), Some(IDP));
    assert_eq!(w.sp.agent.poll_rolled_back(), None);
    w.advance(VALIDITY);
    assert!(w.refresh_agent(SP).is_empty());
}

/// Review of the twelfth round, F4: the agent's client kept versions in order, so a document
/// the broker signed for less time than the copy held (an operator who shortened the
/// validity, then any update) was "older": the refresh reported the peer integrated and the
/// old copy stayed. What the broker answers now is integrated.
#[test]
fn a_document_signed_for_less_time_is_integrated() {
    let mut w = World::new();
    w.first_use();
    let before = w.integrated_valid_until(SP, IDP).unwrap();
    w.broker.registry.validity = 2 * DAY;
    w.advance(VALIDITY / 2 + HOUR);
    let idp = w.broker.registry.get(IDP).unwrap();
    let (entity, policy) = (idp.entity.as_ref().clone(), idp.policy.clone());
    w.broker
        .registry
        .insert(entity, policy, w.now, true)
        .unwrap();
    let shorter = w.now + 2 * DAY;
    assert!(shorter < before);
    assert!(integrated(&w.refresh_agent(SP)));
    assert_eq!(w.integrated_valid_until(SP, IDP).unwrap(), shorter);
}
