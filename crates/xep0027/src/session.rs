//! Session keys (a hybrid scheme on top of XEP-0027): two parties agree a 256-bit key once,
//! delivered encrypted to the peer's OpenPGP certificate and signed by the sender, then each
//! message is one AES-256-GCM operation instead of a public-key encryption.
//!
//! The offer is a message carrying
//! `<key xmlns='urn:xmpp-federation:xep0027:session:0' id='…' expires='…'>…</key>`: a
//! signed-and-encrypted OpenPGP message whose plaintext binds the key to the conversation
//! (sender and recipient bare JIDs), its id, creation and expiry. [`Sessions::accept`] requires
//! the signature of a certificate bound to the sender and refuses a record for another
//! conversation, an expired key or a key id seen before (a replayed offer).
//!
//! A sealed message carries `<sealed xmlns='…session:0' key='…' stamp='…'>base64</sealed>`;
//! the associated data binds the sender, recipient, stanza id, stamp and key id, so a message
//! cannot be moved to another conversation, direction or time, and the receiver's
//! [`ReplayWindow`] refuses it twice. The key serves both directions (the direction is in the
//! associated data). Rotation: offer a new key at any time; the newest one seals, older ones
//! still open messages until they expire; [`Sessions::forget_expired`] drops them. A key
//! lives at most [`MAX_SESSION_KEY_LIFETIME`] (an offer for longer is refused), and at most
//! [`MAX_KEYS_PER_PEER`] keys are kept per peer (the oldest are dropped), so a contact
//! sending offers without end holds a fixed amount of memory here.
//!
//! A peer's offers must be newer than the newest one accepted from it: a replayed offer is
//! refused by its id while the key is held and by its creation time for good (also after its
//! key was dropped). The creation
//! times survive a restart when the caller saves [`Sessions::offer_state`] and restores it
//! with [`Sessions::restore_offer_state`]; without that, an offer recorded before the restart
//! can be replayed until its key expires (it installs a key the peer really made, so it
//! reveals nothing, but the peer may have moved on).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use sequoia_openpgp::Cert;

use crate::canonical;
use crate::encrypted::FALLBACK_BODY;
use crate::envelope::ReplayWindow;
use crate::error::{Freshness, Mismatch, NeedKey, UnknownSigner};
use crate::jid::Jid;
use crate::keys::{CertLookup, Identity};
use crate::ns;
use crate::ns::label::{SESSION_KEY as RECORD, SESSION_MESSAGE as AAD};
use crate::policy::Policy;
use crate::stanza::{Element, Kind, Stanza, sender};
use crate::symmetric::{self, KeyBytes, Random};
use crate::{Error, Result};

#[derive(Clone, Debug)]
struct SessionKey {
    id: String,
    key: KeyBytes,
    created: SystemTime,
    expires: SystemTime,
    /// Messages this side sealed with it.
    sealed: u64,
}

/// How many messages one side seals with one session key by default (2^31): with random
/// 96-bit nonces, AES-GCM must not use a key for more than 2^32 messages (NIST SP 800-38D
/// §8.3); both sides seal with the same key, so each gets half.
pub const DEFAULT_SEAL_LIMIT: u64 = 1 << 31;

/// The longest a session key may live, from its creation to its expiry (7 days): an offer
/// for longer is refused ([`Freshness::OfferLifetime`]), and [`Sessions::offer`] refuses to
/// make one. Offer a new key (rotate) before the current one expires.
pub const MAX_SESSION_KEY_LIFETIME: Duration = Duration::from_secs(7 * 86_400);

/// The most session keys kept per peer (both directions together): accepting or offering
/// one more drops the oldest (by creation time). Messages in flight under a dropped key no
/// longer open; its offer stays refused (it is not newer than the newest accepted). An offer
/// older than every key held, which would be dropped as soon as stored, is refused
/// ([`Freshness::OfferSuperseded`]).
pub const MAX_KEYS_PER_PEER: usize = 4;

/// Facts about an agreed key.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyInfo {
    /// The peer (bare JID).
    pub peer: Jid,
    /// The key id.
    pub id: String,
    /// When it was created.
    pub created: SystemTime,
    /// When it expires.
    pub expires: SystemTime,
}

