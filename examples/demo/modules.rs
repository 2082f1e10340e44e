//! The XEP-0027 seed scenario: cloud middleware modules that talk over XMPP and need
//! confidentiality, integrity and non-repudiation for every message, with keys from a PKI.
//!
//! Three modules (`scheduler`, `worker`, `auditor` at cloud.example) get OpenPGP keys from a
//! "PKI" (a shared [`Keyring`] that binds each key to its module's JID). A [`Router`] plays the
//! XMPP server: it carries serialized stanzas and stamps the sender's full JID on delivery, as
//! RFC 6120 §8.1.2.1 requires. Then:
//!
//! 1. the scheduler publishes signed presence (XEP-0027 signature and a signed envelope); the
//!    worker checks both, and GnuPG verifies the same signature;
//! 2. the scheduler sends the worker an encrypted, signed message; an attacker replays it and
//!    is refused;
//! 3. a session key is agreed once, then messages flow both ways symmetrically;
//! 4. an encrypted room: the scheduler moderates, distributes the room key, the worker posts,
//!    the auditor reads; the auditor is removed, the key rotates, and it cannot read the next
//!    message.

use std::time::{Duration, SystemTime};

use xep0027::Error;
use xep0027::encrypted;
use xep0027::envelope::{self, ReplayWindow};
use xep0027::jid::Jid;
use xep0027::keys::{Identity, Keyring, Suite};
use xep0027::ns;
use xep0027::policy::Policy;
use xep0027::room::{Member, Moderator};
use xep0027::session::Sessions;
use xep0027::signed;
use xep0027::stanza::Stanza;
use xep0027::symmetric::OsRandom;

use testkit::gnupg::Gpg;

/// One outcome of the scenario: whether it behaved as expected, and what happened.
pub(crate) type Line = (bool, String);

/// The XMPP server's part: carry stanzas as text and stamp `from` on delivery.
#[derive(Debug, Default)]
pub(crate) struct Router {
    /// Every stanza carried, as sent on the wire (an attacker can replay any of them).
    pub wire: Vec<String>,
}

impl Router {
    /// Sends `stanza` from the client `full_jid`: what the receiver gets.
    pub(crate) fn carry(&mut self, stanza: &Stanza, full_jid: &str) -> Result<Stanza, Error> {
        let text = stanza.to_xml();
        self.wire.push(text.clone());
        Ok(Stanza::parse(&text)?.with_attr("from", full_jid))
    }
}

/// A module: its identity and what it remembers.
struct Module {
    id: Identity,
    window: ReplayWindow,
    sessions: Sessions,
}

impl Module {
    fn new(name: &str, now: SystemTime) -> Result<Module, Error> {
        let jid = Jid::new(&format!("{name}@cloud.example"))?;
        Ok(Module {
            id: Identity::generate(&jid, Suite::Cv25519, now, None)?,
            window: ReplayWindow::new(Duration::from_secs(300), 100_000),
            sessions: Sessions::new(&jid, Duration::from_secs(3600)),
        })
    }

    fn full(&self) -> String {
        format!("{}/module", self.id.jid().bare())
    }
}

fn line(ok: bool, what: impl Into<String>) -> Line {
    (ok, what.into())
}

