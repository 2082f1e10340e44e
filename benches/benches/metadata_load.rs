//! saml-metadata: load (verify + build the model from verified content + index) of the
//! 10,000-entity aggregate (and the same with `single_threaded()`), against `xmlsec1 --verify` and pyFF's load (verify + parse + index)
//! of the same file in the same run; lookups by entityID and by `{sha1}` in the loaded index;
//! writing the loaded model back to XML, and signing on write; selecting the IdPs and
//! re-signing them, through the model and streamed from the verified bytes.

#![allow(clippy::expect_used, clippy::panic)] // a bench that cannot run must fail loudly

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use saml_core::dsig::{SignOptions, SigningKey, TrustedKeys};
use saml_metadata::filter::{Filter, RoleKind};
use saml_metadata::load::{self, Policy};
use saml_metadata::model::{EntitiesDescriptor, sha1_hex};
use saml_metadata::selection::{SelectOptions, write_selection};
use testkit::bench::{pyff_load, signed_aggregate, xmlsec1_verify};

fn bench(c: &mut Criterion) {
    let agg = signed_aggregate(10_000, 1).expect("generate and sign the aggregate");
    let doc = std::fs::read(&agg.xml).expect("read the aggregate");
    let keys = TrustedKeys::from_pem(&std::fs::read(&agg.cert_pem).expect("cert")).expect("cert");
    let policy = Policy::new(keys, SystemTime::now());
    let loaded = load::load(&doc, &policy).unwrap_or_else(|e| panic!("load: {e}"));
    assert_eq!(loaded.len(), 10_000);
    xmlsec1_verify(&agg.cert_pem, &agg.xml).unwrap_or_else(|e| panic!("{e}"));
    let pipeline = agg.xml.with_extension("pyff-load.yaml");
    pyff_load(&agg.cert_pem, &agg.xml, &pipeline).unwrap_or_else(|e| panic!("{e}"));

    let mut g = c.benchmark_group("metadata_load_10k");
    g.throughput(Throughput::Bytes(doc.len() as u64));
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("saml_metadata_load", |b| {
        b.iter(|| black_box(load::load(black_box(&doc), &policy).expect("load").len()))
    });
    // The same on the calling thread only (no helper for hashing, entities modelled in turn).
    let mut one_thread = policy.clone();
    one_thread.verify = one_thread.verify.single_threaded();
    g.bench_function("saml_metadata_load_single_threaded", |b| {
        b.iter(|| {
            black_box(
                load::load(black_box(&doc), &one_thread)
                    .expect("load")
                    .len(),
            )
        })
    });
    // `load_owned`: the document handed over (a copy made outside the timing, as a caller's
    // `std::fs::read` would hand it) and given back while the model is built.
    g.bench_function("saml_metadata_load_owned", |b| {
        b.iter_batched(
            || doc.clone(),
            |d| black_box(load::load_owned(d, &policy).expect("load_owned").len()),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("saml_metadata_load_lazy", |b| {
        b.iter(|| {
            let agg = saml_metadata::lazy::load_lazy(black_box(&doc), &policy).expect("lazy load");
            black_box(agg.len())
        })
    });
    g.bench_function("xmlsec1_cli_verify", |b| {
        b.iter(|| xmlsec1_verify(&agg.cert_pem, &agg.xml).unwrap_or_else(|e| panic!("{e}")))
    });
    g.bench_function("pyff_load", |b| {
        b.iter(|| pyff_load(&agg.cert_pem, &agg.xml, &pipeline).unwrap_or_else(|e| panic!("{e}")))
    });
    g.finish();

    let md = loaded.metadata().clone();
    let key = SigningKey::from_pem(
        &std::fs::read(&agg.key_pem).expect("key"),
        Some(&std::fs::read(&agg.cert_pem).expect("cert")),
    )
    .expect("signing key");
    let written = md.to_xml().expect("write");
    let mut g = c.benchmark_group("metadata_write_10k");
    g.throughput(Throughput::Bytes(written.len() as u64));
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    g.bench_function("to_xml", |b| {
        b.iter(|| black_box(md.to_xml().expect("write").len()))
    });
    g.bench_function("sign_on_write", |b| {
        b.iter(|| {
            black_box(
                md.sign(&key, &SignOptions::default())
                    .expect("sign on write")
                    .len(),
            )
        })
    });
    g.finish();

    // Selecting the IdPs (half) and re-signing them, from the document: through the model
    // (load, select, combine, sign on write: what `samlmd select` did) and streamed from the
    // verified bytes (`selection::write_selection`, what it does now).
    let idps = Filter::role(RoleKind::Idp);
    let valid_until = Some(SystemTime::now() + Duration::from_secs(7 * 86400));
    let mut g = c.benchmark_group("metadata_select_10k");
    g.throughput(Throughput::Bytes(doc.len() as u64));
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    g.bench_function("model_combine_sign", |b| {
        b.iter(|| {
            let agg = load::load(black_box(&doc), &policy).expect("load");
            let sel =
                EntitiesDescriptor::combine("urn:bench", agg.select(&idps).cloned(), valid_until)
                    .expect("combine");
            black_box(sel.sign(&key, &SignOptions::default()).expect("sign").len())
        })
    });
    let opts = SelectOptions::new("urn:bench", valid_until);
    g.bench_function("write_selection", |b| {
        b.iter(|| {
            let agg = saml_metadata::lazy::load_lazy(black_box(&doc), &policy).expect("lazy");
            let mut out = std::io::BufWriter::new(std::io::sink());
            black_box(
                write_selection(&agg, &idps, &key, &opts, &mut out)
                    .expect("select")
                    .len(),
            )
        })
    });
    g.finish();

    let ids: Vec<String> = loaded.entities().map(|e| e.entity_id.clone()).collect();
    let shas: Vec<String> = ids
        .iter()
        .map(|i| format!("{{sha1}}{}", sha1_hex(i)))
        .collect();
    let mut g = c.benchmark_group("metadata_lookup_10k");
    let mut i = 0usize;
    g.bench_function("by_entity_id", |b| {
        b.iter(|| {
            i = (i + 7919) % ids.len();
            black_box(loaded.get(black_box(&ids[i])).is_some())
        })
    });
    g.bench_function("by_sha1", |b| {
        b.iter(|| {
            i = (i + 7919) % shas.len();
            black_box(loaded.get_by_sha1(black_box(&shas[i])).is_some())
        })
    });
    let lazy = saml_metadata::lazy::load_lazy(&doc, &policy).expect("lazy load");
    g.bench_function("lazy_by_entity_id_cached", |b| {
        b.iter(|| {
            i = (i + 7919) % ids.len();
            black_box(lazy.get(black_box(&ids[i])).expect("parse").is_some())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
