//! Two-party and room scenarios, in memory, with every rejection the crate promises: each
//! refused stanza leaves the receiver's state (replay window, keys) unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, SystemTime};

use xep0027::Error;
use xep0027::encrypted::{self, FALLBACK_BODY};
use xep0027::envelope::{self, ReplayWindow};
use xep0027::jid::Jid;
use xep0027::keys::{Identity, Keyring, Suite};
use xep0027::policy::Policy;
use xep0027::room::{Member, Moderator};
use xep0027::session::Sessions;
use xep0027::signed;
use xep0027::stanza::{Kind, Stanza};
use xep0027::symmetric::OsRandom;

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_130_000)
}

fn id(name: &str) -> Identity {
    Identity::generate(
        &Jid::new(&format!("{name}@example.org")).unwrap(),
        Suite::Cv25519,
        t0() - Duration::from_secs(86_400),
        None,
    )
    .unwrap()
}

struct World {
    alice: Identity,
    bob: Identity,
    carol: Identity,
    keyring: Keyring,
    policy: Policy,
}

fn world() -> World {
    let (alice, bob, carol) = (id("alice"), id("bob"), id("carol"));
    let mut keyring = Keyring::new();
    for i in [&alice, &bob, &carol] {
        keyring.insert_pinned(i.jid(), i.public_cert());
    }
    World {
        alice,
        bob,
        carol,
        keyring,
        policy: Policy::standard(),
    }
}

/// What the server does on delivery: stamp the sender's full JID.
fn deliver(s: &Stanza, from: &str) -> Stanza {
    Stanza::parse(&s.to_xml()).unwrap().with_attr("from", from)
}

#[test]
fn signed_presence_verifies_and_tampering_is_refused() {
    let w = world();
    let mut p = Stanza::parse("<presence id='p1'><show>dnd</show><status>Busy \u{1F4BB}</status><c xmlns='http://jabber.org/protocol/caps' node='n' ver='v' hash='sha-1'/></presence>").unwrap();
    signed::sign(&mut p, &w.alice, &w.policy, t0()).unwrap();
    let got = deliver(&p, "alice@example.org/laptop");
    let v = signed::verify(&got, &w.keyring, &w.policy, t0()).unwrap();
    assert_eq!(v.signer, w.alice.fingerprint());
    assert_eq!(v.created, t0());
    assert!(
        got.element()
            .children()
            .any(|c| c.ns() == "http://jabber.org/protocol/caps"),
        "other children kept"
    );

    let mut tampered = got.clone();
    tampered.set_status("Available");
    assert!(matches!(
        signed::verify(&tampered, &w.keyring, &w.policy, t0()),
        Err(Error::BadSignature(_))
    ));
    // Alice's signed presence replayed as Bob's: the signature is not by a key of bob's.
    let as_bob = deliver(&p, "bob@example.org/x");
    assert!(matches!(
        signed::verify(&as_bob, &w.keyring, &w.policy, t0()),
        Err(Error::UnknownSigner(_))
    ));
    // No sender, no certificate, no signature element.
    assert!(signed::verify(&p, &w.keyring, &w.policy, t0()).is_err());
    let stranger = deliver(&p, "mallory@evil.example/x");
    assert!(matches!(
        signed::verify(&stranger, &w.keyring, &w.policy, t0()),
        Err(Error::UnknownSigner(_))
    ));
    let unsigned = deliver(
        &Stanza::parse("<presence/>").unwrap(),
        "alice@example.org/x",
    );
    assert!(matches!(
        signed::verify(&unsigned, &w.keyring, &w.policy, t0()),
        Err(Error::Stanza(_))
    ));
    // An empty presence signs the empty string.
    let mut empty = Stanza::new(Kind::Presence);
    signed::sign(&mut empty, &w.alice, &w.policy, t0()).unwrap();
    let _verified = signed::verify(
        &deliver(&empty, "alice@example.org/x"),
        &w.keyring,
        &w.policy,
        t0(),
    )
    .unwrap();
}

