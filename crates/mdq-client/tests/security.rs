//! Issue 12, items 11-14: what an unauthenticated or stale answer, a persisted `.meta` file or a
//! dot-segment entityID can no longer do to the cache.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mdq_client::client::{Client, Config, FetchRequest, Lookup, Snapshot};
use mdq_client::response::HttpResponse;
use mdq_client::{BaseUrl, Error, Identifier};
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use saml_core::dsig::{SignOptions, SigningKey, TrustedKeys};
use saml_metadata::model::{Binding, EntityDescriptor, SpSso};

const SP: &str = "https://sp.example.org/shibboleth";
const H: u64 = 3600;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn at(secs: u64) -> SystemTime {
    now() + Duration::from_secs(secs)
}

fn key() -> (SigningKey, TrustedKeys) {
    let key = SigningKey::new(PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(), None).unwrap();
    let mut keys = TrustedKeys::new();
    keys.add_public_key(key.public_key().unwrap(), "mdq")
        .unwrap();
    (key, keys)
}

/// The entity, valid until `valid` or for ten days (the client requires a validUntil by
/// default).
fn entity(valid: Option<SystemTime>) -> EntityDescriptor {
    EntityDescriptor::builder(SP)
        .sp(SpSso::builder().acs(Binding::HttpPost, "https://sp.example.org/acs"))
        .valid_until(valid.unwrap_or(at(10 * 86_400)))
        .build()
        .unwrap()
}

/// The entity without a validUntil.
fn entity_valid_for_ever() -> EntityDescriptor {
    EntityDescriptor::builder(SP)
        .sp(SpSso::builder().acs(Binding::HttpPost, "https://sp.example.org/acs"))
        .build()
        .unwrap()
}

/// The entity inside a signed EntitiesDescriptor whose own validUntil is `valid` (the entity
/// itself has none): the effective validUntil comes from the root.
fn wrapped(key: &SigningKey, valid: SystemTime) -> Vec<u8> {
    let inner = entity(None).to_xml().unwrap();
    let inner = match inner.find("?>") {
        Some(i) if inner.starts_with("<?xml") => inner[i + 2..].trim_start().to_owned(),
        _ => inner,
    };
    let xml = format!(
        "<md:EntitiesDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" ID=\"_agg\" validUntil=\"{}\">{inner}</md:EntitiesDescriptor>",
        saml_core::time::format_datetime(valid)
    );
    saml_core::dsig::sign(xml.as_bytes(), key, &SignOptions::default()).unwrap()
}

fn empty_aggregate(key: &SigningKey) -> Vec<u8> {
    let xml = format!(
        "<md:EntitiesDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" ID=\"_e\" validUntil=\"{}\"></md:EntitiesDescriptor>",
        saml_core::time::format_datetime(at(10 * 86_400))
    );
    saml_core::dsig::sign(xml.as_bytes(), key, &SignOptions::default()).unwrap()
}

fn client(keys: &TrustedKeys) -> Client {
    Client::new(Config::new(
        BaseUrl::parse("https://mdq.example.org/").unwrap(),
        keys.clone(),
    ))
}

/// A client that fetched `doc` for SP at `now()` with that Cache-Control.
fn cached(keys: &TrustedKeys, doc: &[u8], cache_control: &str) -> Client {
    cached_with(keys, doc, &[("Cache-Control", cache_control)])
}

/// The same with an ETag, so that a 304 can revalidate it.
fn cached_tagged(keys: &TrustedKeys, doc: &[u8], cache_control: &str) -> Client {
    cached_with(
        keys,
        doc,
        &[("Cache-Control", cache_control), ("ETag", "\"t\"")],
    )
}

fn cached_with(keys: &TrustedKeys, doc: &[u8], headers: &[(&str, &str)]) -> Client {
    let mut c = client(keys);
    let r = fetch(&mut c, now());
    answer(&mut c, &r, 200, headers, doc, now()).unwrap();
    c
}

