//! The blocking adapter against a fault-injecting loopback server: slow responses, 5xx (retried),
//! truncated and oversized bodies, gzip, 304 revalidation, a validly signed document for another
//! entity, unsigned and badly signed documents, expired validUntil; each with its outcome and
//! the cache state; one test per fault.
#![cfg(feature = "blocking")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::type_complexity
)]

use std::io::Write;
use std::time::{Duration, SystemTime};

use testkit::http::{Act, http, server};

use mdq_client::io::blocking::{BlockingClient, Options};
use mdq_client::{BaseUrl, Config, Error, Identifier};
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use saml_core::dsig::{SignOptions, SigningKey, TrustedKeys};
use saml_metadata::model::{Binding, EntityDescriptor, SpSso};

const SP: &str = "https://sp.example.org/shibboleth";

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

fn doc(f: &Fx, id: &str, valid: Option<SystemTime>) -> Vec<u8> {
    let mut b = EntityDescriptor::builder(id)
        .sp(SpSso::builder().acs(Binding::HttpPost, "https://sp.example.org/acs"));
    // Valid for ten days unless said otherwise: the client requires a validUntil by default.
    b = b
        .valid_until(valid.unwrap_or_else(|| SystemTime::now() + Duration::from_secs(10 * 86_400)));
    b.build()
        .unwrap()
        .sign(&f.key, &SignOptions::default())
        .unwrap()
}

const XML: (&str, &str) = ("Content-Type", "application/samlmetadata+xml");

fn client(f: &Fx, base: &str, opts: Options, min_ttl: Duration) -> BlockingClient {
    let mut cfg = Config::new(BaseUrl::parse(base).unwrap(), f.keys.clone());
    cfg.min_ttl = min_ttl;
    BlockingClient::new(cfg, opts)
}

fn quick() -> Options {
    Options::default()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_millis(800))
        .with_retries(0)
        .with_backoff(Duration::from_millis(10))
}

#[test]
fn a_5xx_is_retried() {
    let f = fx();
    let id = Identifier::entity_id(SP).unwrap();
    let good = doc(&f, SP, None);

    // 5xx then a good answer: retried.
    let (base, seen) = server(vec![
        Act::Send(http("503 Unavailable", &[], b"")),
        Act::Send(http("200 OK", &[XML], &good)),
    ]);
    let c = client(&f, &base, quick().with_retries(1), Duration::from_secs(600));
    assert!(c.get(&id).unwrap().is_some());
    assert_eq!(seen.lock().unwrap().len(), 2);
    assert!(
        seen.lock().unwrap()[0].contains("accept: application/samlmetadata+xml")
            || seen.lock().unwrap()[0]
                .to_ascii_lowercase()
                .contains("accept: application/samlmetadata+xml")
    );
}

#[test]
fn a_slow_answer_times_out_and_caches_nothing() {
    let f = fx();
    let id = Identifier::entity_id(SP).unwrap();
    let good = doc(&f, SP, None);

    // Slow: the timeout fires, nothing is cached, the next answer is used.
    let (base, _) = server(vec![
        Act::SlowThen(Duration::from_secs(2), http("200 OK", &[XML], &good)),
        Act::Send(http("200 OK", &[XML], &good)),
    ]);
    let c = client(&f, &base, quick(), Duration::from_secs(600));
    assert!(matches!(c.get(&id), Err(Error::Transport(_))));
    assert!(c.get(&id).unwrap().is_some());
}

#[test]
fn a_truncated_body_is_an_error() {
    let f = fx();
    let id = Identifier::entity_id(SP).unwrap();
    let good = doc(&f, SP, None);

    // Truncated body.
    let full = http("200 OK", &[XML], &good);
    let (base, _) = server(vec![Act::Truncated(full.clone(), full.len() - 500)]);
    let c = client(&f, &base, quick(), Duration::from_secs(600));
    assert!(c.get(&id).is_err());
}

