//! Signed timestamp and anti-replay: what XEP-0027 lacks (its §8: replay of signed presence
//! and of encrypted messages; nothing binds the sender, the recipient, the stanza or the
//! time). In the spirit of OX (XEP-0373 §3.1: `<to/>` and `<time/>` inside the signed content,
//! checked against the stanza) and XEP-0285's skew window, a stanza gets
//!
//! ```xml
//! <envelope xmlns='urn:xmpp-federation:xep0027:envelope:0'
//!           from='alice@example.org' to='bob@example.org' stamp='2026-12-01T11:05:00.123Z'>
//!   ...stripped armor of a detached OpenPGP signature...
//! </envelope>
//! ```
//!
//! The signature covers, unambiguously encoded: the stanza kind and `type`, the sender's and
//! recipient's bare JIDs, the stanza `id`, the XEP-0082 stamp, and the payload (for presence
//! the `<show/>` and `<status/>` text; for a message the `jabber:x:encrypted` packets, or a
//! sealed session/room payload, or the body text; a message carrying more than one of the
//! three payloads, or two of one, is refused by [`seal`], [`verify`] and [`check`], since only
//! one could be covered; so is a stanza with more than one `<body/>` or `<status/>`, one per
//! language, since the others would travel unsigned). Other children (`<subject/>`, `<thread/>`,
//! extension elements) and other attributes are not covered: what must be protected belongs in
//! the body (for messages between modules, a structured body). Plain XEP-0027 readers ignore
//! the element.
//!
//! [`check`] verifies it with the certificates bound to the envelope's sender, matches the
//! envelope against the stanza (the server-stamped `from`; the `to`; for `groupchat` the room
//! as recipient and sender), requires the stamp and the OpenPGP signature time within the
//! skew of `now`, and refuses an `(sender, id)` pair seen before ([`ReplayWindow`]).

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use crate::armor;
use crate::canonical;
use crate::error::{Freshness, Mismatch, UnknownSigner};
use crate::jid::Jid;
use crate::keys::{CertLookup, Identity};
use crate::ns;
use crate::openpgp::{self, SigMode, Verified};
use crate::policy::Policy;
use crate::stanza::{Element, Kind, Stanza};
use crate::{Error, Result};

/// Longest sender a [`ReplayWindow`] records: a full JID's limit (RFC 7622 §3.1).
const MAX_SENDER_LEN: usize = 3071;

/// The signed payload of a stanza (see the module docs).
pub(crate) fn payload(stanza: &Stanza) -> Result<(&'static str, Vec<u8>)> {
    match stanza.kind() {
        Kind::Presence => {
            let space = stanza.element().ns().to_owned();
            let show = stanza
                .element()
                .only_child("show", &space)?
                .map(|e| e.text())
                .unwrap_or_default();
            let status = stanza.only_status()?.unwrap_or_default();
            Ok((
                "presence",
                canonical::encode("p", &[show.as_bytes(), status.as_bytes()]),
            ))
        }
        Kind::Message => {
            // One <body/> at most, whatever the payload: an other-language copy would travel
            // unsigned (review session 26, X9).
            stanza.only_body()?;
            // At most one payload: the signature covers only the one chosen, so a second
            // (of another kind) would travel unsigned.
            let encrypted = crate::encrypted::payload(stanza)?;
            let session = stanza.element().only_child("sealed", ns::SESSION)?;
            let room = stanza.element().only_child("sealed", ns::ROOM)?;
            let kinds = [encrypted.is_some(), session.is_some(), room.is_some()];
            if kinds.iter().filter(|k| **k).count() > 1 {
                return Err(Error::Stanza(
                    "more than one payload (jabber:x:encrypted, session or room sealed): \
                     one per stanza"
                        .into(),
                ));
            }
            if let Some(packets) = encrypted {
                return Ok(("encrypted", packets));
            }
            if let Some(s) = session.or(room) {
                return Ok(("sealed", sealed_bytes(s)));
            }
            Ok(("body", stanza.only_body()?.unwrap_or_default().into_bytes()))
        }
    }
}

/// A sealed element by meaning, independent of how it was serialized: its namespace, its
/// attributes sorted (namespace declarations left out), its text without whitespace.
fn sealed_bytes(el: &Element) -> Vec<u8> {
    let mut attrs: Vec<(&str, &str)> = el
        .attrs()
        .filter(|(n, _)| *n != "xmlns" && !n.starts_with("xmlns:"))
        .collect();
    attrs.sort();
    let text: String = el.text().split_ascii_whitespace().collect();
    let mut fields: Vec<&[u8]> = vec![el.ns().as_bytes()];
    for (n, v) in &attrs {
        fields.push(n.as_bytes());
        fields.push(v.as_bytes());
    }
    fields.push(text.as_bytes());
    canonical::encode("sealed", &fields)
}

fn signed_bytes(stanza: &Stanza, from: &str, to: &str, id: &str, stamp: &str) -> Result<Vec<u8>> {
    let kind = match stanza.kind() {
        Kind::Presence => "presence",
        Kind::Message => "message",
    };
    let typ = stanza.stanza_type().unwrap_or("");
    let (label, data) = payload(stanza)?;
    Ok(canonical::encode(
        ns::label::ENVELOPE,
        &[
            kind.as_bytes(),
            typ.as_bytes(),
            from.as_bytes(),
            to.as_bytes(),
            id.as_bytes(),
            stamp.as_bytes(),
            label.as_bytes(),
            &data,
        ],
    ))
}