fn fetch(c: &mut Client, t: SystemTime) -> FetchRequest {
    match c.lookup(&Identifier::entity_id(SP).unwrap(), t) {
        Lookup::Fetch(r) => r,
        Lookup::Hit {
            refresh: Some(r), ..
        } => r,
        other => panic!("expected a fetch, got {other:?}"),
    }
}

fn answer(
    c: &mut Client,
    r: &FetchRequest,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
    t: SystemTime,
) -> Result<Option<Arc<EntityDescriptor>>, Error> {
    let mut h: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    h.push(("Content-Type".into(), "application/samlmetadata+xml".into()));
    c.handle_response(
        r.token,
        &HttpResponse {
            status,
            headers: &h,
            body,
        },
        t,
    )
}

fn lookup(c: &mut Client, t: SystemTime) -> Lookup {
    let l = c.lookup(&Identifier::entity_id(SP).unwrap(), t);
    // Leave nothing in flight: fail whatever fetch the lookup started.
    match &l {
        Lookup::Fetch(r)
        | Lookup::Hit {
            refresh: Some(r), ..
        } => {
            let _ = c.handle_failure(r.token, "not performed", t);
        }
        _ => {}
    }
    l
}

/// Item 11: an unauthenticated 404 (or a replayed signed empty aggregate, pyFF's not-found)
/// replaced a verified entry for up to max_ttl (8 h), and negative answers were cached for as
/// long as their headers said.
#[test]
fn not_found_keeps_a_verified_entry_and_is_capped_at_negative_ttl() {
    let (k, keys) = key();
    let doc = entity(None).sign(&k, &SignOptions::default()).unwrap();
    for (status, body) in [(404, Vec::new()), (200, empty_aggregate(&k))] {
        let mut c = client(&keys);
        let r = fetch(&mut c, now());
        answer(&mut c, &r, 200, &[], &doc, now()).unwrap().unwrap(); // 1 h
        // The early refresh (after 45 min) gets "not found" for 8 h: the entry is kept.
        let r = fetch(&mut c, at(46 * 60));
        let got = answer(
            &mut c,
            &r,
            status,
            &[("Cache-Control", "max-age=28800")],
            &body,
            at(46 * 60),
        )
        .unwrap();
        assert_eq!(got.unwrap().entity_id, SP, "{status}");
        assert!(matches!(lookup(&mut c, at(50 * 60)), Lookup::Hit { .. }));
        // Past its expiry it is fetched again, not remembered as missing for 8 h.
        let r = fetch(&mut c, at(H + 1));
        assert_eq!(
            answer(
                &mut c,
                &r,
                status,
                &[("Cache-Control", "max-age=28800")],
                &body,
                at(H + 1)
            )
            .unwrap(),
            None
        );
        // Capped at negative_ttl (10 min), whatever the headers say.
        assert!(matches!(lookup(&mut c, at(H + 599)), Lookup::NotFound));
        assert!(
            matches!(lookup(&mut c, at(H + 602)), Lookup::Fetch(_)),
            "{status}: a negative answer outlived negative_ttl"
        );
    }
}