#[test]
fn gzip_then_a_304_revalidation() {
    let f = fx();
    let id = Identifier::entity_id(SP).unwrap();
    let good = doc(&f, SP, None);

    // gzip, then a revalidation answered 304 (the cache entry lives on).
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&good).unwrap();
    let gz = gz.finish().unwrap();
    let (base, seen) = server(vec![
        Act::Send(http(
            "200 OK",
            &[
                XML,
                ("Content-Encoding", "gzip"),
                ("ETag", "\"v1\""),
                ("Cache-Control", "max-age=0"),
            ],
            &gz,
        )),
        Act::Send(http("304 Not Modified", &[], b"")),
    ]);
    let c = client(&f, &base, quick(), Duration::ZERO);
    assert!(c.get(&id).unwrap().is_some());
    assert!(c.get(&id).unwrap().is_some());
    let heads = seen.lock().unwrap();
    assert!(
        heads[0]
            .to_ascii_lowercase()
            .contains("accept-encoding: gzip")
    );
    assert!(
        heads[1]
            .to_ascii_lowercase()
            .contains("if-none-match: \"v1\""),
        "{}",
        heads[1]
    );
    drop(heads);
}

#[test]
fn all_entities_signed_not_found_and_badly_signed() {
    let f = fx();
    let other = fx();
    // "All entities": a signed aggregate, then a 404, then one signed by another key.
    let agg = saml_metadata::model::EntitiesDescriptor::combine(
        "urn:example:all",
        ["https://a.example.org/sp", "https://b.example.org/sp"]
            .iter()
            .map(|i| {
                EntityDescriptor::builder(i)
                    .sp(SpSso::builder().acs(Binding::HttpPost, "https://sp.example.org/acs"))
                    .valid_until(
                        std::time::SystemTime::now() + std::time::Duration::from_secs(10 * 86_400),
                    )
                    .build()
                    .unwrap()
            }),
        Some(SystemTime::now() + Duration::from_secs(10 * 86_400)),
    )
    .unwrap();
    let (base, seen) = server(vec![
        Act::Send(http(
            "200 OK",
            &[XML],
            &agg.sign(&f.key, &SignOptions::default()).unwrap(),
        )),
        Act::Send(http("404 Not Found", &[], b"")),
        Act::Send(http(
            "200 OK",
            &[XML],
            &agg.sign(&other.key, &SignOptions::default()).unwrap(),
        )),
    ]);
    let c = client(&f, &base, quick(), Duration::from_secs(600));
    assert_eq!(c.all().unwrap().unwrap().len(), 2);
    assert!(
        seen.lock().unwrap()[0].starts_with("GET /entities HTTP/1.1"),
        "{:?}",
        seen.lock().unwrap()
    );
    assert!(c.all().unwrap().is_none());
    assert!(matches!(c.all(), Err(Error::Metadata(_))));
}

/// A refused answer leaves nothing cached: the following good answer is fetched.
fn refused_then_good(f: &Fx, bad: Vec<u8>, expect: fn(&Error) -> bool) {
    let id = Identifier::entity_id(SP).unwrap();
    let good = doc(f, SP, None);
    let (base, _) = server(vec![
        Act::Send(bad),
        Act::Send(http("200 OK", &[XML], &good)),
    ]);
    let c = client(f, &base, quick(), Duration::from_secs(600));
    let e = c.get(&id).unwrap_err();
    assert!(expect(&e), "{e}");
    assert!(c.get(&id).unwrap().is_some(), "the cache was not poisoned");
}

#[test]
fn a_document_for_another_entity_is_refused() {
    let f = fx();
    let bad = http(
        "200 OK",
        &[XML],
        &doc(&f, "https://evil.example.org/sp", None),
    );
    refused_then_good(&f, bad, |e| matches!(e, Error::WrongEntity { .. }));
}

#[test]
fn an_unsigned_document_is_refused() {
    let f = fx();
    let unsigned = EntityDescriptor::builder(SP)
        .sp(SpSso::builder().acs(Binding::HttpPost, "https://sp.example.org/acs"))
        .valid_until(std::time::SystemTime::now() + std::time::Duration::from_secs(10 * 86_400))
        .build()
        .unwrap()
        .to_xml()
        .unwrap();
    let bad = http("200 OK", &[XML], unsigned.as_bytes());
    refused_then_good(&f, bad, |e| matches!(e, Error::Metadata(_)));
}

#[test]
fn a_badly_signed_document_is_refused() {
    let f = fx();
    let other = fx();
    let bad = http("200 OK", &[XML], &doc(&other, SP, None));
    refused_then_good(&f, bad, |e| matches!(e, Error::Metadata(_)));
}

#[test]
fn an_expired_document_is_refused() {
    let f = fx();
    let bad = http(
        "200 OK",
        &[XML],
        &doc(&f, SP, Some(SystemTime::now() - Duration::from_secs(7200))),
    );
    refused_then_good(&f, bad, |e| matches!(e, Error::Metadata(_)));
}