/// The session keys of one party, per peer.
///
/// Call these in this order:
///
/// 1. [`Sessions::new`] once per party (then [`Sessions::set_seal_limit`] if the default does
///    not suit), and [`Sessions::restore_offer_state`] with what was saved before a restart.
/// 2. To start a conversation (or rotate its key): [`Sessions::offer`], and send the stanza it
///    returns to the peer.
/// 3. For each offer received: [`Sessions::accept`], then save [`Sessions::offer_state`].
/// 4. To send a message: [`Sessions::seal`] (an [`Error::NeedKey`] says to go back to step 2:
///    no key yet, or the key's seal limit reached), then [`crate::envelope::seal`] if the
///    message carries an envelope (always last), and send.
/// 5. For each sealed message received: [`Sessions::open`] with the receiver's
///    [`ReplayWindow`] (after a restart, restored or resumed as [`ReplayWindow`] says).
/// 6. From time to time: [`Sessions::forget_expired`]; offer a new key (step 2) before
///    [`Sessions::current`]'s expiry.
#[derive(Debug)]
pub struct Sessions {
    me: Jid,
    lifetime: Duration,
    /// What is known of each peer (by bare JID).
    peers: HashMap<String, Peer>,
    /// The id of every key held (offered either way), with its expiry: a replayed offer is
    /// refused by it, and an older one by the peer's newest offer time.
    /// Key ids held, per peer (bare JID, id): one peer's id never blocks another's offer
    /// (XEP-0027 review F6).
    seen_ids: HashMap<(String, String), SystemTime>,
    seal_limit: u64,
}

/// One peer's state: its keys, and the creation time of the newest offer accepted from it
/// (kept after its keys expire: it refuses older offers for good).
#[derive(Debug, Default)]
struct Peer {
    /// Oldest first.
    keys: Vec<SessionKey>,
    newest_offer: Option<SystemTime>,
}

impl Peer {
    fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.newest_offer.is_none()
    }
}

impl Sessions {
    /// The session keys of `me` (a bare JID); the keys this side offers live for `lifetime`
    /// (above zero and at most [`MAX_SESSION_KEY_LIFETIME`], or [`Sessions::offer`] refuses).
    pub fn new(me: &Jid, lifetime: Duration) -> Sessions {
        Sessions {
            me: me.to_bare(),
            lifetime,
            peers: HashMap::new(),
            seen_ids: HashMap::new(),
            seal_limit: DEFAULT_SEAL_LIMIT,
        }
    }

    /// Sets how many messages this side seals with one key before [`Sessions::seal`] refuses
    /// and a new key must be offered (default [`DEFAULT_SEAL_LIMIT`]).
    pub fn set_seal_limit(&mut self, n: u64) {
        self.seal_limit = n;
    }

    /// Creates a new key for the conversation with `peer` (valid for the store's lifetime
    /// from `now`), keeps it as the current one, and returns the offer stanza to send (`to` the peer, a
    /// random `id`). A store whose lifetime is zero or longer than
    /// [`MAX_SESSION_KEY_LIFETIME`] refuses ([`Error::State`]).
    #[must_use = "the offer must be sent to the peer, or the key is never agreed"]
    pub fn offer(
        &mut self,
        me: &Identity,
        peer: &Jid,
        peer_cert: &Cert,
        rng: &mut dyn Random,
        policy: &Policy,
        now: SystemTime,
    ) -> Result<Stanza> {
        if !me.jid().same_bare(&self.me) {
            return Err(Error::State("identity and Sessions owner differ".into()));
        }
        if self.lifetime > MAX_SESSION_KEY_LIFETIME || self.lifetime.is_zero() {
            return Err(Error::State(format!(
                "a session key lifetime must be above zero and at most {} s",
                MAX_SESSION_KEY_LIFETIME.as_secs()
            )));
        }
        let key = KeyBytes::random(rng)?;
        let id = symmetric::random_id(rng, 16)?;
        let expires = now + self.lifetime;
        let (created_s, expires_s) = (crate::time::format(now), crate::time::format(expires));
        let own = me.public_cert();
        let sealed = canonical::seal_record(
            RECORD,
            &[
                me.jid().bare().as_bytes(),
                peer.bare().as_bytes(),
                id.as_bytes(),
                created_s.as_bytes(),
                expires_s.as_bytes(),
                key.as_bytes(),
            ],
            &[peer_cert, &own],
            me,
            policy,
            now,
        )?;
        let mut stanza = Stanza::new(Kind::Message)
            .with_attr("to", peer.bare())
            .with_attr("id", &symmetric::random_id(rng, 8)?);
        stanza.element_mut().push(
            Element::new("key", ns::SESSION)
                .with_attr("id", &id)
                .with_attr("expires", &expires_s)
                .with_text(&sealed),
        );
        let created = crate::time::parse(&created_s)?;
        self.store(
            peer.bare(),
            SessionKey {
                id,
                key,
                created,
                expires: crate::time::parse(&expires_s)?,
                sealed: 0,
            },
        );
        Ok(stanza)
    }