/// Item 12: a 304 or stale-on-error served an entry past the signed validUntil of the document
/// it came from (the root's, here).
#[test]
fn no_entry_is_served_past_the_documents_valid_until() {
    let (k, keys) = key();
    let doc = wrapped(&k, at(H));
    // 304 after the validUntil: refused, not revived for 8 h.
    let mut c = client(&keys);
    let r = fetch(&mut c, now());
    answer(
        &mut c,
        &r,
        200,
        &[("Cache-Control", "max-age=7200"), ("ETag", "\"t\"")],
        &doc,
        now(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        c.entry_times(&Identifier::entity_id(SP).unwrap())
            .unwrap()
            .1,
        at(H)
    );
    let r = fetch(&mut c, at(H + 1));
    assert!(
        answer(
            &mut c,
            &r,
            304,
            &[("Cache-Control", "max-age=28800")],
            b"",
            at(H + 1)
        )
        .is_err(),
        "a 304 revived a document past its validUntil"
    );
    assert!(!matches!(lookup(&mut c, at(H + 2)), Lookup::Hit { .. }));
    // A 304 before the validUntil is bounded by it.
    let mut c = cached_tagged(&keys, &doc, "max-age=600");
    let r = fetch(&mut c, at(601));
    answer(
        &mut c,
        &r,
        304,
        &[("Cache-Control", "max-age=28800")],
        b"",
        at(601),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        c.entry_times(&Identifier::entity_id(SP).unwrap())
            .unwrap()
            .1,
        at(H)
    );
    // Stale-on-error stops at the validUntil too (max_stale would allow 1 h more).
    let mut c = cached(&keys, &doc, "max-age=600");
    let r = fetch(&mut c, at(H - 60));
    assert!(
        answer(&mut c, &r, 503, &[], b"", at(H - 60))
            .unwrap()
            .is_some()
    );
    let r = fetch(&mut c, at(H + 60));
    assert!(answer(&mut c, &r, 503, &[], b"", at(H + 60)).is_err());
    let r = fetch(&mut c, at(H + 61));
    assert!(c.handle_failure(r.token, "down", at(H + 61)).is_err());
}

/// Items 12 and 13: a restored entry kept the `.meta` expiry (served 29 days past its
/// validUntil); restored lifetimes are now clamped like fresh ones.
#[test]
fn restored_lifetimes_are_clamped_and_bounded_by_valid_until() {
    let (k, keys) = key();
    let id = Identifier::entity_id(SP).unwrap();
    let snap = |document: Vec<u8>, expires: SystemTime| Snapshot {
        entity_id: SP.into(),
        document: Arc::new(document),
        etag: None,
        last_modified: None,
        expires,
    };
    let mut c = client(&keys);
    c.restore(&snap(wrapped(&k, at(H)), at(30 * 86400)), now())
        .unwrap();
    assert_eq!(c.entry_times(&id).unwrap().1, at(H));
    assert!(!matches!(lookup(&mut c, at(H + 1)), Lookup::Hit { .. }));
    assert!(!matches!(
        lookup(&mut c, at(29 * 86400)),
        Lookup::Hit { .. }
    ));
    let r = fetch(&mut c, at(29 * 86400));
    assert!(c.handle_failure(r.token, "down", at(29 * 86400)).is_err());
    // No validUntil: clamped to max_ttl (8 h), not 30 days.
    let doc = entity(None).sign(&k, &SignOptions::default()).unwrap();
    let mut c = client(&keys);
    c.restore(&snap(doc.clone(), at(30 * 86400)), now())
        .unwrap();
    assert_eq!(c.entry_times(&id).unwrap().1, at(8 * H));
    // Far-future expiries and extreme configurations: no arithmetic overflow.
    let far = UNIX_EPOCH + Duration::from_secs(u64::MAX / 4);
    let mut cfg = Config::new(BaseUrl::parse("https://mdq.example.org/").unwrap(), keys);
    cfg.max_ttl = Duration::MAX;
    cfg.max_stale = Duration::MAX;
    cfg.refresh_fraction = f64::NAN;
    let mut c = Client::new(cfg.clone());
    c.restore(&snap(doc.clone(), far), now()).unwrap();
    assert!(matches!(lookup(&mut c, at(H)), Lookup::Hit { .. }));
    let r = fetch(&mut c, far);
    let _ = c.handle_failure(r.token, "down", far);
    let mut c = Client::new(cfg);
    let r = fetch(&mut c, now());
    answer(
        &mut c,
        &r,
        200,
        &[("Cache-Control", "max-age=18446744073709551615")],
        &doc,
        now(),
    )
    .unwrap();
    let _ = c.poll_timeout();
    // An inconsistent configuration (min_ttl above max_ttl) does not panic either.
    let mut cfg = Config::new(BaseUrl::parse("https://mdq.example.org/").unwrap(), key().1);
    cfg.min_ttl = Duration::from_secs(10 * H);
    cfg.max_ttl = Duration::from_secs(H);
    let mut c = Client::new(cfg);
    let r = fetch(&mut c, now());
    let _ = answer(&mut c, &r, 200, &[], &doc, now());
}

/// Item 14: the entityIDs `.` and `..` became dot segments that URL resolution removes, leaving
/// `entities/`.
#[test]
fn dot_segment_entity_ids_are_encoded() {
    let base = BaseUrl::parse("https://mdq.example.org/mdq/").unwrap();
    for id in [".", ".."] {
        // WHATWG URL parsers (the url crate, hence reqwest) treat `%2E` as a dot too: these two
        // are looked up by their {sha1} form (draft-young-md-query-saml §2.2).
        let u = base.entity(&Identifier::entity_id(id).unwrap());
        let seg = format!("%7Bsha1%7D{}", saml_metadata::model::sha1_hex(id));
        assert_eq!(u, format!("https://mdq.example.org/mdq/entities/{seg}"));
        let parsed = url::Url::parse(&u).unwrap();
        assert_eq!(parsed.path(), format!("/mdq/entities/{seg}"), "{id}");
        // As a path segment of their own they cannot be sent (`%2E` is a dot to those parsers).
        assert_eq!(mdq_client::url::encode_segment(id), None);
    }
    // Other dots stay as they are.
    assert_eq!(
        base.entity(&Identifier::entity_id("...").unwrap()),
        "https://mdq.example.org/mdq/entities/..."
    );
}

/// Item 13: `expires=18446744073709551615` in a `.meta` file panicked `persist::load` (and so
/// `BlockingClient::new`); bad files are now skipped and reported.
#[cfg(feature = "persist")]
#[test]
fn bad_meta_files_are_skipped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, meta: &str| {
        std::fs::write(dir.path().join(format!("{name}.meta")), meta).unwrap();
        std::fs::write(dir.path().join(format!("{name}.xml")), b"<x/>").unwrap();
    };
    write(
        "huge",
        "entity_id=https://a.example\nexpires=18446744073709551615\n",
    );
    write("garbage", "\u{0}\u{1}not a meta file");
    write("negative", "entity_id=https://b.example\nexpires=-1\n");
    write("good", "entity_id=https://c.example\nexpires=1800000000\n");
    let loaded = mdq_client::io::persist::load(dir.path());
    assert_eq!(loaded.snapshots.len(), 1);
    assert_eq!(loaded.snapshots[0].entity_id, "https://c.example");
    assert_eq!(loaded.skipped.len(), 3, "{:?}", loaded.skipped);
    for (path, e) in &loaded.skipped {
        assert!(matches!(e, Error::Cache(_)), "{path:?}: {e}");
    }
}