#[test]
fn envelope_binds_sender_recipient_id_time_and_refuses_replays() {
    let w = world();
    let mut m = Stanza::parse(
        "<message to='bob@example.org/desk' id='m1' type='chat'><body>deploy v2</body></message>",
    )
    .unwrap();
    envelope::seal(&mut m, &w.alice, &w.policy, t0()).unwrap();
    let got = deliver(&m, "alice@example.org/ci");
    let mut win = ReplayWindow::new(Duration::from_secs(300), 1000);

    // Stale and future stamps are refused, and leave no trace.
    let late = t0() + Duration::from_secs(301);
    assert!(matches!(
        envelope::check(&got, &w.keyring, &w.policy, &mut win, late),
        Err(Error::Replay(_))
    ));
    assert!(matches!(
        envelope::check(
            &got,
            &w.keyring,
            &w.policy,
            &mut win,
            t0() - Duration::from_secs(301)
        ),
        Err(Error::Replay(_))
    ));
    assert!(win.is_empty());

    let c = envelope::check(
        &got,
        &w.keyring,
        &w.policy,
        &mut win,
        t0() + Duration::from_secs(2),
    )
    .unwrap();
    assert_eq!(c.sender.bare(), "alice@example.org");
    assert_eq!(c.stamp, t0());
    assert!(matches!(
        envelope::check(
            &got,
            &w.keyring,
            &w.policy,
            &mut win,
            t0() + Duration::from_secs(3)
        ),
        Err(Error::Replay(_))
    ));

    let mut fresh = ReplayWindow::default();
    // Redirected to another recipient.
    let moved = got.clone().with_attr("to", "carol@example.org");
    assert!(matches!(
        envelope::check(&moved, &w.keyring, &w.policy, &mut fresh, t0()),
        Err(Error::Binding(_))
    ));
    // Claimed by another sender (the server stamps the real one).
    let other = deliver(&m, "carol@example.org/x");
    assert!(matches!(
        envelope::check(&other, &w.keyring, &w.policy, &mut fresh, t0()),
        Err(Error::Binding(_))
    ));
    // A new id to get past the replay window: the signature covers the id.
    let new_id = got.clone().with_attr("id", "m2");
    assert!(matches!(
        envelope::check(&new_id, &w.keyring, &w.policy, &mut fresh, t0()),
        Err(Error::BadSignature(_))
    ));
    // Changed body, changed type.
    let mut body = got.clone();
    body.set_body("deploy v3");
    assert!(matches!(
        envelope::check(&body, &w.keyring, &w.policy, &mut fresh, t0()),
        Err(Error::BadSignature(_))
    ));
    let typ = got.clone().with_attr("type", "normal");
    assert!(matches!(
        envelope::check(&typ, &w.keyring, &w.policy, &mut fresh, t0()),
        Err(Error::BadSignature(_))
    ));
    // A re-stamped envelope (to get past the skew) breaks the signature.
    let xml = got.to_xml().replace(
        &xep0027::time::format(t0()),
        &xep0027::time::format(t0() + Duration::from_secs(600)),
    );
    let restamped = Stanza::parse(&xml).unwrap();
    assert!(matches!(
        envelope::check(
            &restamped,
            &w.keyring,
            &w.policy,
            &mut fresh,
            t0() + Duration::from_secs(600)
        ),
        Err(Error::BadSignature(_))
    ));
    assert!(fresh.is_empty(), "refusals record nothing");

    // Broadcast presence: no recipient in the envelope; the server adds 'to' per contact.
    let mut p = Stanza::parse("<presence id='p9'><status>on call</status></presence>").unwrap();
    signed::sign(&mut p, &w.alice, &w.policy, t0()).unwrap();
    envelope::seal(&mut p, &w.alice, &w.policy, t0()).unwrap();
    let to_bob = deliver(&p, "alice@example.org/x").with_attr("to", "bob@example.org");
    let _checked = envelope::check(&to_bob, &w.keyring, &w.policy, &mut fresh, t0()).unwrap();
    // A message always needs a recipient and an id.
    let mut no_to = Stanza::parse("<message id='x'><body>b</body></message>").unwrap();
    assert!(envelope::seal(&mut no_to, &w.alice, &w.policy, t0()).is_err());
    let mut no_id =
        Stanza::parse("<message to='bob@example.org'><body>b</body></message>").unwrap();
    assert!(envelope::seal(&mut no_id, &w.alice, &w.policy, t0()).is_err());
}