    /// Keeps `k` among the peer's keys in creation order, dropping the oldest past
    /// [`MAX_KEYS_PER_PEER`] (and forgetting their ids: their offers are refused by the peer's
    /// newest offer time). Work per call is bounded by the cap, not by the history.
    fn store(&mut self, peer: &str, k: SessionKey) {
        self.seen_ids
            .insert((peer.to_owned(), k.id.clone()), k.expires);
        let v = &mut self.peers.entry(peer.to_owned()).or_default().keys;
        let at = v.partition_point(|old| old.created <= k.created);
        v.insert(at, k);
        while v.len() > MAX_KEYS_PER_PEER {
            let dropped = v.remove(0);
            self.seen_ids.remove(&(peer.to_owned(), dropped.id));
        }
    }

    /// Accepts a key offer from the stanza's sender: decrypts it with `me`, requires the
    /// sender's signature, checks the record against the stanza and `now`, and its lifetime
    /// (at most [`MAX_SESSION_KEY_LIFETIME`] from its creation:
    /// [`Freshness::OfferLifetime`] otherwise). The peer's oldest key is dropped when it would
    /// hold more than [`MAX_KEYS_PER_PEER`].
    pub fn accept(
        &mut self,
        stanza: &Stanza,
        me: &Identity,
        certs: &dyn CertLookup,
        policy: &Policy,
        now: SystemTime,
    ) -> Result<KeyInfo> {
        let el = stanza
            .element()
            .required_child("key", ns::SESSION, "session key offer")?;
        let from = sender(stanza)?;
        let signers = certs.by_jid(from.bare());
        if signers.is_empty() {
            return Err(Error::UnknownSigner(UnknownSigner::Jid(from.to_string())));
        }
        let record =
            canonical::Record::open(&el.text(), "a session key offer", me, &signers, policy, now)?;
        let f = record.fields(RECORD, 6)?;
        let t = |i: usize| canonical::text(RECORD, f[i]);
        let (r_from, r_to, id, created_s, expires_s) = (t(0)?, t(1)?, t(2)?, t(3)?, t(4)?);
        if r_from != from.bare() || r_to != self.me.bare() {
            return Err(Error::Binding(Mismatch::Conversation {
                signed: format!("{r_from} -> {r_to}"),
                stanza: format!("{} -> {}", from.bare(), self.me.bare()),
            }));
        }
        if el.attr("id") != Some(id) {
            return Err(Error::Binding(Mismatch::Attribute("id")));
        }
        let (created, expires) = (
            crate::time::parse(created_s)?,
            crate::time::parse(expires_s)?,
        );
        let key = KeyBytes::from_slice(f[5])?;
        self.install(&from, id, created, expires, key, now)
    }