/// The entity inside a nested group with validUntil `group`, in a root group with validUntil
/// `root` (SAML Metadata §2.3.1: a group's validUntil covers what it contains).
fn nested(key: &SigningKey, root: SystemTime, group: SystemTime) -> Vec<u8> {
    let inner = entity(None).to_xml().unwrap();
    let inner = match inner.find("?>") {
        Some(i) if inner.starts_with("<?xml") => inner[i + 2..].trim_start().to_owned(),
        _ => inner,
    };
    let xml = format!(
        "<md:EntitiesDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" ID=\"_agg\" validUntil=\"{}\"><md:EntitiesDescriptor validUntil=\"{}\">{inner}</md:EntitiesDescriptor></md:EntitiesDescriptor>",
        saml_core::time::format_datetime(root),
        saml_core::time::format_datetime(group),
    );
    saml_core::dsig::sign(xml.as_bytes(), key, &SignOptions::default()).unwrap()
}

/// A nested group's validUntil bounds how long its entity is cached, and an entity in a group
/// that has expired is not an answer (it was cached until the root's validUntil).
#[test]
fn a_nested_groups_valid_until_bounds_its_entity() {
    let (k, keys) = key();
    let id = Identifier::entity_id(SP).unwrap();
    let mut c = client(&keys);
    let r = fetch(&mut c, now());
    let e = answer(
        &mut c,
        &r,
        200,
        &[("Cache-Control", "max-age=28800")],
        &nested(&k, at(10 * H), at(H)),
        now(),
    );
    assert!(e.unwrap().is_some());
    assert_eq!(c.entry_times(&id).unwrap().1, at(H));
    let mut c = client(&keys);
    let r = fetch(&mut c, now());
    let stale = now() - Duration::from_secs(86400);
    let e = answer(
        &mut c,
        &r,
        200,
        &[("Cache-Control", "max-age=28800")],
        &nested(&k, at(10 * H), stale),
        now(),
    );
    assert!(!matches!(e, Ok(Some(_))), "{e:?}");
    assert!(!matches!(lookup(&mut c, at(1)), Lookup::Hit { .. }));
}

