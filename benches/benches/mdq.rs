//! mdq-client: a cached lookup in the sans-IO core (target: under 1 µs median), and verified cold
//! fetches of 100 entities from a loopback MDQ responder through the blocking adapter (entities
//! per second), next to verifying the same 100 documents alone (the share spent in
//! verification).

#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // a bench that cannot run must fail loudly

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use mdq_client::client::{Client, Lookup};
use mdq_client::io::blocking::{BlockingClient, Options};
use mdq_client::response::{self, HttpResponse};
use mdq_client::{BaseUrl, Config, Identifier};
use saml_core::dsig::{self, SignOptions, SigningKey, TrustedKeys};
use saml_metadata::load::{self, Policy};
use saml_metadata::model::sha1_hex;

fn bench(c: &mut Criterion) {
    let (key_pem, cert_pem) =
        testkit::signer::rsa2048_self_signed("mdq bench signer").expect("key");
    let key = SigningKey::from_pem(&key_pem, Some(&cert_pem)).expect("key");
    let keys = TrustedKeys::from_pem(&cert_pem).expect("trust");
    let agg = dsig::sign(
        testkit::aggregate::generate(100, 5).as_bytes(),
        &key,
        &SignOptions::default(),
    )
    .expect("sign");
    // Cut and re-signed as an MDQ responder does, valid for a week (the client requires a
    // validUntil no more than 28 days ahead).
    let policy = Policy::new(keys.clone(), SystemTime::now());
    let lazy = saml_metadata::lazy::load_lazy(&agg, &policy).expect("load");
    let week = policy.now + std::time::Duration::from_secs(7 * 86_400);
    let parts: Vec<_> = lazy
        .entity_ids()
        .filter_map(|id| lazy.entity_document_until(id, Some(week)).expect("cut"))
        .collect();
    let mut docs = HashMap::new();
    let mut ids = Vec::new();
    for p in &parts {
        docs.insert(
            sha1_hex(&p.entity_id),
            dsig::sign(p.xml.as_bytes(), &key, &SignOptions::default()).expect("sign"),
        );
        ids.push(p.entity_id.clone());
    }
    let bodies: Vec<Vec<u8>> = ids.iter().map(|i| docs[&sha1_hex(i)].clone()).collect();
    let server = testkit::mdq_server::serve(docs).expect("server");
    let base = BaseUrl::parse(&server.base).expect("base");

    // Cached lookup in the core.
    let mut core = Client::new(Config::new(base.clone(), keys.clone()));
    let id = Identifier::entity_id(&ids[0]).expect("id");
    let now = SystemTime::now();
    let Lookup::Fetch(r) = core.lookup(&id, now) else {
        panic!("expected a fetch")
    };
    let headers = vec![(
        "Content-Type".to_owned(),
        "application/samlmetadata+xml".to_owned(),
    )];
    core.handle_response(
        r.token,
        &HttpResponse {
            status: 200,
            headers: &headers,
            body: &bodies[0],
        },
        now,
    )
    .expect("handle")
    .expect("entity");
    let mut g = c.benchmark_group("mdq");
    g.bench_function("cached_lookup", |b| {
        b.iter(|| match core.lookup(black_box(&id), now) {
            Lookup::Hit { entity, .. } => black_box(entity),
            other => panic!("{other:?}"),
        })
    });
    g.finish();

    let mut g = c.benchmark_group("mdq_cold_100");
    g.throughput(Throughput::Elements(ids.len() as u64));
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("blocking_fetch_verify", |b| {
        b.iter(|| {
            let client =
                BlockingClient::new(Config::new(base.clone(), keys.clone()), Options::default());
            for i in &ids {
                black_box(
                    client
                        .get(&Identifier::entity_id(i).expect("id"))
                        .expect("get")
                        .expect("found"),
                );
            }
        })
    });
    g.bench_function("verify_only", |b| {
        b.iter(|| {
            for (i, body) in ids.iter().zip(&bodies) {
                let resp = HttpResponse {
                    status: 200,
                    headers: &headers,
                    body,
                };
                let policy = Policy::new(keys.clone(), now);
                let fetched = black_box(
                    response::handle(
                        &Identifier::entity_id(i).expect("id"),
                        &resp,
                        &policy,
                        4 << 20,
                    )
                    .expect("valid"),
                );
                drop(fetched);
            }
        })
    });
    g.bench_function("signature_check_only", |b| {
        b.iter(|| {
            for body in &bodies {
                black_box(
                    load::load(body, &Policy::new(keys.clone(), now))
                        .expect("load")
                        .len(),
                );
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
