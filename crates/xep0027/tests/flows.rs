//! Two-party and room scenarios, in memory, with every rejection the crate promises: each
//! refused stanza leaves the receiver's state (replay window, keys) unchanged.
//!
//! Every test starts from the scenario harness below ([`Scenario`], [`SessionFlow`],
//! [`RoomFlow`]): identities pinned in a keyring, a fixed clock, and the flow brought to the
//! point where the fault under test is injected, so that each fault is its own test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, SystemTime};

use xep0027::encrypted::{self, FALLBACK_BODY};
use xep0027::envelope::{self, ReplayWindow};
use xep0027::error::{Freshness, Mismatch, NeedKey};
use xep0027::jid::Jid;
use xep0027::keys::{Identity, Keyring, Suite};
use xep0027::policy::Policy;
use xep0027::room::{Member, Moderator, RoomMessage};
use xep0027::session::Sessions;
use xep0027::signed;
use xep0027::stanza::{Kind, Stanza};
use xep0027::symmetric::OsRandom;
use xep0027::{Error, ErrorKind};

// ---------------------------------------------------------------------------------------
// The harness.
// ---------------------------------------------------------------------------------------

/// The scenario clock's start.
fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_130_000)
}

/// `t0() + n` seconds.
fn at(n: u64) -> SystemTime {
    t0() + Duration::from_secs(n)
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

/// What the server does on delivery: stamp the sender's full JID.
fn deliver(s: &Stanza, from: &str) -> Stanza {
    Stanza::parse(&s.to_xml()).unwrap().with_attr("from", from)
}

/// A message stanza.
fn message(to: &str, id: &str, body: &str) -> Stanza {
    Stanza::parse(&format!(
        "<message to='{to}' id='{id}'><body>{body}</body></message>"
    ))
    .unwrap()
}

/// Three parties (alice, bob, carol), each pinned to its JID in one keyring, and the
/// standard policy.
struct Scenario {
    alice: Identity,
    bob: Identity,
    carol: Identity,
    keyring: Keyring,
    policy: Policy,
}

impl Scenario {
    fn new() -> Scenario {
        let (alice, bob, carol) = (id("alice"), id("bob"), id("carol"));
        let mut keyring = Keyring::new();
        for i in [&alice, &bob, &carol] {
            keyring.insert_pinned(i.jid(), i.public_cert());
        }
        Scenario {
            alice,
            bob,
            carol,
            keyring,
            policy: Policy::standard(),
        }
    }

    /// A fourth party, pinned too.
    fn pin(&mut self, name: &str) -> Identity {
        let i = id(name);
        self.keyring.insert_pinned(i.jid(), i.public_cert());
        i
    }
}

/// Alice and bob with session stores (keys live an hour) and a replay window each.
struct SessionFlow {
    s: Scenario,
    sa: Sessions,
    sb: Sessions,
    wa: ReplayWindow,
    wb: ReplayWindow,
    /// Alice's first offer (made at t0), as delivered to bob.
    offer: Stanza,
}

impl SessionFlow {
    /// Alice has offered a key at t0; bob has not accepted it yet.
    fn offered() -> SessionFlow {
        let s = Scenario::new();
        let mut sa = Sessions::new(s.alice.jid(), Duration::from_secs(3600));
        let sb = Sessions::new(s.bob.jid(), Duration::from_secs(3600));
        let offer = deliver(
            &sa.offer(
                &s.alice,
                s.bob.jid(),
                &s.bob.public_cert(),
                &mut OsRandom,
                &s.policy,
                t0(),
            )
            .unwrap(),
            "alice@example.org/a",
        );
        SessionFlow {
            s,
            sa,
            sb,
            wa: ReplayWindow::default(),
            wb: ReplayWindow::default(),
            offer,
        }
    }

    /// Bob has accepted alice's offer at t0.
    fn agreed() -> SessionFlow {
        let mut f = SessionFlow::offered();
        let _info = f.bob_accepts(&f.offer.clone(), t0()).unwrap();
        f
    }

    /// Alice offers a new key at `when` (delivered to bob).
    fn alice_offers(&mut self, when: SystemTime) -> Stanza {
        let s = &self.s;
        deliver(
            &self
                .sa
                .offer(
                    &s.alice,
                    s.bob.jid(),
                    &s.bob.public_cert(),
                    &mut OsRandom,
                    &s.policy,
                    when,
                )
                .unwrap(),
            "alice@example.org/a",
        )
    }

    fn bob_accepts(
        &mut self,
        offer: &Stanza,
        when: SystemTime,
    ) -> xep0027::Result<xep0027::session::KeyInfo> {
        self.sb
            .accept(offer, &self.s.bob, &self.s.keyring, &self.s.policy, when)
    }

    /// Alice seals a message to bob at `when`: the stanza as sent and as delivered.
    fn alice_seals(&mut self, id: &str, body: &str, when: SystemTime) -> (Stanza, Stanza) {
        let mut m = message("bob@example.org", id, body);
        self.sa.seal(&mut m, &mut OsRandom, when).unwrap();
        let got = deliver(&m, "alice@example.org/a");
        (m, got)
    }
}

/// A room `ops@rooms.example.org` moderated by alice, with alice, bob and carol as members
/// (in this order in `members`), each pinning alice's certificate as the moderator's.
struct RoomFlow {
    s: Scenario,
    room: Jid,
    moderator: Moderator,
    members: Vec<Member>,
    /// The epoch 1 distribution, as sent.
    dist: Vec<Stanza>,
}

const ALICE: usize = 0;
const BOB: usize = 1;
const CAROL: usize = 2;

impl RoomFlow {
    /// The moderator has made the epoch 1 distribution at t0; nobody accepted it yet.
    fn distributed() -> RoomFlow {
        let s = Scenario::new();
        let room = Jid::new("ops@rooms.example.org").unwrap();
        let mut moderator =
            Moderator::new(&room, Duration::from_secs(86_400), &mut OsRandom, t0()).unwrap();
        for m in [&s.alice, &s.bob, &s.carol] {
            moderator
                .add_member(m.jid(), m.public_cert(), &s.policy, t0())
                .unwrap();
        }
        let members = [&s.alice, &s.bob, &s.carol]
            .into_iter()
            .map(|i| Member::new(&room, i.jid(), s.alice.fingerprint()))
            .collect();
        let dist = moderator
            .distribute(&s.alice, &mut OsRandom, &s.policy, t0())
            .unwrap()
            .stanzas;
        RoomFlow {
            s,
            room,
            moderator,
            members,
            dist,
        }
    }

    /// Every member has accepted epoch 1 at t0.
    fn keyed() -> RoomFlow {
        let mut f = RoomFlow::distributed();
        let dist = f.dist.clone();
        for who in [ALICE, BOB, CAROL] {
            assert_eq!(f.accept(who, &dist, t0()).unwrap(), 1);
        }
        f
    }

    fn ident(&self, who: usize) -> &Identity {
        [&self.s.alice, &self.s.bob, &self.s.carol][who]
    }

    /// The stanza of `dist` addressed to `jid`, as delivered from the moderator.
    fn dist_to(dist: &[Stanza], jid: &str) -> Stanza {
        deliver(
            dist.iter().find(|s| s.to() == Some(jid)).unwrap(),
            "alice@example.org/mod",
        )
    }

    /// Member `who` accepts its stanza of `dist`.
    fn accept(&mut self, who: usize, dist: &[Stanza], when: SystemTime) -> xep0027::Result<u64> {
        let got = RoomFlow::dist_to(dist, self.ident(who).jid().bare());
        let s = &self.s;
        let me = [&s.alice, &s.bob, &s.carol][who];
        self.members[who].accept_key(&got, me, &s.keyring, &s.policy, when)
    }

    /// Member `who` posts `body` as stanza `id` at `when`: the stanza as sent.
    fn post(&mut self, who: usize, id: &str, body: &str, when: SystemTime) -> Stanza {
        let mut m =
            Stanza::parse(&format!("<message id='{id}'><body>{body}</body></message>")).unwrap();
        let s = &self.s;
        let me = [&s.alice, &s.bob, &s.carol][who];
        self.members[who]
            .seal(&mut m, me, &mut OsRandom, &s.policy, when)
            .unwrap();
        m
    }

    /// What the MUC does: reflect the message from `room/nick` to `to`.
    fn reflected(s: &Stanza, nick: &str, to: &str) -> Stanza {
        Stanza::parse(&s.to_xml())
            .unwrap()
            .with_attr("from", &format!("ops@rooms.example.org/{nick}"))
            .with_attr("to", to)
    }

    /// Member `who` opens a reflected message.
    fn open(
        &self,
        who: usize,
        got: &Stanza,
        window: &mut ReplayWindow,
        when: SystemTime,
    ) -> xep0027::Result<RoomMessage> {
        self.members[who].open(got, &self.s.keyring, &self.s.policy, window, when)
    }

    /// Carol is removed at t0; alice and bob accept epoch 2 at `t1`, which is returned with
    /// the epoch 2 distribution.
    fn carol_removed(t1: SystemTime) -> (RoomFlow, Vec<Stanza>) {
        let mut f = RoomFlow::keyed();
        let carol = f.s.carol.jid().clone();
        assert!(
            f.moderator
                .remove_member(&carol, &mut OsRandom, t0())
                .unwrap()
        );
        let dist2 = f
            .moderator
            .distribute(&f.s.alice, &mut OsRandom, &f.s.policy, t1)
            .unwrap()
            .stanzas;
        for who in [ALICE, BOB] {
            assert_eq!(f.accept(who, &dist2, t1).unwrap(), 2);
        }
        (f, dist2)
    }
}

// ---------------------------------------------------------------------------------------
// Signed presence (XEP-0027 §3).
// ---------------------------------------------------------------------------------------

/// Alice's signed presence (with a caps child), as sent and as delivered from her laptop.
fn signed_presence(s: &Scenario) -> (Stanza, Stanza) {
    let mut p = Stanza::parse("<presence id='p1'><show>dnd</show><status>Busy \u{1F4BB}</status><c xmlns='http://jabber.org/protocol/caps' node='n' ver='v' hash='sha-1'/></presence>").unwrap();
    signed::sign(&mut p, &s.alice, &s.policy, t0()).unwrap();
    let got = deliver(&p, "alice@example.org/laptop");
    (p, got)
}

#[test]
fn signed_presence_verifies_and_keeps_other_children() {
    let w = Scenario::new();
    let (_, got) = signed_presence(&w);
    let v = signed::verify(&got, &w.keyring, &w.policy, t0()).unwrap();
    assert_eq!(v.signer, w.alice.fingerprint());
    assert_eq!(v.created, t0());
    assert!(
        got.element()
            .children()
            .any(|c| c.ns() == "http://jabber.org/protocol/caps"),
        "other children kept"
    );
}

#[test]
fn signed_presence_with_a_changed_status_is_refused() {
    let w = Scenario::new();
    let (_, got) = signed_presence(&w);
    let mut tampered = got.clone();
    tampered.set_status("Available");
    assert!(matches!(
        signed::verify(&tampered, &w.keyring, &w.policy, t0()),
        Err(Error::BadSignature(_))
    ));
}

#[test]
fn signed_presence_replayed_as_another_senders_is_refused() {
    let w = Scenario::new();
    let (p, _) = signed_presence(&w);
    // Alice's signed presence replayed as Bob's: the signature is not by a key of bob's.
    let as_bob = deliver(&p, "bob@example.org/x");
    assert!(matches!(
        signed::verify(&as_bob, &w.keyring, &w.policy, t0()),
        Err(Error::UnknownSigner(_))
    ));
}

#[test]
fn signed_presence_without_sender_or_known_certificate_is_refused() {
    let w = Scenario::new();
    let (p, _) = signed_presence(&w);
    // No sender.
    assert!(signed::verify(&p, &w.keyring, &w.policy, t0()).is_err());
    // No certificate.
    let stranger = deliver(&p, "mallory@evil.example/x");
    assert!(matches!(
        signed::verify(&stranger, &w.keyring, &w.policy, t0()),
        Err(Error::UnknownSigner(_))
    ));
}

#[test]
fn presence_without_signature_element_is_refused() {
    let w = Scenario::new();
    let unsigned = deliver(
        &Stanza::parse("<presence/>").unwrap(),
        "alice@example.org/x",
    );
    assert!(matches!(
        signed::verify(&unsigned, &w.keyring, &w.policy, t0()),
        Err(Error::Stanza(_))
    ));
}

#[test]
fn empty_presence_signs_the_empty_string() {
    let w = Scenario::new();
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

// ---------------------------------------------------------------------------------------
// The signed envelope.
// ---------------------------------------------------------------------------------------

/// Alice's enveloped chat message to bob, stamped t0: as sent and as delivered.
fn enveloped(s: &Scenario) -> (Stanza, Stanza) {
    let mut m = Stanza::parse(
        "<message to='bob@example.org/desk' id='m1' type='chat'><body>deploy v2</body></message>",
    )
    .unwrap();
    envelope::seal(&mut m, &s.alice, &s.policy, t0()).unwrap();
    let got = deliver(&m, "alice@example.org/ci");
    (m, got)
}

/// Checks `got` with a fresh window at `now`; the window must stay empty.
fn refused_by_fresh_window(w: &Scenario, got: &Stanza, now: SystemTime) -> Error {
    let mut fresh = ReplayWindow::default();
    let e = envelope::check(got, &w.keyring, &w.policy, &mut fresh, now).unwrap_err();
    assert!(fresh.is_empty(), "refusals record nothing");
    e
}

#[test]
fn envelope_names_the_signed_sender_and_stamp() {
    let w = Scenario::new();
    let (_, got) = enveloped(&w);
    let mut win = ReplayWindow::new(Duration::from_secs(300), 1000);
    let c = envelope::check(&got, &w.keyring, &w.policy, &mut win, at(2)).unwrap();
    assert_eq!(c.sender.bare(), "alice@example.org");
    assert_eq!(c.stamp, t0());
}

#[test]
fn envelope_stale_and_future_stamps_are_refused_and_leave_no_trace() {
    let w = Scenario::new();
    let (_, got) = enveloped(&w);
    let mut win = ReplayWindow::new(Duration::from_secs(300), 1000);
    let late = at(301);
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
}

#[test]
fn envelope_replay_is_refused() {
    let w = Scenario::new();
    let (_, got) = enveloped(&w);
    let mut win = ReplayWindow::new(Duration::from_secs(300), 1000);
    let _checked = envelope::check(&got, &w.keyring, &w.policy, &mut win, at(2)).unwrap();
    assert!(matches!(
        envelope::check(&got, &w.keyring, &w.policy, &mut win, at(3)),
        Err(Error::Replay(_))
    ));
}

/// Review session 26, X4: after a restart, a new window accepted a stanza accepted before
/// it again. A window resumed at the restart refuses it; one restored from the state saved
/// at shutdown refuses it as a duplicate.
#[test]
fn envelope_replayed_after_a_restart_is_refused() {
    let w = Scenario::new();
    let (_, got) = enveloped(&w);
    let mut before = ReplayWindow::default();
    let _first = envelope::check(&got, &w.keyring, &w.policy, &mut before, t0()).unwrap();
    let restart = at(10);
    // What a new window did (the replay passed).
    let mut fresh = ReplayWindow::default();
    assert!(envelope::check(&got, &w.keyring, &w.policy, &mut fresh, restart).is_ok());
    // After a crash.
    let mut resumed = ReplayWindow::resume(Duration::from_secs(300), 100_000, restart);
    let err = envelope::check(&got, &w.keyring, &w.policy, &mut resumed, restart).unwrap_err();
    assert!(
        matches!(err, Error::Replay(Freshness::Forgotten { sender: None })),
        "{err:?}"
    );
    // After a clean shutdown.
    let mut restored = ReplayWindow::default();
    restored.restore_state(&before.state()).unwrap();
    let err = envelope::check(&got, &w.keyring, &w.policy, &mut restored, restart).unwrap_err();
    assert!(
        matches!(err, Error::Replay(Freshness::Duplicate { .. })),
        "{err:?}"
    );
}

/// Adds `<{local} xml:lang='de'>{text}</{local}>` to a delivered stanza, as a server in
/// the path could.
fn with_german(got: &Stanza, local: &str, text: &str) -> Stanza {
    let mut s = got.clone();
    let ns = s.element().ns().to_owned();
    s.element_mut().push(
        xep0027::stanza::Element::new(local, &ns)
            .with_attr("xml:lang", "de")
            .with_text(text),
    );
    Stanza::parse(&s.to_xml()).unwrap()
}

/// Review session 26, X9: an other-language `<body/>` added to an enveloped message, or
/// `<status/>` to an enveloped presence, travelled unsigned and passed `check`; refused now.
#[test]
fn envelope_with_an_added_other_language_body_or_status_is_refused() {
    let w = Scenario::new();
    let (_, got) = enveloped(&w);
    let forged = with_german(&got, "body", "deploy v1");
    let mut win = ReplayWindow::default();
    let e = envelope::check(&forged, &w.keyring, &w.policy, &mut win, t0()).unwrap_err();
    assert!(
        matches!(e, Error::Stanza(ref m) if m.contains("several <body/>")),
        "{e:?}"
    );
    assert!(win.is_empty());
    let _ok = envelope::check(&got, &w.keyring, &w.policy, &mut win, t0()).unwrap();

    let mut p = Stanza::parse("<presence id='p9'><show>dnd</show><status>busy</status></presence>")
        .unwrap();
    envelope::seal(&mut p, &w.alice, &w.policy, t0()).unwrap();
    let got = deliver(&p, "alice@example.org/ci");
    let forged = with_german(&got, "status", "frei");
    let e = envelope::check(&forged, &w.keyring, &w.policy, &mut win, t0()).unwrap_err();
    assert!(
        matches!(e, Error::Stanza(ref m) if m.contains("several <status/>")),
        "{e:?}"
    );
    let _ok = envelope::check(&got, &w.keyring, &w.policy, &mut win, t0()).unwrap();
}

/// Review session 26, X1 (defence in depth): XEP-0027 text that starts like this crate's
/// own signed data is neither signed (`jabber:x:signed`) nor signed inside an encryption;
/// encrypted unsigned, or as any other text, it is.
#[test]
fn text_that_looks_like_signed_data_is_not_signed() {
    let w = Scenario::new();
    let body = "urn:xmpp-federation:xep0027:envelope:0\n7:message\n";
    let looks = |r: xep0027::Result<()>| {
        assert!(
            matches!(r, Err(Error::Stanza(ref m)) if m.contains("could pass for")),
            "{r:?}"
        )
    };
    looks(signed::sign(
        &mut message("bob@example.org", "l1", body),
        &w.alice,
        &w.policy,
        t0(),
    ));
    let enc = |m: &mut Stanza, sign: bool| {
        encrypted::encrypt(m, &w.alice, &[&w.bob.public_cert()], sign, &w.policy, t0())
    };
    looks(enc(&mut message("bob@example.org", "l2", body), true));
    enc(&mut message("bob@example.org", "l3", body), false).unwrap();
    let mut ok = message("bob@example.org", "l4", &format!("see {body}"));
    signed::sign(&mut ok, &w.alice, &w.policy, t0()).unwrap();
}

/// Review session 26, X9: signing (jabber:x:signed, envelope) and sealing a message with
/// bodies in several languages is refused (only one could be covered), and so is verifying
/// a jabber:x:signed message with an added other-language body.
#[test]
fn several_bodies_are_neither_signed_nor_sealed() {
    let w = Scenario::new();
    let two = Stanza::parse(
        "<message to='bob@example.org' id='b2' xml:lang='en'><body>transfer 10</body>\
         <body xml:lang='de'>\u{fc}berweise 10</body></message>",
    )
    .unwrap();
    let several = |r: xep0027::Result<()>| {
        assert!(
            matches!(r, Err(Error::Stanza(ref m)) if m.contains("several <body/>")),
            "{r:?}"
        )
    };
    several(signed::sign(&mut two.clone(), &w.alice, &w.policy, t0()));
    several(envelope::seal(&mut two.clone(), &w.alice, &w.policy, t0()));
    several(encrypted::encrypt(
        &mut two.clone(),
        &w.alice,
        &[&w.bob.public_cert()],
        true,
        &w.policy,
        t0(),
    ));
    let mut f = SessionFlow::agreed();
    several(f.sa.seal(&mut two.clone(), &mut OsRandom, t0()));
    let mut r = RoomFlow::keyed();
    let s = &r.s;
    several(r.members[ALICE].seal(&mut two.clone(), &s.alice, &mut OsRandom, &s.policy, t0()));

    let mut one = message("bob@example.org", "b1", "transfer 10");
    signed::sign(&mut one, &w.alice, &w.policy, t0()).unwrap();
    let got = deliver(&one, "alice@example.org/a");
    let _ok = signed::verify(&got, &w.keyring, &w.policy, t0()).unwrap();
    let forged = with_german(&got, "body", "\u{fc}berweise 10000");
    let e = signed::verify(&forged, &w.keyring, &w.policy, t0()).unwrap_err();
    assert!(
        matches!(e, Error::Stanza(ref m) if m.contains("several <body/>")),
        "{e:?}"
    );
}

#[test]
fn envelope_redirected_to_another_recipient_is_refused() {
    let w = Scenario::new();
    let (_, got) = enveloped(&w);
    let moved = got.clone().with_attr("to", "carol@example.org");
    assert!(matches!(
        refused_by_fresh_window(&w, &moved, t0()),
        Error::Binding(_)
    ));
}

#[test]
fn envelope_claimed_by_another_sender_is_refused() {
    let w = Scenario::new();
    let (m, _) = enveloped(&w);
    // The server stamps the real sender.
    let other = deliver(&m, "carol@example.org/x");
    assert!(matches!(
        refused_by_fresh_window(&w, &other, t0()),
        Error::Binding(_)
    ));
}

#[test]
fn envelope_with_a_new_id_is_refused() {
    let w = Scenario::new();
    let (_, got) = enveloped(&w);
    // A new id to get past the replay window: the signature covers the id.
    let new_id = got.clone().with_attr("id", "m2");
    assert!(matches!(
        refused_by_fresh_window(&w, &new_id, t0()),
        Error::BadSignature(_)
    ));
}

#[test]
fn envelope_with_a_changed_body_is_refused() {
    let w = Scenario::new();
    let (_, got) = enveloped(&w);
    let mut body = got.clone();
    body.set_body("deploy v3");
    assert!(matches!(
        refused_by_fresh_window(&w, &body, t0()),
        Error::BadSignature(_)
    ));
}

#[test]
fn envelope_with_a_changed_type_is_refused() {
    let w = Scenario::new();
    let (_, got) = enveloped(&w);
    let typ = got.clone().with_attr("type", "normal");
    assert!(matches!(
        refused_by_fresh_window(&w, &typ, t0()),
        Error::BadSignature(_)
    ));
}

#[test]
fn envelope_restamped_past_the_skew_is_refused() {
    let w = Scenario::new();
    let (_, got) = enveloped(&w);
    let xml = got.to_xml().replace(
        &xep0027::time::format(t0()),
        &xep0027::time::format(at(600)),
    );
    let restamped = Stanza::parse(&xml).unwrap();
    assert!(matches!(
        refused_by_fresh_window(&w, &restamped, at(600)),
        Error::BadSignature(_)
    ));
}

#[test]
fn broadcast_presence_envelope_names_no_recipient() {
    let w = Scenario::new();
    // No recipient in the envelope; the server adds 'to' per contact.
    let mut p = Stanza::parse("<presence id='p9'><status>on call</status></presence>").unwrap();
    signed::sign(&mut p, &w.alice, &w.policy, t0()).unwrap();
    envelope::seal(&mut p, &w.alice, &w.policy, t0()).unwrap();
    let to_bob = deliver(&p, "alice@example.org/x").with_attr("to", "bob@example.org");
    let mut fresh = ReplayWindow::default();
    let _checked = envelope::check(&to_bob, &w.keyring, &w.policy, &mut fresh, t0()).unwrap();
}

#[test]
fn envelope_with_a_long_id_is_refused_before_verification() {
    let w = Scenario::new();
    let (_, got) = enveloped(&w);
    // Every accepted id is kept for the replay window: a long one is refused as malformed,
    // before any signature work (a new id would otherwise fail as a bad signature).
    let long = got.clone().with_attr("id", &"i".repeat(4096));
    assert!(matches!(
        refused_by_fresh_window(&w, &long, t0()),
        Error::Stanza(_)
    ));
    let mut m = message("bob@example.org", &"i".repeat(257), "b");
    assert!(matches!(
        envelope::seal(&mut m, &w.alice, &w.policy, t0()),
        Err(Error::Stanza(_))
    ));
}

#[test]
fn enveloped_message_needs_a_recipient_and_an_id() {
    let w = Scenario::new();
    let mut no_to = Stanza::parse("<message id='x'><body>b</body></message>").unwrap();
    assert!(envelope::seal(&mut no_to, &w.alice, &w.policy, t0()).is_err());
    let mut no_id =
        Stanza::parse("<message to='bob@example.org'><body>b</body></message>").unwrap();
    assert!(envelope::seal(&mut no_id, &w.alice, &w.policy, t0()).is_err());
}

// ---------------------------------------------------------------------------------------
// Encrypted messages (XEP-0027 §5), signed inside.
// ---------------------------------------------------------------------------------------

/// Alice's encrypted, signed and enveloped message to bob: as sent and as delivered.
fn encrypted_to_bob(w: &Scenario) -> (Stanza, Stanza) {
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
    (m, got)
}

#[test]
fn encrypted_message_is_signed_inside_and_encrypted_to_self() {
    let w = Scenario::new();
    let (_, got) = encrypted_to_bob(&w);
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
}

#[test]
fn encrypted_message_is_not_readable_by_others() {
    let w = Scenario::new();
    let (_, got) = encrypted_to_bob(&w);
    assert!(matches!(
        encrypted::decrypt(&got, &w.carol, &w.keyring, &w.policy, t0()),
        Err(Error::Decrypt)
    ));
}

#[test]
fn encrypted_message_replayed_is_refused_by_the_envelope() {
    let w = Scenario::new();
    let (_, got) = encrypted_to_bob(&w);
    let mut win = ReplayWindow::default();
    let _checked = envelope::check(&got, &w.keyring, &w.policy, &mut win, t0()).unwrap();
    assert!(matches!(
        envelope::check(&got, &w.keyring, &w.policy, &mut win, t0()),
        Err(Error::Replay(_))
    ));
}

#[test]
fn encrypted_message_forwarded_as_anothers_is_refused() {
    let w = Scenario::new();
    let (m, _) = encrypted_to_bob(&w);
    // Forwarded by carol as hers: the inner signature is alice's, not carol's.
    let forwarded = deliver(&m, "carol@example.org/c");
    assert!(matches!(
        encrypted::decrypt(&forwarded, &w.bob, &w.keyring, &w.policy, t0()),
        Err(Error::UnknownSigner(_))
    ));
}

#[test]
fn tampered_ciphertext_gives_one_error_and_breaks_the_envelope() {
    let w = Scenario::new();
    let (_, got) = encrypted_to_bob(&w);
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
}

#[test]
fn encrypted_to_several_recipients_each_reads_it_nobody_else() {
    let w = Scenario::new();
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
}

#[test]
fn unsigned_encryption_reports_no_signature() {
    let w = Scenario::new();
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
}

#[test]
fn only_messages_with_a_body_are_encrypted() {
    let w = Scenario::new();
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

/// A message to bob signed by alice (`jabber:x:signed` over "approve"), and one with an
/// XHTML-IM copy of its body: neither may be encrypted or sealed (review session 26, X3).
fn plaintext_carriers(w: &Scenario) -> [Stanza; 2] {
    let mut signed_m = message("bob@example.org", "x3", "approve");
    signed::sign(&mut signed_m, &w.alice, &w.policy, t0()).unwrap();
    let html = Stanza::parse(
        "<message to='bob@example.org' id='x3h'><body>approve</body>\
         <html xmlns='http://jabber.org/protocol/xhtml-im'>\
         <body xmlns='http://www.w3.org/1999/xhtml'><p>approve</p></body></html></message>",
    )
    .unwrap();
    [signed_m, html]
}

/// Review session 26, X3: encrypting a message that carries a `jabber:x:signed` signature
/// over its body (or an XHTML-IM copy of it) is refused, and the stanza is left unchanged;
/// before, the signature stayed next to the ciphertext, an oracle for guessed plaintexts.
#[test]
fn encrypting_a_signed_or_xhtml_message_is_refused() {
    let w = Scenario::new();
    for m in plaintext_carriers(&w) {
        let mut c = m.clone();
        let r = encrypted::encrypt(
            &mut c,
            &w.alice,
            &[&w.bob.public_cert()],
            true,
            &w.policy,
            t0(),
        );
        assert!(
            matches!(r, Err(Error::State(ref why)) if why.contains("plaintext")),
            "{r:?}"
        );
        assert_eq!(c.to_xml(), m.to_xml());
    }
}

/// Review session 26, X3, session keys: the same refusal in `Sessions::seal`.
#[test]
fn sealing_a_signed_or_xhtml_message_with_a_session_key_is_refused() {
    let mut f = SessionFlow::agreed();
    for m in plaintext_carriers(&f.s) {
        let mut c = m.clone();
        let r = f.sa.seal(&mut c, &mut OsRandom, t0());
        assert!(
            matches!(r, Err(Error::State(ref why)) if why.contains("plaintext")),
            "{r:?}"
        );
        assert_eq!(c.to_xml(), m.to_xml());
    }
}

/// Review session 26, X3, rooms: the same refusal in `Member::seal`.
#[test]
fn sealing_a_signed_or_xhtml_message_to_a_room_is_refused() {
    let mut f = RoomFlow::keyed();
    for m in plaintext_carriers(&f.s) {
        let mut c = m.clone();
        let s = &f.s;
        let r = f.members[ALICE].seal(&mut c, &s.alice, &mut OsRandom, &s.policy, t0());
        assert!(
            matches!(r, Err(Error::State(ref why)) if why.contains("plaintext")),
            "{r:?}"
        );
        assert_eq!(c.to_xml(), m.to_xml());
    }
}

// ---------------------------------------------------------------------------------------
// Session keys.
// ---------------------------------------------------------------------------------------

#[test]
fn session_offer_cannot_be_taken_by_a_third_party() {
    let f = SessionFlow::offered();
    // Carol cannot take it (not encrypted to her), nor claim it.
    let mut sc = Sessions::new(f.s.carol.jid(), Duration::from_secs(3600));
    assert!(
        sc.accept(&f.offer, &f.s.carol, &f.s.keyring, &f.s.policy, t0())
            .is_err()
    );
}

#[test]
fn session_offer_accepted_names_the_peer() {
    let mut f = SessionFlow::offered();
    let info = f.bob_accepts(&f.offer.clone(), t0()).unwrap();
    assert_eq!(info.peer.bare(), "alice@example.org");
}

#[test]
fn session_offer_replayed_is_refused() {
    let mut f = SessionFlow::agreed();
    assert!(matches!(
        f.bob_accepts(&f.offer.clone(), t0()),
        Err(Error::Replay(_))
    ));
}

#[test]
fn session_offer_delivered_from_another_account_is_refused() {
    let mut f = SessionFlow::offered();
    // Not signed by them.
    let spoofed = deliver(&f.offer, "carol@example.org/c");
    assert!(f.bob_accepts(&spoofed, t0()).is_err());
}

#[test]
fn sealed_messages_open_once() {
    let mut f = SessionFlow::agreed();
    for (i, text) in ["one", "two", "three"].iter().enumerate() {
        let (m, got) = f.alice_seals(&format!("s{i}"), text, t0());
        assert_eq!(m.body().unwrap().as_deref(), Some(FALLBACK_BODY));
        assert_eq!(f.sb.open(&got, &mut f.wb, t0()).unwrap(), *text);
        assert!(matches!(
            f.sb.open(&got, &mut f.wb, t0()),
            Err(Error::Replay(_))
        ));
    }
}

#[test]
fn sealed_message_reflected_back_to_its_sender_is_refused() {
    let mut f = SessionFlow::agreed();
    for (i, text) in ["one", "two", "three"].iter().enumerate() {
        let (m, _) = f.alice_seals(&format!("s{i}"), text, t0());
        // Reflected back to alice as if bob sent it: the direction is authenticated.
        let reflected = deliver(&m, "bob@example.org/b").with_attr("to", "alice@example.org");
        assert!(f.sa.open(&reflected, &mut f.wa, t0()).is_err());
    }
}

#[test]
fn one_session_key_serves_both_directions() {
    let mut f = SessionFlow::agreed();
    let mut r = message("alice@example.org/a", "r1", "ack");
    f.sb.seal(&mut r, &mut OsRandom, t0()).unwrap();
    assert_eq!(
        f.sa.open(&deliver(&r, "bob@example.org/b"), &mut f.wa, t0())
            .unwrap(),
        "ack"
    );
}

#[test]
fn sealed_message_with_a_changed_id_is_refused() {
    let mut f = SessionFlow::agreed();
    let (_, got) = f.alice_seals("t1", "x", t0());
    assert!(matches!(
        f.sb.open(&got.clone().with_attr("id", "t2"), &mut f.wb, t0()),
        Err(Error::Decrypt)
    ));
}

#[test]
fn sealed_message_outside_the_skew_is_refused_and_leaves_no_trace() {
    let mut f = SessionFlow::agreed();
    let (_, got) = f.alice_seals("t1", "x", t0());
    let stale = at(400);
    assert!(matches!(
        f.sb.open(&got, &mut f.wb, stale),
        Err(Error::Replay(_))
    ));
    assert_eq!(f.sb.open(&got, &mut f.wb, t0()).unwrap(), "x");
}

/// Alice rotates at t1 = t0 + 60 s and bob accepts: the flow, the old and the new key ids.
fn rotated() -> (SessionFlow, String, String) {
    let mut f = SessionFlow::agreed();
    let jb = f.s.bob.jid().clone();
    let old = f.sa.current(&jb, t0()).unwrap();
    let t1 = at(60);
    let offer2 = f.alice_offers(t1);
    let _info = f.bob_accepts(&offer2, t1).unwrap();
    let new = f.sa.current(&jb, t1).unwrap();
    (f, old.id, new.id)
}

#[test]
fn rotation_seals_with_the_new_key() {
    let (mut f, old, new) = rotated();
    assert_ne!(old, new);
    let (m, got) = f.alice_seals("n1", "new key", at(60));
    assert!(m.to_xml().contains(&new));
    assert_eq!(f.sb.open(&got, &mut f.wb, at(60)).unwrap(), "new key");
}

#[test]
fn nothing_seals_or_opens_with_an_expired_key() {
    let (mut f, _, _) = rotated();
    let t1 = at(60);
    // The rotated key is still valid after the first one expired.
    let _ = f.alice_seals("x1", "late", at(3601));
    let t_end = t1 + Duration::from_secs(3601);
    let mut m2 = message("bob@example.org", "x2", "too late");
    assert!(matches!(
        f.sa.seal(&mut m2, &mut OsRandom, t_end),
        Err(Error::NeedKey(_))
    ));
    f.sb.forget_expired(t_end);
    assert!(f.sb.current(f.s.alice.jid(), t_end).is_none());
}

#[test]
fn session_seal_limit_forces_a_new_key() {
    let mut f = SessionFlow::agreed();
    f.sa.set_seal_limit(2);
    let msg = |i: u32| message("bob@example.org", &format!("l{i}"), &format!("m{i}"));
    for i in 0..2 {
        f.sa.seal(&mut msg(i), &mut OsRandom, t0()).unwrap();
    }
    let mut third = msg(2);
    assert!(matches!(
        f.sa.seal(&mut third, &mut OsRandom, t0()),
        Err(Error::NeedKey(_))
    ));
    assert_eq!(third, msg(2), "a refused seal leaves the stanza as it was");
    let _offer = f.alice_offers(t0());
    f.sa.seal(&mut third, &mut OsRandom, t0()).unwrap();
}

// Issue 12 item 6: a replayed offer is refused after a restart when the offer state was
// saved, and an offer older than the newest accepted one is refused in any case.

/// Alice made two offers (t0, t0 + 60 s); bob accepted the second at t0 + 120 s. Returns the
/// flow and the two offers.
fn two_offers_second_accepted() -> (SessionFlow, Stanza, Stanza) {
    let mut f = SessionFlow::offered();
    let first = f.offer.clone();
    let second = f.alice_offers(at(60));
    let _info = f.bob_accepts(&second, at(120)).unwrap();
    (f, first, second)
}

#[test]
fn an_offer_older_than_the_newest_accepted_is_refused() {
    let (mut f, first, _) = two_offers_second_accepted();
    // The older offer, never seen, is older than the newest accepted: refused.
    assert!(matches!(
        f.bob_accepts(&first, at(120)),
        Err(Error::Replay(_))
    ));
}

#[test]
fn a_replayed_offer_is_refused_after_a_restart_with_the_saved_state() {
    let (mut f, _, second) = two_offers_second_accepted();
    let later = at(120);
    let state = f.sb.offer_state();
    assert!(state.starts_with("alice@example.org "), "{state}");
    let mut restarted = Sessions::new(f.s.bob.jid(), Duration::from_secs(3600));
    restarted.restore_offer_state(&state).unwrap();
    assert!(matches!(
        restarted.accept(&second, &f.s.bob, &f.s.keyring, &f.s.policy, later),
        Err(Error::Replay(_))
    ));
    // A new offer after the restart is accepted.
    let third = f.alice_offers(later);
    restarted
        .accept(&third, &f.s.bob, &f.s.keyring, &f.s.policy, later)
        .unwrap();
}

#[test]
fn without_the_saved_state_a_replayed_offer_installs_again() {
    // The documented gap.
    let (f, _, second) = two_offers_second_accepted();
    let mut forgetful = Sessions::new(f.s.bob.jid(), Duration::from_secs(3600));
    forgetful
        .accept(&second, &f.s.bob, &f.s.keyring, &f.s.policy, at(120))
        .unwrap();
}

#[test]
fn a_malformed_offer_state_is_refused_whole() {
    let w = Scenario::new();
    assert!(
        Sessions::new(w.bob.jid(), Duration::from_secs(3600))
            .restore_offer_state("alice@example.org yesterday\n")
            .is_err()
    );
}

// ---------------------------------------------------------------------------------------
// Encrypted rooms.
// ---------------------------------------------------------------------------------------

#[test]
fn room_key_goes_to_each_member() {
    let mut f = RoomFlow::distributed();
    assert_eq!(f.dist.len(), 3);
    let dist = f.dist.clone();
    for who in [ALICE, BOB, CAROL] {
        assert_eq!(f.accept(who, &dist, t0()).unwrap(), 1);
    }
}

#[test]
fn replayed_room_key_distribution_is_refused() {
    let mut f = RoomFlow::keyed();
    let dist = f.dist.clone();
    for who in [ALICE, BOB, CAROL] {
        // Not a newer epoch.
        assert!(matches!(f.accept(who, &dist, t0()), Err(Error::Replay(_))));
    }
}

#[test]
fn room_key_from_a_member_who_is_not_the_moderator_is_refused() {
    let mut f = RoomFlow::keyed();
    let mut rogue =
        Moderator::new(&f.room, Duration::from_secs(86_400), &mut OsRandom, t0()).unwrap();
    rogue
        .add_member(f.s.bob.jid(), f.s.bob.public_cert(), &f.s.policy, t0())
        .unwrap();
    rogue.rotate(&mut OsRandom, t0()).unwrap();
    rogue.rotate(&mut OsRandom, t0()).unwrap();
    let forged = deliver(
        &rogue
            .distribute(&f.s.carol, &mut OsRandom, &f.s.policy, t0())
            .unwrap()
            .stanzas[0],
        "carol@example.org/c",
    );
    assert!(matches!(
        f.members[BOB].accept_key(&forged, &f.s.bob, &f.s.keyring, &f.s.policy, t0()),
        Err(Error::Binding(_))
    ));
}

#[test]
fn one_members_room_key_cannot_be_replayed_to_another() {
    let mut f = RoomFlow::keyed();
    let dave = f.s.pin("dave");
    // Addressed and encrypted to its member.
    let carols = RoomFlow::dist_to(&f.dist, "carol@example.org");
    assert!(
        Member::new(&f.room, dave.jid(), f.s.alice.fingerprint())
            .accept_key(&carols, &dave, &f.s.keyring, &f.s.policy, t0())
            .is_err()
    );
}

#[test]
fn room_message_opens_with_its_sender_and_epoch() {
    let mut f = RoomFlow::keyed();
    // Bob writes to the room; the MUC reflects it from room/nick to each occupant.
    let msg = f.post(BOB, "g1", "restart the workers", t0());
    let mut win_c = ReplayWindow::default();
    let opened = f
        .open(
            CAROL,
            &RoomFlow::reflected(&msg, "bob", "carol@example.org"),
            &mut win_c,
            t0(),
        )
        .unwrap();
    assert_eq!(
        (opened.sender.bare(), opened.epoch, opened.body.as_str()),
        ("bob@example.org", 1, "restart the workers")
    );
}

#[test]
fn replayed_room_message_is_refused() {
    let mut f = RoomFlow::keyed();
    let msg = f.post(BOB, "g1", "restart the workers", t0());
    let got = RoomFlow::reflected(&msg, "bob", "carol@example.org");
    let mut win_c = ReplayWindow::default();
    let _opened = f.open(CAROL, &got, &mut win_c, t0()).unwrap();
    assert!(matches!(
        f.open(CAROL, &got, &mut win_c, t0()),
        Err(Error::Replay(_))
    ));
}

#[test]
fn removing_a_member_rotates_the_key_to_the_others_only() {
    // Carol is removed: the key rotates and goes to alice and bob only (both accept epoch 2).
    let (_, dist2) = RoomFlow::carol_removed(at(10));
    assert_eq!(dist2.len(), 2);
    assert!(dist2.iter().all(|s| s.to() != Some("carol@example.org")));
}

#[test]
fn a_removed_member_cannot_use_anothers_copy_of_the_new_key() {
    let t1 = at(10);
    let (mut f, dist2) = RoomFlow::carol_removed(t1);
    let bobs = RoomFlow::dist_to(&dist2, "bob@example.org");
    assert!(
        f.members[CAROL]
            .accept_key(&bobs, &f.s.carol, &f.s.keyring, &f.s.policy, t1)
            .is_err()
    );
}

#[test]
fn a_removed_member_cannot_read_the_next_epoch() {
    let t1 = at(10);
    let (mut f, _) = RoomFlow::carol_removed(t1);
    // A later message is sealed with epoch 2: alice reads it, carol cannot.
    let msg2 = f.post(BOB, "g2", "new credentials: s3cret", t1);
    let mut win_a = ReplayWindow::default();
    assert_eq!(
        f.open(
            ALICE,
            &RoomFlow::reflected(&msg2, "bob", "alice@example.org"),
            &mut win_a,
            t1
        )
        .unwrap()
        .body,
        "new credentials: s3cret"
    );
    assert!(matches!(
        f.open(
            CAROL,
            &RoomFlow::reflected(&msg2, "bob", "carol@example.org"),
            &mut ReplayWindow::default(),
            t1
        ),
        Err(Error::NeedKey(_))
    ));
}

#[test]
fn a_member_cannot_pass_a_message_off_as_anothers() {
    let t1 = at(10);
    let (mut f, _) = RoomFlow::carol_removed(t1);
    let msg2 = f.post(BOB, "g2", "new credentials: s3cret", t1);
    // The envelope names the signer.
    let xml = RoomFlow::reflected(&msg2, "bob", "alice@example.org")
        .to_xml()
        .replace("from='bob@example.org'", "from='alice@example.org'");
    let spoof = Stanza::parse(&xml).unwrap();
    assert!(
        f.open(ALICE, &spoof, &mut ReplayWindow::default(), t1)
            .is_err()
    );
}

// Issue 12 item 3: carol, removed, still holds the epoch 1 key and posts with it. The
// remaining members accepted epoch 2 at t1: during the grace period for messages in flight
// the post is opened, after it refused.

/// Carol's post with her epoch 1 key, sealed at `when`, as reflected to alice.
fn carol_posts(f: &mut RoomFlow, id: &str, when: SystemTime) -> Stanza {
    let m = f.post(CAROL, id, "still here", when);
    RoomFlow::reflected(&m, "carol", "alice@example.org")
}

#[test]
fn a_removed_members_post_in_flight_opens_during_the_grace() {
    let t1 = at(10);
    let (mut f, _) = RoomFlow::carol_removed(t1);
    let in_flight = carol_posts(&mut f, "c1", t1 + Duration::from_secs(5));
    let got = f
        .open(
            ALICE,
            &in_flight,
            &mut ReplayWindow::default(),
            t1 + Duration::from_secs(5),
        )
        .unwrap();
    assert_eq!((got.epoch, got.sender.bare()), (1, "carol@example.org"));
}

#[test]
fn a_removed_members_post_after_the_grace_is_refused() {
    let t1 = at(10);
    let (mut f, _) = RoomFlow::carol_removed(t1);
    let late = carol_posts(&mut f, "c2", t1 + Duration::from_secs(11));
    let r = f.open(
        ALICE,
        &late,
        &mut ReplayWindow::default(),
        t1 + Duration::from_secs(11),
    );
    assert!(matches!(r, Err(Error::Replay(_))), "{r:?}");
}

#[test]
fn with_no_grace_a_removed_members_post_in_flight_is_refused() {
    let t1 = at(10);
    let (mut f, _) = RoomFlow::carol_removed(t1);
    f.members[BOB].set_epoch_grace(Duration::ZERO);
    let c3 = carol_posts(&mut f, "c3", t1 + Duration::from_secs(1));
    let r = f.open(
        BOB,
        &c3,
        &mut ReplayWindow::default(),
        t1 + Duration::from_secs(1),
    );
    assert!(matches!(r, Err(Error::Replay(_))), "{r:?}");
}

#[test]
fn room_seal_limit_forces_a_rotation() {
    let mut f = RoomFlow::keyed();
    f.members[BOB].set_seal_limit(1);
    let msg = |i: u32| message("bob@example.org", &format!("l{i}"), &format!("m{i}"));
    let s = &f.s;
    f.members[BOB]
        .seal(&mut msg(10), &s.bob, &mut OsRandom, &s.policy, t0())
        .unwrap();
    let mut second = msg(11);
    assert!(matches!(
        f.members[BOB].seal(&mut second, &s.bob, &mut OsRandom, &s.policy, t0()),
        Err(Error::NeedKey(_))
    ));
    assert_eq!(second, msg(11));
    f.moderator.rotate(&mut OsRandom, t0()).unwrap();
    let dist = f
        .moderator
        .distribute(&f.s.alice, &mut OsRandom, &f.s.policy, t0())
        .unwrap()
        .stanzas;
    assert_eq!(f.accept(BOB, &dist, t0()).unwrap(), 2);
    let s = &f.s;
    f.members[BOB]
        .seal(&mut second, &s.bob, &mut OsRandom, &s.policy, t0())
        .unwrap();
}

/// Issue 12 item 6: stamps and signatures from a sender whose clock is ahead are accepted
/// within the skew, both ways as documented, and refused beyond it.
#[test]
fn a_sender_clock_ahead_is_accepted_within_the_skew() {
    let w = Scenario::new();
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
        moderator
            .add_member(w.bob.jid(), w.bob.public_cert(), &w.policy, at)
            .unwrap();
        let dist = moderator
            .distribute(&w.alice, &mut rng, &w.policy, at)
            .unwrap()
            .stanzas;
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
    let w = Scenario::new();
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

// ---------------------------------------------------------------------------------------
// Refusals carry their reason and kind (issue 14).
// ---------------------------------------------------------------------------------------

#[test]
fn envelope_refusals_say_which_binding_or_time() {
    let w = Scenario::new();
    let (m, got) = enveloped(&w);
    let moved = got.clone().with_attr("to", "carol@example.org");
    let e = refused_by_fresh_window(&w, &moved, t0());
    assert_eq!(e.kind(), ErrorKind::Rejected);
    assert!(
        matches!(&e, Error::Binding(Mismatch::Recipient { stanza, signed })
            if stanza == "carol@example.org" && signed == "bob@example.org"),
        "{e:?}"
    );
    let other = deliver(&m, "carol@example.org/x");
    let e = refused_by_fresh_window(&w, &other, t0());
    assert!(
        matches!(&e, Error::Binding(Mismatch::Sender { stanza, signed })
            if stanza == "carol@example.org" && signed == "alice@example.org"),
        "{e:?}"
    );
    let e = refused_by_fresh_window(&w, &got, at(301));
    assert!(matches!(e, Error::Replay(Freshness::Stale { .. })), "{e:?}");
    let e = refused_by_fresh_window(&w, &got, t0() - Duration::from_secs(301));
    assert!(
        matches!(e, Error::Replay(Freshness::Future { .. })),
        "{e:?}"
    );
    let stranger = deliver(&m, "mallory@evil.example/x");
    let e = refused_by_fresh_window(&w, &stranger, t0());
    assert!(
        matches!(e, Error::Binding(Mismatch::Sender { .. })),
        "{e:?}"
    );
}

#[test]
fn session_refusals_say_which() {
    let mut f = SessionFlow::agreed();
    let e = f.bob_accepts(&f.offer.clone(), t0()).unwrap_err();
    assert!(
        matches!(&e, Error::Replay(Freshness::OfferSeen { .. })),
        "{e:?}"
    );
    // Sealing to a peer without a key is the caller's to fix: offer one.
    let mut m = message("carol@example.org", "q1", "hi");
    let e = f.sa.seal(&mut m, &mut OsRandom, t0()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Misuse);
    assert!(
        matches!(&e, Error::NeedKey(NeedKey::NoSessionKey { peer }) if peer == "carol@example.org"),
        "{e:?}"
    );
    let (_, got) = f.alice_seals("s1", "x", t0());
    let _body = f.sb.open(&got, &mut f.wb, t0()).unwrap();
    let e = f.sb.open(&got, &mut f.wb, t0()).unwrap_err();
    assert!(
        matches!(&e, Error::Replay(Freshness::Duplicate { sender, id })
            if sender == "alice@example.org" && id == "s1"),
        "{e:?}"
    );
}

#[test]
fn room_refusals_say_which() {
    let t1 = at(10);
    let (mut f, dist2) = RoomFlow::carol_removed(t1);
    // A replayed distribution: not newer.
    let e = f.accept(BOB, &dist2, t1).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Replay(Freshness::EpochNotNewer {
                epoch: 2,
                current: 2
            })
        ),
        "{e:?}"
    );
    // Carol has no key for epoch 2: refused input, not misuse.
    let msg2 = f.post(BOB, "g2", "new credentials: s3cret", t1);
    let e = f
        .open(
            CAROL,
            &RoomFlow::reflected(&msg2, "bob", "carol@example.org"),
            &mut ReplayWindow::default(),
            t1,
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected);
    assert!(
        matches!(e, Error::NeedKey(NeedKey::UnknownEpoch { epoch: 2 })),
        "{e:?}"
    );
    // Carol's epoch 1 post after the grace.
    let late = carol_posts(&mut f, "c2", t1 + Duration::from_secs(11));
    let e = f
        .open(
            ALICE,
            &late,
            &mut ReplayWindow::default(),
            t1 + Duration::from_secs(11),
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Replay(Freshness::EpochSuperseded { epoch: 1, newer: 2 })
        ),
        "{e:?}"
    );
    // A key from someone who is not the pinned moderator.
    let mut rogue =
        Moderator::new(&f.room, Duration::from_secs(86_400), &mut OsRandom, t0()).unwrap();
    rogue
        .add_member(f.s.bob.jid(), f.s.bob.public_cert(), &f.s.policy, t0())
        .unwrap();
    let forged = deliver(
        &rogue
            .distribute(&f.s.carol, &mut OsRandom, &f.s.policy, t1)
            .unwrap()
            .stanzas[0],
        "carol@example.org/c",
    );
    let e = f.members[BOB]
        .accept_key(&forged, &f.s.bob, &f.s.keyring, &f.s.policy, t1)
        .unwrap_err();
    assert!(
        matches!(&e, Error::Binding(Mismatch::NotModerator { from }) if from == "carol@example.org"),
        "{e:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Review finding 4: a room message must come through the room; one payload per stanza.
// ---------------------------------------------------------------------------------------

/// Bob seals a room message at t0 and, instead of sending it to the room, re-addresses it to
/// carol alone (type chat, his own envelope to her): what carol receives from him directly.
fn whispered_room_message(f: &mut RoomFlow, typ: &str) -> Stanza {
    let msg = f.post(BOB, "w1", "stop the workers", t0());
    let mut w = Stanza::parse(&msg.to_xml())
        .unwrap()
        .with_attr("to", "carol@example.org")
        .with_attr("type", typ);
    envelope::seal(&mut w, &f.s.bob, &f.s.policy, t0()).unwrap();
    deliver(&w, "bob@example.org/b")
}

#[test]
fn a_room_message_whispered_to_one_member_is_refused() {
    let mut f = RoomFlow::keyed();
    let mut win = ReplayWindow::default();
    // Not a groupchat: refused, before the room key is used.
    let got = whispered_room_message(&mut f, "chat");
    let r = f.open(CAROL, &got, &mut win, t0());
    assert!(matches!(r, Err(Error::Stanza(_))), "{r:?}");
    // A groupchat, but from bob's own JID, not the room.
    let got = whispered_room_message(&mut f, "groupchat");
    let r = f.open(CAROL, &got, &mut win, t0());
    assert!(
        matches!(r, Err(Error::Binding(Mismatch::Room { .. }))),
        "{r:?}"
    );
    assert!(win.is_empty(), "nothing recorded");
    // Through the room, the same kind of message opens.
    let msg = f.post(BOB, "w2", "stop the workers", t0());
    let got = RoomFlow::reflected(&msg, "bob", "carol@example.org");
    assert_eq!(
        f.open(CAROL, &got, &mut win, t0()).unwrap().body,
        "stop the workers"
    );
}

#[test]
fn a_stanza_with_two_payload_kinds_is_refused_by_the_envelope() {
    let mut f = RoomFlow::keyed();
    let room_msg = f.post(BOB, "g1", "restart the workers", t0());
    let sealed = room_msg
        .element()
        .only_child("sealed", xep0027::ns::ROOM)
        .unwrap()
        .unwrap()
        .clone();
    // Alice's encrypted, enveloped message to bob, with a room payload added in transit:
    // the envelope covered only the jabber:x:encrypted one.
    let (sent, got) = encrypted_to_bob(&f.s);
    let mut two = got.clone();
    two.element_mut().push(sealed.clone());
    let mut win = ReplayWindow::default();
    let r = envelope::check(&two, &f.s.keyring, &f.s.policy, &mut win, t0());
    assert!(matches!(r, Err(Error::Stanza(_))), "{r:?}");
    assert!(win.is_empty());
    // Nor is such a stanza sealed.
    let mut both = sent.clone();
    both.element_mut().push(sealed);
    let r = envelope::seal(&mut both, &f.s.alice, &f.s.policy, t0());
    assert!(matches!(r, Err(Error::Stanza(_))), "{r:?}");
    // One payload: as before.
    let _checked = envelope::check(&got, &f.s.keyring, &f.s.policy, &mut win, t0()).unwrap();
}

// ---------------------------------------------------------------------------------------
// Review finding 6: the moderator validates members, distributes to everyone it can, and
// changes nothing when a removal fails.
// ---------------------------------------------------------------------------------------

/// A randomness source that always fails.
struct BrokenRandom;

impl xep0027::symmetric::Random for BrokenRandom {
    fn fill(&mut self, _buf: &mut [u8]) -> xep0027::Result<()> {
        Err(Error::State("no randomness".into()))
    }
}

#[test]
fn a_failed_removal_changes_nothing() {
    let mut f = RoomFlow::keyed();
    let carol = f.s.carol.jid().clone();
    let r = f.moderator.remove_member(&carol, &mut BrokenRandom, t0());
    assert!(r.is_err(), "{r:?}");
    // Still a member, still epoch 1: nothing half-done.
    assert!(f.moderator.members().any(|m| m == "carol@example.org"));
    assert_eq!(f.moderator.epoch(), 1);
    // With randomness, the removal goes through.
    assert!(
        f.moderator
            .remove_member(&carol, &mut OsRandom, t0())
            .unwrap()
    );
    assert!(!f.moderator.members().any(|m| m == "carol@example.org"));
    assert_eq!(f.moderator.epoch(), 2);
}

/// An identity whose certificate expires one day after t0.
fn short_lived(name: &str) -> Identity {
    Identity::generate(
        &Jid::new(&format!("{name}@example.org")).unwrap(),
        Suite::Cv25519,
        t0(),
        Some(Duration::from_secs(86_400)),
    )
    .unwrap()
}

#[test]
fn a_member_that_cannot_be_encrypted_to_does_not_stop_the_others() {
    let w = Scenario::new();
    let room = Jid::new("ops@rooms.example.org").unwrap();
    let mut m =
        Moderator::new(&room, Duration::from_secs(7 * 86_400), &mut OsRandom, t0()).unwrap();
    let dave = short_lived("dave");
    for (jid, cert) in [
        (w.bob.jid(), w.bob.public_cert()),
        (dave.jid(), dave.public_cert()),
        (w.carol.jid(), w.carol.public_cert()),
    ] {
        m.add_member(jid, cert, &w.policy, t0()).unwrap();
    }
    // Two days later dave's certificate has expired; a removal rotates the key.
    let later = at(2 * 86_400);
    assert!(
        m.remove_member(w.carol.jid(), &mut OsRandom, later)
            .unwrap()
    );
    let d = m
        .distribute(&w.alice, &mut OsRandom, &w.policy, later)
        .unwrap();
    // Before: Err for everyone (dave's certificate), so bob never got epoch 2.
    let to: Vec<_> = d.stanzas.iter().map(|s| s.to().unwrap()).collect();
    assert_eq!(to, ["bob@example.org"]);
    assert_eq!(d.undelivered.len(), 1);
    assert_eq!(d.undelivered[0].0, "dave@example.org");
    assert!(
        matches!(d.undelivered[0].1, Error::Key(_)),
        "{:?}",
        d.undelivered
    );
    let mut bob = Member::new(&room, w.bob.jid(), w.alice.fingerprint());
    let got = deliver(&d.stanzas[0], "alice@example.org/mod");
    assert_eq!(
        bob.accept_key(&got, &w.bob, &w.keyring, &w.policy, later)
            .unwrap(),
        2
    );
}

#[test]
fn a_member_whose_certificate_is_unusable_is_not_added() {
    let w = Scenario::new();
    let room = Jid::new("ops@rooms.example.org").unwrap();
    let mut m = Moderator::new(&room, Duration::from_secs(86_400), &mut OsRandom, t0()).unwrap();
    let dave = short_lived("dave");
    let r = m.add_member(dave.jid(), dave.public_cert(), &w.policy, at(2 * 86_400));
    assert!(matches!(r, Err(Error::Key(_))), "{r:?}");
    assert_eq!(m.members().count(), 0);
    m.add_member(dave.jid(), dave.public_cert(), &w.policy, t0())
        .unwrap();
    assert_eq!(m.members().collect::<Vec<_>>(), ["dave@example.org"]);
}

/// Finding (XEP-0027 review F1): a signer's key was judged as of the signature's creation
/// time, which whoever holds the secret key chooses. An expired key (or a superseded or
/// retired one) whose secret leaked later signed presence and session offers by backdating
/// them into its validity, and they verified. The key must be valid now.
#[test]
fn expired_signer_keys_do_not_speak_any_more() {
    let day = Duration::from_secs(86_400);
    let alice_jid = Jid::new("alice@example.org").unwrap();
    // Alice's certificate lived from t0 - 3 days for one day; the thief signs at t0 - 2.5 days.
    let old_alice =
        Identity::generate(&alice_jid, Suite::Cv25519, t0() - 3 * day, Some(day)).unwrap();
    let bob = Identity::generate(
        &Jid::new("bob@example.org").unwrap(),
        Suite::Cv25519,
        t0() - 4 * day,
        None,
    )
    .unwrap();
    let mut ring = Keyring::new();
    ring.insert_pinned(old_alice.jid(), old_alice.public_cert());
    ring.insert_pinned(bob.jid(), bob.public_cert());
    let policy = Policy::standard();
    let backdated = t0() - day * 5 / 2;
    // A signed presence, backdated: verified as of its own time it would pass; as of now not.
    let mut p = Stanza::parse("<presence id='p1'><status>Online</status></presence>").unwrap();
    signed::sign(&mut p, &old_alice, &policy, backdated).unwrap();
    let got = deliver(&p, "alice@example.org/r");
    assert!(
        signed::verify(&got, &ring, &policy, backdated).is_ok(),
        "valid then"
    );
    let e = signed::verify(&got, &ring, &policy, t0()).unwrap_err();
    assert!(e.to_string().contains("not valid now"), "{e}");
    // A session key offer, backdated: refused, so no sealed message is taken as Alice's.
    let offer = Sessions::new(old_alice.jid(), 7 * day)
        .offer(
            &old_alice,
            bob.jid(),
            &bob.public_cert(),
            &mut OsRandom,
            &policy,
            backdated,
        )
        .unwrap();
    let offer = deliver(&offer, "alice@example.org/r");
    let mut sb = Sessions::new(bob.jid(), Duration::from_secs(3600));
    assert!(sb.accept(&offer, &bob, &ring, &policy, t0()).is_err());
    // The same made with a key valid now still passes.
    let alice = id("alice");
    let mut ring = Keyring::new();
    ring.insert_pinned(alice.jid(), alice.public_cert());
    ring.insert_pinned(bob.jid(), bob.public_cert());
    let mut p = Stanza::parse("<presence id='p2'><status>Online</status></presence>").unwrap();
    signed::sign(&mut p, &alice, &policy, t0()).unwrap();
    let got = deliver(&p, "alice@example.org/r");
    assert!(signed::verify(&got, &ring, &policy, t0()).is_ok());
    let offer = Sessions::new(alice.jid(), 7 * day)
        .offer(
            &alice,
            bob.jid(),
            &bob.public_cert(),
            &mut OsRandom,
            &policy,
            t0(),
        )
        .unwrap();
    let offer = deliver(&offer, "alice@example.org/r");
    assert!(sb.accept(&offer, &bob, &ring, &policy, t0()).is_ok());
}