/// MDQ review M1 and M2: after a failed fetch of a cached entity, every later lookup started
/// another one: in the refresh window each caller ran a failing refresh inline before getting
/// the entity it already had, `poll_timeout` stayed in the past (a refresher spinning against
/// the failing server), and once expired each waiter in turn ran a full failing fetch while
/// only the first got the stale copy. Now a failure backs off (`FAILURE_BACKOFF`, doubled per
/// failure in a row), and meanwhile the cached entity is served, stale within `max_stale`.
#[test]
fn a_failed_fetch_backs_off_and_serves_what_is_cached() {
    let (k, keys) = key();
    let doc = entity(None).sign(&k, &SignOptions::default()).unwrap();
    let mut c = cached(&keys, &doc, "max-age=3600");
    let id = Identifier::entity_id(SP).unwrap();
    // In the refresh window (after 75 % of the hour): one refresh, which fails.
    let t = at(2701);
    let Lookup::Hit {
        refresh: Some(r), ..
    } = c.lookup(&id, t)
    else {
        panic!("a refresh is due");
    };
    assert!(c.handle_failure(r.token, "down", t).unwrap().is_some());
    // The next lookups are hits without a refresh, and the next refresh is not due yet.
    assert!(matches!(
        c.lookup(&id, at(2702)),
        Lookup::Hit { refresh: None, .. }
    ));
    assert!(c.poll_timeout().unwrap() > at(2702));
    assert!(c.poll_refresh(at(2702)).is_none());
    // After the backoff, one refresh again; failing again doubles the wait.
    let t2 = t + mdq_client::client::FAILURE_BACKOFF;
    let Lookup::Hit {
        refresh: Some(r), ..
    } = c.lookup(&id, t2)
    else {
        panic!("a refresh is due after the backoff");
    };
    assert!(c.handle_failure(r.token, "down", t2).unwrap().is_some());
    assert!(c.poll_timeout().unwrap() >= t2 + 2 * mdq_client::client::FAILURE_BACKOFF);
    // Expired: the first caller fetches, fails and gets the stale copy; the callers after it
    // get the stale copy too, not a fetch each.
    let t3 = at(H + 1);
    let r = match c.lookup(&id, t3) {
        Lookup::Fetch(r) => r,
        other => panic!("expected a fetch, got {other:?}"),
    };
    // While it is in flight the others get the stale copy, not a wait (mdq review M2).
    assert!(matches!(
        c.lookup(&id, t3),
        Lookup::Hit { refresh: None, .. }
    ));
    assert!(c.handle_failure(r.token, "down", t3).unwrap().is_some());
    for _ in 0..3 {
        assert!(matches!(
            c.lookup(&id, t3),
            Lookup::Hit { refresh: None, .. }
        ));
    }
    // Past max_stale nothing stale is served, whatever the backoff.
    assert!(!matches!(c.lookup(&id, at(2 * H + 1)), Lookup::Hit { .. }));
}