/// Runs the scenario; `gpg` cross-checks the presence signature with GnuPG.
pub(crate) fn run(gpg: &Gpg) -> Result<Vec<Line>, Error> {
    let now = SystemTime::now();
    let policy = Policy::standard();
    let mut rng = OsRandom;
    let mut out = Vec::new();
    let (mut sched, mut worker, mut auditor) = (
        Module::new("scheduler", now)?,
        Module::new("worker", now)?,
        Module::new("auditor", now)?,
    );
    let mut pki = Keyring::new();
    for m in [&sched, &worker, &auditor] {
        pki.insert_pinned(m.id.jid(), m.id.public_cert());
    }
    let mut router = Router::default();

    // 1. Signed presence.
    let mut p = Stanza::parse(
        "<presence id='pres-1'><show>chat</show><status>scheduler ready: 12 jobs queued</status></presence>",
    )?;
    signed::sign(&mut p, &sched.id, &policy, now)?;
    envelope::seal(&mut p, &sched.id, &policy, now)?;
    let got = router
        .carry(&p, &sched.full())?
        .with_attr("to", worker.id.jid().bare());
    let env = envelope::check(&got, &pki, &policy, &mut worker.window, now)?;
    let v = signed::verify(&got, &pki, &policy, now)?;
    out.push(line(
        env.sender.bare() == sched.id.jid().bare() && v.signer == sched.id.fingerprint(),
        format!(
            "signed presence from {} verified (XEP-0027 signature and signed envelope, key {})",
            env.sender,
            short(&v.signer.to_hex())
        ),
    ));
    let x = got
        .element()
        .only_child("x", ns::SIGNED)?
        .map(|e| e.text())
        .unwrap_or_default();
    gpg.import(&xep0027::keys::cert_to_bytes(&sched.id.public_cert())?)
        .map_err(Error::State)?;
    let gpg_ok = gpg
        .verify_detached(
            &Gpg::rearmor("SIGNATURE", &x),
            b"scheduler ready: 12 jobs queued",
        )
        .map(|s| s.valid_sig == Some(sched.id.fingerprint().to_hex()));
    out.push(line(
        gpg_ok == Ok(true),
        "GnuPG (gpg --verify) verifies the same presence signature",
    ));

    // 2. Encrypted and signed message; then a replay.
    let mut m = Stanza::parse(
        "<message to='worker@cloud.example' id='job-7' type='chat'><body>run job 7 with token 9f1c…</body></message>",
    )?;
    encrypted::encrypt(
        &mut m,
        &sched.id,
        &[&worker.id.public_cert()],
        true,
        &policy,
        now,
    )?;
    envelope::seal(&mut m, &sched.id, &policy, now)?;
    let got = router.carry(&m, &sched.full())?;
    let _checked = envelope::check(&got, &pki, &policy, &mut worker.window, now)?;
    let d = encrypted::decrypt(&got, &worker.id, &pki, &policy, now)?;
    out.push(line(
        d.body.starts_with("run job 7") && d.signature.is_some(),
        format!(
            "encrypted message decrypted by the worker, signed inside by the scheduler: {:?}",
            d.body
        ),
    ));
    let replayed = Stanza::parse(router.wire.last().map(String::as_str).unwrap_or_default())?
        .with_attr("from", &sched.full());
    match envelope::check(
        &replayed,
        &pki,
        &policy,
        &mut worker.window,
        now + Duration::from_secs(5),
    ) {
        Err(e @ Error::Replay(_)) => out.push(line(true, format!("replayed message refused: {e}"))),
        other => out.push(line(false, format!("replay not refused: {other:?}"))),
    }
    let late = Stanza::parse(&m.clone().with_attr("id", "job-7b").to_xml())?
        .with_attr("from", &sched.full());
    match envelope::check(&late, &pki, &policy, &mut worker.window, now) {
        Err(e) => out.push(line(
            true,
            format!("the same message under a new id refused: {e}"),
        )),
        Ok(_) => out.push(line(false, "a re-labelled message was accepted")),
    }

    // 3. Session key, then symmetric messages both ways.
    let offer = sched.sessions.offer(
        &sched.id,
        worker.id.jid(),
        &worker.id.public_cert(),
        &mut rng,
        &policy,
        now,
    )?;
    let got = router.carry(&offer, &sched.full())?;
    let info = worker
        .sessions
        .accept(&got, &worker.id, &pki, &policy, now)?;
    let mut ok = true;
    let n = 50;
    for i in 0..n {
        let mut a = Stanza::parse(&format!(
            "<message to='worker@cloud.example' id='s-{i}'><body>tick {i}</body></message>"
        ))?;
        sched.sessions.seal(&mut a, &mut rng, now)?;
        ok &= worker
            .sessions
            .open(&router.carry(&a, &sched.full())?, &mut worker.window, now)?
            == format!("tick {i}");
        let mut b = Stanza::parse(&format!(
            "<message to='scheduler@cloud.example' id='r-{i}'><body>tock {i}</body></message>"
        ))?;
        worker.sessions.seal(&mut b, &mut rng, now)?;
        ok &= sched
            .sessions
            .open(&router.carry(&b, &worker.full())?, &mut sched.window, now)?
            == format!("tock {i}");
    }
    out.push(line(ok, format!("session key {} agreed once (signed, encrypted to the worker); {} messages each way sealed with AES-256-GCM", short(&info.id), n)));

    // 4. Encrypted room.
    let room = Jid::new("ops@rooms.cloud.example")?;
    let mut moderator = Moderator::new(&room, Duration::from_secs(86_400), &mut rng, now)?;
    for m in [&sched, &worker, &auditor] {
        moderator.add_member(m.id.jid(), m.id.public_cert(), &policy, now)?;
    }
    let mut members: Vec<Member> = [&sched, &worker, &auditor]
        .iter()
        .map(|m| Member::new(&room, m.id.jid(), sched.id.fingerprint()))
        .collect();
    let ids = [sched.id.clone(), worker.id.clone(), auditor.id.clone()];
    for s in moderator
        .distribute(&sched.id, &mut rng, &policy, now)?
        .stanzas
    {
        let got = router.carry(&s, &sched.full())?;
        let i = ids
            .iter()
            .position(|m| Some(m.jid().bare()) == s.to())
            .unwrap_or(0);
        members[i].accept_key(&got, &ids[i], &pki, &policy, now)?;
    }
    let reflect = |s: &Stanza, nick: &str, to: &str| -> Result<Stanza, Error> {
        Ok(Stanza::parse(&s.to_xml())?
            .with_attr("from", &format!("{}/{nick}", room.bare()))
            .with_attr("to", to))
    };
    let mut post =
        Stanza::parse("<message id='room-1'><body>deploying build 311</body></message>")?;
    members[1].seal(&mut post, &worker.id, &mut rng, &policy, now)?;
    let read = members[2].open(
        &reflect(&post, "worker", "auditor@cloud.example")?,
        &pki,
        &policy,
        &mut auditor.window,
        now,
    )?;
    out.push(line(read.body == "deploying build 311" && read.sender.bare() == "worker@cloud.example", format!("room {}: key epoch 1 sent to 3 members by the moderator; the auditor reads the worker's post: {:?}", room, read.body)));

    moderator.remove_member(auditor.id.jid(), &mut rng, now)?;
    let later = now + Duration::from_secs(30);
    let dist = moderator
        .distribute(&sched.id, &mut rng, &policy, later)?
        .stanzas;
    for s in &dist {
        let got = router.carry(s, &sched.full())?;
        let i = ids
            .iter()
            .position(|m| Some(m.jid().bare()) == s.to())
            .unwrap_or(0);
        members[i].accept_key(&got, &ids[i], &pki, &policy, later)?;
    }
    let mut post2 =
        Stanza::parse("<message id='room-2'><body>new database password rotated</body></message>")?;
    members[1].seal(&mut post2, &worker.id, &mut rng, &policy, later)?;
    let sched_read = members[0].open(
        &reflect(&post2, "worker", "scheduler@cloud.example")?,
        &pki,
        &policy,
        &mut sched.window,
        later,
    )?;
    let auditor_read = members[2].open(
        &reflect(&post2, "worker", "auditor@cloud.example")?,
        &pki,
        &policy,
        &mut auditor.window,
        later,
    );
    out.push(line(
        dist.len() == 2 && sched_read.epoch == 2 && auditor_read.is_err(),
        format!(
            "auditor removed: key rotated to epoch 2 for the 2 remaining members; the scheduler reads the next post, the removed auditor cannot ({})",
            auditor_read.err().map(|e| e.to_string()).unwrap_or_else(|| "it could!".into())
        ),
    ));
    // A room key forged by a member (not the moderator) is refused.
    let mut rogue = Moderator::new(&room, Duration::from_secs(86_400), &mut rng, later)?;
    rogue.add_member(sched.id.jid(), sched.id.public_cert(), &policy, later)?;
    rogue.rotate(&mut rng, later)?;
    rogue.rotate(&mut rng, later)?;
    let forged = rogue.distribute_to(&worker.id, sched.id.jid(), &mut rng, &policy, later)?;
    let res = members[0].accept_key(
        &router.carry(&forged, &worker.full())?,
        &sched.id,
        &pki,
        &policy,
        later,
    );
    out.push(line(
        matches!(res, Err(Error::Binding(_))),
        format!(
            "a room key from a member who is not the moderator refused: {}",
            res.err().map(|e| e.to_string()).unwrap_or_default()
        ),
    ));
    Ok(out)
}

fn short(hex: &str) -> String {
    hex.chars().take(16).collect()
}

/// Step 11: cloud modules over XMPP with XEP-0027 (testkit::modules).
pub(crate) fn step() -> crate::Res<bool> {
    println!(
        "== 11. XEP-0027 between cloud modules (signed presence, encrypted messages, replay, session key, encrypted room)"
    );
    let gpg = testkit::gnupg::Gpg::new()?;
    let mut all = true;
    for (ok, what) in run(&gpg)? {
        all &= crate::step(ok, &what);
    }
    Ok(all)
}