    /// What [`Sessions::accept`] does once the offer is opened and bound to the conversation:
    /// the freshness checks, then the key is stored.
    fn install(
        &mut self,
        from: &Jid,
        id: &str,
        created: SystemTime,
        expires: SystemTime,
        key: KeyBytes,
        now: SystemTime,
    ) -> Result<KeyInfo> {
        crate::stanza::check_id(id)?;
        if expires.duration_since(created).map_or(true, |life| {
            life.is_zero() || life > MAX_SESSION_KEY_LIFETIME
        }) {
            return Err(Error::Replay(Freshness::OfferLifetime {
                id: id.to_owned(),
                max: MAX_SESSION_KEY_LIFETIME,
            }));
        }
        if expires <= now {
            return Err(Error::Replay(Freshness::KeyExpired { key: id.to_owned() }));
        }
        if self
            .seen_ids
            .contains_key(&(from.bare().to_owned(), id.to_owned()))
        {
            return Err(Error::Replay(Freshness::OfferSeen { id: id.to_owned() }));
        }
        if created > now + crate::time::CLOCK_SKEW {
            return Err(Error::Replay(Freshness::OfferFromFuture {
                id: id.to_owned(),
            }));
        }
        if let Some(newest) = self
            .peers
            .get(from.bare())
            .and_then(|p| p.newest_offer.as_ref())
            && created <= *newest
        {
            return Err(Error::Replay(Freshness::OfferNotNewer {
                id: id.to_owned(),
                peer: from.bare().to_owned(),
            }));
        }
        // Stored, it would be the oldest of more than the cap and dropped at once: refused,
        // rather than reported accepted while no message under it can open.
        if let Some(p) = self.peers.get(from.bare())
            && p.keys.len() >= MAX_KEYS_PER_PEER
            && p.keys
                .first()
                .is_some_and(|oldest| created < oldest.created)
        {
            return Err(Error::Replay(Freshness::OfferSuperseded {
                id: id.to_owned(),
                peer: from.bare().to_owned(),
            }));
        }
        self.peers
            .entry(from.bare().to_owned())
            .or_default()
            .newest_offer = Some(created);
        self.store(
            from.bare(),
            SessionKey {
                id: id.to_owned(),
                key,
                created,
                expires,
                sealed: 0,
            },
        );
        Ok(KeyInfo {
            peer: from.clone(),
            id: id.to_owned(),
            created,
            expires,
        })
    }

    /// The current (newest unexpired) key for `peer`.
    #[must_use]
    pub fn current(&self, peer: &Jid, now: SystemTime) -> Option<KeyInfo> {
        self.current_key(peer.bare(), now).map(|k| KeyInfo {
            peer: peer.to_bare(),
            id: k.id.clone(),
            created: k.created,
            expires: k.expires,
        })
    }

    fn current_key(&self, peer: &str, now: SystemTime) -> Option<&SessionKey> {
        self.peers
            .get(peer)?
            .keys
            .iter()
            .rev()
            .find(|k| k.expires > now)
    }

    fn aad(from: &str, to: &str, id: &str, stamp: &str, key_id: &str) -> Vec<u8> {
        canonical::encode(
            AAD,
            &[
                from.as_bytes(),
                to.as_bytes(),
                id.as_bytes(),
                stamp.as_bytes(),
                key_id.as_bytes(),
            ],
        )
    }

    /// Seals the message's body with the current key for its recipient (`to`); the body is
    /// replaced by the fallback text. The stanza needs `to` and `id`. A message with a
    /// `jabber:x:signed` signature or an XHTML-IM body is refused ([`Error::State`]): either
    /// would leave the plaintext readable, or checkable, next to the sealed body (review
    /// session 26, X3).
    pub fn seal(
        &mut self,
        stanza: &mut Stanza,
        rng: &mut dyn Random,
        now: SystemTime,
    ) -> Result<()> {
        crate::encrypted::refuse_plaintext_copies(stanza)?;
        let to = Jid::new(stanza.to().ok_or_else(|| Error::Stanza("no 'to'".into()))?)?;
        let id = stanza.required_id()?.to_owned();
        let body = stanza
            .only_body()?
            .ok_or_else(|| Error::Stanza("no <body/> to seal".into()))?;
        let (me, limit) = (self.me.bare().to_owned(), self.seal_limit);
        let k = self
            .peers
            .get_mut(to.bare())
            .and_then(|p| p.keys.iter_mut().rev().find(|k| k.expires > now))
            .ok_or_else(|| {
                Error::NeedKey(NeedKey::NoSessionKey {
                    peer: to.bare().to_owned(),
                })
            })?;
        if k.sealed >= limit {
            return Err(Error::NeedKey(NeedKey::SessionSealLimit {
                key: k.id.clone(),
                limit,
            }));
        }
        let stamp = crate::time::format(now);
        let aad = Sessions::aad(&me, to.bare(), &id, &stamp, &k.id);
        let sealed = symmetric::seal(&k.key, &aad, body.as_bytes(), rng)?;
        k.sealed += 1;
        let key_id = k.id.clone();
        let el = stanza.element_mut();
        el.remove_children("sealed", ns::SESSION);
        el.push(
            Element::new("sealed", ns::SESSION)
                .with_attr("key", &key_id)
                .with_attr("stamp", &stamp)
                .with_text(&sealed),
        );
        stanza.set_body(FALLBACK_BODY);
        Ok(())
    }