#[test]
fn encrypted_message_signed_inside() {
    let w = world();
    let mut m = Stanza::parse("<message to='bob@example.org' id='e1' type='chat'><body>the password is hunter2</body><thread>t1</thread></message>").unwrap();
    encrypted::encrypt(
        &mut m,
        &w.alice,
        &[&w.bob.public_cert()],
        true,
        &w.policy,
        t0(),
    )
    .unwrap();
    assert_eq!(m.body().unwrap().as_deref(), Some(FALLBACK_BODY));
    assert!(!m.to_xml().contains("hunter2"));
    envelope::seal(&mut m, &w.alice, &w.policy, t0()).unwrap();
    let got = deliver(&m, "alice@example.org/a");

    let mut win = ReplayWindow::default();
    let _checked = envelope::check(&got, &w.keyring, &w.policy, &mut win, t0()).unwrap();
    let d = encrypted::decrypt(&got, &w.bob, &w.keyring, &w.policy, t0()).unwrap();
    assert_eq!(d.body, "the password is hunter2");
    assert_eq!(d.signature.unwrap().signer, w.alice.fingerprint());
    // Encrypted to self too.
    assert_eq!(
        encrypted::decrypt(&got, &w.alice, &w.keyring, &w.policy, t0())
            .unwrap()
            .body,
        "the password is hunter2"
    );
    // Not to carol.
    assert!(matches!(
        encrypted::decrypt(&got, &w.carol, &w.keyring, &w.policy, t0()),
        Err(Error::Decrypt)
    ));
    // Replayed: the envelope refuses it.
    assert!(matches!(
        envelope::check(&got, &w.keyring, &w.policy, &mut win, t0()),
        Err(Error::Replay(_))
    ));
    // Forwarded by carol as hers: the inner signature is alice's, not carol's.
    let forwarded = deliver(&m, "carol@example.org/c");
    assert!(matches!(
        encrypted::decrypt(&forwarded, &w.bob, &w.keyring, &w.policy, t0()),
        Err(Error::UnknownSigner(_))
    ));
    // Tampered ciphertext: one error, whatever broke.
    let xml = got.to_xml();
    let x_start = xml.find("jabber:x:encrypted'>").unwrap() + 20;
    let mut bytes = xml.into_bytes();
    bytes[x_start + 60] = if bytes[x_start + 60] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let bad = Stanza::parse(std::str::from_utf8(&bytes).unwrap()).unwrap();
    assert!(matches!(
        encrypted::decrypt(&bad, &w.bob, &w.keyring, &w.policy, t0()),
        Err(Error::Decrypt)
    ));
    // The envelope covers the ciphertext too.
    assert!(matches!(
        envelope::check(
            &bad,
            &w.keyring,
            &w.policy,
            &mut ReplayWindow::default(),
            t0()
        ),
        Err(Error::BadSignature(_))
    ));

    // Several recipients: each reads it, nobody else.
    let mut multi =
        Stanza::parse("<message to='ops@example.org' id='e3'><body>to both</body></message>")
            .unwrap();
    encrypted::encrypt(
        &mut multi,
        &w.alice,
        &[&w.bob.public_cert(), &w.carol.public_cert()],
        true,
        &w.policy,
        t0(),
    )
    .unwrap();
    let got = deliver(&multi, "alice@example.org/a");
    for reader in [&w.bob, &w.carol, &w.alice] {
        assert_eq!(
            encrypted::decrypt(&got, reader, &w.keyring, &w.policy, t0())
                .unwrap()
                .body,
            "to both"
        );
    }
    let dave = id("dave");
    assert!(matches!(
        encrypted::decrypt(&got, &dave, &w.keyring, &w.policy, t0()),
        Err(Error::Decrypt)
    ));

    // Unsigned encryption: no signature reported.
    let mut u = Stanza::parse("<message to='bob@example.org' id='e2'><body>plain</body></message>")
        .unwrap();
    encrypted::encrypt(
        &mut u,
        &w.alice,
        &[&w.bob.public_cert()],
        false,
        &w.policy,
        t0(),
    )
    .unwrap();
    let d = encrypted::decrypt(
        &deliver(&u, "alice@example.org/a"),
        &w.bob,
        &w.keyring,
        &w.policy,
        t0(),
    )
    .unwrap();
    assert!(d.signature.is_none());
    // Only messages with a body.
    assert!(
        encrypted::encrypt(
            &mut Stanza::new(Kind::Presence),
            &w.alice,
            &[],
            true,
            &w.policy,
            t0()
        )
        .is_err()
    );
    assert!(
        encrypted::encrypt(
            &mut Stanza::new(Kind::Message),
            &w.alice,
            &[],
            true,
            &w.policy,
            t0()
        )
        .is_err()
    );
}

