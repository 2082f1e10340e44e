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
use xep0027::session::Sessions;
use xep0027::stanza::Stanza;
use xep0027::symmetric::OsRandom;
use xep0027::{armor, encrypted, envelope, signed};

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let now = saml_fuzz::xep0027_fixture::now();
    for (name, jid) in [("alice", "alice@example.org"), ("bob", "bob@example.org")] {
        let p = dir.join(format!("keys/xep0027-{name}.asc"));
        if std::fs::metadata(&p).map_or(true, |m| m.len() == 0) {
            let id = Identity::generate(&Jid::new(jid).unwrap(), Suite::Cv25519, now - Duration::from_secs(86_400), None).unwrap();
            let bin = id.to_secret_bytes().unwrap();
            let text = format!("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n{}\n-----END PGP PRIVATE KEY BLOCK-----\n", armor::encode(&bin));
            std::fs::write(&p, text).unwrap();
        }
    }
    let (alice, bob, _) = saml_fuzz::xep0027_fixture::world().unwrap();
    let policy = Policy::standard();
    let mut rng = OsRandom;
    let mut seeds: Vec<(String, String)> = Vec::new();
    let deliver = |s: &Stanza| s.clone().with_attr("from", "alice@example.org/fuzz").to_xml();

    let mut p = Stanza::parse("<presence id='p1' to='bob@example.org'><show>away</show><status>Out &amp; about</status></presence>").unwrap();
    signed::sign(&mut p, &alice, &policy, now).unwrap();
    envelope::seal(&mut p, &alice, &policy, now).unwrap();
    seeds.push(("presence.xml".into(), deliver(&p)));

    let mut m = Stanza::parse("<message to='bob@example.org' id='m1' type='chat'><body>hello</body><thread>t</thread></message>").unwrap();
    encrypted::encrypt(&mut m, &alice, &[&bob.public_cert()], true, &policy, now).unwrap();
    envelope::seal(&mut m, &alice, &policy, now).unwrap();
    seeds.push(("encrypted.xml".into(), deliver(&m)));

    let mut sa = Sessions::new(alice.jid(), Duration::from_secs(3600));
    let offer = sa.offer(&alice, bob.jid(), &bob.public_cert(), &mut rng, &policy, now).unwrap();
    seeds.push(("session_offer.xml".into(), deliver(&offer)));
    let mut s = Stanza::parse("<message to='bob@example.org' id='s1'><body>sealed</body></message>").unwrap();
    sa.seal(&mut s, &mut rng, now).unwrap();
    seeds.push(("session_sealed.xml".into(), deliver(&s)));

    let room = Jid::new(saml_fuzz::xep0027_fixture::ROOM).unwrap();
    let mut moderator = Moderator::new(&room, Duration::from_secs(86_400), &mut rng, now).unwrap();
    moderator.add_member(bob.jid(), bob.public_cert());
    moderator.add_member(alice.jid(), alice.public_cert());
    let dist = moderator.distribute(&alice, &mut rng, &policy, now).unwrap();
    let to_bob = dist.iter().find(|d| d.to() == Some("bob@example.org")).unwrap();
    seeds.push(("room_key.xml".into(), deliver(to_bob)));
    let to_alice = dist.iter().find(|d| d.to() == Some("alice@example.org")).unwrap();
    let mut member = Member::new(&room, alice.jid(), alice.fingerprint());
    member.accept_key(&Stanza::parse(&deliver(to_alice)).unwrap(), &alice, &saml_fuzz::xep0027_fixture::world().unwrap().2, &policy, now).unwrap();
    let mut g = Stanza::parse("<message id='g1'><body>room</body></message>").unwrap();
    member.seal(&mut g, &alice, &mut rng, &policy, now).unwrap();
    seeds.push(("room_message.xml".into(), g.with_attr("from", "ops@rooms.example.org/alice").with_attr("to", "bob@example.org").to_xml()));

    for (name, xml) in &seeds {
        std::fs::write(dir.join("seeds/xep0027_stanza").join(name), xml).unwrap();
    }
    // Armor shapes: stripped, one line, glued checksum, full armor.
    let sig = armor::encode(b"\x88\x75\x04\x00\x16\x0a\x00\x1d\x16\x21");
    let lines: Vec<&str> = sig.lines().collect();
    let (check, b64) = lines.split_last().unwrap();
    for (i, shape) in [sig.clone(), b64.concat(), format!("{}{check}", b64.concat()), format!("-----BEGIN PGP SIGNATURE-----\nVersion: x\n\n{sig}\n-----END PGP SIGNATURE-----\n")].iter().enumerate() {
        std::fs::write(dir.join(format!("seeds/armor/shape{i}.txt")), shape).unwrap();
    }
    println!("wrote {} stanza seeds and 4 armor seeds", seeds.len());
}
