//! The sans-IO core against in-memory responses: verification, the entityID check, lifetimes and
//! their sources, negative caching, revalidation, stale-on-error, coalescing, early refresh and
//! the cache bounds. Documents are signed here with saml-metadata.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::type_complexity
)]

use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mdq_client::client::{Client, Config, Lookup};
use mdq_client::response::HttpResponse;
use mdq_client::{BaseUrl, Error, Identifier};
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use saml_core::dsig::{SignOptions, SigningKey, TrustedKeys};
use saml_metadata::model::{Binding, EntityDescriptor, SpSso};

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
    if let Some(v) = valid {
        b = b.valid_until(v);
    }
    b.build().unwrap()
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
    let xml = "<md:EntitiesDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" ID=\"_e\"></md:EntitiesDescriptor>";
    let doc = saml_core::dsig::sign(xml.as_bytes(), &f.key, &SignOptions::default()).unwrap();
    assert_eq!(answer(&mut c, &r, &ok(&doc, &[]), now()).unwrap(), None);
    assert!(matches!(c.lookup(&id, now()), Lookup::NotFound));
}

#[test]
fn refusals_do_not_poison_the_cache() {
    let f = fx();
    let id = Identifier::entity_id(SP).unwrap();
    let good = signed(&f, &entity(SP, None, None));
    let other_key = fx();
    let wrong_entity = signed(&f, &entity("https://evil.example.org/sp", None, None));
    let unsigned = entity(SP, None, None).to_xml().unwrap().into_bytes();
    let expired = signed(
        &f,
        &entity(SP, None, Some(now() - Duration::from_secs(3600))),
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&good).unwrap();
    let gzipped = gz.finish().unwrap();
    let big = vec![b' '; 5 << 20];
    let cases: Vec<(
        &str,
        (u16, Vec<(String, String)>, Vec<u8>),
        fn(&Error) -> bool,
    )> = vec![
        ("wrong entity", ok(&wrong_entity, &[]), |e| {
            matches!(e, Error::WrongEntity { .. })
        }),
        ("unsigned", ok(&unsigned, &[]), |e| {
            matches!(e, Error::Metadata(_))
        }),
        (
            "other key",
            ok(&signed(&other_key, &entity(SP, None, None)), &[]),
            |e| matches!(e, Error::Metadata(_)),
        ),
        ("expired", ok(&expired, &[]), |e| {
            matches!(e, Error::Metadata(_))
        }),
        (
            "html",
            (
                200,
                vec![("Content-Type".into(), "text/html".into())],
                good.clone(),
            ),
            |e| matches!(e, Error::Response(_)),
        ),
        ("500", (500, vec![], vec![]), |e| {
            matches!(e, Error::Status { status: 500 })
        }),
        ("406", (406, vec![], vec![]), |e| {
            matches!(e, Error::Status { status: 406 })
        }),
        ("oversized", ok(&big, &[]), |e| {
            matches!(e, Error::TooLarge { .. })
        }),
        (
            "bad gzip",
            ok(b"not gzip", &[("Content-Encoding", "gzip")]),
            |e| matches!(e, Error::Response(_)),
        ),
        ("304 uncached", (304, vec![], vec![]), |e| {
            matches!(e, Error::Response(_))
        }),
    ];
    for (name, resp, expect) in cases {
        let mut c = client(&f);
        let r = fetch(&mut c, &id, now());
        let e = answer(&mut c, &r, &resp, now()).unwrap_err();
        assert!(expect(&e), "{name}: {e}");
        assert!(c.is_empty(), "{name}: nothing cached");
    }
    // gzip is fine.
    let mut c = client(&f);
    let r = fetch(&mut c, &id, now());
    assert!(
        answer(
            &mut c,
            &r,
            &ok(&gzipped, &[("Content-Encoding", "gzip")]),
            now()
        )
        .unwrap()
        .is_some()
    );
    // With a good entry cached, a failed refresh serves it stale (up to max_stale), then errors.
    let later = now() + Duration::from_secs(3601);
    let r = fetch(&mut c, &id, later);
    assert!(
        answer(&mut c, &r, &(503, vec![], vec![]), later)
            .unwrap()
            .is_some()
    );
    let r = fetch(&mut c, &id, later);
    assert!(
        c.handle_failure(r.token, "connection refused", later)
            .unwrap()
            .is_some()
    );
    let much_later = now() + Duration::from_secs(3600 + 3601);
    let r = fetch(&mut c, &id, much_later);
    assert!(matches!(
        c.handle_failure(r.token, "connection refused", much_later),
        Err(Error::Transport(_))
    ));
    assert!(matches!(
        c.handle_failure(r.token, "again", much_later),
        Err(Error::State(_))
    ));
}

#[test]
fn coalescing_early_refresh_and_bounds() {
    let f = fx();
    let id = Identifier::entity_id(SP).unwrap();
    let mut c = client(&f);
    let r = fetch(&mut c, &id, now());
    // A second lookup while the first is in flight waits for it.
    assert!(matches!(c.lookup(&id, now()), Lookup::Pending(t) if t == r.token));
    assert!(matches!(
        c.lookup(&Identifier::sha1_of(SP), now()),
        Lookup::Pending(_)
    ));
    answer(
        &mut c,
        &r,
        &ok(
            &signed(&f, &entity(SP, None, None)),
            &[("Cache-Control", "max-age=4000")],
        ),
        now(),
    )
    .unwrap();
    // After 75 % of the lifetime: served, with a refresh to perform (only once).
    assert_eq!(c.poll_timeout(), Some(now() + Duration::from_secs(3000)));
    let t = now() + Duration::from_secs(3001);
    let Lookup::Hit {
        refresh: Some(refresh),
        ..
    } = c.lookup(&id, t)
    else {
        panic!()
    };
    assert!(matches!(
        c.lookup(&id, t),
        Lookup::Hit { refresh: None, .. }
    ));
    answer(
        &mut c,
        &refresh,
        &ok(&signed(&f, &entity(SP, None, None)), &[]),
        t,
    )
    .unwrap();
    assert!(c.poll_refresh(t).is_none());
    // Bounds: at most max_entries, least recently used out first.
    let mut cfg = Config::new(
        BaseUrl::parse("https://mdq.example.org/").unwrap(),
        f.keys.clone(),
    );
    cfg.max_entries = 2;
    let mut c = Client::new(cfg);
    for n in 0..3 {
        let eid = format!("https://sp{n}.example.org/sp");
        let i = Identifier::entity_id(&eid).unwrap();
        let r = fetch(&mut c, &i, now());
        answer(
            &mut c,
            &r,
            &ok(&signed(&f, &entity(&eid, None, None)), &[]),
            now(),
        )
        .unwrap();
        if n == 1 {
            // Touch sp0 so that sp1 is the least recently used.
            assert!(matches!(
                c.lookup(
                    &Identifier::entity_id("https://sp0.example.org/sp").unwrap(),
                    now()
                ),
                Lookup::Hit { .. }
            ));
        }
    }
    assert_eq!(c.len(), 2);
    assert!(matches!(
        c.lookup(
            &Identifier::entity_id("https://sp1.example.org/sp").unwrap(),
            now()
        ),
        Lookup::Fetch(_)
    ));
    assert!(c.cached_bytes() > 0);
}