#[test]
fn session_keys_agree_once_then_seal_both_ways() {
    let w = world();
    let mut rng = OsRandom;
    let (ja, jb) = (w.alice.jid().clone(), w.bob.jid().clone());
    let mut sa = Sessions::new(&ja, Duration::from_secs(3600));
    let mut sb = Sessions::new(&jb, Duration::from_secs(3600));
    let offer = sa
        .offer(
            &w.alice,
            &jb,
            &w.bob.public_cert(),
            &mut rng,
            &w.policy,
            t0(),
        )
        .unwrap();
    let got = deliver(&offer, "alice@example.org/a");
    // Carol cannot take it (not encrypted to her), nor claim it.
    let mut sc = Sessions::new(w.carol.jid(), Duration::from_secs(3600));
    assert!(
        sc.accept(&got, &w.carol, &w.keyring, &w.policy, t0())
            .is_err()
    );
    let info = sb
        .accept(&got, &w.bob, &w.keyring, &w.policy, t0())
        .unwrap();
    assert_eq!(info.peer.bare(), "alice@example.org");
    // A replayed offer is refused.
    assert!(matches!(
        sb.accept(&got, &w.bob, &w.keyring, &w.policy, t0()),
        Err(Error::Replay(_))
    ));
    // An offer delivered from someone else's account: not signed by them.
    let spoofed = deliver(&offer, "carol@example.org/c");
    assert!(
        sb.accept(&spoofed, &w.bob, &w.keyring, &w.policy, t0())
            .is_err()
    );

    let mut wa = ReplayWindow::default();
    let mut wb = ReplayWindow::default();
    for (i, text) in ["one", "two", "three"].iter().enumerate() {
        let mut m = Stanza::parse(&format!(
            "<message to='bob@example.org' id='s{i}' type='chat'><body>{text}</body></message>"
        ))
        .unwrap();
        sa.seal(&mut m, &mut rng, t0()).unwrap();
        assert_eq!(m.body().unwrap().as_deref(), Some(FALLBACK_BODY));
        let got = deliver(&m, "alice@example.org/a");
        assert_eq!(sb.open(&got, &mut wb, t0()).unwrap(), *text);
        assert!(matches!(
            sb.open(&got, &mut wb, t0()),
            Err(Error::Replay(_))
        ));
        // Reflected back to alice as if bob sent it: the direction is authenticated.
        let reflected = deliver(&m, "bob@example.org/b").with_attr("to", "alice@example.org");
        assert!(sa.open(&reflected, &mut wa, t0()).is_err());
    }
    // And bob answers with the same key.
    let mut r =
        Stanza::parse("<message to='alice@example.org/a' id='r1'><body>ack</body></message>")
            .unwrap();
    sb.seal(&mut r, &mut rng, t0()).unwrap();
    assert_eq!(
        sa.open(&deliver(&r, "bob@example.org/b"), &mut wa, t0())
            .unwrap(),
        "ack"
    );
    // Tampered metadata or ciphertext.
    let mut m =
        Stanza::parse("<message to='bob@example.org' id='t1'><body>x</body></message>").unwrap();
    sa.seal(&mut m, &mut rng, t0()).unwrap();
    let got = deliver(&m, "alice@example.org/a");
    assert!(matches!(
        sb.open(&got.clone().with_attr("id", "t2"), &mut wb, t0()),
        Err(Error::Decrypt)
    ));
    let stale = t0() + Duration::from_secs(400);
    assert!(matches!(
        sb.open(&got, &mut wb, stale),
        Err(Error::Replay(_))
    ));
    sb.open(&got, &mut wb, t0()).unwrap();

    // Rotation: a new key seals; the old one still opens until it expires.
    let old = sa.current(&jb, t0()).unwrap();
    let t1 = t0() + Duration::from_secs(60);
    let offer2 = sa
        .offer(&w.alice, &jb, &w.bob.public_cert(), &mut rng, &w.policy, t1)
        .unwrap();
    sb.accept(
        &deliver(&offer2, "alice@example.org/a"),
        &w.bob,
        &w.keyring,
        &w.policy,
        t1,
    )
    .unwrap();
    let new = sa.current(&jb, t1).unwrap();
    assert_ne!(old.id, new.id);
    let mut m =
        Stanza::parse("<message to='bob@example.org' id='n1'><body>new key</body></message>")
            .unwrap();
    sa.seal(&mut m, &mut rng, t1).unwrap();
    assert!(m.to_xml().contains(&new.id));
    assert_eq!(
        sb.open(&deliver(&m, "alice@example.org/a"), &mut wb, t1)
            .unwrap(),
        "new key"
    );

    // Expiry: nothing seals or opens with an expired key.
    let after = t0() + Duration::from_secs(3601);
    let mut m =
        Stanza::parse("<message to='bob@example.org' id='x1'><body>late</body></message>").unwrap();
    sa.seal(&mut m, &mut rng, after).unwrap(); // the rotated key is still valid
    let t_end = t1 + Duration::from_secs(3601);
    let mut m2 =
        Stanza::parse("<message to='bob@example.org' id='x2'><body>too late</body></message>")
            .unwrap();
    assert!(matches!(
        sa.seal(&mut m2, &mut rng, t_end),
        Err(Error::NeedKey(_))
    ));
    sb.forget_expired(t_end);
    assert!(sb.current(&ja, t_end).is_none());
}

