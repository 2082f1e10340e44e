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
//! sealed session/room payload, or the body text). Other children (`<subject/>`, `<thread/>`,
//! extension elements) and other attributes are not covered: what must be protected belongs in
//! the body (for messages between modules, a structured body). Plain XEP-0027 readers ignore
//! the element.
//!
//! [`check`] verifies it with the certificates bound to the envelope's sender, matches the
//! envelope against the stanza (the server-stamped `from`; the `to`; for `groupchat` the room
//! as recipient and sender), requires the stamp and the OpenPGP signature time within the
//! skew of `now`, and refuses an `(sender, id)` pair seen before ([`ReplayWindow`]).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use crate::armor;
use crate::canonical;
use crate::jid::Jid;
use crate::keys::{CertLookup, Identity};
use crate::openpgp::{self, SigMode, Verified};
use crate::policy::Policy;
use crate::stanza::{Element, Kind, Stanza};
use crate::{Error, Result};

/// The envelope namespace.
pub const NS_ENVELOPE: &str = "urn:xmpp-federation:xep0027:envelope:0";
const LABEL: &str = "urn:xmpp-federation:xep0027:envelope:0";

/// The signed payload of a stanza (see the module docs).
pub(crate) fn payload(stanza: &Stanza) -> Result<(&'static str, Vec<u8>)> {
    match stanza.kind() {
        Kind::Presence => {
            let ns = stanza.element().ns().to_owned();
            let show = stanza
                .element()
                .only_child("show", &ns)?
                .map(|e| e.text())
                .unwrap_or_default();
            let status = stanza.status()?.unwrap_or_default();
            Ok((
                "presence",
                canonical::encode("p", &[show.as_bytes(), status.as_bytes()]),
            ))
        }
        Kind::Message => {
            if let Some(packets) = crate::encrypted::payload(stanza)? {
                return Ok(("encrypted", packets));
            }
            for ns in [crate::session::NS_SESSION, crate::room::NS_ROOM] {
                if let Some(s) = stanza.element().only_child("sealed", ns)? {
                    return Ok(("sealed", sealed_bytes(s)));
                }
            }
            Ok(("body", stanza.body()?.unwrap_or_default().into_bytes()))
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
        LABEL,
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
    let id = stanza
        .id()
        .filter(|i| !i.is_empty())
        .ok_or_else(|| Error::Stanza("no 'id': a signed envelope needs one".into()))?
        .to_owned();
    let to = match stanza.to() {
        Some(t) => Jid::new(t)?.bare().to_owned(),
        None if stanza.kind() == Kind::Presence => String::new(),
        None => return Err(Error::Stanza("a message without 'to'".into())),
    };
    let stamp = crate::time::format(now);
    let from = me.jid().bare().to_owned();
    let bytes = signed_bytes(stanza, &from, &to, &id, &stamp)?;
    let sig = openpgp::sign_detached(me.signer(policy, now)?, &bytes, SigMode::Binary, now)?;
    let el = stanza.element_mut();
    el.remove_children("envelope", NS_ENVELOPE);
    el.push(
        Element::new("envelope", NS_ENVELOPE)
            .with_attr("from", &from)
            .with_attr("to", &to)
            .with_attr("stamp", &stamp)
            .with_text(&armor::encode(&sig)),
    );
    Ok(())
}

/// A checked envelope.
#[derive(Clone, Debug)]
pub struct Checked {
    /// The sender (bare JID), whose certificate made the signature.
    pub sender: Jid,
    /// The signed XEP-0082 stamp.
    pub stamp: SystemTime,
    /// The signature.
    pub signature: Verified,
}

/// Remembers which `(sender, id)` pairs were accepted, for as long as their stamps are inside
/// the skew window; refuses stamps outside it. Memory is bounded: when `max_entries` is
/// reached the oldest entry is forgotten and every stamp not newer than it is refused from
/// then on (fail closed, never forget silently).
#[derive(Clone, Debug)]
pub struct ReplayWindow {
    skew: Duration,
    max_entries: usize,
    seen: HashMap<(String, String), SystemTime>,
    order: VecDeque<(SystemTime, (String, String))>,
    floor: Option<SystemTime>,
}

impl ReplayWindow {
    /// A window accepting stamps within `skew` of now (XEP-0285 uses 5 minutes), remembering
    /// at most `max_entries` ids.
    pub fn new(skew: Duration, max_entries: usize) -> ReplayWindow {
        ReplayWindow {
            skew,
            max_entries: max_entries.max(1),
            seen: HashMap::new(),
            order: VecDeque::new(),
            floor: None,
        }
    }

    /// The allowed skew.
    pub fn skew(&self) -> Duration {
        self.skew
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Whether `(sender, id)` was accepted and is still remembered.
    pub fn is_seen(&self, sender: &str, id: &str) -> bool {
        self.seen.contains_key(&(sender.to_owned(), id.to_owned()))
    }

    /// Checks a stamp against `now` without recording anything.
    pub fn check_time(&self, stamp: SystemTime, now: SystemTime) -> Result<()> {
        let off = match stamp.duration_since(now) {
            Ok(ahead) => ahead,
            Err(e) => e.duration(),
        };
        if off > self.skew {
            let when = if stamp > now {
                "in the future"
            } else {
                "in the past"
            };
            return Err(Error::Replay(format!(
                "stamp {} is {}s {when} (allowed skew {}s)",
                crate::time::format(stamp),
                off.as_secs(),
                self.skew.as_secs()
            )));
        }
        if self.floor.is_some_and(|f| stamp <= f) {
            return Err(Error::Replay(
                "stamp older than what the full replay window still remembers".into(),
            ));
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
        self.expire(now);
        self.check_time(stamp, now)?;
        let key = (sender.to_owned(), id.to_owned());
        if self.seen.contains_key(&key) {
            return Err(Error::Replay(format!(
                "stanza id {id:?} from {sender} was already accepted"
            )));
        }
        while self.seen.len() >= self.max_entries {
            let Some((t, k)) = self.order.pop_front() else {
                break;
            };
            self.seen.remove(&k);
            self.floor = Some(self.floor.map_or(t, |f| f.max(t)));
        }
        self.seen.insert(key.clone(), stamp);
        // Keep `order` sorted by stamp (stamps arrive nearly in order).
        let at = self
            .order
            .iter()
            .rposition(|(t, _)| *t <= stamp)
            .map_or(0, |p| p + 1);
        self.order.insert(at, (stamp, key));
        Ok(())
    }

    /// Forgets ids whose stamps are now outside the window (they would be refused as stale).
    pub fn expire(&mut self, now: SystemTime) {
        while let Some((t, _)) = self.order.front() {
            if now.duration_since(*t).is_ok_and(|d| d > self.skew) {
                if let Some((_, k)) = self.order.pop_front() {
                    self.seen.remove(&k);
                }
            } else {
                break;
            }
        }
    }
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
        .required_child("envelope", NS_ENVELOPE, "signed envelope")?;
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
    let id = stanza
        .id()
        .filter(|i| !i.is_empty())
        .ok_or_else(|| Error::Stanza("no 'id'".into()))?;
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
            return Err(Error::Binding(format!(
                "groupchat from room {} but the envelope is for {e_to:?}",
                s_from.bare()
            )));
        }
    } else {
        if s_from.bare() != e_from {
            return Err(Error::Binding(format!(
                "stanza from {} but the envelope is signed for sender {e_from}",
                s_from.bare()
            )));
        }
        match stanza.to() {
            Some(t) => {
                let to = Jid::new(t)?;
                let broadcast = stanza.kind() == Kind::Presence && e_to.is_empty();
                if !broadcast && to.bare() != e_to {
                    return Err(Error::Binding(format!(
                        "stanza to {} but the envelope is for {e_to:?}",
                        to.bare()
                    )));
                }
            }
            None if e_to.is_empty() => {}
            None => {
                return Err(Error::Binding(
                    "the envelope names a recipient, the stanza none".into(),
                ));
            }
        }
    }
    let stamp = crate::time::parse(stamp_s)?;
    window.check_time(stamp, now)?;
    let signers = certs.by_jid(e_from);
    if signers.is_empty() {
        return Err(Error::UnknownSigner(e_from.to_owned()));
    }
    let sig = armor::decode(&env.text())?;
    let bytes = signed_bytes(stanza, e_from, e_to, id, stamp_s)?;
    let v = openpgp::verify_detached(&sig, &bytes, &signers, policy, now)?;
    // The OpenPGP creation time has second granularity; it must agree with the stamp.
    let drift = match v.created.duration_since(stamp) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    if drift > Duration::from_secs(1) {
        return Err(Error::Replay(
            "the signature time and the signed stamp disagree".into(),
        ));
    }
    if window.is_seen(e_from, id) {
        return Err(Error::Replay(format!(
            "stanza id {id:?} from {e_from} was already accepted"
        )));
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
}