/// Adds (or replaces) the signed envelope: sender `me`, recipient the stanza's `to` (none for
/// broadcast presence), its `id` (required), stamped `now`. Call it last, after the payload
/// is final (signing, encryption, sealing).
pub fn seal(stanza: &mut Stanza, me: &Identity, policy: &Policy, now: SystemTime) -> Result<()> {
    let id = stanza.required_id()?.to_owned();
    let to = match stanza.to() {
        Some(t) => Jid::new(t)?.bare().to_owned(),
        None if stanza.kind() == Kind::Presence => String::new(),
        None => return Err(Error::Stanza("a message without 'to'".into())),
    };
    let stamp = crate::time::format(now);
    let from = me.jid().bare().to_owned();
    let bytes = signed_bytes(stanza, &from, &to, &id, &stamp)?;
    let sig = openpgp::sign_detached_for(
        me.signer(policy, now)?,
        &bytes,
        SigMode::Binary,
        now,
        openpgp::Purpose::Envelope,
    )?;
    let el = stanza.element_mut();
    el.remove_children("envelope", ns::ENVELOPE);
    el.push(
        Element::new("envelope", ns::ENVELOPE)
            .with_attr("from", &from)
            .with_attr("to", &to)
            .with_attr("stamp", &stamp)
            .with_text(&armor::encode(&sig)),
    );
    Ok(())
}

/// A checked envelope.
#[derive(Clone, Debug)]
#[non_exhaustive]
#[must_use = "the checked envelope names the sender: use it, not the stanza's 'from'"]
pub struct Checked {
    /// The sender (bare JID), whose certificate made the signature.
    pub sender: Jid,
    /// The signed XEP-0082 stamp.
    pub stamp: SystemTime,
    /// The signature.
    pub signature: Verified,
}

/// Remembers which `(sender, id)` pairs were accepted, for as long as their stamps are inside
/// the skew window; refuses stamps outside it.
///
/// Memory is bounded by `max_entries` times the longest entry (ids of at most
/// [`MAX_ID_LEN`](crate::stanza::MAX_ID_LEN) bytes, senders of at most a JID's 3071; longer
/// ones are refused), shared fairly: when it is reached, the oldest entry of
/// the sender holding the most entries is forgotten (of several holding as many, the one
/// with the oldest entry), and from then on that sender's stamps
/// not newer than it are refused (fail closed, never forget silently). One contact filling
/// the window therefore only ever loses its own oldest entries; the others' in-flight stanzas
/// are unaffected. (Only when every remembered entry is from a different sender does a
/// forgotten one raise the floor for everyone; it is then the oldest entry of all, so the
/// floor rises as little as it can; review session 26, X5.)
///
/// Time only moves forward here: the window remembers the latest `now` it was given and uses
/// it whenever a smaller one comes (a clock stepped back), so an entry that expired cannot be
/// accepted again.
///
/// Call these in this order:
///
/// 1. Once per receiver, and keep the window for as long as the receiver runs (a new window
///    forgets what was accepted, and would accept it again; review session 26, X4):
///    - at the first start ever, [`ReplayWindow::new`] (or [`ReplayWindow::default`]);
///    - after a clean shutdown that saved [`ReplayWindow::state`] after its last accepted
///      stanza, [`ReplayWindow::new`], then [`ReplayWindow::restore_state`] with it;
///    - otherwise (a crash, or no saved state), [`ReplayWindow::resume`] with the start
///      time: it refuses every stamp that could have been accepted before the restart (fail
///      closed), which costs refusing stanzas stamped up to one skew after the start.
/// 2. For each stanza received: [`check`] (verifies the envelope and records it), or, when
///    more must be checked before the stanza counts as accepted (a payload to decrypt),
///    [`verify`], then the other checks, then [`ReplayWindow::accept`] with the checked
///    sender, the stanza id, the checked stamp and the same `now`. Nothing is recorded on
///    error, so a refused stanza can be retried.
/// 3. From time to time, [`ReplayWindow::expire`] with the current time to free memory
///    ([`ReplayWindow::accept`] does it too).
/// 4. At shutdown, after the last stanza is accepted, save [`ReplayWindow::state`].
///
/// [`ReplayWindow::check_time`], [`ReplayWindow::check_sender_time`] and
/// [`ReplayWindow::is_seen`] only read, at any time.
#[derive(Clone, Debug)]
pub struct ReplayWindow {
    skew: Duration,
    max_entries: usize,
    senders: HashMap<String, SenderLog>,
    /// Every remembered entry by stamp, for expiry.
    by_stamp: BTreeSet<(SystemTime, String, String)>,
    /// Senders by how many entries they hold, then by their oldest entry's stamp (the
    /// oldest last), for fair eviction: the last is the one to lose an entry.
    by_count: BTreeSet<CountKey>,
    /// The floor for every sender (see the type docs).
    floor: Option<SystemTime>,
    latest_now: Option<SystemTime>,
}

/// A sender's place in [`ReplayWindow::by_count`]: its entry count, its oldest stamp
/// (reversed, so that of equal counts the oldest sorts last), its name.
type CountKey = (usize, Reverse<SystemTime>, String);

#[derive(Clone, Debug, Default)]
struct SenderLog {
    ids: HashMap<String, SystemTime>,
    /// The same entries by stamp.
    order: BTreeSet<(SystemTime, String)>,
    floor: Option<SystemTime>,
}