#[test]
fn seal_limits_force_a_new_key() {
    let w = world();
    let mut rng = OsRandom;
    let mut sa = Sessions::new(w.alice.jid(), Duration::from_secs(3600));
    let mut sb = Sessions::new(w.bob.jid(), Duration::from_secs(3600));
    sa.set_seal_limit(2);
    let offer = sa
        .offer(
            &w.alice,
            w.bob.jid(),
            &w.bob.public_cert(),
            &mut rng,
            &w.policy,
            t0(),
        )
        .unwrap();
    sb.accept(
        &deliver(&offer, "alice@example.org/a"),
        &w.bob,
        &w.keyring,
        &w.policy,
        t0(),
    )
    .unwrap();
    let msg = |i: u32| {
        Stanza::parse(&format!(
            "<message to='bob@example.org' id='l{i}'><body>m{i}</body></message>"
        ))
        .unwrap()
    };
    for i in 0..2 {
        sa.seal(&mut msg(i), &mut rng, t0()).unwrap();
    }
    let mut third = msg(2);
    assert!(matches!(
        sa.seal(&mut third, &mut rng, t0()),
        Err(Error::NeedKey(_))
    ));
    assert_eq!(third, msg(2), "a refused seal leaves the stanza as it was");
    sa.offer(
        &w.alice,
        w.bob.jid(),
        &w.bob.public_cert(),
        &mut rng,
        &w.policy,
        t0(),
    )
    .unwrap();
    sa.seal(&mut third, &mut rng, t0()).unwrap();

    let room = Jid::new("r@rooms.example.org").unwrap();
    let mut moderator = Moderator::new(&room, Duration::from_secs(3600), &mut rng, t0()).unwrap();
    moderator.add_member(w.bob.jid(), w.bob.public_cert());
    let mut bob = Member::new(&room, w.bob.jid(), w.alice.fingerprint());
    bob.set_seal_limit(1);
    let dist = moderator
        .distribute(&w.alice, &mut rng, &w.policy, t0())
        .unwrap();
    bob.accept_key(
        &deliver(&dist[0], "alice@example.org/m"),
        &w.bob,
        &w.keyring,
        &w.policy,
        t0(),
    )
    .unwrap();
    bob.seal(&mut msg(10), &w.bob, &mut rng, &w.policy, t0())
        .unwrap();
    let mut second = msg(11);
    assert!(matches!(
        bob.seal(&mut second, &w.bob, &mut rng, &w.policy, t0()),
        Err(Error::NeedKey(_))
    ));
    assert_eq!(second, msg(11));
    moderator.rotate(&mut rng, t0()).unwrap();
    let dist = moderator
        .distribute(&w.alice, &mut rng, &w.policy, t0())
        .unwrap();
    assert_eq!(
        bob.accept_key(
            &deliver(&dist[0], "alice@example.org/m"),
            &w.bob,
            &w.keyring,
            &w.policy,
            t0()
        )
        .unwrap(),
        2
    );
    bob.seal(&mut second, &w.bob, &mut rng, &w.policy, t0())
        .unwrap();
}

