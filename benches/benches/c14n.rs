//! Exclusive c14n throughput on a generated 1,000-entity eduGAIN-shaped aggregate (about 6.7 MB):
//! the hardened reader alone (baseline), `canonicalize_element` into a `Vec`, and the streaming
//! path verification uses (reader events into a `Canonicalizer` writing to a SHA-256 hasher).
//! Throughput is in bytes of input document.

#![allow(clippy::expect_used)] // a bench that cannot run must fail loudly

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use openssl::hash::{Hasher, MessageDigest};
use saml_core::c14n::{self, Canonicalizer, Options};
use saml_core::xml::{Limits, Reader};
use saml_examples::aggregate;

const ENTITIES: usize = 1_000;

fn reader_only(doc: &[u8]) -> usize {
    let mut reader = Reader::new(doc, Limits::default()).expect("reader");
    let mut events = 0usize;
    while reader.next().expect("well-formed").is_some() {
        events += 1;
    }
    events
}

fn to_vec(doc: &[u8]) -> Vec<u8> {
    c14n::canonicalize_element(doc, Options::default(), |s| s.depth == 1, |_| false).expect("c14n")
}

fn to_sha256(doc: &[u8]) -> (Vec<u8>, u64) {
    let mut reader = Reader::new(doc, Limits::default()).expect("reader");
    let hasher = Hasher::new(MessageDigest::sha256()).expect("sha256");
    let mut c = Canonicalizer::new(hasher, Options::default());
    while let Some(ev) = reader.next().expect("well-formed") {
        c.event(&ev).expect("c14n event");
        if c.is_complete() {
            break;
        }
    }
    // Read the rest (trailing white space) so the whole document is checked, as verify does.
    while reader.next().expect("well-formed").is_some() {}
    let (mut hasher, len) = c.finish().expect("c14n finish");
    (hasher.finish().expect("digest").to_vec(), len)
}

fn bench(c: &mut Criterion) {
    let doc = aggregate::generate(ENTITIES, 1).into_bytes();
    let canonical = to_vec(&doc);
    let (_, streamed_len) = to_sha256(&doc);
    assert_eq!(
        canonical.len() as u64,
        streamed_len,
        "both c14n paths agree on the length"
    );
    eprintln!(
        "c14n input: {ENTITIES} entities, {} bytes, {} events; canonical form {} bytes",
        doc.len(),
        reader_only(&doc),
        canonical.len()
    );

    let mut g = c.benchmark_group("c14n_aggregate_1k");
    g.throughput(Throughput::Bytes(doc.len() as u64));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("xml_reader_only", |b| {
        b.iter(|| reader_only(black_box(&doc)))
    });
    g.bench_function("canonicalize_element_to_vec", |b| {
        b.iter(|| to_vec(black_box(&doc)))
    });
    g.bench_function("reader_canonicalizer_to_sha256", |b| {
        b.iter(|| to_sha256(black_box(&doc)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
