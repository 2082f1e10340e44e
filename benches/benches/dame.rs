//! DAME (dame-protocol): a whole first-use exchange in memory with every signature and
//! verification real (RSA-2048): discovery, AuthnRequest1 signed by the SP and verified by the
//! broker, AuthnRequest2 signed by the broker and verified by the IdP, Response2 signed by the
//! IdP (Response and Assertion) and validated by the broker, two signed triggers verified by
//! the agents, two MDQ fetches verified by mdq-client and integrated, AuthnRequest1 replayed
//! and verified by the IdP, Response1 signed and validated by the SP. The harness is the
//! one of crates/dame-protocol/tests (user agent, SP, broker, IdP as function calls). Setup
//! (registering the three entities, which signs their published documents) is outside the
//! measurement. The GÉANT-TrustBroker proof of concept took under 2 s on one virtual network
//! plus a fixed 10 s wait before the user continued.
//!
//! `agent_sources_10000`: what `Agent::refresh_due` does under the agent's lock before it
//! looks at its own state, the listing of an agent directory holding 10,000 integrated peers
//! (`LocalDynamicDir::sources`: one `read_dir`, one small `.xml.loc` read per peer).

#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

#[path = "../../crates/dame-protocol/tests/harness/mod.rs"]
mod harness;

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use dame_protocol::integration::{IntegrationTarget as _, LocalDynamicDir};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("dame");
    g.bench_function("first_use_exchange", |b| {
        b.iter_batched(
            harness::World::new,
            |mut w| black_box(w.first_use()),
            BatchSize::PerIteration,
        );
    });
    g.bench_function("second_use_sso", |b| {
        b.iter_batched(
            || {
                let mut w = harness::World::new();
                w.first_use();
                w
            },
            |mut w| {
                let url = w.sp_direct_login(harness::IDP);
                let (form, _) = w.idp_sso(harness::IDP, &url).unwrap();
                black_box(w.sp_acs(harness::IDP, &form).unwrap())
            },
            BatchSize::PerIteration,
        );
    });
    let dir = tempfile::tempdir().expect("tempdir");
    for i in 0..10_000u32 {
        let stem = saml_metadata::model::sha1_hex(&format!("https://sp{i}.example.org/sp"));
        let p = dir.path();
        std::fs::write(p.join(format!("{stem}.xml")), b"<EntityDescriptor/>").unwrap();
        std::fs::write(
            p.join(format!("{stem}.xml.loc")),
            format!("https://broker.example.com/mdq/entities/%7Bsha1%7D{stem}\n"),
        )
        .unwrap();
    }
    let target = LocalDynamicDir::open(dir.path()).expect("open");
    assert_eq!(target.sources().unwrap().len(), 10_000);
    g.bench_function("agent_sources_10000", |b| {
        b.iter(|| black_box(target.sources().unwrap().len()));
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