#[test]
fn encrypted_room_with_moderator_and_rotation_on_removal() {
    let w = world();
    let dave = id("dave");
    let mut keyring = w.keyring.clone();
    keyring.insert_pinned(dave.jid(), dave.public_cert());
    let mut rng = OsRandom;
    let room = Jid::new("ops@rooms.example.org").unwrap();
    let mut moderator = Moderator::new(&room, Duration::from_secs(86_400), &mut rng, t0()).unwrap();
    for m in [&w.alice, &w.bob, &w.carol] {
        moderator.add_member(m.jid(), m.public_cert());
    }
    let members: Vec<(&Identity, Member)> = [&w.alice, &w.bob, &w.carol]
        .into_iter()
        .map(|i| (i, Member::new(&room, i.jid(), w.alice.fingerprint())))
        .collect();
    let mut members = members;
    let dist = moderator
        .distribute(&w.alice, &mut rng, &w.policy, t0())
        .unwrap();
    assert_eq!(dist.len(), 3);
    for (who, m) in members.iter_mut() {
        let s = dist
            .iter()
            .find(|s| s.to() == Some(who.jid().bare()))
            .unwrap();
        let got = deliver(s, "alice@example.org/mod");
        assert_eq!(
            m.accept_key(&got, who, &keyring, &w.policy, t0()).unwrap(),
            1
        );
        // Replayed distribution: not a newer epoch.
        assert!(matches!(
            m.accept_key(&got, who, &keyring, &w.policy, t0()),
            Err(Error::Replay(_))
        ));
    }
    // A key "distributed" by a member who is not the moderator is refused.
    let mut rogue = Moderator::new(&room, Duration::from_secs(86_400), &mut rng, t0()).unwrap();
    rogue.add_member(w.bob.jid(), w.bob.public_cert());
    rogue.rotate(&mut rng, t0()).unwrap();
    rogue.rotate(&mut rng, t0()).unwrap();
    let forged = deliver(
        &rogue
            .distribute(&w.carol, &mut rng, &w.policy, t0())
            .unwrap()[0],
        "carol@example.org/c",
    );
    assert!(matches!(
        members[1]
            .1
            .accept_key(&forged, &w.bob, &keyring, &w.policy, t0()),
        Err(Error::Binding(_))
    ));
    // Nor can one member's key be replayed to another (addressed and encrypted to its member).
    let carols = deliver(
        dist.iter()
            .find(|s| s.to() == Some("carol@example.org"))
            .unwrap(),
        "alice@example.org/mod",
    );
    assert!(
        Member::new(&room, dave.jid(), w.alice.fingerprint())
            .accept_key(&carols, &dave, &keyring, &w.policy, t0())
            .is_err()
    );

    // Bob writes to the room; the MUC reflects it from room/nick to each occupant.
    let mut msg =
        Stanza::parse("<message id='g1'><body>restart the workers</body></message>").unwrap();
    members[1]
        .1
        .seal(&mut msg, &w.bob, &mut rng, &w.policy, t0())
        .unwrap();
    let reflected = |s: &Stanza, to: &str| {
        Stanza::parse(&s.to_xml())
            .unwrap()
            .with_attr("from", "ops@rooms.example.org/bob")
            .with_attr("to", to)
    };
    let mut win_c = ReplayWindow::default();
    let opened = members[2]
        .1
        .open(
            &reflected(&msg, "carol@example.org"),
            &keyring,
            &w.policy,
            &mut win_c,
            t0(),
        )
        .unwrap();
    assert_eq!(
        (opened.sender.bare(), opened.epoch, opened.body.as_str()),
        ("bob@example.org", 1, "restart the workers")
    );
    assert!(matches!(
        members[2].1.open(
            &reflected(&msg, "carol@example.org"),
            &keyring,
            &w.policy,
            &mut win_c,
            t0()
        ),
        Err(Error::Replay(_))
    ));

    // Carol is removed: the key rotates and goes to alice and bob only.
    assert!(
        moderator
            .remove_member(w.carol.jid(), &mut rng, t0())
            .unwrap()
    );
    let t1 = t0() + Duration::from_secs(10);
    let dist2 = moderator
        .distribute(&w.alice, &mut rng, &w.policy, t1)
        .unwrap();
    assert_eq!(dist2.len(), 2);
    assert!(dist2.iter().all(|s| s.to() != Some("carol@example.org")));
    for (who, m) in members.iter_mut().take(2) {
        let s = dist2
            .iter()
            .find(|s| s.to() == Some(who.jid().bare()))
            .unwrap();
        assert_eq!(
            m.accept_key(
                &deliver(s, "alice@example.org/mod"),
                who,
                &keyring,
                &w.policy,
                t1
            )
            .unwrap(),
            2
        );
    }
    // Carol cannot use bob's copy of the new key.
    let bobs = deliver(
        dist2
            .iter()
            .find(|s| s.to() == Some("bob@example.org"))
            .unwrap(),
        "alice@example.org/mod",
    );
    assert!(
        members[2]
            .1
            .accept_key(&bobs, &w.carol, &keyring, &w.policy, t1)
            .is_err()
    );
    // A later message is sealed with epoch 2: alice reads it, carol cannot.
    let mut msg2 =
        Stanza::parse("<message id='g2'><body>new credentials: s3cret</body></message>").unwrap();
    members[1]
        .1
        .seal(&mut msg2, &w.bob, &mut rng, &w.policy, t1)
        .unwrap();
    let mut win_a = ReplayWindow::default();
    assert_eq!(
        members[0]
            .1
            .open(
                &reflected(&msg2, "alice@example.org"),
                &keyring,
                &w.policy,
                &mut win_a,
                t1
            )
            .unwrap()
            .body,
        "new credentials: s3cret"
    );
    assert!(matches!(
        members[2].1.open(
            &reflected(&msg2, "carol@example.org"),
            &keyring,
            &w.policy,
            &mut win_c,
            t1
        ),
        Err(Error::NeedKey(_))
    ));
    // A member cannot pass a message off as another's: the envelope names the signer.
    let xml = reflected(&msg2, "alice@example.org")
        .to_xml()
        .replace("from='bob@example.org'", "from='alice@example.org'");
    let spoof = Stanza::parse(&xml).unwrap();
    assert!(
        members[0]
            .1
            .open(
                &spoof,
                &keyring,
                &w.policy,
                &mut ReplayWindow::default(),
                t1
            )
            .is_err()
    );

    // Issue 12 item 3: carol, removed, still holds the epoch 1 key and posts with it. The
    // remaining members accepted epoch 2 at t1: during the grace period for messages in
    // flight the post is opened, after it refused.
    let mut carol_posts = |members: &mut Vec<(&Identity, Member)>, id: &str, at: SystemTime| {
        let mut m = Stanza::parse(&format!(
            "<message id='{id}'><body>still here</body></message>"
        ))
        .unwrap();
        members[2]
            .1
            .seal(&mut m, &w.carol, &mut rng, &w.policy, at)
            .unwrap();
        Stanza::parse(&m.to_xml())
            .unwrap()
            .with_attr("from", "ops@rooms.example.org/carol")
            .with_attr("to", "alice@example.org")
    };
    let in_flight = carol_posts(&mut members, "c1", t1 + Duration::from_secs(5));
    let got = members[0]
        .1
        .open(
            &in_flight,
            &keyring,
            &w.policy,
            &mut win_a,
            t1 + Duration::from_secs(5),
        )
        .unwrap();
    assert_eq!((got.epoch, got.sender.bare()), (1, "carol@example.org"));
    let late = carol_posts(&mut members, "c2", t1 + Duration::from_secs(11));
    let r = members[0].1.open(
        &late,
        &keyring,
        &w.policy,
        &mut win_a,
        t1 + Duration::from_secs(11),
    );
    assert!(matches!(r, Err(Error::Replay(_))), "{r:?}");
    // With no grace at all, the in-flight one is refused too.
    members[1].1.set_epoch_grace(Duration::ZERO);
    let c3 = carol_posts(&mut members, "c3", t1 + Duration::from_secs(1));
    let r = members[1].1.open(
        &c3,
        &keyring,
        &w.policy,
        &mut ReplayWindow::default(),
        t1 + Duration::from_secs(1),
    );
    assert!(matches!(r, Err(Error::Replay(_))), "{r:?}");
}