    /// Opens a sealed message from the stanza's sender: the key must be one agreed with the
    /// sender and unexpired at the stamp, the stamp within the window's skew of `now`, the
    /// `(sender, id)` pair new. On any error nothing is recorded.
    #[must_use = "the opened body; the stanza is recorded as accepted"]
    pub fn open(
        &self,
        stanza: &Stanza,
        window: &mut ReplayWindow,
        now: SystemTime,
    ) -> Result<String> {
        let el = stanza
            .element()
            .required_child("sealed", ns::SESSION, "sealed payload")?;
        let from = sender(stanza)?;
        let id = stanza.required_id()?;
        let key_id = el
            .attr("key")
            .ok_or_else(|| Error::Stanza("sealed without 'key'".into()))?;
        let stamp_s = el
            .attr("stamp")
            .ok_or_else(|| Error::Stanza("sealed without 'stamp'".into()))?;
        let stamp = crate::time::parse(stamp_s)?;
        let k = self
            .peers
            .get(from.bare())
            .and_then(|p| p.keys.iter().find(|k| k.id == key_id))
            .ok_or_else(|| {
                Error::NeedKey(NeedKey::UnknownSessionKey {
                    peer: from.bare().to_owned(),
                    key: key_id.to_owned(),
                })
            })?;
        if k.expires <= stamp || k.expires <= now {
            return Err(Error::Replay(Freshness::KeyExpired {
                key: key_id.to_owned(),
            }));
        }
        window.check_sender_time(from.bare(), stamp, now)?;
        let aad = Sessions::aad(from.bare(), self.me.bare(), id, stamp_s, key_id);
        let pt = symmetric::open(&k.key, &aad, &el.text())?;
        let body = String::from_utf8(pt).map_err(|_| Error::Decrypt)?;
        window.accept(from.bare(), id, stamp, now)?;
        Ok(body)
    }

    /// What must survive a restart to refuse replayed offers: the creation time of the newest
    /// offer accepted from each peer, one line each, `<bare JID> <XEP-0082 time>`. Save it
    /// after every [`Sessions::accept`] (or at shutdown) and give it to
    /// [`Sessions::restore_offer_state`] at start.
    #[must_use = "save it, to refuse replayed offers after a restart"]
    pub fn offer_state(&self) -> String {
        let mut lines: Vec<String> = self
            .peers
            .iter()
            .filter_map(|(peer, p)| {
                p.newest_offer
                    .map(|t| format!("{peer} {}\n", crate::time::format(t)))
            })
            .collect();
        lines.sort();
        lines.concat()
    }

    /// Restores what [`Sessions::offer_state`] saved (merged with what is known: the later
    /// time wins). A malformed state is refused whole, nothing restored.
    pub fn restore_offer_state(&mut self, state: &str) -> Result<()> {
        let mut parsed = Vec::new();
        for line in state.lines().filter(|l| !l.trim().is_empty()) {
            let (peer, t) = line
                .split_once(' ')
                .ok_or_else(|| Error::State(format!("bad offer state line {line:?}")))?;
            let jid = Jid::new(peer)?;
            if jid.bare() != peer {
                return Err(Error::State(format!("bad offer state line {line:?}")));
            }
            parsed.push((peer.to_owned(), crate::time::parse(t)?));
        }
        for (peer, t) in parsed {
            let e = &mut self.peers.entry(peer).or_default().newest_offer;
            *e = Some(e.map_or(t, |known| known.max(t)));
        }
        Ok(())
    }