/// MDQ review M3: restoring a persisted entry that had expired long ago made it expire now, so
/// that each restart served a document of any age stale for `max_stale` again (and saved it
/// again with the new expiry). Stale is now measured from the original expiry, and an entry
/// expired beyond `max_stale` is not restored.
#[test]
fn a_long_expired_snapshot_is_not_served_stale() {
    let (k, keys) = key();
    let doc = Arc::new(entity(None).sign(&k, &SignOptions::default()).unwrap());
    let snap = |expires: SystemTime| Snapshot {
        entity_id: SP.into(),
        document: doc.clone(),
        etag: None,
        last_modified: None,
        expires,
    };
    let mut c = client(&keys);
    assert!(
        c.restore(&snap(now() - Duration::from_secs(30 * 86400)), now())
            .is_err()
    );
    let r = fetch(&mut c, now());
    assert!(c.handle_failure(r.token, "down", now()).is_err());
    // Expired ten minutes ago: stale for the 50 minutes left of max_stale (1 h), no longer.
    let mut c = client(&keys);
    c.restore(&snap(now() - Duration::from_secs(600)), now())
        .unwrap();
    let r = fetch(&mut c, now());
    assert!(c.handle_failure(r.token, "down", now()).unwrap().is_some());
    let late = at(50 * 60 + 1);
    let r = fetch(&mut c, late);
    assert!(c.handle_failure(r.token, "down", late).is_err());
}

/// MDQ review M4: a restored entry took the earlier of the entity's and the root's validUntil
/// only, so an entity in a nested group that expired in an hour was served from a restored
/// cache for up to `max_ttl`. The whole chain counts, as on the fetch path.
#[test]
fn a_restored_nested_groups_valid_until_bounds_its_entity() {
    let (k, keys) = key();
    let id = Identifier::entity_id(SP).unwrap();
    let mut c = client(&keys);
    let snap = Snapshot {
        entity_id: SP.into(),
        document: Arc::new(nested(&k, at(10 * H), at(H))),
        etag: None,
        last_modified: None,
        expires: at(30 * 86400),
    };
    c.restore(&snap, now()).unwrap();
    assert_eq!(c.entry_times(&id).unwrap().1, at(H));
    assert!(!matches!(lookup(&mut c, at(2 * H)), Lookup::Hit { .. }));
}

/// MDQ review L4: the cache directory's files were read whole, through links: a `{sha1}.xml`
/// linked to `/dev/zero` never ended at start, a huge one took its size in memory, and an
/// ETag no header can carry made every revalidation of that entry fail. Now only regular
/// files within bounds are read, and such an ETag is dropped.
#[cfg(unix)]
#[test]
fn cache_files_are_read_within_bounds_and_unusable_etags_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let meta = |name: &str, extra: &str| {
        std::fs::write(
            dir.path().join(format!("{name}.meta")),
            format!("entity_id=https://{name}.example\nexpires=1800000000\n{extra}"),
        )
        .unwrap();
    };
    meta("zero", "");
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.xml")).unwrap();
    meta("big", "");
    let big = std::fs::File::create(dir.path().join("big.xml")).unwrap();
    big.set_len(mdq_client::io::persist::MAX_CACHED_DOCUMENT + 1)
        .unwrap();
    meta("odd", "etag=\"v1\u{1}\"\n");
    std::fs::write(dir.path().join("odd.xml"), b"<x/>").unwrap();
    let digest = |d: &[u8]| -> String {
        openssl::sha::sha256(d)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    meta(
        "fine",
        &format!("etag=\"v2\"\nsha256={}\n", digest(b"<x/>")),
    );
    std::fs::write(dir.path().join("fine.xml"), b"<x/>").unwrap();
    // Second part (two writers: `.xml` and `.meta` are two renames): a `.meta` of another
    // version is skipped; one naming no document (older files) keeps no ETag.
    meta(
        "mixed",
        &format!("etag=\"v3\"\nsha256={}\n", digest(b"<y/>")),
    );
    std::fs::write(dir.path().join("mixed.xml"), b"<x/>").unwrap();
    meta("unpaired", "etag=\"v4\"\n");
    std::fs::write(dir.path().join("unpaired.xml"), b"<x/>").unwrap();
    let loaded = mdq_client::io::persist::load(dir.path());
    let mut skipped: Vec<String> = loaded
        .skipped
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    skipped.sort();
    assert_eq!(skipped, ["big.meta", "mixed.meta", "zero.meta"]);
    let etag = |id: &str| {
        loaded
            .snapshots
            .iter()
            .find(|s| s.entity_id == id)
            .unwrap()
            .etag
            .clone()
    };
    assert_eq!(etag("https://odd.example"), None);
    assert_eq!(etag("https://fine.example").as_deref(), Some("\"v2\""));
    assert_eq!(etag("https://unpaired.example"), None);
}

