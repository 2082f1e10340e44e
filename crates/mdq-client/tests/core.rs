//! The sans-IO core against in-memory responses: verification, the entityID check, lifetimes and
//! their sources, negative caching, revalidation, stale-on-error, coalescing, early refresh and
//! the cache bounds, one test per fault through the scenario builder in `scenario/` (a scripted
//! server and a clock). Documents are signed here with saml-metadata.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::type_complexity
)]

mod scenario;

use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mdq_client::client::{Client, Config, FetchNow, Lookup};
use mdq_client::response::HttpResponse;
use mdq_client::{BaseUrl, Error, ErrorKind, Identifier};
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use saml_core::dsig::{SignOptions, SigningKey, TrustedKeys};
use saml_metadata::model::{Binding, EntityDescriptor, SpSso};
use scenario::{Reply, Scenario};

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

struct Fx {
    key: SigningKey,
    keys: TrustedKeys,
}

fn fx() -> Fx {
    let key = SigningKey::new(PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(), None).unwrap();
    let mut keys = TrustedKeys::new();
    keys.add_public_key(key.public_key().unwrap(), "mdq")
        .unwrap();
    Fx { key, keys }
}

fn entity(id: &str, cache: Option<Duration>, valid: Option<SystemTime>) -> EntityDescriptor {
    let mut b = EntityDescriptor::builder(id)
        .sp(SpSso::builder().acs(Binding::HttpPost, "https://sp.example.org/acs"));
    if let Some(c) = cache {
        b = b.cache_duration(c);
    }
    // Valid for ten days unless said otherwise: the client requires a validUntil by default.
    b.valid_until(valid.unwrap_or_else(valid_for_days))
        .build()
        .unwrap()
}

/// Ten days from [`now`], as an MDQ server signs documents.
fn valid_for_days() -> SystemTime {
    now() + Duration::from_secs(10 * 86_400)
}

/// The `EntitiesDescriptor` start tag of an aggregate answer, valid for ten days.
fn aggregate_tag(id: &str) -> String {
    format!(
        "<md:EntitiesDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" ID=\"{id}\" validUntil=\"{}\">",
        saml_core::time::format_datetime(valid_for_days())
    )
}

fn signed(f: &Fx, e: &EntityDescriptor) -> Vec<u8> {
    e.sign(&f.key, &SignOptions::default()).unwrap()
}

fn client(f: &Fx) -> Client {
    Client::new(Config::new(
        BaseUrl::parse("https://mdq.example.org/").unwrap(),
        f.keys.clone(),
    ))
}

fn ok(body: &[u8], headers: &[(&str, &str)]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut h: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    h.push(("Content-Type".into(), "application/samlmetadata+xml".into()));
    (200, h, body.to_vec())
}

fn fetch(c: &mut Client, id: &Identifier, at: SystemTime) -> mdq_client::client::FetchRequest {
    match c.lookup(id, at) {
        Lookup::Fetch(r) => r,
        other => panic!("expected a fetch, got {other:?}"),
    }
}

fn answer(
    c: &mut Client,
    r: &mdq_client::client::FetchRequest,
    resp: &(u16, Vec<(String, String)>, Vec<u8>),
    at: SystemTime,
) -> Result<Option<std::sync::Arc<EntityDescriptor>>, Error> {
    c.handle_response(
        r.token,
        &HttpResponse {
            status: resp.0,
            headers: &resp.1,
            body: &resp.2,
        },
        at,
    )
}

const SP: &str = "https://sp.example.org/shibboleth";