/// Issue 12 item 6: a replayed offer is refused after a restart when the offer state was
/// saved, and an offer older than the newest accepted one is refused in any case.
#[test]
fn session_offers_do_not_replay_across_restarts() {
    let w = world();
    let mut rng = OsRandom;
    let (ja, jb) = (w.alice.jid().clone(), w.bob.jid().clone());
    let mut sa = Sessions::new(&ja, Duration::from_secs(3600));
    let offer_at = |sa: &mut Sessions, rng: &mut OsRandom, at: SystemTime| {
        deliver(
            &sa.offer(&w.alice, &jb, &w.bob.public_cert(), rng, &w.policy, at)
                .unwrap(),
            "alice@example.org/a",
        )
    };
    let first = offer_at(&mut sa, &mut rng, t0());
    let second = offer_at(&mut sa, &mut rng, t0() + Duration::from_secs(60));
    let mut sb = Sessions::new(&jb, Duration::from_secs(3600));
    let later = t0() + Duration::from_secs(120);
    sb.accept(&second, &w.bob, &w.keyring, &w.policy, later)
        .unwrap();
    // The older offer, never seen, is older than the newest accepted: refused.
    assert!(matches!(
        sb.accept(&first, &w.bob, &w.keyring, &w.policy, later),
        Err(Error::Replay(_))
    ));
    // Bob restarts with the saved state: the replay is refused.
    let state = sb.offer_state();
    assert!(state.starts_with("alice@example.org "), "{state}");
    let mut restarted = Sessions::new(&jb, Duration::from_secs(3600));
    restarted.restore_offer_state(&state).unwrap();
    assert!(matches!(
        restarted.accept(&second, &w.bob, &w.keyring, &w.policy, later),
        Err(Error::Replay(_))
    ));
    // Without it, the documented gap: the offer installs again.
    let mut forgetful = Sessions::new(&jb, Duration::from_secs(3600));
    forgetful
        .accept(&second, &w.bob, &w.keyring, &w.policy, later)
        .unwrap();
    // A new offer after the restart is accepted.
    let third = offer_at(&mut sa, &mut rng, later);
    restarted
        .accept(&third, &w.bob, &w.keyring, &w.policy, later)
        .unwrap();
    // A malformed state is refused whole.
    assert!(
        Sessions::new(&jb, Duration::from_secs(3600))
            .restore_offer_state("alice@example.org yesterday\n")
            .is_err()
    );
}

