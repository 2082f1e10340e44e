//! The tokio adapter against the fault-injecting loopback server: retries, gzip, refusals, and
//! concurrent lookups of one entity coalesced into one request.
#![cfg(feature = "tokio")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use mdq_client::io::options::Options;
use mdq_client::io::tokio::AsyncClient;
use mdq_client::{BaseUrl, Config, Error, Identifier};
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use saml_core::dsig::{SignOptions, SigningKey, TrustedKeys};
use saml_metadata::model::{Binding, EntityDescriptor, SpSso};
use testkit::http::{Act, http, server};

const SP: &str = "https://sp.example.org/shibboleth";
const XML: (&str, &str) = ("Content-Type", "application/samlmetadata+xml");

fn key() -> (SigningKey, TrustedKeys) {
    let key = SigningKey::new(PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(), None).unwrap();
    let mut keys = TrustedKeys::new();
    keys.add_public_key(key.public_key().unwrap(), "mdq")
        .unwrap();
    (key, keys)
}

fn doc(key: &SigningKey, id: &str) -> Vec<u8> {
    EntityDescriptor::builder(id)
        .sp(SpSso::builder().acs(Binding::HttpPost, "https://sp.example.org/acs"))
        .valid_until(std::time::SystemTime::now() + std::time::Duration::from_secs(10 * 86_400))
        .build()
        .unwrap()
        .sign(key, &SignOptions::default())
        .unwrap()
}

fn opts() -> Options {
    Options::default()
        .with_timeout(Duration::from_secs(3))
        .with_retries(1)
        .with_backoff(Duration::from_millis(10))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_adapter() {
    let (k, keys) = key();
    let id = Identifier::entity_id(SP).unwrap();
    let good = doc(&k, SP);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&good).unwrap();
    let gz = gz.finish().unwrap();

    // 503, then gzip: retried and decoded; then a cache hit.
    let (base, seen) = server(vec![
        Act::Send(http("503 Unavailable", &[], b"")),
        Act::Send(http("200 OK", &[XML, ("Content-Encoding", "gzip")], &gz)),
    ]);
    let c = AsyncClient::new(
        Config::new(BaseUrl::parse(&base).unwrap(), keys.clone()),
        opts(),
    )
    .unwrap();
    assert_eq!(c.get(&id).await.unwrap().unwrap().entity_id, SP);
    assert!(c.get(&Identifier::sha1_of(SP)).await.unwrap().is_some());
    assert_eq!(seen.lock().unwrap().len(), 2);

    // A validly signed document for another entity.
    let (base, _) = server(vec![Act::Send(http(
        "200 OK",
        &[XML],
        &doc(&k, "https://evil.example.org/sp"),
    ))]);
    let c = AsyncClient::new(
        Config::new(BaseUrl::parse(&base).unwrap(), keys.clone()),
        opts(),
    )
    .unwrap();
    assert!(matches!(c.get(&id).await, Err(Error::WrongEntity { .. })));
    assert_eq!(c.cached(), 0);

    // Ten concurrent lookups of one entity: one request (the answer is slow on purpose).
    let (base, seen) = server(vec![Act::SlowThen(
        Duration::from_millis(400),
        http("200 OK", &[XML], &good),
    )]);
    let c = Arc::new(
        AsyncClient::new(Config::new(BaseUrl::parse(&base).unwrap(), keys), opts()).unwrap(),
    );
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let c = c.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(
            async move { c.get(&id).await.unwrap().is_some() },
        ));
    }
    for t in tasks {
        assert!(t.await.unwrap());
    }
    assert_eq!(seen.lock().unwrap().len(), 1, "lookups were not coalesced");
}

/// A `get` dropped while its transfer runs (a caller's timeout here; a disconnected client's
/// handler in a server) left the entity pending for good: every later `get` waited for a
/// fetch that would never finish. Now the abandoned fetch counts as failed and the next `get`
/// fetches again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_given_up_mid_transfer_leaves_nothing_pending() {
    let (k, keys) = key();
    let id = Identifier::entity_id(SP).unwrap();
    let good = doc(&k, SP);
    let (base, seen) = server(vec![
        Act::SlowThen(Duration::from_secs(2), http("200 OK", &[XML], &good)),
        Act::Send(http("200 OK", &[XML], &good)),
    ]);
    let c = AsyncClient::new(
        Config::new(BaseUrl::parse(&base).unwrap(), keys.clone()),
        opts(),
    )
    .unwrap();
    let given_up = tokio::time::timeout(Duration::from_millis(200), c.get(&id)).await;
    assert!(given_up.is_err(), "the slow answer came early");
    let again = tokio::time::timeout(Duration::from_secs(20), c.get(&id)).await;
    assert_eq!(
        again
            .expect("the second get waited for the abandoned fetch")
            .unwrap()
            .unwrap()
            .entity_id,
        SP
    );
    assert_eq!(seen.lock().unwrap().len(), 2);
}

/// The async adapter reaches an `https://` server through OpenSSL too, trusting only the
/// configured roots when they are given (MDQ review H1 was the blocking adapter's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_through_openssl_with_the_configured_roots() {
    let (k, keys) = key();
    let id = Identifier::entity_id(SP).unwrap();
    let good = doc(&k, SP);
    let (base, _seen, ca) = testkit::http::tls_server(vec![
        Act::Send(http("200 OK", &[XML], &good)),
        Act::Send(http("200 OK", &[XML], &good)),
    ]);
    let cfg = || Config::new(BaseUrl::parse(&base).unwrap(), keys.clone());
    let trusting =
        AsyncClient::new(cfg(), opts().with_root_certificates(vec![ca.clone()])).unwrap();
    assert_eq!(trusting.get(&id).await.unwrap().unwrap().entity_id, SP);
    let other = testkit::http::tls_server(vec![]).2;
    let strict = AsyncClient::new(
        cfg(),
        opts().with_retries(0).with_root_certificates(vec![other]),
    )
    .unwrap();
    assert!(matches!(strict.get(&id).await, Err(Error::Transport(_))));
}