    /// Drops keys expired at `now` (their messages can no longer be opened anyway).
    pub fn forget_expired(&mut self, now: SystemTime) {
        for p in self.peers.values_mut() {
            p.keys.retain(|k| k.expires > now);
        }
        self.peers.retain(|_, p| !p.is_empty());
        self.seen_ids.retain(|_, e| *e > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Keyring, Suite};
    use crate::symmetric::OsRandom;

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000)
    }

    fn ident(name: &str) -> Identity {
        Identity::generate(
            &Jid::new(&format!("{name}@example.org")).unwrap(),
            Suite::Cv25519,
            t0(),
            None,
        )
        .unwrap()
    }

    /// An offer `from` -> `to` with the times of the sender's choosing, as delivered.
    fn forged_offer(
        from: &Identity,
        to: &Identity,
        id: &str,
        created: SystemTime,
        expires: SystemTime,
    ) -> Stanza {
        let p = Policy::standard();
        let key = KeyBytes::random(&mut OsRandom).unwrap();
        let (c, e) = (crate::time::format(created), crate::time::format(expires));
        let sealed = canonical::seal_record(
            RECORD,
            &[
                from.jid().bare().as_bytes(),
                to.jid().bare().as_bytes(),
                id.as_bytes(),
                c.as_bytes(),
                e.as_bytes(),
                key.as_bytes(),
            ],
            &[&to.public_cert()],
            from,
            &p,
            created,
        )
        .unwrap();
        let mut st = Stanza::new(Kind::Message)
            .with_attr("to", to.jid().bare())
            .with_attr("id", id)
            .with_attr("from", &format!("{}/r", from.jid().bare()));
        st.element_mut().push(
            Element::new("key", ns::SESSION)
                .with_attr("id", id)
                .with_attr("expires", &e)
                .with_text(&sealed),
        );
        st
    }

    /// Review session 26, X1's rest: a key record's signature was a plain one over the
    /// record's bytes, so Alice's signature over text equal to them (made by another client
    /// with her key, which signs any text), re-wrapped in an encryption to Bob by whoever
    /// asked for it, gave Bob a session key offer from Alice with a key of that party's
    /// choosing. A record's signature carries the record purpose notation, required here.
    #[test]
    fn a_record_signed_without_its_notation_is_refused() {
        let (p, alice, bob, ring, mut sb) = alice_and_bob();
        let now = t0() + Duration::from_secs(1);
        let expires = t0() + Duration::from_secs(600);
        let (c, e) = (crate::time::format(t0()), crate::time::format(expires));
        let key = KeyBytes::random(&mut OsRandom).unwrap();
        let record = canonical::encode(
            RECORD,
            &[
                alice.jid().bare().as_bytes(),
                bob.jid().bare().as_bytes(),
                b"rewrapped",
                c.as_bytes(),
                e.as_bytes(),
                key.as_bytes(),
            ],
        );
        let ct = crate::openpgp::encrypt(
            &record,
            &[&bob.public_cert()],
            Some(alice.signer(&p, t0()).unwrap()),
            &p,
            t0(),
        )
        .unwrap();
        let mut st = Stanza::new(Kind::Message)
            .with_attr("to", bob.jid().bare())
            .with_attr("id", "rewrapped")
            .with_attr("from", &format!("{}/r", alice.jid().bare()));
        st.element_mut().push(
            Element::new("key", ns::SESSION)
                .with_attr("id", "rewrapped")
                .with_attr("expires", &e)
                .with_text(&crate::armor::encode(&ct)),
        );
        let r = sb.accept(&st, &bob, &ring, &p, now);
        assert!(r.is_err(), "{r:?}");
        assert!(sb.current(alice.jid(), now).is_none());
        // The same record sealed as a record is taken.
        let real = forged_offer(&alice, &bob, "real", t0(), expires);
        sb.accept(&real, &bob, &ring, &p, now).unwrap();
    }

    /// Alice, whose certificate Bob has pinned, and Bob's sessions, under the standard policy.
    fn alice_and_bob() -> (Policy, Identity, Identity, Keyring, Sessions) {
        let (alice, bob) = (ident("alice"), ident("bob"));
        let mut ring = Keyring::new();
        ring.insert_pinned(alice.jid(), alice.public_cert());
        let sb = Sessions::new(bob.jid(), Duration::from_secs(3600));
        (Policy::standard(), alice, bob, ring, sb)
    }

    fn far_future() -> SystemTime {
        crate::time::parse("9999-12-31T00:00:00.000Z").unwrap()
    }

    /// Finding 2 of the xep-audit review: a pinned contact sending offers, each created a
    /// little later and expiring far ahead, installed every key for ever (and re-sorted the
    /// list on each). Now a lifetime longer than MAX_SESSION_KEY_LIFETIME is refused, at most
    /// MAX_KEYS_PER_PEER keys are kept, and a dropped key's offer stays refused.
    #[test]
    fn offers_are_bounded_in_lifetime_and_number() {
        let (p, alice, bob, ring, mut sb) = alice_and_bob();
        let now = t0() + Duration::from_secs(1);

        // The lifetime of the sender's choosing: refused, nothing stored.
        let long = forged_offer(&alice, &bob, "long", t0(), far_future());
        let r = sb.accept(&long, &bob, &ring, &p, now);
        assert!(
            matches!(r, Err(Error::Replay(Freshness::OfferLifetime { .. }))),
            "{r:?}"
        );
        let just_over = t0() + MAX_SESSION_KEY_LIFETIME + Duration::from_millis(1);
        let r = sb.accept(
            &forged_offer(&alice, &bob, "over", t0(), just_over),
            &bob,
            &ring,
            &p,
            now,
        );
        assert!(
            matches!(r, Err(Error::Replay(Freshness::OfferLifetime { .. }))),
            "{r:?}"
        );
        assert!(sb.current(alice.jid(), now).is_none());
        assert!(sb.seen_ids.is_empty());

        // Real offers, each 1 ms newer, at the longest lifetime allowed.
        let created = |i: u64| t0() + Duration::from_millis(i);
        let offers: Vec<Stanza> = (0..MAX_KEYS_PER_PEER as u64 + 2)
            .map(|i| {
                forged_offer(
                    &alice,
                    &bob,
                    &format!("k{i}"),
                    created(i),
                    created(i) + MAX_SESSION_KEY_LIFETIME,
                )
            })
            .collect();
        for o in &offers {
            sb.accept(o, &bob, &ring, &p, now).unwrap();
        }
        let held = &sb.peers["alice@example.org"].keys;
        assert_eq!(held.len(), MAX_KEYS_PER_PEER);
        assert_eq!(held[0].id, "k2", "the oldest are dropped");
        assert!(sb.seen_ids.len() <= MAX_KEYS_PER_PEER);
        // The first offer, whose key was dropped (and its id forgotten), is still a replay.
        let r = sb.accept(&offers[0], &bob, &ring, &p, now);
        assert!(
            matches!(r, Err(Error::Replay(Freshness::OfferNotNewer { .. }))),
            "{r:?}"
        );
        assert!(
            !sb.peers["alice@example.org"]
                .keys
                .iter()
                .any(|k| k.id == "k0")
        );

        // 10,000 more (1 µs apart: the crypto of accept left out, the same checks and store
        // after it): still at most MAX_KEYS_PER_PEER keys and as many remembered ids.
        let alice_jid = alice.jid().to_bare();
        let base = created(1_000);
        for i in 0..10_000u64 {
            let c = base + Duration::from_micros(i);
            sb.install(
                &alice_jid,
                &format!("bulk{i}"),
                c,
                c + MAX_SESSION_KEY_LIFETIME,
                KeyBytes::random(&mut OsRandom).unwrap(),
                now,
            )
            .unwrap();
        }
        assert_eq!(sb.peers["alice@example.org"].keys.len(), MAX_KEYS_PER_PEER);
        assert!(
            sb.seen_ids.len() <= MAX_KEYS_PER_PEER,
            "{}",
            sb.seen_ids.len()
        );
        // And every dropped one is still refused.
        let r = sb.install(
            &alice_jid,
            "bulk0",
            base,
            base + MAX_SESSION_KEY_LIFETIME,
            KeyBytes::random(&mut OsRandom).unwrap(),
            now,
        );
        assert!(matches!(r, Err(Error::Replay(_))), "{r:?}");
        assert_eq!(
            sb.current(alice.jid(), now).unwrap().id,
            "bulk9999",
            "the newest seals"
        );
    }

    /// Finding: with MAX_KEYS_PER_PEER keys of our own offers held (newer), a peer's older
    /// offer was stored, dropped at once as the oldest, and reported accepted: the caller
    /// could not tell that no message under it would open. Now it is refused and nothing
    /// changes.
    #[test]
    fn an_offer_older_than_every_key_held_is_refused() {
        let p = Policy::standard();
        let (alice, bob) = (ident("alice"), ident("bob"));
        let mut ring = Keyring::new();
        ring.insert_pinned(alice.jid(), alice.public_cert());
        let mut sb = Sessions::new(bob.jid(), Duration::from_secs(3600));
        let now = t0() + Duration::from_secs(60);
        for _ in 0..MAX_KEYS_PER_PEER {
            sb.offer(
                &bob,
                alice.jid(),
                &alice.public_cert(),
                &mut OsRandom,
                &p,
                now,
            )
            .unwrap();
        }
        let held = |sb: &Sessions| -> Vec<String> {
            sb.peers["alice@example.org"]
                .keys
                .iter()
                .map(|k| k.id.clone())
                .collect()
        };
        let before = held(&sb);
        let old = t0() + Duration::from_secs(1);
        let offer = forged_offer(&alice, &bob, "older", old, old + Duration::from_secs(3600));
        let r = sb.accept(&offer, &bob, &ring, &p, now);
        assert!(
            matches!(r, Err(Error::Replay(Freshness::OfferSuperseded { .. }))),
            "{r:?}"
        );
        assert_eq!(held(&sb), before, "nothing changed");
        assert_eq!(sb.offer_state(), "", "no newest offer recorded");
        // A newer one is accepted and seals.
        let new = now + Duration::from_secs(1);
        let offer = forged_offer(&alice, &bob, "newer", new, new + Duration::from_secs(3600));
        sb.accept(&offer, &bob, &ring, &p, now + Duration::from_secs(2))
            .unwrap();
        assert!(held(&sb).contains(&"newer".to_owned()));
    }

    #[test]
    fn a_store_whose_lifetime_is_too_long_refuses_to_offer() {
        let p = Policy::standard();
        let (alice, bob) = (ident("alice"), ident("bob"));
        let mut sa = Sessions::new(
            alice.jid(),
            MAX_SESSION_KEY_LIFETIME + Duration::from_secs(1),
        );
        let r = sa.offer(
            &alice,
            bob.jid(),
            &bob.public_cert(),
            &mut OsRandom,
            &p,
            t0(),
        );
        assert!(matches!(r, Err(Error::State(_))), "{r:?}");
        let mut sa = Sessions::new(alice.jid(), MAX_SESSION_KEY_LIFETIME);
        assert!(
            sa.offer(
                &alice,
                bob.jid(),
                &bob.public_cert(),
                &mut OsRandom,
                &p,
                t0()
            )
            .is_ok()
        );
    }

    /// XEP-0027 review F6: key ids were one namespace across peers, so a contact who saw
    /// another peer's offer (its id is in clear) and offered the same id first had that peer's
    /// offer refused as seen. Ids are per peer now; a peer's own id twice is still refused.
    #[test]
    fn key_ids_are_per_peer() {
        let bob = ident("bob");
        let mut sb = Sessions::new(bob.jid(), Duration::from_secs(3600));
        let now = t0() + Duration::from_secs(60);
        let (alice, carol) = (
            Jid::new("alice@example.org").unwrap(),
            Jid::new("carol@example.org").unwrap(),
        );
        let key = || KeyBytes::random(&mut OsRandom).unwrap();
        let c = t0();
        let life = Duration::from_secs(3600);
        sb.install(&carol, "K", c, c + life, key(), now).unwrap();
        sb.install(&alice, "K", c, c + life, key(), now).unwrap();
        let again = sb.install(&alice, "K", c, c + life, key(), now);
        assert!(matches!(again, Err(Error::Replay(_))), "{again:?}");
    }
}
