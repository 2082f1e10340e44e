//! Exclusive c14n throughput on a generated 1,000-entity eduGAIN-shaped aggregate (about 6.7 MB):
//! the hardened reader alone (baseline), `canonicalize_element` into a `Vec`, and the streaming
//! path verification uses (reader events into a `Canonicalizer` writing to a SHA-256 hasher).
//! Throughput is in bytes of input document.
//!
//! `c14n_namespace_worst_case` (issue 13 item 1): 61 nested elements each declaring D prefixes
//! `pNNNN` (new URIs at every level), then 50 x D empty leaves, for D = 16, 32, 64, so the input
//! and the bindings in scope both grow with D. Canonicalized with and without an
//! InclusiveNamespaces PrefixList of 8 prefixes, under limits raised to admit the shape (the
//! default `max_namespace_declarations` refuses it). Linear work shows as a flat throughput
//! across D; the old scope rebuild per start tag lost throughput in proportion to D.

#![allow(clippy::expect_used)] // a bench that cannot run must fail loudly

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use openssl::hash::{Hasher, MessageDigest};
use saml_core::c14n::{self, Canonicalizer, Options};
use saml_core::xml::{Limits, Reader};
use testkit::aggregate;

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

fn worst_case(decls: usize) -> Vec<u8> {
    let mut s = String::from("<r:root xmlns:r=\"urn:r\">");
    for i in 0..61 {
        s.push_str("<p0000:e");
        for j in 0..decls {
            s.push_str(&format!(" xmlns:p{j:04}=\"urn:x:{i}:{j}\""));
        }
        s.push('>');
    }
    for _ in 0..50 * decls {
        s.push_str("<p0000:l r:a=\"1\"/>");
    }
    for _ in 0..61 {
        s.push_str("</p0000:e>");
    }
    s.push_str("</r:root>");
    s.into_bytes()
}

fn worst_case_sha256(doc: &[u8], opts: &Options) -> u64 {
    let limits = {
        let mut o = Limits::default();
        o.max_namespace_declarations = 1 << 20;
        o
    };
    let mut reader = Reader::new(doc, limits).expect("reader");
    let hasher = Hasher::new(MessageDigest::sha256()).expect("sha256");
    let mut c = Canonicalizer::new(hasher, opts.clone());
    while let Some(ev) = reader.next().expect("well-formed") {
        c.event(&ev).expect("c14n event");
    }
    c.finish().expect("c14n finish").1
}

fn bench_worst_case(c: &mut Criterion) {
    let pl = Options::default().with_prefix_list("p0000 p0001 p0002 p0003 p0004 p0005 p0006 r");
    let mut g = c.benchmark_group("c14n_namespace_worst_case");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    for decls in [16usize, 32, 64] {
        let doc = worst_case(decls);
        g.throughput(Throughput::Bytes(doc.len() as u64));
        g.bench_function(
            format!("prefix_list_{decls}_decls_{}_bytes", doc.len()),
            |b| b.iter(|| worst_case_sha256(black_box(&doc), &pl)),
        );
        g.bench_function(
            format!("no_prefix_list_{decls}_decls_{}_bytes", doc.len()),
            |b| b.iter(|| worst_case_sha256(black_box(&doc), &Options::default())),
        );
    }
    g.finish();
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

criterion_group!(benches, bench, bench_worst_case);
criterion_main!(benches);
