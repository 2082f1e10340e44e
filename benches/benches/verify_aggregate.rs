//! Verification of a signed 10,000-entity eduGAIN-shaped aggregate (about 67 MB, RSA-2048,
//! SHA-256, exc-c14n): `saml_core::dsig::verify` (document already in memory) against the
//! xmlsec1 CLI (`xmlsec1 --verify --id-attr:ID ... --pubkey-cert-pem CERT FILE`, a process that
//! reads and parses the file). The signed file, key and certificate are cached in
//! `target/bench-data` (see `testkit::bench::signed_aggregate`). A missing xmlsec1 fails the bench.

#![allow(clippy::expect_used, clippy::panic)] // a bench that cannot run must fail loudly

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use saml_core::dsig::{self, TrustedKeys, VerifyOptions};
use testkit::bench::{signed_aggregate, xmlsec1_verify};
use testkit::peers::xmlsec1 as xmlsec1_path;

const ENTITIES: usize = 10_000;

fn bench(c: &mut Criterion) {
    let t = Instant::now();
    let agg = signed_aggregate(ENTITIES, 1).expect("generate and sign the aggregate");
    let doc = std::fs::read(&agg.xml).expect("read the aggregate");
    let keys = TrustedKeys::from_pem(&std::fs::read(&agg.cert_pem).expect("read the certificate"))
        .expect("certificate");
    let opts = VerifyOptions::metadata();
    eprintln!(
        "verify input: {} ({} entities, {} bytes), ready in {:.2} s",
        agg.xml.display(),
        agg.entities,
        doc.len(),
        t.elapsed().as_secs_f64()
    );

    // Both verifiers must accept the document before anything is timed.
    let verified = dsig::verify(&doc, &keys, &opts)
        .unwrap_or_else(|e| panic!("saml-core rejects the generated aggregate: {e}"));
    eprintln!(
        "saml-core: OK, {} canonical bytes digested",
        verified.canonical_len()
    );
    xmlsec1_verify(&agg.cert_pem, &agg.xml).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("xmlsec1 ({}): OK", xmlsec1_path().display());

    let mut g = c.benchmark_group("verify_aggregate_10k");
    g.throughput(Throughput::Bytes(doc.len() as u64));
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    g.warm_up_time(Duration::from_secs(3));
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("saml_core_dsig_verify", |b| {
        b.iter(|| {
            let v = dsig::verify(black_box(&doc), &keys, &opts).expect("verify");
            black_box(v.canonical_len())
        })
    });
    // The same work on the calling thread only (no canonicalization/hashing pipeline).
    let mut serial = opts.clone();
    serial.parallel_min_size = None;
    g.bench_function("saml_core_dsig_verify_single_thread", |b| {
        b.iter(|| {
            let v = dsig::verify(black_box(&doc), &keys, &serial).expect("verify");
            black_box(v.canonical_len())
        })
    });
    g.bench_function("xmlsec1_cli_verify", |b| {
        b.iter(|| xmlsec1_verify(&agg.cert_pem, &agg.xml).unwrap_or_else(|e| panic!("{e}")))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