#[test]
fn an_oversized_body_is_refused() {
    let f = fx();
    let bad = http("200 OK", &[XML], &vec![b' '; 5 << 20]);
    refused_then_good(&f, bad, |e| matches!(e, Error::TooLarge { .. }));
}

#[test]
fn an_error_page_is_refused() {
    let f = fx();
    let bad = http(
        "200 OK",
        &[("Content-Type", "text/html")],
        b"<html>maintenance</html>",
    );
    refused_then_good(&f, bad, |e| matches!(e, Error::Response(_)));
}

/// Finding (MDQ review H1): the blocking adapter built its ureq agent with ureq's default TLS
/// provider, rustls, which is not compiled in: every `https://` lookup panicked inside ureq
/// (the tests used `http://` only). TLS now goes through OpenSSL (native-tls), with the
/// system's roots or `Options::with_root_certificates`.
#[test]
fn an_https_server_is_reached_through_openssl_and_an_untrusted_one_refused() {
    let f = fx();
    let id = Identifier::entity_id(SP).unwrap();
    let good = doc(&f, SP, None);
    let (base, seen, ca) = testkit::http::tls_server(vec![
        Act::Send(http("200 OK", &[XML], &good)),
        Act::Send(http("200 OK", &[XML], &good)),
    ]);
    // Trusting the server's certificate: found and verified.
    let trusting = client(
        &f,
        &base,
        quick().with_root_certificates(vec![ca]),
        Duration::from_secs(600),
    );
    assert_eq!(trusting.get(&id).unwrap().unwrap().entity_id, SP);
    assert_eq!(seen.lock().unwrap().len(), 1);
    // With the system's roots the self-signed certificate is refused: an error, not a panic.
    let strict = client(&f, &base, quick(), Duration::from_secs(600));
    let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| strict.get(&id)));
    let e = got.expect("no panic").unwrap_err();
    assert!(matches!(e, Error::Transport(_)), "{e:?}");
}

/// MDQ review L5: `all()` read up to `max(max_body, 256 MiB)` whatever the configuration said.
/// `Config::max_aggregate_body` bounds it.
#[test]
fn all_is_bounded_by_the_configured_aggregate_size() {
    let f = fx();
    let big = vec![b' '; 2 << 20];
    let (base, _) = server(vec![Act::Send(http("200 OK", &[XML], &big))]);
    let mut cfg = Config::new(BaseUrl::parse(&base).unwrap(), f.keys.clone());
    cfg.max_aggregate_body = 1 << 20;
    let c = BlockingClient::new(cfg, quick());
    let e = c.all().unwrap_err();
    assert!(
        matches!(e, Error::TooLarge { .. } | Error::Transport(_)),
        "{e:?}"
    );
}

/// mdq review L3: a hit due for an early refresh waited for the refresh and then returned the
/// old entity, even when the refresh brought a new one (a key rollover). The refreshed entity
/// is returned.
#[test]
fn an_early_refresh_returns_what_it_brought() {
    let f = fx();
    let id = Identifier::entity_id(SP).unwrap();
    let old = doc(&f, SP, None);
    let newer = EntityDescriptor::builder(SP)
        .sp(SpSso::builder().acs(Binding::HttpPost, "https://sp.example.org/new-acs"))
        .valid_until(SystemTime::now() + Duration::from_secs(10 * 86_400))
        .build()
        .unwrap()
        .sign(&f.key, &SignOptions::default())
        .unwrap();
    let (base, _) = server(vec![
        Act::Send(http("200 OK", &[XML, ("Cache-Control", "max-age=4")], &old)),
        Act::Send(http(
            "200 OK",
            &[XML, ("Cache-Control", "max-age=4")],
            &newer,
        )),
    ]);
    let c = client(&f, &base, quick(), Duration::ZERO);
    let acs = |e: &EntityDescriptor| {
        e.sp().unwrap().assertion_consumer[0]
            .endpoint
            .location
            .to_string()
    };
    assert_eq!(
        acs(&c.get(&id).unwrap().unwrap()),
        "https://sp.example.org/acs"
    );
    // In the refresh window (after 75 % of the 4 s), before expiry.
    std::thread::sleep(Duration::from_millis(3300));
    assert_eq!(
        acs(&c.get(&id).unwrap().unwrap()),
        "https://sp.example.org/new-acs"
    );
}