/// MDQ review L1: a 304 is not authenticated. It revalidated the cached entry even when the
/// request named no version (no ETag cached, so no If-None-Match), re-arming a document for up
/// to `max_ttl` per forged answer. Now only a 304 to an If-None-Match naming the cached version
/// revalidates; anything else is a bad answer (the entry is not extended).
#[test]
fn a_304_without_a_validator_is_refused() {
    let (k, keys) = key();
    let doc = entity(None).sign(&k, &SignOptions::default()).unwrap();
    let mut c = cached(&keys, &doc, "max-age=600");
    let id = Identifier::entity_id(SP).unwrap();
    let r = fetch(&mut c, at(601));
    assert!(!r.headers.iter().any(|(h, _)| h == "If-None-Match"));
    let _ = answer(
        &mut c,
        &r,
        304,
        &[("Cache-Control", "max-age=28800")],
        b"",
        at(601),
    );
    assert_eq!(c.entry_times(&id).unwrap().1, at(600), "not re-armed");
    // With an ETag cached and sent, a 304 revalidates as before.
    let mut c = cached_tagged(&keys, &doc, "max-age=600");
    let r = fetch(&mut c, at(601));
    assert!(
        r.headers
            .contains(&("If-None-Match".into(), "\"t\"".into()))
    );
    answer(
        &mut c,
        &r,
        304,
        &[("Cache-Control", "max-age=600")],
        b"",
        at(601),
    )
    .unwrap()
    .unwrap();
    assert_eq!(c.entry_times(&id).unwrap().1, at(1201));
}

/// MDQ review L1, second part: there was no way to refuse documents without validUntil (kept
/// valid for ever by whoever replays them) or with one too far ahead. MDQ review L4: there is,
/// and by default (a validUntil required, at most 28 days ahead); a client can still relax it.
#[test]
fn valid_until_rules_are_configurable() {
    let (k, keys) = key();
    let answer_with = |cfg: Config, doc: &[u8]| {
        let mut c = Client::new(cfg);
        let r = fetch(&mut c, now());
        answer(&mut c, &r, 200, &[], doc, now())
    };
    let base = || {
        Config::new(
            BaseUrl::parse("https://mdq.example.org/").unwrap(),
            keys.clone(),
        )
    };
    let none = entity_valid_for_ever()
        .sign(&k, &SignOptions::default())
        .unwrap();
    let far = entity(Some(at(30 * 86_400)))
        .sign(&k, &SignOptions::default())
        .unwrap();
    let near = entity(Some(at(27 * 86_400)))
        .sign(&k, &SignOptions::default())
        .unwrap();
    assert!(answer_with(base(), &none).is_err());
    assert!(answer_with(base(), &far).is_err());
    assert!(answer_with(base(), &near).unwrap().is_some());
    let mut relaxed = base();
    relaxed.require_valid_until = false;
    relaxed.max_validity = None;
    assert!(answer_with(relaxed.clone(), &none).unwrap().is_some());
    assert!(answer_with(relaxed.clone(), &far).unwrap().is_some());
    let mut strict = base();
    strict.max_validity = Some(Duration::from_secs(14 * 86_400));
    assert!(answer_with(strict.clone(), &near).is_err());
    assert!(
        answer_with(
            strict,
            &entity(Some(at(86_400)))
                .sign(&k, &SignOptions::default())
                .unwrap()
        )
        .unwrap()
        .is_some()
    );
}
