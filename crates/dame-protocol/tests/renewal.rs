//! Conversion review M6: integrated metadata carries the broker's `validUntil` (7 days after it
//! signed), and nothing renewed it while broker and agents ran, so every DAME relationship
//! stopped working 7 days after the broker last started. The broker now re-signs its documents
//! at half their validity (`Registry::refresh_documents`), and each agent re-fetches its
//! integrated peers before their copies expire (`Agent::refresh_due`), without any trigger.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::time::{Duration, SystemTime};

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
