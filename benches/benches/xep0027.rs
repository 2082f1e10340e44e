//! xep0027: sign+verify of a presence stanza, encrypt+decrypt of a 1 KiB message body with
//! OpenPGP (to the peer and to oneself), and the same 1 KiB body sealed and opened with a
//! session key; GnuPG doing the same work per stanza the way classic clients do (one `gpg`
//! process to sign or encrypt, one to verify or decrypt, its agent already running), measured in
//! the same run. Keys: Ed25519 signing and Curve25519 encryption on both sides.

#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // a bench that cannot run must fail loudly

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use saml_examples::gnupg::{Gpg, KeyAlgo};
use xep0027::envelope::ReplayWindow;
use xep0027::jid::Jid;
use xep0027::keys::{Identity, Keyring, Suite};
use xep0027::policy::Policy;
use xep0027::session::Sessions;
use xep0027::stanza::Stanza;
use xep0027::symmetric::OsRandom;
use xep0027::{armor, encrypted, signed};

const STATUS: &str = "scheduler ready: 12 jobs queued";

fn bench(c: &mut Criterion) {
    let now = SystemTime::now();
    let policy = Policy::standard();
    let alice = Identity::generate(
        &Jid::new("alice@cloud.example").unwrap(),
        Suite::Cv25519,
        now,
        None,
    )
    .unwrap();
    let bob = Identity::generate(
        &Jid::new("bob@cloud.example").unwrap(),
        Suite::Cv25519,
        now,
        None,
    )
    .unwrap();
    let mut ring = Keyring::new();
    ring.insert_pinned(alice.jid(), alice.public_cert());
    ring.insert_pinned(bob.jid(), bob.public_cert());
    let body: String = "0123456789abcdef".repeat(64); // 1 KiB
    let presence =
        format!("<presence id='p1'><show>chat</show><status>{STATUS}</status></presence>");

    // The same work in gpg: its own keys (same algorithms), the peer's public key imported.
    let gpg = Gpg::new().expect("GnuPG is required for this bench: run scripts/setup.sh");
    let ga = gpg
        .gen_key("xmpp:alice@cloud.example", KeyAlgo::Ed25519)
        .unwrap();
    let gb = gpg
        .gen_key("xmpp:bob@cloud.example", KeyAlgo::Ed25519)
        .unwrap();

    let mut g = c.benchmark_group("xep0027_presence_sign_verify");
    g.bench_function("xep0027", |b| {
        b.iter(|| {
            let mut p = Stanza::parse(&presence).unwrap();
            signed::sign(&mut p, &alice, &policy, now).unwrap();
            let wire = p.to_xml();
            let got = Stanza::parse(&wire)
                .unwrap()
                .with_attr("from", "alice@cloud.example/a");
            black_box(signed::verify(&got, &ring, &policy, now).unwrap());
        })
    });
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    g.bench_function("gpg_per_stanza", |b| {
        b.iter(|| {
            let sig = gpg
                .detach_sign(&ga, STATUS.as_bytes(), false, "SHA256")
                .unwrap();
            let stripped = armor::strip(&sig).unwrap();
            black_box(
                gpg.verify_detached(&Gpg::rearmor("SIGNATURE", &stripped), STATUS.as_bytes())
                    .unwrap(),
            );
        })
    });
    g.finish();

    let message = format!(
        "<message to='bob@cloud.example' id='m1' type='chat'><body>{body}</body></message>"
    );
    let mut g = c.benchmark_group("xep0027_encrypt_decrypt_1KiB");
    g.bench_function("xep0027_public_key", |b| {
        b.iter(|| {
            let mut m = Stanza::parse(&message).unwrap();
            encrypted::encrypt(&mut m, &alice, &[&bob.public_cert()], false, &policy, now).unwrap();
            let got = Stanza::parse(&m.to_xml())
                .unwrap()
                .with_attr("from", "alice@cloud.example/a");
            black_box(encrypted::decrypt(&got, &bob, &ring, &policy, now).unwrap());
        })
    });
    let prepared = xep0027::openpgp::Recipients::new(
        &[&bob.public_cert(), &alice.public_cert()],
        &policy,
        now,
    )
    .unwrap();
    g.bench_function("xep0027_public_key_prepared", |b| {
        b.iter(|| {
            let mut m = Stanza::parse(&message).unwrap();
            encrypted::encrypt_to(&mut m, &alice, &prepared, false, &policy, now).unwrap();
            let got = Stanza::parse(&m.to_xml())
                .unwrap()
                .with_attr("from", "alice@cloud.example/a");
            black_box(encrypted::decrypt(&got, &bob, &ring, &policy, now).unwrap());
        })
    });
    g.bench_function("xep0027_public_key_signed", |b| {
        b.iter(|| {
            let mut m = Stanza::parse(&message).unwrap();
            encrypted::encrypt(&mut m, &alice, &[&bob.public_cert()], true, &policy, now).unwrap();
            let got = Stanza::parse(&m.to_xml())
                .unwrap()
                .with_attr("from", "alice@cloud.example/a");
            black_box(encrypted::decrypt(&got, &bob, &ring, &policy, now).unwrap());
        })
    });
    let mut sa = Sessions::new(alice.jid(), Duration::from_secs(86_400));
    let mut sb = Sessions::new(bob.jid(), Duration::from_secs(86_400));
    let offer = sa
        .offer(
            &alice,
            bob.jid(),
            &bob.public_cert(),
            &mut OsRandom,
            &policy,
            now,
        )
        .unwrap();
    sb.accept(
        &offer.with_attr("from", "alice@cloud.example/a"),
        &bob,
        &ring,
        &policy,
        now,
    )
    .unwrap();
    let mut n = 0u64;
    g.bench_function("xep0027_session_key", |b| {
        b.iter(|| {
            n += 1;
            let mut m = Stanza::parse(&message)
                .unwrap()
                .with_attr("id", &n.to_string());
            sa.seal(&mut m, &mut OsRandom, now).unwrap();
            let got = Stanza::parse(&m.to_xml())
                .unwrap()
                .with_attr("from", "alice@cloud.example/a");
            let mut window = ReplayWindow::default();
            black_box(sb.open(&got, &mut window, now).unwrap());
        })
    });
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    g.bench_function("gpg_per_stanza", |b| {
        b.iter(|| {
            let armored = gpg.encrypt(&[&gb, &ga], body.as_bytes(), None).unwrap();
            let stripped = armor::strip(&armored).unwrap();
            let (plain, _) = gpg.decrypt(&Gpg::rearmor("MESSAGE", &stripped)).unwrap();
            assert_eq!(plain.len(), body.len());
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