#[test]
fn lookup_fetch_cache_and_sha1_share_the_entry() {
    let f = fx();
    let mut c = client(&f);
    let id = Identifier::entity_id(SP).unwrap();
    let r = fetch(&mut c, &id, now());
    assert_eq!(
        r.url,
        "https://mdq.example.org/entities/https:%2F%2Fsp.example.org%2Fshibboleth"
    );
    assert!(
        r.headers
            .contains(&("Accept".into(), "application/samlmetadata+xml".into()))
    );
    let e = answer(
        &mut c,
        &r,
        &ok(&signed(&f, &entity(SP, None, None)), &[("ETag", "abc123")]),
        now(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(e.entity_id, SP);
    assert!(matches!(
        c.lookup(&id, now()),
        Lookup::Hit { refresh: None, .. }
    ));
    assert!(matches!(
        c.lookup(&Identifier::sha1_of(SP), now()),
        Lookup::Hit { .. }
    ));
    // The default lifetime (1 h) applies; after it, a revalidation with the unquoted ETag.
    let later = now() + Duration::from_secs(3601);
    let r = fetch(&mut c, &id, later);
    assert!(
        r.headers
            .contains(&("If-None-Match".into(), "abc123".into()))
    );
    let e2 = answer(&mut c, &r, &(304, vec![], vec![]), later)
        .unwrap()
        .unwrap();
    assert_eq!(e2.entity_id, SP);
    assert!(matches!(c.lookup(&id, later), Lookup::Hit { .. }));
}

#[test]
fn lifetimes_from_headers_and_metadata_are_clamped() {
    let f = fx();
    let id = Identifier::entity_id(SP).unwrap();
    let cases: Vec<(Vec<(&str, &str)>, Option<Duration>, Option<SystemTime>, u64)> = vec![
        (vec![("Cache-Control", "max-age=7200")], None, None, 7200),
        (
            vec![("Cache-Control", "public, max-age=60")],
            None,
            None,
            600,
        ), // clamped to 10 min
        (
            vec![("Cache-Control", "max-age=999999")],
            None,
            None,
            8 * 3600,
        ), // clamped to 8 h
        (vec![], Some(Duration::from_secs(5400)), None, 5400), // cacheDuration
        (
            vec![
                ("Expires", "Fri, 15 Jan 2027 10:00:00 GMT"),
                ("Date", "Fri, 15 Jan 2027 08:00:00 GMT"),
            ],
            None,
            None,
            7200,
        ),
        (
            vec![("Cache-Control", "max-age=7200")],
            None,
            Some(now() + Duration::from_secs(900)),
            900,
        ), // validUntil bounds it
        // Mdq review I1: max-age, then cacheDuration, then Expires (Expires came second).
        (
            vec![
                ("Expires", "Fri, 15 Jan 2027 10:00:00 GMT"),
                ("Date", "Fri, 15 Jan 2027 08:00:00 GMT"),
            ],
            Some(Duration::from_secs(5400)),
            None,
            5400,
        ),
        (
            vec![
                ("Cache-Control", "max-age=3000"),
                ("Expires", "Fri, 15 Jan 2027 10:00:00 GMT"),
                ("Date", "Fri, 15 Jan 2027 08:00:00 GMT"),
            ],
            Some(Duration::from_secs(5400)),
            None,
            3000,
        ),
        // Mdq review L2: an unsigned max-age does not stretch the signed cacheDuration.
        (
            vec![("Cache-Control", "max-age=28800")],
            Some(Duration::from_secs(5400)),
            None,
            5400,
        ),
        // no-cache and no-store: a zero max-age (the minimum), whichever directive comes first.
        (
            vec![("Cache-Control", "max-age=7200, no-cache")],
            Some(Duration::from_secs(5400)),
            None,
            600,
        ),
        (
            vec![("Cache-Control", "no-store, max-age=7200")],
            None,
            None,
            600,
        ),
    ];
    for (headers, cache, valid, secs) in cases {
        let mut c = client(&f);
        let r = fetch(&mut c, &id, now());
        answer(
            &mut c,
            &r,
            &ok(&signed(&f, &entity(SP, cache, valid)), &headers),
            now(),
        )
        .unwrap();
        let (_, expires) = c.entry_times(&id).unwrap();
        assert_eq!(
            expires.duration_since(now()).unwrap().as_secs(),
            secs,
            "{headers:?} {cache:?}"
        );
    }
}

/// Mdq review L2c: a 304 renewed the copy for its own max-age, or for `default_ttl` without
/// one, past the document's signed cacheDuration (which bounded the first lifetime). The
/// signed cacheDuration bounds every renewal.
#[test]
fn a_304_renews_no_longer_than_the_signed_cache_duration() {
    let f = fx();
    let id = Identifier::entity_id(SP).unwrap();
    let doc = signed(&f, &entity(SP, Some(Duration::from_secs(900)), None));
    for (headers, secs) in [
        (vec![("Cache-Control", "max-age=28800")], 900),
        (vec![], 900),
        (vec![("Cache-Control", "max-age=700")], 700),
    ] {
        let mut c = client(&f);
        let r = fetch(&mut c, &id, now());
        answer(&mut c, &r, &ok(&doc, &[("ETag", "\"v1\"")]), now()).unwrap();
        let later = now() + Duration::from_secs(901);
        let r = fetch(&mut c, &id, later);
        let headers = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        answer(&mut c, &r, &(304, headers, vec![]), later)
            .unwrap()
            .unwrap();
        let (_, expires) = c.entry_times(&id).unwrap();
        assert_eq!(expires.duration_since(later).unwrap().as_secs(), secs);
    }
}

/// Mdq review L5: a server that sends `Last-Modified` and no ETag (a plain file server) had
/// every unchanged entity sent whole, each revalidation being a full fetch. Its date is sent
/// back as `If-Modified-Since`, its 304 accepted as for an ETag; an ETag, when there is one,
/// is the validator sent. The date is kept across a restart.
#[test]
fn a_version_without_an_etag_is_revalidated_by_its_date() {
    let f = fx();
    let id = Identifier::entity_id(SP).unwrap();
    let doc = signed(&f, &entity(SP, None, None));
    let date = "Fri, 15 Jan 2027 08:00:00 GMT";
    let mut c = client(&f);
    let r = fetch(&mut c, &id, now());
    answer(&mut c, &r, &ok(&doc, &[("Last-Modified", date)]), now()).unwrap();
    let later = now() + Duration::from_secs(3601);
    let r = fetch(&mut c, &id, later);
    assert!(
        r.headers
            .contains(&("If-Modified-Since".into(), date.into()))
    );
    assert!(!r.headers.iter().any(|(k, _)| k == "If-None-Match"));
    let e = answer(&mut c, &r, &(304, vec![], vec![]), later)
        .unwrap()
        .unwrap();
    assert_eq!(e.entity_id, SP);
    assert!(matches!(c.lookup(&id, later), Lookup::Hit { .. }));
    // Kept by a persistent cache.
    let snap = c.snapshot(&id).unwrap();
    assert_eq!(snap.last_modified.as_deref(), Some(date));
    let dir = tempfile::tempdir().unwrap();
    mdq_client::io::persist::save(dir.path(), &snap).unwrap();
    let loaded = mdq_client::io::persist::load(dir.path());
    assert_eq!(loaded.snapshots, vec![snap]);
    // Both: the ETag is sent, alone.
    let mut c = client(&f);
    let r = fetch(&mut c, &id, now());
    let both = [("Last-Modified", date), ("ETag", "\"v1\"")];
    answer(&mut c, &r, &ok(&doc, &both), now()).unwrap();
    let r = fetch(&mut c, &id, later);
    assert!(
        r.headers
            .contains(&("If-None-Match".into(), "\"v1\"".into()))
    );
    assert!(!r.headers.iter().any(|(k, _)| k == "If-Modified-Since"));
}

#[test]
fn not_found_is_cached_and_pyff_empty_answers_count_as_not_found() {
    let f = fx();
    let mut c = client(&f);
    let id = Identifier::entity_id("https://nobody.example.org").unwrap();
    let r = fetch(&mut c, &id, now());
    assert_eq!(
        answer(&mut c, &r, &(404, vec![], vec![]), now()).unwrap(),
        None
    );
    assert!(matches!(
        c.lookup(&id, now() + Duration::from_secs(599)),
        Lookup::NotFound
    ));
    assert!(matches!(
        c.lookup(&id, now() + Duration::from_secs(601)),
        Lookup::Fetch(_)
    ));
    // pyFF: 200 with a signed, empty EntitiesDescriptor.
    let mut c = client(&f);
    let r = fetch(&mut c, &id, now());
    let xml = format!("{}</md:EntitiesDescriptor>", aggregate_tag("_e"));
    let doc = saml_core::dsig::sign(xml.as_bytes(), &f.key, &SignOptions::default()).unwrap();
    assert_eq!(answer(&mut c, &r, &ok(&doc, &[]), now()).unwrap(), None);
    assert!(matches!(c.lookup(&id, now()), Lookup::NotFound));
}

/// Mdq review I5: an aggregate answer whose requested entity was left out of the verified
/// document (expired here) was taken as "not found" and cached as such, so a bad entity looked
/// like a missing one. It is an error now, and nothing is cached.
#[test]
fn an_entity_left_out_of_the_answer_is_an_error_not_a_miss() {
    let f = fx();
    let mut c = client(&f);
    let expired = entity(SP, None, Some(now() - Duration::from_secs(3600)));
    let xml = format!("{}{}</md:EntitiesDescriptor>", aggregate_tag("_e"), {
        let x = expired.to_xml().unwrap();
        x[x.find("<md:EntityDescriptor").unwrap()..].to_owned()
    });
    let doc = saml_core::dsig::sign(xml.as_bytes(), &f.key, &SignOptions::default()).unwrap();
    let id = sp();
    let r = fetch(&mut c, &id, now());
    let e = answer(&mut c, &r, &ok(&doc, &[]), now()).unwrap_err();
    assert!(
        matches!(&e, Error::EntityLeftOut { entity_id, .. } if entity_id == SP),
        "{e}"
    );
    assert_eq!(e.kind(), ErrorKind::Rejected);
    assert!(
        matches!(c.lookup(&id, now()), Lookup::Fetch(_)),
        "not cached as missing"
    );
}

fn sp() -> Identifier {
    Identifier::entity_id(SP).unwrap()
}

/// One refusal: the scripted answer to a first lookup is an error matching `expect`, and
/// nothing is cached.
fn assert_refused(f: &Fx, reply: Reply, expect: fn(&Error) -> bool) {
    let mut s = Scenario::new(&f.keys);
    s.then(reply);
    let e = s.get(&sp()).unwrap_err();
    assert!(expect(&e), "{e}");
    assert!(s.client.is_empty(), "nothing cached");
    assert!(s.script_done());
}

// Refusals do not poison the cache: one test per fault.

#[test]
fn a_document_for_another_entity_is_refused() {
    let f = fx();
    let wrong_entity = signed(&f, &entity("https://evil.example.org/sp", None, None));
    assert_refused(&f, Reply::ok(&wrong_entity, &[]), |e| {
        matches!(e, Error::WrongEntity { .. }) && e.kind() == ErrorKind::Rejected
    });
}

#[test]
fn an_unsigned_document_is_refused() {
    let f = fx();
    let unsigned = entity(SP, None, None).to_xml().unwrap().into_bytes();
    assert_refused(&f, Reply::ok(&unsigned, &[]), |e| {
        matches!(e, Error::Metadata(_))
    });
}

#[test]
fn a_document_signed_by_another_key_is_refused() {
    let f = fx();
    let other_key = fx();
    let doc = signed(&other_key, &entity(SP, None, None));
    assert_refused(&f, Reply::ok(&doc, &[]), |e| {
        matches!(e, Error::Metadata(_))
    });
}

#[test]
fn an_expired_document_is_refused() {
    let f = fx();
    let expired = signed(
        &f,
        &entity(SP, None, Some(now() - Duration::from_secs(3600))),
    );
    assert_refused(&f, Reply::ok(&expired, &[]), |e| {
        matches!(e, Error::Metadata(_))
    });
}

#[test]
fn an_html_answer_is_refused() {
    let f = fx();
    let good = signed(&f, &entity(SP, None, None));
    assert_refused(
        &f,
        Reply::Http(200, vec![("Content-Type".into(), "text/html".into())], good),
        |e| matches!(e, Error::Response(_)) && e.kind() == ErrorKind::Malformed,
    );
}

#[test]
fn a_500_is_refused() {
    assert_refused(&fx(), Reply::status(500), |e| {
        matches!(e, Error::Status { status: 500 }) && e.kind() == ErrorKind::Transport
    });
}

#[test]
fn a_406_is_refused() {
    assert_refused(&fx(), Reply::status(406), |e| {
        matches!(e, Error::Status { status: 406 })
    });
}

#[test]
fn an_oversized_body_is_refused() {
    let big = vec![b' '; 5 << 20];
    assert_refused(&fx(), Reply::ok(&big, &[]), |e| {
        matches!(e, Error::TooLarge { .. })
    });
}

#[test]
fn a_bad_gzip_body_is_refused() {
    assert_refused(
        &fx(),
        Reply::ok(b"not gzip", &[("Content-Encoding", "gzip")]),
        |e| matches!(e, Error::Response(_)),
    );
}

#[test]
fn a_304_for_nothing_cached_is_refused() {
    assert_refused(&fx(), Reply::status(304), |e| {
        matches!(e, Error::Response(_))
    });
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

#[test]
fn a_gzip_body_is_accepted() {
    let f = fx();
    let mut s = Scenario::new(&f.keys);
    let gzipped = gzip(&signed(&f, &entity(SP, None, None)));
    s.then(Reply::ok(&gzipped, &[("Content-Encoding", "gzip")]));
    assert!(s.get(&sp()).unwrap().is_some());
}

/// A scenario with a good entry fetched at the epoch (default lifetime 1 h).
fn cached_good(f: &Fx) -> Scenario {
    let mut s = Scenario::new(&f.keys);
    s.then(Reply::ok(&signed(f, &entity(SP, None, None)), &[]));
    assert!(s.get(&sp()).unwrap().is_some());
    s
}

#[test]
fn a_failed_refresh_with_an_error_status_serves_the_stale_entry() {
    let f = fx();
    let mut s = cached_good(&f);
    s.at(3601).then(Reply::status(503));
    assert!(s.get(&sp()).unwrap().is_some());
}

#[test]
fn a_failed_refresh_with_a_transport_error_serves_the_stale_entry() {
    let f = fx();
    let mut s = cached_good(&f);
    s.at(3601).then(Reply::Fail("connection refused".into()));
    assert!(s.get(&sp()).unwrap().is_some());
}

#[test]
fn past_max_stale_a_transport_error_is_the_answer() {
    let f = fx();
    let mut s = cached_good(&f);
    s.at(3600 + 3601)
        .then(Reply::Fail("connection refused".into()));
    let e = s.get(&sp()).unwrap_err();
    assert!(matches!(e, Error::Transport(_)));
    assert_eq!(e.kind(), ErrorKind::Transport);
}

#[test]
fn completing_a_fetch_twice_is_misuse() {
    let f = fx();
    let mut s = cached_good(&f);
    s.at(3600 + 3601)
        .then(Reply::Fail("connection refused".into()));
    assert!(s.get(&sp()).is_err());
    let token = s.requests.last().unwrap().token;
    let e = s
        .client
        .handle_failure(token, "again", s.now())
        .unwrap_err();
    assert!(matches!(e, Error::State(_)));
    assert_eq!(e.kind(), ErrorKind::Misuse);
}

#[test]
fn concurrent_lookups_share_one_fetch() {
    let f = fx();
    let id = sp();
    let mut s = Scenario::new(&f.keys);
    let Lookup::Fetch(r) = s.lookup(&id) else {
        panic!()
    };
    // A second lookup while the first is in flight waits for it.
    assert!(matches!(s.lookup(&id), Lookup::Pending(t) if t == r.token));
    assert!(matches!(
        s.lookup(&Identifier::sha1_of(SP)),
        Lookup::Pending(_)
    ));
    s.then(Reply::ok(&signed(&f, &entity(SP, None, None)), &[]));
    assert!(s.perform(r).unwrap().is_some());
    assert!(matches!(s.lookup(&id), Lookup::Hit { .. }));
}

#[test]
fn an_entry_is_refreshed_early_once() {
    let f = fx();
    let id = sp();
    let mut s = Scenario::new(&f.keys);
    s.then(Reply::ok(
        &signed(&f, &entity(SP, None, None)),
        &[("Cache-Control", "max-age=4000")],
    ));
    assert!(s.get(&id).unwrap().is_some());
    // After 75 % of the lifetime: served, with a refresh to perform (only once).
    assert_eq!(
        s.client.poll_timeout(),
        Some(now() + Duration::from_secs(3000))
    );
    s.at(3001);
    let Lookup::Hit {
        refresh: Some(refresh),
        ..
    } = s.lookup(&id)
    else {
        panic!()
    };
    assert!(matches!(s.lookup(&id), Lookup::Hit { refresh: None, .. }));
    s.then(Reply::ok(&signed(&f, &entity(SP, None, None)), &[]));
    s.perform(refresh).unwrap();
    assert!(s.client.poll_refresh(s.now()).is_none());
}

#[test]
fn the_least_recently_used_entry_goes_first() {
    // Bounds: at most max_entries, least recently used out first.
    let f = fx();
    let mut s = Scenario::with_config(&f.keys, |cfg| cfg.max_entries = 2);
    for n in 0..3 {
        let eid = format!("https://sp{n}.example.org/sp");
        s.then(Reply::ok(&signed(&f, &entity(&eid, None, None)), &[]));
        s.get(&Identifier::entity_id(&eid).unwrap()).unwrap();
        if n == 1 {
            // Touch sp0 so that sp1 is the least recently used.
            assert!(matches!(
                s.lookup(&Identifier::entity_id("https://sp0.example.org/sp").unwrap()),
                Lookup::Hit { .. }
            ));
        }
    }
    assert_eq!(s.client.len(), 2);
    assert!(matches!(
        s.lookup(&Identifier::entity_id("https://sp1.example.org/sp").unwrap()),
        Lookup::Fetch(_)
    ));
    assert!(s.client.cached_bytes() > 0);
}

/// MDQ review L2: "not found" answers took cache slots like verified entities and were
/// evicted by recency alone, so lookups of names that do not exist (anyone can send requests
/// naming any Issuer) pushed verified entities out, to be fetched and verified again. They are
/// evicted first, capped by `max_not_found`, and dropped once expired.
#[test]
fn not_found_entries_do_not_evict_verified_ones() {
    let f = fx();
    let mut c = Client::new({
        let mut cfg = Config::new(
            BaseUrl::parse("https://mdq.example.org/").unwrap(),
            f.keys.clone(),
        );
        cfg.max_entries = 2;
        cfg.max_not_found = 2;
        cfg
    });
    let a = sp();
    let r = fetch(&mut c, &a, now());
    answer(
        &mut c,
        &r,
        &ok(&signed(&f, &entity(SP, None, None)), &[]),
        now(),
    )
    .unwrap();
    let missing = |n: u32| Identifier::entity_id(&format!("https://x{n}.example.org/")).unwrap();
    for n in 0..5 {
        let r = fetch(&mut c, &missing(n), now());
        assert_eq!(
            answer(&mut c, &r, &(404, vec![], vec![]), now()).unwrap(),
            None
        );
    }
    assert!(matches!(c.lookup(&a, now()), Lookup::Hit { .. }));
    assert!(matches!(c.lookup(&missing(4), now()), Lookup::NotFound));
    // The not-found cap applies within a larger cache too.
    let mut c = Client::new({
        let mut cfg = Config::new(
            BaseUrl::parse("https://mdq.example.org/").unwrap(),
            f.keys.clone(),
        );
        cfg.max_not_found = 3;
        cfg
    });
    for n in 0..10 {
        let r = fetch(&mut c, &missing(n), now());
        let _ = answer(&mut c, &r, &(404, vec![], vec![]), now()).unwrap();
    }
    assert_eq!(c.len(), 3);
}

/// MDQ review M5: verification can run away from the client (another thread, without its
/// lock); what it produced is bound to its fetch.
#[test]
fn answers_verify_apart_from_the_client_and_only_for_their_fetch() {
    fn detachable<T: Send + 'static>(_: &T) {}
    let f = fx();
    let mut c = client(&f);
    let a = sp();
    let b = Identifier::entity_id("https://other.example.org/sp").unwrap();
    let (ra, rb) = (fetch(&mut c, &a, now()), fetch(&mut c, &b, now()));
    let verifier = c.verifier(ra.token, now()).unwrap();
    detachable(&verifier);
    let doc = signed(&f, &entity(SP, None, None));
    let headers = vec![(
        "Content-Type".to_owned(),
        "application/samlmetadata+xml".to_owned(),
    )];
    let verified = std::thread::spawn(move || {
        verifier.verify(&HttpResponse {
            status: 200,
            headers: &headers,
            body: &doc,
        })
    })
    .join()
    .unwrap();
    detachable(&verified);
    // Meanwhile the client answers other lookups.
    assert!(matches!(c.lookup(&a, now()), Lookup::Pending(_)));
    // Handed in for the other fetch: refused, and that fetch is still in flight.
    assert!(matches!(
        c.handle_verified(rb.token, verified, now()),
        Err(Error::State(_))
    ));
    assert!(matches!(c.lookup(&b, now()), Lookup::Pending(_)));
    let verified = c.verifier(ra.token, now()).unwrap().verify(&HttpResponse {
        status: 200,
        headers: &[(
            "Content-Type".to_owned(),
            "application/samlmetadata+xml".to_owned(),
        )],
        body: &signed(&f, &entity(SP, None, None)),
    });
    assert!(
        c.handle_verified(ra.token, verified, now())
            .unwrap()
            .is_some()
    );
    assert!(matches!(c.lookup(&a, now()), Lookup::Hit { .. }));
}

#[test]
fn a_fresh_completion_never_answers_from_the_cache_and_forget_drops_the_entry() {
    // Agent review M3: for a push notice (a DAME trigger) only what the server answered now
    // counts; the cached copy is neither returned on an error nor on a "not found".
    let f = fx();
    let mut c = client(&f);
    let id = Identifier::entity_id(SP).unwrap();
    let doc = signed(&f, &entity(SP, None, None));
    let r = fetch(&mut c, &id, now());
    assert!(
        answer(&mut c, &r, &ok(&doc, &[("ETag", "\"v1\"")]), now())
            .unwrap()
            .is_some()
    );
    let complete = |c: &mut Client, resp: (u16, Vec<(String, String)>, Vec<u8>)| {
        let FetchNow::Fetch(r) = c.fetch_now(&id) else {
            panic!("nothing in flight")
        };
        c.handle_response_fresh(
            r.token,
            &HttpResponse {
                status: resp.0,
                headers: &resp.1,
                body: &resp.2,
            },
            now(),
        )
    };
    // The lenient completion serves the cached copy for both; the fresh one does not.
    assert!(complete(&mut c, (502, Vec::new(), Vec::new())).is_err());
    assert!(
        complete(&mut c, (404, Vec::new(), Vec::new()))
            .unwrap()
            .is_none()
    );
    // The verified entry stays cached (a 404 is not authenticated) and a 304 revalidates it.
    assert!(c.snapshot(&id).is_some());
    assert!(
        complete(&mut c, (304, Vec::new(), Vec::new()))
            .unwrap()
            .is_some()
    );
    assert!(complete(&mut c, ok(&doc, &[])).unwrap().is_some());
    // Forgotten: nothing to revalidate, nothing stale.
    c.forget(&id);
    assert!(c.snapshot(&id).is_none());
    assert_eq!(c.cached_bytes(), 0);
    let FetchNow::Fetch(r) = c.fetch_now(&id) else {
        panic!("nothing in flight")
    };
    assert!(!r.headers.iter().any(|(k, _)| k == "If-None-Match"));
    assert!(
        c.handle_response(
            r.token,
            &HttpResponse {
                status: 502,
                headers: &[],
                body: &[],
            },
            now(),
        )
        .is_err()
    );
}

/// Mdq review I3: `fetch_now` while a fetch of the entity was in flight handed out a second
/// request under the same token, without `Accept` or `If-None-Match`, whose completion then
/// failed as an unknown token. It says the fetch is joined, and there is nothing to send.
#[test]
fn fetch_now_joins_a_fetch_in_flight_instead_of_a_second_request() {
    let f = fx();
    let mut c = client(&f);
    let id = sp();
    let r = fetch(&mut c, &id, now());
    assert_eq!(c.fetch_now(&id), FetchNow::Joined(r.token));
    assert_eq!(
        c.fetch_now(&Identifier::sha1_of(SP)),
        FetchNow::Joined(r.token),
        "the {{sha1}} form names the same fetch"
    );
    let doc = signed(&f, &entity(SP, None, None));
    assert!(answer(&mut c, &r, &ok(&doc, &[]), now()).unwrap().is_some());
    // Completed: the next one is a request of its own, with the profile's headers.
    let FetchNow::Fetch(r2) = c.fetch_now(&id) else {
        panic!("the first fetch has completed")
    };
    assert_ne!(r2.token, r.token);
    assert!(
        r2.headers
            .contains(&("Accept".into(), "application/samlmetadata+xml".into()))
    );
}

/// Mdq review I1 (c): an answer with `Cache-Control: no-store` was snapshotted, so written to
/// a persistent cache. It is used and kept in memory (for the minimum lifetime), never
/// snapshotted; a later answer without the directive is.
#[test]
fn a_no_store_answer_is_never_snapshotted() {
    let f = fx();
    let mut c = client(&f);
    let id = sp();
    let doc = signed(&f, &entity(SP, None, None));
    let r = fetch(&mut c, &id, now());
    let e = answer(
        &mut c,
        &r,
        &ok(&doc, &[("Cache-Control", "private, no-store")]),
        now(),
    )
    .unwrap();
    assert!(e.is_some());
    assert!(matches!(c.lookup(&id, now()), Lookup::Hit { .. }));
    assert_eq!(c.snapshot(&id), None);
    let FetchNow::Fetch(r) = c.fetch_now(&id) else {
        panic!("nothing in flight")
    };
    answer(&mut c, &r, &ok(&doc, &[("ETag", "\"v2\"")]), now()).unwrap();
    assert!(c.snapshot(&id).is_some());
    // A 304 that says no-store: no longer snapshotted (the document is still served).
    let FetchNow::Fetch(r) = c.fetch_now(&id) else {
        panic!("nothing in flight")
    };
    let not_modified = (
        304,
        vec![("Cache-Control".to_owned(), "no-store".to_owned())],
        Vec::new(),
    );
    assert!(answer(&mut c, &r, &not_modified, now()).unwrap().is_some());
    assert_eq!(c.snapshot(&id), None);
    assert!(c.cached_document(&id).is_some());
    // no-store on a second Cache-Control field line counts (both lines are one list).
    let mut c = client(&f);
    let r = fetch(&mut c, &id, now());
    let mut two_lines = ok(&doc, &[("Cache-Control", "max-age=3600")]);
    two_lines
        .1
        .push(("Cache-Control".into(), "no-store".into()));
    answer(&mut c, &r, &two_lines, now()).unwrap();
    assert_eq!(c.snapshot(&id), None);
}

/// Mdq review I4: an aggregate answer (the entity among others, as some servers answer) was
/// cached and saved, but `restore` wanted exactly one entity, so it was never restored. It is
/// restored as the fetch accepted it; a document without the entity still is not.
#[test]
fn an_aggregate_answer_is_restored_like_it_was_fetched() {
    let f = fx();
    let other = "https://other.example.org/sp";
    let inner = |id: &str| {
        let x = entity(id, None, None).to_xml().unwrap();
        x[x.find("<md:EntityDescriptor").unwrap()..].to_owned()
    };
    let xml = format!(
        "{}{}{}</md:EntitiesDescriptor>",
        aggregate_tag("_a"),
        inner(other),
        inner(SP)
    );
    let doc = saml_core::dsig::sign(xml.as_bytes(), &f.key, &SignOptions::default()).unwrap();
    let mut c = client(&f);
    let id = sp();
    let r = fetch(&mut c, &id, now());
    assert!(answer(&mut c, &r, &ok(&doc, &[]), now()).unwrap().is_some());
    let snap = c.snapshot(&id).unwrap();
    let mut restarted = client(&f);
    restarted.restore(&snap, now()).unwrap();
    match restarted.lookup(&id, now()) {
        Lookup::Hit { entity, .. } => assert_eq!(entity.entity_id, SP),
        other => panic!("expected the restored entity, got {other:?}"),
    }
    // The same document restored for an entity it does not hold is refused.
    let mut wrong = snap.clone();
    wrong.entity_id = "https://absent.example.org/sp".into();
    assert!(client(&f).restore(&wrong, now()).is_err());
}

/// mdq review M1: a role that lapsed while its entity was cached kept being served, with its
/// keys and endpoints, until the entry expired (hours): loading leaves a lapsed role out, but
/// the cached copy was loaded before. The entry now lasts until the first of its roles lapses;
/// the next lookup fetches again.
#[test]
fn a_cached_entity_is_served_only_until_a_role_lapses() {
    use saml_metadata::model::Role;
    let f = fx();
    let mut c = client(&f);
    let id = Identifier::entity_id(SP).unwrap();
    let mut e = entity(SP, None, None);
    let Role::Sp(sp) = &mut e.roles[0] else {
        panic!("an SP")
    };
    sp.common.valid_until = Some(now() + Duration::from_secs(3600));
    let r = fetch(&mut c, &id, now());
    let got = answer(
        &mut c,
        &r,
        &ok(&signed(&f, &e), &[("Cache-Control", "max-age=28800")]),
        now(),
    )
    .unwrap()
    .unwrap();
    assert!(got.sp().is_some());
    assert!(matches!(
        c.lookup(&id, now() + Duration::from_secs(1800)),
        Lookup::Hit { .. }
    ));
    assert!(
        matches!(
            c.lookup(&id, now() + Duration::from_secs(7200)),
            Lookup::Fetch(_)
        ),
        "served past its role's validUntil"
    );
}

/// mdq review L1: an entity whose validUntil had passed less than the clock skew ago was
/// returned by a fetch (loading tolerates the skew) and fetched again by every lookup. It is
/// refused: the cache never serves at or after validUntil.
#[test]
fn an_entity_just_past_its_valid_until_is_refused() {
    let f = fx();
    let mut c = client(&f);
    let id = Identifier::entity_id(SP).unwrap();
    let e = entity(SP, None, Some(now() - Duration::from_secs(60)));
    let r = fetch(&mut c, &id, now());
    let got = answer(&mut c, &r, &ok(&signed(&f, &e), &[]), now());
    assert!(matches!(got, Err(Error::EntityLeftOut { .. })), "{got:?}");
}

/// mdq review L7: a gzip body of several members (RFC 1952 §2.2) had its first member decoded
/// and the rest ignored, which truncated the document. Every member is decoded.
#[test]
fn a_gzip_body_of_several_members_is_decoded_whole() {
    let f = fx();
    let mut s = Scenario::new(&f.keys);
    let doc = signed(&f, &entity(SP, None, None));
    let (a, b) = doc.split_at(doc.len() / 2);
    let mut members = gzip(a);
    members.extend(gzip(b));
    s.then(Reply::ok(&members, &[("Content-Encoding", "gzip")]));
    assert!(s.get(&sp()).unwrap().is_some());
}

/// mdq review L6: a 404 with `max-age=0` (or a server's or MITM's choosing) switched negative
/// caching off: every lookup of an unknown name reached the server. It is remembered for at
/// least `NEGATIVE_TTL_FLOOR`.
#[test]
fn a_not_found_is_remembered_for_at_least_the_floor() {
    let f = fx();
    let mut c = client(&f);
    let id = Identifier::entity_id("https://nobody.example.org").unwrap();
    let r = fetch(&mut c, &id, now());
    let no_cache = (
        404,
        vec![("Cache-Control".to_owned(), "max-age=0".to_owned())],
        Vec::new(),
    );
    assert_eq!(answer(&mut c, &r, &no_cache, now()).unwrap(), None);
    assert!(matches!(
        c.lookup(&id, now() + Duration::from_secs(29)),
        Lookup::NotFound
    ));
    assert!(matches!(
        c.lookup(&id, now() + mdq_client::client::NEGATIVE_TTL_FLOOR),
        Lookup::Fetch(_)
    ));
}

/// mdq review L8: an entityID of megabytes, or with control characters (CR and LF forged log
/// lines), was looked up as given. SAML Core §8.3.6 bounds it to 1024 characters.
#[test]
fn an_overlong_or_control_character_entity_id_is_refused() {
    assert!(Identifier::entity_id(&"x".repeat(1024)).is_ok());
    assert!(matches!(
        Identifier::entity_id(&"x".repeat(1025)),
        Err(Error::Url(_))
    ));
    assert!(matches!(
        Identifier::entity_id("https://sp.example.org/\r\nforged"),
        Err(Error::Url(_))
    ));
}

/// mdq review M2: once a cached entity had expired, one lookup fetched it and every other got
/// `Pending` and waited for that fetch (up to its timeouts and retries against a stalled
/// server) with a usable copy at hand. While a fetch of it is in flight, the stale copy is
/// served, within `max_stale` and its validUntil; without one, the lookup fetches.
#[test]
fn a_stale_copy_is_served_while_its_refresh_is_in_flight() {
    let f = fx();
    let mut s = cached_good(&f);
    let id = sp();
    s.at(3601);
    let Lookup::Fetch(r) = s.lookup(&id) else {
        panic!("the expired entry is fetched")
    };
    assert!(
        matches!(s.lookup(&id), Lookup::Hit { refresh: None, .. }),
        "served stale while the refresh is in flight"
    );
    s.then(Reply::ok(&signed(&f, &entity(SP, None, None)), &[]));
    assert!(s.perform(r).unwrap().is_some());
    // Past max_stale (1 h after the refreshed copy expired), a caller waits for the fetch.
    s.at(3601 + 3600 + 3601);
    let Lookup::Fetch(r) = s.lookup(&id) else {
        panic!("the expired entry is fetched")
    };
    assert!(matches!(s.lookup(&id), Lookup::Pending(t) if t == r.token));
}

/// mdq review M3: with the server down or stalled, every lookup of an uncached identifier
/// (an Issuer in a request: attacker-chosen) ran a whole cycle of timeouts and retries, and
/// nothing remembered the failures. After `BREAKER_THRESHOLD` failed fetches in a row (any
/// identifiers), a lookup that would fetch is answered `Unavailable` until the backoff ends;
/// cached entities are still served; an answer from the server closes the breaker.
#[test]
fn failing_fetches_in_a_row_make_lookups_fail_fast() {
    use mdq_client::client::{BREAKER_THRESHOLD, FAILURE_BACKOFF};
    let f = fx();
    let mut c = client(&f);
    let cached = Identifier::entity_id(SP).unwrap();
    let r = fetch(&mut c, &cached, now());
    answer(
        &mut c,
        &r,
        &ok(&signed(&f, &entity(SP, None, None)), &[]),
        now(),
    )
    .unwrap();
    for n in 0..BREAKER_THRESHOLD {
        let id = Identifier::entity_id(&format!("https://unknown{n}.example.org")).unwrap();
        let r = fetch(&mut c, &id, now());
        if n == 0 {
            // A 503 counts as a failure like a transport error.
            assert!(answer(&mut c, &r, &(503, vec![], vec![]), now()).is_err());
        } else {
            assert!(c.handle_failure(r.token, "timed out", now()).is_err());
        }
    }
    let other = Identifier::entity_id("https://another.example.org").unwrap();
    let Lookup::Unavailable { failures, until } = c.lookup(&other, now()) else {
        panic!("not failing fast")
    };
    assert_eq!(
        (failures, until),
        (BREAKER_THRESHOLD, now() + FAILURE_BACKOFF)
    );
    assert!(matches!(c.lookup(&cached, now()), Lookup::Hit { .. }));
    // After the backoff, one fetch; the server answers (a 404): closed.
    let later = now() + FAILURE_BACKOFF;
    let r = fetch(&mut c, &other, later);
    assert_eq!(
        answer(&mut c, &r, &(404, vec![], vec![]), later).unwrap(),
        None
    );
    let third = Identifier::entity_id("https://third.example.org").unwrap();
    assert!(matches!(c.lookup(&third, later), Lookup::Fetch(_)));
}

/// One version of [`SP`]: its ACS names the version, valid until `valid`, created at
/// `created` (an `mdrpi:PublicationInfo`) when given.
fn version(f: &Fx, acs: &str, valid: SystemTime, created: Option<SystemTime>) -> Vec<u8> {
    let mut e = EntityDescriptor::builder(SP)
        .sp(SpSso::builder().acs(Binding::HttpPost, acs))
        .valid_until(valid)
        .build()
        .unwrap();
    if let Some(t) = created {
        e.extensions.publication = Some(Box::new(saml_metadata::ext::PublicationInfo {
            publisher: "https://fed.example.org/".into(),
            creation_instant: Some(t),
            publication_id: None,
            usage_policies: vec![],
        }));
    }
    signed(f, &e)
}

/// The ACS locations naming three versions of [`SP`] (see [`version`]).
const VERSIONS: (&str, &str, &str) = (
    "https://sp.example.org/v1",
    "https://sp.example.org/v2",
    "https://sp.example.org/v3",
);

fn acs_of(e: &EntityDescriptor) -> String {
    e.sp().unwrap().assertion_consumer[0]
        .endpoint
        .location
        .to_string()
}

/// Mdq review L4's rest: a validly signed older version (a stale mirror, a cache or a man in
/// the middle replaying it) replaced the newer cached copy, undoing a key rollover or a removed
/// endpoint for as long as the old version's validUntil. It renews the copy as a 304 would, and
/// is counted; a later version replaces it. When both carry a `creationInstant`, that orders
/// them (a federation that shortens validUntil on purpose); `version_order = false` takes any.
#[test]
fn an_older_version_does_not_replace_the_cached_copy() {
    let f = fx();
    let id = Identifier::entity_id(SP).unwrap();
    let day = Duration::from_secs(86_400);
    let (v1, v2, v3) = VERSIONS;
    let step = |c: &mut Client, doc: &[u8], at: SystemTime| -> String {
        let r = fetch(c, &id, at);
        let e = answer(c, &r, &ok(doc, &[]), at).unwrap().unwrap();
        match c.lookup(&id, at) {
            Lookup::Hit { entity, .. } => assert_eq!(acs_of(&entity), acs_of(&e)),
            other => panic!("expected a hit, got {other:?}"),
        }
        acs_of(&e)
    };
    let later = |h: u64| now() + Duration::from_secs(h * 3601);

    // By validUntil: the older version (v1, valid a day less) keeps the copy, renewed.
    let mut c = client(&f);
    assert_eq!(
        step(&mut c, &version(&f, v2, now() + 10 * day, None), now()),
        v2
    );
    assert_eq!(
        step(&mut c, &version(&f, v1, now() + 9 * day, None), later(1)),
        v2
    );
    assert_eq!(c.older_versions_kept_out(), 1);
    let (_, expires) = c.entry_times(&id).unwrap();
    assert!(expires > later(1), "renewed");
    // The same version again, or a later one, is taken.
    assert_eq!(
        step(&mut c, &version(&f, v2, now() + 10 * day, None), later(2)),
        v2
    );
    assert_eq!(
        step(&mut c, &version(&f, v3, now() + 11 * day, None), later(3)),
        v3
    );
    assert_eq!(c.older_versions_kept_out(), 1);

    // By creationInstant when both carry one: a later version with a shorter validity is
    // taken, an older one with a longer validity is not.
    let mut c = client(&f);
    let created = |h: u64| now() - Duration::from_secs(86_400) + Duration::from_secs(h * 3600);
    assert_eq!(
        step(
            &mut c,
            &version(&f, v2, now() + 10 * day, Some(created(2))),
            now()
        ),
        v2
    );
    assert_eq!(
        step(
            &mut c,
            &version(&f, v3, now() + 5 * day, Some(created(3))),
            later(1)
        ),
        v3
    );
    assert_eq!(
        step(
            &mut c,
            &version(&f, v1, now() + 20 * day, Some(created(1))),
            later(2)
        ),
        v3
    );
    assert_eq!(c.older_versions_kept_out(), 1);

    // Switched off: the older version replaces the copy.
    let mut cfg = c.config().clone();
    cfg.version_order = false;
    let mut c = Client::new(cfg);
    assert_eq!(
        step(&mut c, &version(&f, v2, now() + 10 * day, None), now()),
        v2
    );
    assert_eq!(
        step(&mut c, &version(&f, v1, now() + 9 * day, None), later(1)),
        v1
    );
    assert_eq!(c.older_versions_kept_out(), 0);
}

/// Review of the twelfth round, F3-F6: the version floor lived in the cache entry, so a 404
/// after the entry's lifetime dropped it and the replayed older version was taken next; a
/// fresh completion got the cached copy back as if it were the answer; a `creationInstant`
/// far ahead held every later version out; and a server that shortened its validity held its
/// clients on the old copy until it expired. The floor outlives the entry (the older version
/// is refused with no copy left), a fresh completion is an error, a future `creationInstant`
/// is not used, and an older version answered without a break for `max_ttl` is taken.
#[test]
fn the_version_floor_outlives_the_entry_and_holds_for_max_ttl_at_most() {
    let f = fx();
    let id = Identifier::entity_id(SP).unwrap();
    let day = Duration::from_secs(86_400);
    let (v1, v2, v3) = VERSIONS;
    let at = |s: u64| now() + Duration::from_secs(s);
    let send = |c: &mut Client,
                resp: (u16, Vec<(String, String)>, Vec<u8>),
                t: SystemTime,
                fresh: bool| {
        let FetchNow::Fetch(r) = c.fetch_now(&id) else {
            panic!("nothing in flight")
        };
        let resp = HttpResponse {
            status: resp.0,
            headers: &resp.1,
            body: &resp.2,
        };
        if fresh {
            c.handle_response_fresh(r.token, &resp, t)
        } else {
            c.handle_response(r.token, &resp, t)
        }
    };
    let old = version(&f, v1, now() + 9 * day, None);
    let new = version(&f, v2, now() + 10 * day, None);

    // F3: v2 taken; after its lifetime a 404 replaces the entry; the replayed v1 is refused.
    let mut c = client(&f);
    let got = send(
        &mut c,
        ok(&new, &[("Cache-Control", "max-age=3600")]),
        now(),
        false,
    );
    assert_eq!(acs_of(&got.unwrap().unwrap()), v2);
    assert!(
        send(&mut c, (404, vec![], vec![]), at(3601), false)
            .unwrap()
            .is_none()
    );
    let e = send(&mut c, ok(&old, &[]), at(3602), false).unwrap_err();
    assert!(e.to_string().contains("older version"), "{e}");
    assert_eq!(c.older_versions_kept_out(), 1);

    // F4: a fresh completion gets an error for an older answer, not the cached copy.
    let mut c = client(&f);
    send(&mut c, ok(&new, &[]), now(), true).unwrap();
    assert!(send(&mut c, ok(&old, &[]), at(60), true).is_err());
    // The lenient one renews the copy.
    let kept = send(&mut c, ok(&old, &[]), at(120), false)
        .unwrap()
        .unwrap();
    assert_eq!(acs_of(&kept), v2);

    // F6: answered without a break for max_ttl (8 h), the older version is taken; a newer
    // answer in between starts the hold again.
    let hold = c.config().max_ttl.as_secs();
    assert_eq!(
        acs_of(
            &send(&mut c, ok(&old, &[]), at(120 + hold / 2), false)
                .unwrap()
                .unwrap()
        ),
        v2
    );
    assert_eq!(
        acs_of(
            &send(&mut c, ok(&new, &[]), at(120 + hold / 2 + 1), false)
                .unwrap()
                .unwrap()
        ),
        v2
    );
    assert_eq!(
        acs_of(
            &send(&mut c, ok(&old, &[]), at(120 + hold + 2), false)
                .unwrap()
                .unwrap()
        ),
        v2
    );
    let start = 120 + hold + 2;
    let taken = send(&mut c, ok(&old, &[]), at(start + hold), false)
        .unwrap()
        .unwrap();
    assert_eq!(acs_of(&taken), v1);

    // F5: a creationInstant a year ahead is not used; the later version by validUntil is taken.
    let mut c = client(&f);
    let ahead = version(&f, v2, now() + 10 * day, Some(now() + 365 * day));
    let later = version(&f, v3, now() + 11 * day, Some(now()));
    send(&mut c, ok(&ahead, &[]), now(), false).unwrap();
    let got = send(&mut c, ok(&later, &[]), at(60), false)
        .unwrap()
        .unwrap();
    assert_eq!(acs_of(&got), v3);
}
