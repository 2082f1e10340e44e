//! Writes the test keys (once) and the seeds of the `xep0027_stanza` and `armor` targets:
//! signed presence, a signed and encrypted message with an envelope, a session-key offer and a
//! sealed message, a room key and a room message, all made at the fixture's fixed time.
//! To make new test keys, empty `keys/xep0027-*.asc` and run this twice: the first run writes
//! the keys (and stops, as the fixture was built with the empty files), the second the seeds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use xep0027::jid::Jid;
use xep0027::keys::{Identity, Suite};
use xep0027::policy::Policy;
use xep0027::room::{Member, Moderator};
use xep0027::sequoia_openpgp::Cert;
use xep0027::sequoia_openpgp::serialize::stream::{
    Compressor, Encryptor, LiteralWriter, Message, Recipient,
};
use xep0027::sequoia_openpgp::types::{CompressionAlgorithm, CompressionLevel};
use xep0027::session::Sessions;
use xep0027::stanza::Stanza;
use xep0027::symmetric::OsRandom;
use xep0027::{armor, encrypted, envelope, signed};

/// An OpenPGP message to `to`: `size` zero bytes under `levels` compression layers, after
/// `decoys` anonymous PKESKs to the same key.
fn bomb(to: &Cert, levels: usize, size: usize, decoys: usize) -> Vec<u8> {
    use std::io::Write as _;
    let p = Policy::standard();
    let key = to
        .keys()
        .with_policy(p.openpgp(), Some(saml_fuzz::xep0027_fixture::now()))
        .for_transport_encryption()
        .next()
        .unwrap()
        .key()
        .clone();
    let mut recipients: Vec<Recipient<'_>> = (0..decoys)
        .map(|_| Recipient::new(None, None, &key))
        .collect();
    recipients.push(Recipient::new(None, key.key_handle(), &key));
    let mut sink = Vec::new();
    let mut m = Encryptor::for_recipients(Message::new(&mut sink), recipients)
        .build()
        .unwrap();
    for _ in 0..levels {
        m = Compressor::new(m)
            .algo(CompressionAlgorithm::Zip)
            .level(CompressionLevel::best())
            .build()
            .unwrap();
    }
    let mut w = LiteralWriter::new(m).build().unwrap();
    let zeros = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(zeros.len());
        w.write_all(&zeros[..n]).unwrap();
        left -= n;
    }
    w.finalize().unwrap();
    sink
}

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let now = saml_fuzz::xep0027_fixture::now();
    for (name, jid) in [("alice", "alice@example.org"), ("bob", "bob@example.org")] {
        let p = dir.join(format!("keys/xep0027-{name}.asc"));
        if std::fs::metadata(&p).map_or(true, |m| m.len() == 0) {
            let id = Identity::generate(
                &Jid::new(jid).unwrap(),
                Suite::Cv25519,
                now - Duration::from_secs(86_400),
                None,
            )
            .unwrap();
            let bin = id.to_secret_bytes().unwrap();
            let text = format!(
                "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n{}\n-----END PGP PRIVATE KEY BLOCK-----\n",
                armor::encode(&bin)
            );
            std::fs::write(&p, text).unwrap();
        }
    }
    let (alice, bob, _) = saml_fuzz::xep0027_fixture::world().unwrap();
    let policy = Policy::standard();
    let mut rng = OsRandom;
    let mut seeds: Vec<(String, String)> = Vec::new();
    let deliver = |s: &Stanza| {
        s.clone()
            .with_attr("from", "alice@example.org/fuzz")
            .to_xml()
    };

    let mut p = Stanza::parse("<presence id='p1' to='bob@example.org'><show>away</show><status>Out &amp; about</status></presence>").unwrap();
    signed::sign(&mut p, &alice, &policy, now).unwrap();
    envelope::seal(&mut p, &alice, &policy, now).unwrap();
    seeds.push(("presence.xml".into(), deliver(&p)));

    let mut m = Stanza::parse("<message to='bob@example.org' id='m1' type='chat'><body>hello</body><thread>t</thread></message>").unwrap();
    encrypted::encrypt(&mut m, &alice, &[&bob.public_cert()], true, &policy, now).unwrap();
    envelope::seal(&mut m, &alice, &policy, now).unwrap();
    seeds.push(("encrypted.xml".into(), deliver(&m)));

    let mut sa = Sessions::new(alice.jid(), Duration::from_secs(3600));
    let offer = sa
        .offer(
            &alice,
            bob.jid(),
            &bob.public_cert(),
            &mut rng,
            &policy,
            now,
        )
        .unwrap();
    seeds.push(("session_offer.xml".into(), deliver(&offer)));
    let mut s =
        Stanza::parse("<message to='bob@example.org' id='s1'><body>sealed</body></message>")
            .unwrap();
    sa.seal(&mut s, &mut rng, now).unwrap();
    seeds.push(("session_sealed.xml".into(), deliver(&s)));

    let room = Jid::new(saml_fuzz::xep0027_fixture::ROOM).unwrap();
    let mut moderator = Moderator::new(&room, Duration::from_secs(86_400), &mut rng, now).unwrap();
    moderator
        .add_member(bob.jid(), bob.public_cert(), &policy, now)
        .unwrap();
    moderator
        .add_member(alice.jid(), alice.public_cert(), &policy, now)
        .unwrap();
    let dist = moderator
        .distribute(&alice, &mut rng, &policy, now)
        .unwrap()
        .stanzas;
    let to_bob = dist
        .iter()
        .find(|d| d.to() == Some("bob@example.org"))
        .unwrap();
    seeds.push(("room_key.xml".into(), deliver(to_bob)));
    let to_alice = dist
        .iter()
        .find(|d| d.to() == Some("alice@example.org"))
        .unwrap();
    let mut member = Member::new(&room, alice.jid(), alice.fingerprint());
    member
        .accept_key(
            &Stanza::parse(&deliver(to_alice)).unwrap(),
            &alice,
            &saml_fuzz::xep0027_fixture::world().unwrap().2,
            &policy,
            now,
        )
        .unwrap();
    let mut g = Stanza::parse("<message id='g1'><body>room</body></message>").unwrap();
    member.seal(&mut g, &alice, &mut rng, &policy, now).unwrap();
    seeds.push((
        "room_message.xml".into(),
        g.with_attr("from", "ops@rooms.example.org/alice")
            .with_attr("to", "bob@example.org")
            .to_xml(),
    ));

    // Issue 12 items 1 and 2: compression bombs (one layer, and nested) and a stanza with
    // more PKESKs than decrypt looks at, as a message body and as a session-key offer.
    let bob_cert = bob.public_cert();
    let bomb1 = armor::encode(&bomb(&bob_cert, 1, 16 << 20, 0));
    let bomb2 = armor::encode(&bomb(&bob_cert, 2, 64 << 20, 0));
    let many = armor::encode(&bomb(&bob_cert, 0, 5, 70));
    let enc = |payload: &str| {
        format!(
            "<message from='alice@example.org/fuzz' to='bob@example.org' id='b1' type='chat'><body>x</body><x xmlns='jabber:x:encrypted'>{payload}</x></message>"
        )
    };
    seeds.push(("bomb_zip.xml".into(), enc(&bomb1)));
    seeds.push(("bomb_nested.xml".into(), enc(&bomb2)));
    seeds.push(("many_pkesks.xml".into(), enc(&many)));
    seeds.push(("session_offer_bomb.xml".into(), format!("<message from='alice@example.org/fuzz' to='bob@example.org' id='o1'><key xmlns='urn:xmpp-federation:xep0027:session:0' id='k1' expires='2026-12-01T01:00:00.000Z'>{bomb1}</key></message>")));
    for (name, xml) in &seeds {
        std::fs::write(dir.join("seeds/xep0027_stanza").join(name), xml).unwrap();
    }
    // Armor shapes: stripped, one line, glued checksum, full armor.
    let sig = armor::encode(b"\x88\x75\x04\x00\x16\x0a\x00\x1d\x16\x21");
    let lines: Vec<&str> = sig.lines().collect();
    let (check, b64) = lines.split_last().unwrap();
    for (i, shape) in [
        sig.clone(),
        b64.concat(),
        format!("{}{check}", b64.concat()),
        format!(
            "-----BEGIN PGP SIGNATURE-----\nVersion: x\n\n{sig}\n-----END PGP SIGNATURE-----\n"
        ),
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(dir.join(format!("seeds/armor/shape{i}.txt")), shape).unwrap();
    }
    println!("wrote {} stanza seeds and 4 armor seeds", seeds.len());
}