impl SenderLog {
    /// This sender's key in [`ReplayWindow::by_count`]; `None` without entries.
    fn count_key(&self, sender: &str) -> Option<CountKey> {
        let (oldest, _) = self.order.first()?;
        Some((self.ids.len(), Reverse(*oldest), sender.to_owned()))
    }
}

impl ReplayWindow {
    /// A window accepting stamps within `skew` of now (XEP-0285 uses 5 minutes), remembering
    /// at most `max_entries` ids.
    pub fn new(skew: Duration, max_entries: usize) -> ReplayWindow {
        ReplayWindow {
            skew,
            max_entries: max_entries.max(1),
            senders: HashMap::new(),
            by_stamp: BTreeSet::new(),
            by_count: BTreeSet::new(),
            floor: None,
            latest_now: None,
        }
    }

    /// A window for a receiver restarted at `started_at` without the state of the window it
    /// had (after a crash; review session 26, X4): every stamp up to `started_at` plus the
    /// skew is refused ([`Freshness::Forgotten`]), since the lost window may have accepted
    /// any of them (stamps up to the skew ahead of its clock included). Fail closed: for one
    /// skew after the start, stanzas are refused; later ones are accepted as usual.
    pub fn resume(skew: Duration, max_entries: usize, started_at: SystemTime) -> ReplayWindow {
        let mut w = ReplayWindow::new(skew, max_entries);
        w.floor = Some(started_at.checked_add(skew).unwrap_or(started_at));
        w.latest_now = Some(started_at);
        w
    }

    /// What must survive a clean restart to keep refusing replays: the remembered entries,
    /// the floors and the latest `now`, one record a line. Save it at shutdown, after the
    /// last stanza was accepted, and give it to [`ReplayWindow::restore_state`] at start
    /// (review session 26, X4). Senders and ids are percent-encoded; times are exact.
    #[must_use = "save it, to refuse replays after a restart"]
    pub fn state(&self) -> String {
        let mut out = String::new();
        if let Some(t) = self.latest_now.and_then(state_time) {
            out.push_str(&format!("now {t}\n"));
        }
        if let Some(t) = self.floor.and_then(state_time) {
            out.push_str(&format!("floor {t}\n"));
        }
        let mut senders: Vec<(&String, &SenderLog)> = self.senders.iter().collect();
        senders.sort_by(|a, b| a.0.cmp(b.0));
        for (sender, log) in senders {
            if let Some(t) = log.floor.and_then(state_time) {
                out.push_str(&format!("sender-floor {t} {}\n", state_escape(sender)));
            }
        }
        for (stamp, sender, id) in &self.by_stamp {
            if let Some(t) = state_time(*stamp) {
                out.push_str(&format!(
                    "seen {t} {} {}\n",
                    state_escape(sender),
                    state_escape(id)
                ));
            }
        }
        out
    }

    /// Restores what [`ReplayWindow::state`] saved, merged with what this window knows (the
    /// later floors and `now` win; entries are added as [`ReplayWindow::accept`] would, the
    /// window's bound and eviction included; entries already outside the window are
    /// dropped). A malformed state is refused whole ([`Error::State`]), nothing restored.
    pub fn restore_state(&mut self, state: &str) -> Result<()> {
        let bad = |line: &str| Error::State(format!("bad replay window state line {line:?}"));
        let mut now = None;
        let mut floor = None;
        let mut sender_floors = Vec::new();
        let mut seen = Vec::new();
        for line in state.lines().filter(|l| !l.trim().is_empty()) {
            let f: Vec<&str> = line.split(' ').collect();
            match f.as_slice() {
                ["now", t] => now = Some(parse_state_time(t).ok_or_else(|| bad(line))?),
                ["floor", t] => floor = Some(parse_state_time(t).ok_or_else(|| bad(line))?),
                ["sender-floor", t, sender] => {
                    let t = parse_state_time(t).ok_or_else(|| bad(line))?;
                    let sender = state_unescape(sender).ok_or_else(|| bad(line))?;
                    if sender.is_empty() || sender.len() > MAX_SENDER_LEN {
                        return Err(bad(line));
                    }
                    sender_floors.push((sender, t));
                }
                ["seen", t, sender, id] => {
                    let t = parse_state_time(t).ok_or_else(|| bad(line))?;
                    let sender = state_unescape(sender).ok_or_else(|| bad(line))?;
                    let id = state_unescape(id).ok_or_else(|| bad(line))?;
                    if sender.is_empty()
                        || sender.len() > MAX_SENDER_LEN
                        || id.is_empty()
                        || crate::stanza::check_id(&id).is_err()
                    {
                        return Err(bad(line));
                    }
                    seen.push((sender, id, t));
                }
                _ => return Err(bad(line)),
            }
        }
        // A sender's floor comes with its entries (a window keeps no floor for a sender
        // without entries).
        if let Some((sender, _)) = sender_floors
            .iter()
            .find(|(sender, _)| !seen.iter().any(|(s, _, _)| s == sender))
        {
            return Err(Error::State(format!(
                "bad replay window state: a floor for {sender:?} without its entries"
            )));
        }
        if let Some(t) = now {
            self.latest_now = Some(self.effective_now(t));
        }
        if let Some(t) = floor {
            self.floor = Some(self.floor.map_or(t, |f| f.max(t)));
        }
        for (sender, id, stamp) in seen {
            if self.is_seen(&sender, &id) {
                continue;
            }
            while self.by_stamp.len() >= self.max_entries {
                self.evict_one();
            }
            self.record(&sender, &id, stamp);
        }
        for (sender, t) in sender_floors {
            if let Some(log) = self.senders.get_mut(&sender) {
                log.floor = Some(log.floor.map_or(t, |f| f.max(t)));
            }
        }
        if let Some(t) = self.latest_now {
            self.expire(t);
        }
        Ok(())
    }

