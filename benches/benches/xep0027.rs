//! xep0027: sign+verify of a presence stanza, encrypt+decrypt of a 1 KiB message body with
//! OpenPGP (to the peer and to oneself), and the same 1 KiB body sealed and opened with a
//! session key; GnuPG doing the same work per stanza the way classic clients do (one `gpg`
//! process to sign or encrypt, one to verify or decrypt, its agent already running), measured in
//! the same run. Keys: Ed25519 signing and Curve25519 encryption on both sides.

#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // a bench that cannot run must fail loudly

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use testkit::gnupg::{Gpg, KeyAlgo};
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
            let _ = black_box(signed::verify(&got, &ring, &policy, now).unwrap());
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
            let _ = black_box(encrypted::decrypt(&got, &bob, &ring, &policy, now).unwrap());
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
            let _ = black_box(encrypted::decrypt(&got, &bob, &ring, &policy, now).unwrap());
        })
    });
    g.bench_function("xep0027_public_key_signed", |b| {
        b.iter(|| {
            let mut m = Stanza::parse(&message).unwrap();
            encrypted::encrypt(&mut m, &alice, &[&bob.public_cert()], true, &policy, now).unwrap();
            let got = Stanza::parse(&m.to_xml())
                .unwrap()
                .with_attr("from", "alice@cloud.example/a");
            let _ = black_box(encrypted::decrypt(&got, &bob, &ring, &policy, now).unwrap());
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

    // Decryption alone, of a message encrypted once (the path issue 12's caps changed: a
    // streamed first pass finds the session key and bounds the expansion, then sequoia's
    // Decryptor verifies with that key).
    let mut g = c.benchmark_group("xep0027_decrypt_1KiB");
    for (name, sign) in [("unsigned", false), ("signed_inside", true)] {
        let mut m = Stanza::parse(&message).unwrap();
        encrypted::encrypt(&mut m, &alice, &[&bob.public_cert()], sign, &policy, now).unwrap();
        let got = Stanza::parse(&m.to_xml())
            .unwrap()
            .with_attr("from", "alice@cloud.example/a");
        g.bench_function(name, |b| {
            b.iter(|| black_box(encrypted::decrypt(&got, &bob, &ring, &policy, now).unwrap()))
        });
    }
    g.finish();

    hostile(c, &bob, now);
}

/// What a hostile stanza costs now that decryption is bounded (issue 12 items 1 and 2): a
/// 128 MiB compression bomb, and 60 anonymous PKESKs (under the 64 cap) to a key nobody here
/// holds, against an RSA-3072 recipient.
fn hostile(c: &mut Criterion, bob: &Identity, now: SystemTime) {
    use std::io::Write as _;
    use xep0027::sequoia_openpgp::Cert;
    use xep0027::sequoia_openpgp::serialize::stream::{
        Compressor, Encryptor, LiteralWriter, Message, Recipient,
    };
    use xep0027::sequoia_openpgp::types::{CompressionAlgorithm, CompressionLevel};
    let policy = Policy::standard();
    let message = |to: &Cert, decoy: Option<&Cert>, decoys: usize, zeros: usize, compress| {
        let key_of = |c: &Cert| {
            c.keys()
                .with_policy(policy.openpgp(), Some(now))
                .for_transport_encryption()
                .next()
                .unwrap()
                .key()
                .clone()
        };
        let key = key_of(to);
        let dk = decoy.map(key_of);
        let mut recipients: Vec<Recipient<'_>> = dk
            .iter()
            .flat_map(|k| (0..decoys).map(move |_| Recipient::new(None, None, k)))
            .collect();
        recipients.push(Recipient::new(None, None, &key));
        let mut sink = Vec::new();
        let mut m = Encryptor::for_recipients(Message::new(&mut sink), recipients)
            .build()
            .unwrap();
        if compress {
            m = Compressor::new(m)
                .algo(CompressionAlgorithm::Zip)
                .level(CompressionLevel::best())
                .build()
                .unwrap();
        }
        let mut w = LiteralWriter::new(m).build().unwrap();
        let chunk = vec![0u8; 1 << 20];
        let mut left = zeros;
        while left > 0 {
            let n = left.min(chunk.len());
            w.write_all(&chunk[..n]).unwrap();
            left -= n;
        }
        w.finalize().unwrap();
        sink
    };
    let mut g = c.benchmark_group("xep0027_hostile");
    g.sample_size(10);
    let bomb = message(&bob.public_cert(), None, 0, 128 << 20, true);
    g.bench_function("compression_bomb_128MiB_refused", |b| {
        b.iter(|| {
            assert!(xep0027::openpgp::decrypt(&bomb, bob, &[], &policy, now).is_err());
        })
    });
    let rsa = |n: &str| {
        Identity::generate(
            &Jid::new(&format!("{n}@cloud.example")).unwrap(),
            Suite::Rsa3k,
            now,
            None,
        )
        .unwrap()
    };
    let (victim, decoy) = (rsa("victim"), rsa("decoy"));
    let flood = message(
        &victim.public_cert(),
        Some(&decoy.public_cert()),
        60,
        16,
        false,
    );
    g.bench_function("anonymous_pkesks_60_rsa3072_refused", |b| {
        b.iter(|| {
            assert!(xep0027::openpgp::decrypt(&flood, &victim, &[], &policy, now).is_err());
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