/// Issue 12 item 6: stamps and signatures from a sender whose clock is ahead are accepted
/// within the skew, both ways as documented, and refused beyond it.
#[test]
fn a_sender_clock_ahead_is_accepted_within_the_skew() {
    let w = world();
    let mut rng = OsRandom;
    for (ahead, ok) in [(2, true), (250, true), (400, false)] {
        let at = t0() + Duration::from_secs(ahead);
        let mut p = Stanza::parse("<presence id='p1'><status>ahead</status></presence>").unwrap();
        signed::sign(&mut p, &w.alice, &w.policy, at).unwrap();
        envelope::seal(&mut p, &w.alice, &w.policy, at).unwrap();
        let got = deliver(&p, "alice@example.org/a");
        let r = envelope::check(
            &got,
            &w.keyring,
            &w.policy,
            &mut ReplayWindow::default(),
            t0(),
        );
        assert_eq!(r.is_ok(), ok, "envelope {ahead} s ahead: {r:?}");
        let r = signed::verify(&got, &w.keyring, &w.policy, t0());
        assert_eq!(r.is_ok(), ok, "signature {ahead} s ahead: {r:?}");
        // A session key offer made by that clock.
        let mut sa = Sessions::new(w.alice.jid(), Duration::from_secs(3600));
        let offer = sa
            .offer(
                &w.alice,
                w.bob.jid(),
                &w.bob.public_cert(),
                &mut rng,
                &w.policy,
                at,
            )
            .unwrap();
        let r = Sessions::new(w.bob.jid(), Duration::from_secs(3600)).accept(
            &deliver(&offer, "alice@example.org/a"),
            &w.bob,
            &w.keyring,
            &w.policy,
            t0(),
        );
        assert_eq!(r.is_ok(), ok, "offer {ahead} s ahead: {r:?}");
        // A room key distributed by that clock.
        let room = Jid::new("ops@rooms.example.org").unwrap();
        let mut moderator =
            Moderator::new(&room, Duration::from_secs(86_400), &mut rng, at).unwrap();
        moderator.add_member(w.bob.jid(), w.bob.public_cert());
        let dist = moderator
            .distribute(&w.alice, &mut rng, &w.policy, at)
            .unwrap();
        let r = Member::new(&room, w.bob.jid(), w.alice.fingerprint()).accept_key(
            &deliver(&dist[0], "alice@example.org/mod"),
            &w.bob,
            &w.keyring,
            &w.policy,
            t0(),
        );
        assert_eq!(r.is_ok(), ok, "room key {ahead} s ahead: {r:?}");
    }
}

#[test]
fn malformed_stanzas_give_clear_errors() {
    let w = world();
    let mut win = ReplayWindow::default();
    for xml in [
        "<message from='alice@example.org/a' id='1'><x xmlns='jabber:x:signed'>not base64 !!</x></message>",
        "<message from='alice@example.org/a' id='1'><x xmlns='jabber:x:signed'>AAAA</x></message>",
        "<message from='alice@example.org/a' id='1'><x xmlns='jabber:x:signed'>AAAA</x><x xmlns='jabber:x:signed'>AAAA</x></message>",
        "<presence from='alice@example.org/a'><status>a</status><status>b</status><x xmlns='jabber:x:signed'>AAAA</x></presence>",
        "<presence from='not a jid'><x xmlns='jabber:x:signed'>AAAA</x></presence>",
    ] {
        let s = Stanza::parse(xml).unwrap();
        let e = signed::verify(&s, &w.keyring, &w.policy, t0()).unwrap_err();
        assert!(!e.to_string().is_empty());
    }
    for xml in [
        "<message from='alice@example.org/a' to='bob@example.org' id='1'><envelope xmlns='urn:xmpp-federation:xep0027:envelope:0' from='alice@example.org' to='bob@example.org'>AAAA</envelope></message>",
        "<message from='alice@example.org/a' to='bob@example.org' id='1'><envelope xmlns='urn:xmpp-federation:xep0027:envelope:0' from='alice@example.org' to='bob@example.org' stamp='yesterday'>AAAA</envelope></message>",
        "<message from='alice@example.org/a' to='bob@example.org' id='1'><envelope xmlns='urn:xmpp-federation:xep0027:envelope:0' from='Alice@example.org' to='bob@example.org' stamp='2026-12-01T00:00:00Z'>AAAA</envelope></message>",
        "<message from='alice@example.org/a' to='bob@example.org'><envelope xmlns='urn:xmpp-federation:xep0027:envelope:0' from='alice@example.org' to='bob@example.org' stamp='2026-12-01T00:00:00Z'>AAAA</envelope></message>",
    ] {
        let s = Stanza::parse(xml).unwrap();
        assert!(
            envelope::check(&s, &w.keyring, &w.policy, &mut win, t0()).is_err(),
            "{xml}"
        );
    }
    let s = Stanza::parse("<message from='alice@example.org/a' id='1'><x xmlns='jabber:x:encrypted'>AAAA</x></message>").unwrap();
    assert!(matches!(
        encrypted::decrypt(&s, &w.bob, &w.keyring, &w.policy, t0()),
        Err(Error::Decrypt)
    ));
    assert!(win.is_empty());
}