    /// The allowed skew.
    #[must_use]
    pub fn skew(&self) -> Duration {
        self.skew
    }

    /// How many ids are remembered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_stamp.len()
    }

    /// Whether nothing is remembered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_stamp.is_empty()
    }

    /// Whether `(sender, id)` was accepted and is still remembered.
    #[must_use]
    pub fn is_seen(&self, sender: &str, id: &str) -> bool {
        self.senders
            .get(sender)
            .is_some_and(|l| l.ids.contains_key(id))
    }

    /// The latest `now` this window was given (or `now`, if later).
    fn effective_now(&self, now: SystemTime) -> SystemTime {
        self.latest_now.map_or(now, |l| l.max(now))
    }

    /// Checks a stamp from anyone against `now` without recording anything.
    pub fn check_time(&self, stamp: SystemTime, now: SystemTime) -> Result<()> {
        let now = self.effective_now(now);
        let off = match stamp.duration_since(now) {
            Ok(ahead) => ahead,
            Err(e) => e.duration(),
        };
        if off > self.skew {
            let skew = self.skew;
            return Err(Error::Replay(if stamp > now {
                Freshness::Future { ahead: off, skew }
            } else {
                Freshness::Stale { behind: off, skew }
            }));
        }
        if self.floor.is_some_and(|f| stamp <= f) {
            return Err(Error::Replay(Freshness::Forgotten { sender: None }));
        }
        Ok(())
    }

    /// [`ReplayWindow::check_time`] for a stamp from `sender`, with that sender's floor.
    pub fn check_sender_time(
        &self,
        sender: &str,
        stamp: SystemTime,
        now: SystemTime,
    ) -> Result<()> {
        self.check_time(stamp, now)?;
        if self
            .senders
            .get(sender)
            .and_then(|l| l.floor)
            .is_some_and(|f| stamp <= f)
        {
            return Err(Error::Replay(Freshness::Forgotten {
                sender: Some(sender.to_owned()),
            }));
        }
        Ok(())
    }

    /// Checks, then records `(sender, id)` with its stamp. On error nothing is recorded.
    pub fn accept(
        &mut self,
        sender: &str,
        id: &str,
        stamp: SystemTime,
        now: SystemTime,
    ) -> Result<()> {
        // Bounded before anything is kept: the window's memory is its entry count times these.
        if id.is_empty() {
            return Err(Error::Stanza("no 'id'".into()));
        }
        crate::stanza::check_id(id)?;
        if sender.len() > MAX_SENDER_LEN {
            return Err(Error::Stanza(format!(
                "a sender of {} bytes: a JID has at most {MAX_SENDER_LEN}",
                sender.len()
            )));
        }
        self.expire(now);
        self.check_sender_time(sender, stamp, now)?;
        if self.is_seen(sender, id) {
            return Err(Error::Replay(Freshness::Duplicate {
                sender: sender.to_owned(),
                id: id.to_owned(),
            }));
        }
        while self.by_stamp.len() >= self.max_entries {
            self.evict_one();
        }
        self.record(sender, id, stamp);
        Ok(())
    }

    /// Records `(sender, id)` with its stamp, unchecked (room was made).
    fn record(&mut self, sender: &str, id: &str, stamp: SystemTime) {
        let log = self.senders.entry(sender.to_owned()).or_default();
        if let Some(k) = log.count_key(sender) {
            self.by_count.remove(&k);
        }
        log.ids.insert(id.to_owned(), stamp);
        log.order.insert((stamp, id.to_owned()));
        if let Some(k) = log.count_key(sender) {
            self.by_count.insert(k);
        }
        self.by_stamp
            .insert((stamp, sender.to_owned(), id.to_owned()));
    }

    /// Forgets the oldest entry of the sender holding the most (of several holding as many,
    /// the one whose oldest entry is oldest: when every sender holds one, the oldest entry of
    /// all; review session 26, X5).
    fn evict_one(&mut self) {
        let Some((count, _, sender)) = self.by_count.pop_last() else {
            return;
        };
        let Some(log) = self.senders.get_mut(&sender) else {
            return;
        };
        let Some((t, oldest_id)) = log.order.pop_first() else {
            return;
        };
        log.ids.remove(&oldest_id);
        self.by_stamp.remove(&(t, sender.clone(), oldest_id));
        if count > 1 {
            log.floor = Some(log.floor.map_or(t, |f| f.max(t)));
            if let Some(k) = log.count_key(&sender) {
                self.by_count.insert(k);
            }
        } else {
            // Its only entry: no per-sender log is kept without entries, so the floor is
            // everyone's (every sender held one entry at most).
            self.senders.remove(&sender);
            self.floor = Some(self.floor.map_or(t, |f| f.max(t)));
        }
    }

    /// Forgets ids whose stamps are now outside the window (they would be refused as stale),
    /// and remembers `now` if it is the latest seen.
    pub fn expire(&mut self, now: SystemTime) {
        let now = self.effective_now(now);
        self.latest_now = Some(now);
        while let Some((t, _, _)) = self.by_stamp.first() {
            if !now.duration_since(*t).is_ok_and(|d| d > self.skew) {
                break;
            }
            let Some((t, sender, id)) = self.by_stamp.pop_first() else {
                break;
            };
            if let Some(log) = self.senders.get_mut(&sender) {
                if let Some(k) = log.count_key(&sender) {
                    self.by_count.remove(&k);
                }
                log.ids.remove(&id);
                log.order.remove(&(t, id));
                match log.count_key(&sender) {
                    Some(k) => {
                        self.by_count.insert(k);
                    }
                    // Its floor is older than every acceptable stamp now.
                    None => {
                        self.senders.remove(&sender);
                    }
                }
            }
        }
    }
}

/// A time in [`ReplayWindow::state`]: seconds and nanoseconds since the Unix epoch (exact; a
/// time before it is never in a window).
fn state_time(t: SystemTime) -> Option<String> {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    Some(format!("{}.{:09}", d.as_secs(), d.subsec_nanos()))
}

fn parse_state_time(s: &str) -> Option<SystemTime> {
    let (secs, nanos) = s.split_once('.')?;
    if nanos.len() != 9
        || !secs
            .bytes()
            .chain(nanos.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let d = Duration::new(
        secs.parse().ok()?,
        nanos.parse().ok().filter(|n| *n < 1_000_000_000)?,
    );
    SystemTime::UNIX_EPOCH.checked_add(d)
}

/// A sender or id in [`ReplayWindow::state`]: bytes other than printable ASCII, and `%`,
/// as `%XX`.
fn state_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn state_unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl Default for ReplayWindow {
    /// Five minutes of skew (XEP-0285), 100,000 ids.
    fn default() -> ReplayWindow {
        ReplayWindow::new(Duration::from_secs(300), 100_000)
    }
}

/// Checks the stanza's envelope (see the module docs) and records it in `window`. On any
/// error nothing is recorded.
pub fn check(
    stanza: &Stanza,
    certs: &dyn CertLookup,
    policy: &Policy,
    window: &mut ReplayWindow,
    now: SystemTime,
) -> Result<Checked> {
    let c = verify(stanza, certs, policy, window, now)?;
    window.accept(
        c.sender.bare(),
        stanza.id().unwrap_or_default(),
        c.stamp,
        now,
    )?;
    Ok(c)
}

/// [`check`] without recording: for a caller that has more to check (a sealed payload to
/// open) before it accepts the stanza with [`ReplayWindow::accept`].
pub fn verify(
    stanza: &Stanza,
    certs: &dyn CertLookup,
    policy: &Policy,
    window: &ReplayWindow,
    now: SystemTime,
) -> Result<Checked> {
    let env = stanza
        .element()
        .required_child("envelope", ns::ENVELOPE, "signed envelope")?;
    let attr = |n: &str| {
        env.attr(n)
            .ok_or_else(|| Error::Stanza(format!("envelope without '{n}'")))
    };
    let (e_from, e_to, stamp_s) = (attr("from")?, attr("to")?, attr("stamp")?);
    let e_from_jid = Jid::new(e_from)?;
    if e_from_jid.bare() != e_from {
        return Err(Error::Stanza(
            "envelope 'from' is not a normalized bare JID".into(),
        ));
    }
    let id = stanza.required_id()?;
    let s_from = Jid::new(
        stanza
            .from()
            .ok_or_else(|| Error::Stanza("no 'from'".into()))?,
    )?;
    let groupchat = stanza.kind() == Kind::Message && stanza.stanza_type() == Some("groupchat");
    if groupchat {
        // A MUC reflects the message from room@service/nick: the room is the recipient the
        // sender named; the sender is the envelope's signer.
        if s_from.bare() != e_to {
            return Err(Error::Binding(Mismatch::Room {
                expected: e_to.to_owned(),
                got: s_from.bare().to_owned(),
            }));
        }
    } else {
        if s_from.bare() != e_from {
            return Err(Error::Binding(Mismatch::Sender {
                stanza: s_from.bare().to_owned(),
                signed: e_from.to_owned(),
            }));
        }
        match stanza.to() {
            Some(t) => {
                let to = Jid::new(t)?;
                let broadcast = stanza.kind() == Kind::Presence && e_to.is_empty();
                if !broadcast && to.bare() != e_to {
                    return Err(Error::Binding(Mismatch::Recipient {
                        stanza: to.bare().to_owned(),
                        signed: e_to.to_owned(),
                    }));
                }
            }
            None if e_to.is_empty() => {}
            None => {
                return Err(Error::Binding(Mismatch::Recipient {
                    stanza: String::new(),
                    signed: e_to.to_owned(),
                }));
            }
        }
    }
    let stamp = crate::time::parse(stamp_s)?;
    window.check_sender_time(e_from, stamp, now)?;
    let signers = certs.by_jid(e_from);
    if signers.is_empty() {
        return Err(Error::UnknownSigner(UnknownSigner::Jid(e_from.to_owned())));
    }
    let sig = armor::decode(&env.text())?;
    let bytes = signed_bytes(stanza, e_from, e_to, id, stamp_s)?;
    // The stamp is within the window's skew of `now`, either way: verify as of the later of
    // the two, so that a sender whose clock is ahead is not refused ("not live until").
    let v = openpgp::verify_detached_at(
        &sig,
        &bytes,
        &signers,
        policy,
        now.max(stamp),
        openpgp::Purpose::Envelope,
    )?;
    // The OpenPGP creation time has second granularity; it must agree with the stamp.
    let drift = match v.created.duration_since(stamp) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    if drift > Duration::from_secs(1) {
        return Err(Error::Replay(Freshness::ClockMismatch));
    }
    if window.is_seen(e_from, id) {
        return Err(Error::Replay(Freshness::Duplicate {
            sender: e_from.to_owned(),
            id: id.to_owned(),
        }));
    }
    Ok(Checked {
        sender: e_from_jid,
        stamp,
        signature: v,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review session 26, X1 (cross-protocol reuse). Alice signs, as XEP-0027 does, a body
    /// text mallory chose, equal to the envelope bytes of a groupchat message "from alice"
    /// (an echo module; or any XEP-0027 client: GnuPG makes the same signature). Mallory
    /// posts her own message under an envelope carrying that signature; the room reflects
    /// it. Before, every check passed and the message was alice's.
    #[test]
    fn a_xep0027_text_signature_is_not_an_envelope_signature() {
        use crate::keys::{Keyring, Suite};
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let p = Policy::standard();
        let alice = Identity::generate(
            &Jid::new("alice@example.org").unwrap(),
            Suite::Cv25519,
            t0 - Duration::from_secs(86_400),
            None,
        )
        .unwrap();
        let mut ring = Keyring::new();
        ring.insert_pinned(alice.jid(), alice.public_cert());
        let room = "ops@rooms.example.org";
        let stamp = crate::time::format(t0);
        let mut forged = Stanza::parse(&format!(
            "<message to='{room}' id='m1' type='groupchat'><body>wire 10k to X</body></message>"
        ))
        .unwrap();
        let d = signed_bytes(&forged, "alice@example.org", room, "m1", &stamp).unwrap();
        // What alice's XEP-0027 signer makes over a body equal to `d`.
        let sig =
            openpgp::sign_detached(alice.signer(&p, t0).unwrap(), &d, SigMode::Binary, t0).unwrap();
        forged.element_mut().push(
            Element::new("envelope", ns::ENVELOPE)
                .with_attr("from", "alice@example.org")
                .with_attr("to", room)
                .with_attr("stamp", &stamp)
                .with_text(&armor::encode(&sig)),
        );
        let got = Stanza::parse(&forged.to_xml())
            .unwrap()
            .with_attr("from", &format!("{room}/mallory"))
            .with_attr("to", "bob@example.org/desk");
        let mut w = ReplayWindow::default();
        let r = check(&got, &ring, &p, &mut w, t0);
        assert!(
            matches!(r, Err(Error::BadSignature(ref m)) if m.contains("not an envelope signature")),
            "{r:?}"
        );
        assert!(w.is_empty());
        // The real envelope over the same message is good.
        let mut real = Stanza::parse(&format!(
            "<message to='{room}' id='m2' type='groupchat'><body>wire 10k to X</body></message>"
        ))
        .unwrap();
        seal(&mut real, &alice, &p, t0).unwrap();
        let got = Stanza::parse(&real.to_xml())
            .unwrap()
            .with_attr("from", &format!("{room}/alice"));
        let c = check(&got, &ring, &p, &mut w, t0).unwrap();
        assert_eq!(c.sender.bare(), "alice@example.org");
    }

    /// Review session 26, X1, the other way: an envelope signature moved into
    /// `jabber:x:signed` over a body equal to its signed bytes is refused.
    #[test]
    fn an_envelope_signature_is_not_a_xep0027_signature() {
        use crate::keys::{Keyring, Suite};
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let p = Policy::standard();
        let alice = Identity::generate(
            &Jid::new("alice@example.org").unwrap(),
            Suite::Cv25519,
            t0 - Duration::from_secs(86_400),
            None,
        )
        .unwrap();
        let mut ring = Keyring::new();
        ring.insert_pinned(alice.jid(), alice.public_cert());
        let mut m =
            Stanza::parse("<message to='bob@example.org' id='m1'><body>hi</body></message>")
                .unwrap();
        seal(&mut m, &alice, &p, t0).unwrap();
        let env = m
            .element()
            .only_child("envelope", ns::ENVELOPE)
            .unwrap()
            .unwrap();
        let d = signed_bytes(
            &m,
            "alice@example.org",
            "bob@example.org",
            "m1",
            env.attr("stamp").unwrap(),
        )
        .unwrap();
        let mut moved = Stanza::parse("<message to='bob@example.org' id='m9'/>").unwrap();
        moved.set_body(std::str::from_utf8(&d).unwrap());
        moved
            .element_mut()
            .push(Element::new("x", ns::SIGNED).with_text(&env.text()));
        let got = Stanza::parse(&moved.to_xml())
            .unwrap()
            .with_attr("from", "alice@example.org/a");
        let r = crate::signed::verify(&got, &ring, &p, t0);
        assert!(
            matches!(r, Err(Error::BadSignature(ref m)) if m.contains("is an envelope signature")),
            "{r:?}"
        );
    }

    #[test]
    fn long_ids_are_refused() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut w = ReplayWindow::new(Duration::from_secs(300), 10);
        let long = "i".repeat(crate::stanza::MAX_ID_LEN + 1);
        assert!(matches!(
            w.accept("a@x", &long, t0, t0),
            Err(Error::Stanza(_))
        ));
        assert!(matches!(w.accept("a@x", "", t0, t0), Err(Error::Stanza(_))));
        assert!(matches!(
            w.accept(&"s".repeat(4000), "1", t0, t0),
            Err(Error::Stanza(_))
        ));
        assert_eq!(w.len(), 0);
        w.accept("a@x", &long[1..], t0, t0).unwrap();
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn replay_window_rules() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut w = ReplayWindow::new(Duration::from_secs(300), 3);
        w.accept("a@x", "1", t0, t0).unwrap();
        assert!(matches!(
            w.accept("a@x", "1", t0, t0),
            Err(Error::Replay(_))
        ));
        w.accept("b@x", "1", t0, t0).unwrap();
        assert!(
            w.accept("a@x", "2", t0 - Duration::from_secs(301), t0)
                .is_err()
        );
        assert!(
            w.accept("a@x", "2", t0 + Duration::from_secs(301), t0)
                .is_err()
        );
        w.accept("a@x", "2", t0 + Duration::from_secs(1), t0)
            .unwrap();
        // Full: the oldest is forgotten, and stamps not newer than it are refused from now on.
        w.accept("a@x", "3", t0 + Duration::from_secs(2), t0)
            .unwrap();
        assert_eq!(w.len(), 3);
        assert!(w.accept("a@x", "1", t0, t0).is_err());
        // Later, expired entries are dropped.
        let later = t0 + Duration::from_secs(1000);
        w.expire(later);
        assert!(w.is_empty());
        assert!(w.accept("a@x", "1", t0, later).is_err(), "stale");
    }

    /// The refusals say which: a replay, a stale or a future stamp, a forgotten floor.
    #[test]
    fn replay_window_reasons_are_typed() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let s = Duration::from_secs;
        let skew = s(300);
        let mut w = ReplayWindow::new(skew, 2);
        w.accept("a@x", "1", t0, t0).unwrap();
        let dup = w.accept("a@x", "1", t0, t0).unwrap_err();
        assert!(matches!(
            &dup,
            Error::Replay(Freshness::Duplicate { sender, id }) if sender == "a@x" && id == "1"
        ));
        assert_eq!(dup.kind(), crate::ErrorKind::Rejected);
        assert!(matches!(
            w.accept("a@x", "2", t0 - s(301), t0),
            Err(Error::Replay(Freshness::Stale { behind, skew: k })) if behind == s(301) && k == skew
        ));
        assert!(matches!(
            w.accept("a@x", "2", t0 + s(301), t0),
            Err(Error::Replay(Freshness::Future { ahead, .. })) if ahead == s(301)
        ));
        w.accept("a@x", "2", t0 + s(1), t0).unwrap();
        w.accept("a@x", "3", t0 + s(2), t0).unwrap();
        assert!(matches!(
            w.accept("a@x", "4", t0, t0),
            Err(Error::Replay(Freshness::Forgotten { sender: Some(s) })) if s == "a@x"
        ));
    }

    /// Issue 12 item 5: one contact filling the window costs only its own entries.
    #[test]
    fn a_flooding_sender_does_not_push_out_the_others() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let s = Duration::from_secs;
        let mut w = ReplayWindow::new(s(300), 10);
        // bob's stanza, stamped t0, is accepted; one of his is still in flight.
        w.accept("bob@x", "b1", t0, t0).unwrap();
        // mallory sends 100 stanzas with later stamps.
        for i in 0..100 {
            let stamp = t0 + Duration::from_millis(1000 + i);
            w.accept("mallory@x", &format!("m{i}"), stamp, t0 + s(2))
                .unwrap();
        }
        assert_eq!(w.len(), 10);
        assert!(w.is_seen("bob@x", "b1"), "bob's entry stays");
        // bob's in-flight stanza, stamped before mallory's flood, is still accepted ...
        w.accept("bob@x", "b2", t0, t0 + s(3)).unwrap();
        assert!(w.accept("bob@x", "b1", t0, t0 + s(3)).is_err(), "replay");
        // ... while mallory's own forgotten stamps are refused.
        assert!(
            w.accept("mallory@x", "m0", t0 + s(1), t0 + s(3)).is_err(),
            "mallory's forgotten entry must not come back"
        );
        w.accept("mallory@x", "m-new", t0 + s(4), t0 + s(4))
            .unwrap();
    }

    /// Issue 12 item 5: a clock stepping back does not revive an expired entry.
    #[test]
    fn time_only_moves_forward() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let s = Duration::from_secs;
        let mut w = ReplayWindow::new(s(300), 100);
        w.accept("a@x", "1", t0, t0).unwrap();
        // Much later the entry expires and is forgotten.
        w.expire(t0 + s(400));
        assert!(w.is_empty());
        // The clock steps back to just after t0: the replay is still stale.
        assert!(matches!(
            w.accept("a@x", "1", t0, t0 + s(10)),
            Err(Error::Replay(_))
        ));
        assert!(w.check_time(t0, t0 + s(10)).is_err());
    }

    /// Review session 26, X5: with every sender holding one entry, the oldest entry is
    /// forgotten, not the one of the sender with the largest name (whose newest stamp then
    /// became everyone's floor).
    #[test]
    fn a_full_window_of_single_entries_forgets_the_oldest() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ms = Duration::from_millis;
        let mut w = ReplayWindow::new(Duration::from_secs(300), 2);
        w.accept("z@x", "1", t0 + ms(2000), t0 + ms(2000)).unwrap();
        w.accept("a@x", "1", t0, t0 + ms(2000)).unwrap();
        w.accept("b@x", "1", t0 + ms(1000), t0 + ms(2000)).unwrap();
        assert!(w.is_seen("z@x", "1"), "the newest entry stays");
        assert!(!w.is_seen("a@x", "1"), "the oldest is forgotten");
        w.accept("c@x", "1", t0 + ms(1500), t0 + ms(2000)).unwrap();
        // The floor is the forgotten oldest stamp: not newer is refused.
        assert!(matches!(
            w.accept("d@x", "1", t0, t0 + ms(2000)),
            Err(Error::Replay(Freshness::Forgotten { sender: None }))
        ));
    }

    /// Review session 26, X5: of senders holding as many entries, the one with the oldest
    /// entry loses it, whatever the names.
    #[test]
    fn ties_in_count_forget_the_oldest_entry() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let s = Duration::from_secs;
        let mut w = ReplayWindow::new(s(300), 4);
        w.accept("zed@x", "1", t0 + s(10), t0 + s(20)).unwrap();
        w.accept("zed@x", "2", t0 + s(11), t0 + s(20)).unwrap();
        w.accept("amy@x", "1", t0 + s(1), t0 + s(20)).unwrap();
        w.accept("amy@x", "2", t0 + s(2), t0 + s(20)).unwrap();
        w.accept("new@x", "1", t0 + s(12), t0 + s(20)).unwrap();
        assert!(!w.is_seen("amy@x", "1"), "amy's entry is the oldest");
        assert!(w.is_seen("zed@x", "1"));
        // zed's in-flight stanza stamped before its entries is still accepted; amy's not.
        w.accept("zed@x", "0", t0 + s(5), t0 + s(20)).unwrap();
        assert!(w.accept("amy@x", "0", t0 + s(1), t0 + s(20)).is_err());
    }

    /// Review session 26, X4: a window resumed after a crash refuses every stamp the lost
    /// window may have accepted (up to the start plus the skew), then accepts as usual.
    #[test]
    fn a_resumed_window_refuses_what_the_lost_one_may_have_accepted() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let s = Duration::from_secs;
        let start = t0 + s(10);
        let mut w = ReplayWindow::resume(s(300), 10, start);
        for stamp in [t0, start, start + s(299)] {
            assert!(matches!(
                w.accept("a@x", "1", stamp, start),
                Err(Error::Replay(Freshness::Forgotten { sender: None }))
            ));
        }
        assert!(w.is_empty());
        w.accept("a@x", "1", start + s(301), start + s(301))
            .unwrap();
    }

    /// Review session 26, X4: the state saved at shutdown restores the entries, the floors
    /// and the latest `now`; odd senders and ids survive; a malformed state changes nothing.
    #[test]
    fn the_window_state_survives_a_restart() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let s = Duration::from_secs;
        let ns = Duration::from_nanos;
        let mut w = ReplayWindow::new(s(300), 3);
        let odd = "id with spaces %41\n\u{e9}";
        w.accept("a@x", "1", t0 + ns(1), t0).unwrap();
        w.accept("a@x", odd, t0 + s(1), t0).unwrap();
        w.accept("a@x", "3", t0 + s(2), t0).unwrap();
        w.accept("a@x", "4", t0 + s(3), t0 + s(3)).unwrap(); // a@x's floor: t0 + 1 ns
        let state = w.state();
        let mut r = ReplayWindow::new(s(300), 3);
        r.restore_state(&state).unwrap();
        assert_eq!(r.state(), state);
        for (id, stamp) in [(odd, t0 + s(1)), ("4", t0 + s(3))] {
            assert!(matches!(
                r.accept("a@x", id, stamp, t0 + s(3)),
                Err(Error::Replay(Freshness::Duplicate { .. }))
            ));
        }
        // Not newer than the forgotten entry: refused; between it and the next: accepted.
        assert!(r.accept("a@x", "5", t0 + ns(1), t0 + s(3)).is_err());
        r.accept("a@x", "5", t0 + ns(2), t0 + s(3)).unwrap();
        // A malformed state is refused whole.
        let mut e = ReplayWindow::new(s(300), 3);
        for bad in [
            format!("{state}junk\n"),
            "seen 1.5 a@x 1\n".to_owned(),
            "seen 1800000000.000000000 a@x %4\n".to_owned(),
            "sender-floor 1800000000.000000000 b@x\n".to_owned(),
        ] {
            assert!(
                matches!(e.restore_state(&bad), Err(Error::State(_))),
                "{bad}"
            );
            assert!(e.is_empty());
            assert_eq!(e.state(), "");
        }
    }

    /// When every entry is another sender's, forgetting one raises everyone's floor (fail
    /// closed), as documented.
    #[test]
    fn single_entry_senders_share_a_floor() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let s = Duration::from_secs;
        let mut w = ReplayWindow::new(s(300), 2);
        w.accept("a@x", "1", t0, t0).unwrap();
        w.accept("b@x", "1", t0 + s(1), t0 + s(1)).unwrap();
        w.accept("c@x", "1", t0 + s(2), t0 + s(2)).unwrap();
        assert_eq!(w.len(), 2);
        assert!(w.accept("a@x", "1", t0, t0 + s(2)).is_err());
        assert!(w.accept("d@x", "1", t0, t0 + s(2)).is_err());
    }
}
