//! Encrypted rooms with a moderator-distributed key (after XEP-0473's pattern for pubsub;
//! no MUC specification does it). The [`Moderator`] creates a room key with an id and an
//! epoch and sends it to each member in a message carrying
//! `<room-key xmlns='urn:xmpp-federation:xep0027:room:0' room='…' epoch='…'>…</room-key>`: a
//! signed-and-encrypted OpenPGP message (to that member only) whose plaintext binds the room,
//! the epoch, the key id, the member's JID, the times and the key.
//!
//! A [`Member`] pins the moderator's certificate fingerprint when it joins and refuses keys
//! not signed by it, for another room or member, or with an epoch not newer than the one it
//! has (a replayed or rolled-back distribution). Removing a member rotates the key: the new
//! epoch goes only to the remaining members, so the removed one cannot read later messages,
//! and cannot post either: once a member has accepted a newer epoch, messages sealed with an
//! older one are refused after a short grace period for messages already in flight
//! ([`DEFAULT_EPOCH_GRACE`], [`Member::set_epoch_grace`]; zero refuses them at once).
//!
//! Room messages are `groupchat` messages with
//! `<sealed xmlns='…room:0' room='…' epoch='…' stamp='…'>base64</sealed>` (AES-256-GCM; the
//! associated data binds room, epoch, sender, stanza id and stamp) and a signed
//! [`crate::envelope`]: a shared key cannot say which member wrote a message, the sender's
//! OpenPGP signature does. [`Member::open`] takes only what the room reflected: type
//! `groupchat`, `from` the room.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use sequoia_openpgp::{Cert, Fingerprint};

use crate::canonical;
use crate::encrypted::FALLBACK_BODY;
use crate::envelope::{self, ReplayWindow};
use crate::error::{Freshness, Mismatch, NeedKey};
use crate::jid::Jid;
use crate::keys::{CertLookup, Identity};
use crate::ns;
use crate::ns::label::{ROOM_KEY as RECORD, ROOM_MESSAGE as AAD};
use crate::policy::Policy;
use crate::stanza::{Element, Kind, Stanza, sender};
use crate::symmetric::{self, KeyBytes, Random};
use crate::{Error, Result};

#[derive(Clone, Debug)]
struct RoomKey {
    epoch: u64,
    id: String,
    key: KeyBytes,
    created: SystemTime,
    expires: SystemTime,
}

/// A room key as a member holds it: with what only a member has, when it accepted the key
/// (for the epoch grace) and how many messages it sealed with it (for the seal limit). The
/// moderator keeps a bare [`RoomKey`].
#[derive(Clone, Debug)]
struct HeldKey {
    room_key: RoomKey,
    /// When this member accepted it.
    accepted: SystemTime,
    /// Messages this member sealed with it.
    sealed: u64,
}

/// How many messages one member seals with one room key by default (2^24): with random
/// 96-bit nonces AES-GCM must stay under 2^32 messages per key (NIST SP 800-38D §8.3), shared
/// here by up to 256 members; past the limit the member asks the moderator to rotate.
pub const DEFAULT_ROOM_SEAL_LIMIT: u64 = 1 << 24;

/// How long after accepting a newer room key a member still opens messages sealed with an
/// older epoch (10 s): messages members sealed just before they got the new key. A member
/// removed by the rotation can post with its old key during this time at most.
pub const DEFAULT_EPOCH_GRACE: Duration = Duration::from_secs(10);

/// The largest epoch a member accepts, and the largest step over the newest it holds: a key
/// record naming an epoch nobody could follow (`u64::MAX`) would make every later genuine key
/// "not newer" and brick the room (XEP-0027 review F5). A moderator rotates once per change of
/// members; a million steps at once is no legitimate rotation.
pub const MAX_EPOCH_STEP: u64 = 1 << 20;

/// The largest epoch at all (far beyond any room's rotations, far below overflow).
pub const MAX_EPOCH: u64 = 1 << 48;

/// The longest a room key may live (7 days, as a session key): a moderator rotates before, and
/// a member refuses a key record that says longer. It bounds how long an old distribution can
/// be replayed to a member that kept no state ([`Member::state`]).
pub const MAX_ROOM_KEY_LIFETIME: Duration = Duration::from_secs(7 * 86_400);

/// The room's moderator: holds the member list and the current key.
///
/// Call these in this order:
///
/// 1. [`Moderator::new`] once per room (epoch 1); after a restart, [`Moderator::resume`]
///    after the epoch it last distributed (save [`Moderator::epoch`] durably after every
///    [`Moderator::rotate`] and [`Moderator::remove_member`], before sending the distribution,
///    as members save [`Member::state`]).
/// 2. [`Moderator::add_member`] for each member (with the certificate its key goes to,
///    checked there).
/// 3. [`Moderator::distribute`] and send every stanza it returns, and deal with the members
///    it reports undelivered (or [`Moderator::distribute_to`] for one member added later).
/// 4. To remove a member: [`Moderator::remove_member`] (it rotates), then step 3 again, so
///    that the remaining members get the new epoch. To rotate otherwise (the key nears its
///    expiry, a member reports its seal limit): [`Moderator::rotate`], then step 3.
#[derive(Debug)]
pub struct Moderator {
    room: Jid,
    lifetime: Duration,
    members: BTreeMap<String, Cert>,
    current: RoomKey,
}

impl Moderator {
    /// A room with a first key (epoch 1) valid for `lifetime`, and no members yet.
    pub fn new(
        room: &Jid,
        lifetime: Duration,
        rng: &mut dyn Random,
        now: SystemTime,
    ) -> Result<Moderator> {
        if lifetime.is_zero() || lifetime > MAX_ROOM_KEY_LIFETIME {
            return Err(Error::Replay(Freshness::RoomKeyLifetime {
                epoch: 1,
                max: MAX_ROOM_KEY_LIFETIME,
            }));
        }
        let current = new_key(1, lifetime, rng, now)?;
        Ok(Moderator {
            room: room.to_bare(),
            lifetime,
            members: BTreeMap::new(),
            current,
        })
    }

    /// A room whose moderator restarted: a fresh key for the epoch after `last_epoch` (the
    /// [`Moderator::epoch`] it saved), valid for `lifetime`, and no members yet (add them
    /// again, then distribute). Members restore the newest epoch they accepted
    /// ([`Member::restore_state`]) and refuse any epoch not newer, so a moderator starting
    /// again at epoch 1 had its distributions refused by all of them until it rotated past
    /// the epoch it could not know (review of the eighth round, R1). Fails at the last epoch
    /// ([`MAX_EPOCH`]) and for a lifetime [`Moderator::new`] refuses.
    pub fn resume(
        room: &Jid,
        lifetime: Duration,
        last_epoch: u64,
        rng: &mut dyn Random,
        now: SystemTime,
    ) -> Result<Moderator> {
        let epoch = next_epoch(last_epoch)?;
        let mut m = Moderator::new(room, lifetime, rng, now)?;
        m.current = new_key(epoch, lifetime, rng, now)?;
        Ok(m)
    }

    /// The room.
    #[must_use]
    pub fn room(&self) -> &Jid {
        &self.room
    }

    /// The current epoch.
    #[must_use]
    pub fn epoch(&self) -> u64 {
        self.current.epoch
    }

    /// The members (bare JIDs).
    pub fn members(&self) -> impl Iterator<Item = &str> {
        self.members.keys().map(String::as_str)
    }

    /// Adds a member with the certificate its key is sent to, once the certificate is found
    /// usable: valid under `policy` at `now` with an encryption-capable key
    /// ([`crate::openpgp::Recipients::new`]); otherwise [`Error::Key`] and nothing is added.
    /// A new member gets the current key (it can read messages of this epoch); call
    /// [`Moderator::rotate`] first if it must not.
    pub fn add_member(
        &mut self,
        jid: &Jid,
        cert: Cert,
        policy: &Policy,
        now: SystemTime,
    ) -> Result<()> {
        crate::openpgp::Recipients::new(&[&cert], policy, now)?;
        self.members.insert(jid.bare().to_owned(), cert);
        Ok(())
    }

    /// Removes a member and rotates the key; returns whether it was a member. On error
    /// (no randomness for the new key) nothing changes: the member stays, the epoch too.
    pub fn remove_member(
        &mut self,
        jid: &Jid,
        rng: &mut dyn Random,
        now: SystemTime,
    ) -> Result<bool> {
        let next = new_key(next_epoch(self.current.epoch)?, self.lifetime, rng, now)?;
        let was = self.members.remove(jid.bare()).is_some();
        self.current = next;
        Ok(was)
    }

    /// Starts a new epoch with a fresh key.
    pub fn rotate(&mut self, rng: &mut dyn Random, now: SystemTime) -> Result<()> {
        self.current = new_key(next_epoch(self.current.epoch)?, self.lifetime, rng, now)?;
        Ok(())
    }

    /// The key distribution for every current member: one message each, encrypted to that
    /// member and signed by the moderator `me`. A member whose certificate can no longer be
    /// encrypted to (expired, revoked) does not stop the others: it is reported in
    /// [`Distribution::undelivered`], so that after a removal every member that can get the
    /// new epoch gets it. An error is the moderator's own (its signing key unusable): then
    /// nobody gets anything.
    #[must_use = "the room keys must be sent to the members"]
    pub fn distribute(
        &self,
        me: &Identity,
        rng: &mut dyn Random,
        policy: &Policy,
        now: SystemTime,
    ) -> Result<Distribution> {
        // The moderator's key first: a failure there is not any member's.
        let _ = me.signer(policy, now)?;
        let mut out = Distribution {
            stanzas: Vec::with_capacity(self.members.len()),
            undelivered: Vec::new(),
        };
        for (jid, cert) in &self.members {
            match self.distribution(me, jid, cert, rng, policy, now) {
                Ok(s) => out.stanzas.push(s),
                Err(e) => out.undelivered.push((jid.clone(), e)),
            }
        }
        Ok(out)
    }

    /// The key distribution for one member.
    #[must_use = "the room key must be sent to the member"]
    pub fn distribute_to(
        &self,
        me: &Identity,
        member: &Jid,
        rng: &mut dyn Random,
        policy: &Policy,
        now: SystemTime,
    ) -> Result<Stanza> {
        let cert = self
            .members
            .get(member.bare())
            .ok_or_else(|| Error::State(format!("{} is not a member", member.bare())))?;
        self.distribution(me, member.bare(), cert, rng, policy, now)
    }

    fn distribution(
        &self,
        me: &Identity,
        member: &str,
        cert: &Cert,
        rng: &mut dyn Random,
        policy: &Policy,
        now: SystemTime,
    ) -> Result<Stanza> {
        let k = &self.current;
        let epoch = k.epoch.to_string();
        let (c, e) = (
            crate::time::format(k.created),
            crate::time::format(k.expires),
        );
        let sealed = canonical::seal_record(
            RECORD,
            &[
                self.room.bare().as_bytes(),
                epoch.as_bytes(),
                k.id.as_bytes(),
                member.as_bytes(),
                c.as_bytes(),
                e.as_bytes(),
                k.key.as_bytes(),
            ],
            &[cert],
            me,
            policy,
            now,
        )?;
        let mut s = Stanza::new(Kind::Message)
            .with_attr("to", member)
            .with_attr("id", &symmetric::random_id(rng, 8)?);
        s.element_mut().push(
            Element::new("room-key", ns::ROOM)
                .with_attr("room", self.room.bare())
                .with_attr("epoch", &epoch)
                .with_text(&sealed),
        );
        Ok(s)
    }
}

/// What [`Moderator::distribute`] made: the stanzas to send, and the members it could not
/// make one for, with why.
#[derive(Debug)]
#[non_exhaustive]
#[must_use = "the room keys must be sent, and the members left out dealt with"]
pub struct Distribution {
    /// One stanza per member reached (`to` names it).
    pub stanzas: Vec<Stanza>,
    /// The members (bare JIDs) left out, with the error for each: renew or replace their
    /// certificate ([`Moderator::add_member`] again), then [`Moderator::distribute_to`].
    pub undelivered: Vec<(String, Error)>,
}

/// The epoch after `epoch`, while below [`MAX_EPOCH`].
fn next_epoch(epoch: u64) -> Result<u64> {
    epoch
        .checked_add(1)
        .filter(|e| *e <= MAX_EPOCH)
        .ok_or_else(|| Error::State(format!("the room is at its last epoch ({MAX_EPOCH})")))
}

fn new_key(
    epoch: u64,
    lifetime: Duration,
    rng: &mut dyn Random,
    now: SystemTime,
) -> Result<RoomKey> {
    // Times are kept at the millisecond precision they are written with.
    let created = crate::time::parse(&crate::time::format(now))?;
    let expires = crate::time::parse(&crate::time::format(now + lifetime))?;
    Ok(RoomKey {
        epoch,
        id: symmetric::random_id(rng, 16)?,
        key: KeyBytes::random(rng)?,
        created,
        expires,
    })
}

/// A room message, opened.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[must_use = "the opened message names its sender"]
pub struct RoomMessage {
    /// Who wrote it (bare JID, from the signed envelope).
    pub sender: Jid,
    /// The key epoch it was sealed with.
    pub epoch: u64,
    /// The body.
    pub body: String,
}

/// A member's view of a room: the pinned moderator and the keys received.
///
/// Call these in this order:
///
/// 1. [`Member::new`] when joining, pinning the moderator's fingerprint (then
///    [`Member::set_seal_limit`] and [`Member::set_epoch_grace`] if the defaults do not
///    suit), and one [`ReplayWindow`] for the room; after a restart,
///    [`Member::restore_state`] with what [`Member::state`] last said, and the window
///    restored or resumed as [`ReplayWindow`] says (a new one would accept recent room
///    messages re-posted by any occupant).
/// 2. [`Member::accept_key`] for each key distribution received from the moderator; save
///    [`Member::state`] after each.
/// 3. To post: [`Member::seal`] (it signs the envelope too) and send the stanza to the room.
///    An [`Error::NeedKey`] means no key yet, or the key is used up or expired: ask the
///    moderator to rotate and go back to step 2.
/// 4. For each `groupchat` message the room reflects: [`Member::open`] with the room's
///    window.
/// 5. From time to time, [`Member::forget_expired`].
#[derive(Debug)]
pub struct Member {
    room: Jid,
    me: Jid,
    moderator: Fingerprint,
    keys: BTreeMap<u64, HeldKey>,
    /// The newest epoch ever accepted (or restored), also once its key is forgotten.
    newest: Option<u64>,
    seal_limit: u64,
    epoch_grace: Duration,
}

impl Member {
    /// Joins `room` as `me`, trusting room keys signed by the certificate `moderator` only.
    pub fn new(room: &Jid, me: &Jid, moderator: Fingerprint) -> Member {
        Member {
            room: room.to_bare(),
            me: me.to_bare(),
            moderator,
            keys: BTreeMap::new(),
            newest: None,
            seal_limit: DEFAULT_ROOM_SEAL_LIMIT,
            epoch_grace: DEFAULT_EPOCH_GRACE,
        }
    }

    /// Sets how many messages this member seals with one room key before [`Member::seal`]
    /// refuses (default [`DEFAULT_ROOM_SEAL_LIMIT`]).
    pub fn set_seal_limit(&mut self, n: u64) {
        self.seal_limit = n;
    }

    /// Sets how long after accepting a newer key messages of older epochs are still opened
    /// (default [`DEFAULT_EPOCH_GRACE`]; zero: refused as soon as a newer key is accepted).
    pub fn set_epoch_grace(&mut self, grace: Duration) {
        self.epoch_grace = grace;
    }

    /// The newest epoch this member has a key for.
    #[must_use]
    pub fn epoch(&self) -> Option<u64> {
        self.keys.keys().next_back().copied()
    }

    /// Accepts a key distribution (see the module docs); returns the new epoch.
    pub fn accept_key(
        &mut self,
        stanza: &Stanza,
        me: &Identity,
        certs: &dyn CertLookup,
        policy: &Policy,
        now: SystemTime,
    ) -> Result<u64> {
        let el = stanza
            .element()
            .required_child("room-key", ns::ROOM, "room key")?;
        let from = sender(stanza)?;
        let moderator: Vec<Cert> = certs
            .by_jid(from.bare())
            .into_iter()
            .filter(|c| c.fingerprint() == self.moderator)
            .collect();
        if moderator.is_empty() {
            return Err(Error::Binding(Mismatch::NotModerator {
                from: from.bare().to_owned(),
            }));
        }
        let record =
            canonical::Record::open(&el.text(), "a room key", me, &moderator, policy, now)?;
        if record.signer.signer != self.moderator {
            return Err(Error::Binding(Mismatch::NotModerator {
                from: from.bare().to_owned(),
            }));
        }
        let f = record.fields(RECORD, 7)?;
        let t = |i: usize| canonical::text(RECORD, f[i]);
        let (room, epoch_s, id, member, c, e) = (t(0)?, t(1)?, t(2)?, t(3)?, t(4)?, t(5)?);
        if room != self.room.bare() || el.attr("room") != Some(room) {
            return Err(Error::Binding(Mismatch::Room {
                expected: self.room.bare().to_owned(),
                got: room.to_owned(),
            }));
        }
        if member != self.me.bare() {
            return Err(Error::Binding(Mismatch::Member {
                expected: self.me.bare().to_owned(),
                got: member.to_owned(),
            }));
        }
        let epoch: u64 = epoch_s
            .parse()
            .map_err(|_| Error::OpenPgp("bad epoch in the room key record".into()))?;
        if el.attr("epoch") != Some(epoch_s) {
            return Err(Error::Binding(Mismatch::Attribute("epoch")));
        }
        if let Some(current) = self.newest
            && epoch <= current
        {
            return Err(Error::Replay(Freshness::EpochNotNewer { epoch, current }));
        }
        let step_ok = self
            .newest
            .is_none_or(|current| epoch - current <= MAX_EPOCH_STEP);
        if epoch > MAX_EPOCH || !step_ok {
            return Err(Error::OpenPgp(format!(
                "epoch {epoch} is beyond {MAX_EPOCH} or more than {MAX_EPOCH_STEP} past the newest held"
            )));
        }
        let (created, expires) = (crate::time::parse(c)?, crate::time::parse(e)?);
        let lifetime_ok = expires
            .duration_since(created)
            .is_ok_and(|life| !life.is_zero() && life <= MAX_ROOM_KEY_LIFETIME);
        if !lifetime_ok || created > now + crate::time::CLOCK_SKEW {
            return Err(Error::Replay(Freshness::RoomKeyLifetime {
                epoch,
                max: MAX_ROOM_KEY_LIFETIME,
            }));
        }
        if expires <= now {
            return Err(Error::Replay(Freshness::KeyExpired {
                key: epoch.to_string(),
            }));
        }
        self.keys.insert(
            epoch,
            HeldKey {
                room_key: RoomKey {
                    epoch,
                    id: id.to_owned(),
                    key: KeyBytes::from_slice(f[6])?,
                    created,
                    expires,
                },
                accepted: now,
                sealed: 0,
            },
        );
        self.newest = Some(epoch);
        Ok(epoch)
    }

    /// What must survive a restart to refuse replayed distributions (XEP-0027 review F5): the
    /// newest epoch accepted, as `epoch <n>` (empty before any). Save it after every
    /// [`Member::accept_key`] and give it to [`Member::restore_state`] at start: a member
    /// without it accepts any unexpired distribution of the room, an old one (with a key that
    /// members removed since still hold) included, for at most [`MAX_ROOM_KEY_LIFETIME`].
    #[must_use = "save it, to refuse replayed room keys after a restart"]
    pub fn state(&self) -> String {
        self.newest
            .map(|e| format!("epoch {e}\n"))
            .unwrap_or_default()
    }

    /// Restores what [`Member::state`] saved (the later epoch wins). A malformed state is
    /// refused whole, nothing restored.
    pub fn restore_state(&mut self, state: &str) -> Result<()> {
        let state = state.trim();
        if state.is_empty() {
            return Ok(());
        }
        let epoch = state
            .strip_prefix("epoch ")
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|n| *n <= MAX_EPOCH)
            .ok_or_else(|| Error::State(format!("bad room member state {state:?}")))?;
        self.newest = Some(self.newest.map_or(epoch, |n| n.max(epoch)));
        Ok(())
    }

    /// Drops keys expired at `now` (their messages can no longer be opened, nor sealed); the
    /// newest epoch stays known, so an older one is still refused.
    pub fn forget_expired(&mut self, now: SystemTime) {
        self.keys.retain(|_, k| k.room_key.expires > now);
    }

    fn aad(room: &str, epoch: &str, key_id: &str, sender: &str, id: &str, stamp: &str) -> Vec<u8> {
        canonical::encode(
            AAD,
            &[
                room.as_bytes(),
                epoch.as_bytes(),
                key_id.as_bytes(),
                sender.as_bytes(),
                id.as_bytes(),
                stamp.as_bytes(),
            ],
        )
    }

    /// Seals a `groupchat` message to the room with the newest key and signs its envelope as
    /// `me`. The stanza needs an `id`; `to` and `type` are set to the room and `groupchat`.
    /// A message with a `jabber:x:signed` signature or an XHTML-IM body is refused
    /// ([`Error::State`]): either would leave the plaintext readable, or checkable, by every
    /// occupant next to the sealed body (review session 26, X3).
    pub fn seal(
        &mut self,
        stanza: &mut Stanza,
        me: &Identity,
        rng: &mut dyn Random,
        policy: &Policy,
        now: SystemTime,
    ) -> Result<()> {
        crate::encrypted::refuse_plaintext_copies(stanza)?;
        let limit = self.seal_limit;
        let room = self.room.bare().to_owned();
        let (_, held) = self
            .keys
            .iter_mut()
            .next_back()
            .ok_or(Error::NeedKey(NeedKey::NoRoomKey))?;
        if held.sealed >= limit {
            return Err(Error::NeedKey(NeedKey::RoomSealLimit {
                epoch: held.room_key.epoch,
                limit,
            }));
        }
        if held.room_key.expires <= now {
            return Err(Error::NeedKey(NeedKey::RoomKeyExpired {
                epoch: held.room_key.epoch,
            }));
        }
        let id = stanza.required_id()?.to_owned();
        let body = stanza
            .only_body()?
            .ok_or_else(|| Error::Stanza("no <body/> to seal".into()))?;
        let stamp = crate::time::format(now);
        let epoch = held.room_key.epoch.to_string();
        let aad = Member::aad(
            &room,
            &epoch,
            &held.room_key.id,
            me.jid().bare(),
            &id,
            &stamp,
        );
        let sealed = symmetric::seal(&held.room_key.key, &aad, body.as_bytes(), rng)?;
        // Built on a copy: the stanza changes only when the envelope is signed too.
        let mut out = stanza.clone();
        let el = out.element_mut();
        el.set_attr("to", &room);
        el.set_attr("type", "groupchat");
        el.remove_children("sealed", ns::ROOM);
        el.push(
            Element::new("sealed", ns::ROOM)
                .with_attr("room", &room)
                .with_attr("epoch", &epoch)
                .with_attr("stamp", &stamp)
                .with_text(&sealed),
        );
        out.set_body(FALLBACK_BODY);
        envelope::seal(&mut out, me, policy, now)?;
        held.sealed += 1;
        *stanza = out;
        Ok(())
    }

    /// Opens a room message as the MUC reflects it: `type='groupchat'` ([`Error::Stanza`]
    /// otherwise) and `from` the room (bare JID; [`Mismatch::Room`] otherwise), so a member
    /// cannot pass a message sent to one member alone off as said to the room. Then checks
    /// the sender's envelope (signature, the room as its recipient, stamp, replay) and
    /// decrypts with the epoch's key.
    pub fn open(
        &self,
        stanza: &Stanza,
        certs: &dyn CertLookup,
        policy: &Policy,
        window: &mut ReplayWindow,
        now: SystemTime,
    ) -> Result<RoomMessage> {
        // Through the room only: a member could otherwise address a "room message" to one
        // member alone, under its own envelope to that member.
        if stanza.stanza_type() != Some("groupchat") {
            return Err(Error::Stanza(
                "a room message must be of type 'groupchat' (sent through the room)".into(),
            ));
        }
        let from = sender(stanza)?;
        if from.bare() != self.room.bare() {
            return Err(Error::Binding(Mismatch::Room {
                expected: self.room.bare().to_owned(),
                got: from.bare().to_owned(),
            }));
        }
        let el = stanza
            .element()
            .required_child("sealed", ns::ROOM, "sealed room payload")?;
        if el.attr("room") != Some(self.room.bare()) {
            return Err(Error::Binding(Mismatch::Room {
                expected: self.room.bare().to_owned(),
                got: el.attr("room").unwrap_or_default().to_owned(),
            }));
        }
        let epoch_s = el
            .attr("epoch")
            .ok_or_else(|| Error::Stanza("sealed without 'epoch'".into()))?;
        let stamp_s = el
            .attr("stamp")
            .ok_or_else(|| Error::Stanza("sealed without 'stamp'".into()))?;
        let epoch: u64 = epoch_s
            .parse()
            .map_err(|_| Error::Stanza("bad epoch".into()))?;
        let k = self
            .keys
            .get(&epoch)
            .map(|h| &h.room_key)
            .ok_or(Error::NeedKey(NeedKey::UnknownEpoch { epoch }))?;
        if let Some((newer, next)) = self
            .keys
            .range((std::ops::Bound::Excluded(epoch), std::ops::Bound::Unbounded))
            .next()
            && now
                .duration_since(next.accepted)
                .is_ok_and(|d| d > self.epoch_grace)
        {
            return Err(Error::Replay(Freshness::EpochSuperseded {
                epoch,
                newer: *newer,
            }));
        }
        let stamp = crate::time::parse(stamp_s)?;
        if k.expires <= stamp {
            return Err(Error::Replay(Freshness::KeyExpired {
                key: epoch.to_string(),
            }));
        }
        // The window is only changed once the message also decrypts.
        let checked = envelope::verify(stanza, certs, policy, window, now)?;
        if checked.stamp != stamp {
            return Err(Error::Binding(Mismatch::Attribute("stamp")));
        }
        let id = stanza.id().unwrap_or_default();
        let aad = Member::aad(
            self.room.bare(),
            epoch_s,
            &k.id,
            checked.sender.bare(),
            id,
            stamp_s,
        );
        let pt = symmetric::open(&k.key, &aad, &el.text())?;
        let body = String::from_utf8(pt).map_err(|_| Error::Decrypt)?;
        window.accept(checked.sender.bare(), id, stamp, now)?;
        Ok(RoomMessage {
            sender: checked.sender,
            epoch,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::keys::{Identity, Keyring, Suite};
    use crate::symmetric::OsRandom;
    use std::time::UNIX_EPOCH;

    /// A moderator and bob, both pinned in one keyring, a room, at a fixed time.
    struct Fixture {
        t: SystemTime,
        moderator: Identity,
        bob: Identity,
        ring: Keyring,
        policy: Policy,
        room: Jid,
    }

    impl Fixture {
        fn new() -> Fixture {
            let t = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
            let ident = |n: &str| {
                Identity::generate(
                    &Jid::new(&format!("{n}@example.org")).unwrap(),
                    Suite::Cv25519,
                    t - Duration::from_secs(86_400),
                    None,
                )
                .unwrap()
            };
            let (moderator, bob) = (ident("mod"), ident("bob"));
            let mut ring = Keyring::new();
            ring.insert_pinned(moderator.jid(), moderator.public_cert());
            ring.insert_pinned(bob.jid(), bob.public_cert());
            Fixture {
                t,
                moderator,
                bob,
                ring,
                policy: Policy::standard(),
                room: Jid::new("room@conference.example.org").unwrap(),
            }
        }
    }

    /// XEP-0027 review F5: a key record for epoch `u64::MAX` (a buggy moderator, or a stolen
    /// key) was accepted, after which every genuine distribution was "not newer" and opening a
    /// message of that epoch computed `epoch + 1` (a panic with overflow checks); a moderator's
    /// rotation there overflowed too.
    #[test]
    fn an_epoch_nobody_could_follow_is_refused_and_nothing_overflows() {
        let Fixture {
            t,
            moderator,
            bob,
            ring,
            policy,
            room,
        } = Fixture::new();
        let mut m = Moderator::new(&room, Duration::from_secs(3600), &mut OsRandom, t).unwrap();
        m.add_member(bob.jid(), bob.public_cert(), &policy, t)
            .unwrap();
        let mut member = Member::new(&room, bob.jid(), moderator.fingerprint());
        let to_bob = |m: &Moderator| {
            m.distribute_to(&moderator, bob.jid(), &mut OsRandom, &policy, t)
                .unwrap()
                .with_attr("from", "mod@example.org/r")
        };
        assert_eq!(
            member
                .accept_key(&to_bob(&m), &bob, &ring, &policy, t)
                .unwrap(),
            1
        );
        for epoch in [u64::MAX, MAX_EPOCH + 1, 1 + MAX_EPOCH_STEP + 1] {
            m.current.epoch = epoch;
            assert!(
                member
                    .accept_key(&to_bob(&m), &bob, &ring, &policy, t)
                    .is_err(),
                "{epoch}"
            );
        }
        assert_eq!(member.epoch(), Some(1));
        // A step within bounds is taken.
        m.current.epoch = 1 + MAX_EPOCH_STEP;
        assert!(
            member
                .accept_key(&to_bob(&m), &bob, &ring, &policy, t)
                .is_ok()
        );
        // The moderator's own rotation at the end is an error, not an overflow.
        m.current.epoch = u64::MAX;
        assert!(m.rotate(&mut OsRandom, t).is_err());
        assert!(m.remove_member(bob.jid(), &mut OsRandom, t).is_err());
        assert_eq!(m.current.epoch, u64::MAX, "nothing changed");
    }

    /// XEP-0027 review F5, the rest: room keys had no lifetime bound (an old distribution
    /// stayed replayable for as long as the moderator said) nor a check of their creation
    /// time, members kept every key for ever, and a restarted member had no state to refuse
    /// an older epoch with.
    #[test]
    fn room_keys_live_a_bounded_time_and_members_keep_their_epoch() {
        let Fixture {
            t,
            moderator,
            bob,
            ring,
            policy,
            room,
        } = Fixture::new();
        assert!(
            Moderator::new(
                &room,
                MAX_ROOM_KEY_LIFETIME + Duration::from_secs(1),
                &mut OsRandom,
                t
            )
            .is_err()
        );
        let mut m = Moderator::new(&room, Duration::from_secs(3600), &mut OsRandom, t).unwrap();
        m.add_member(bob.jid(), bob.public_cert(), &policy, t)
            .unwrap();
        let to_bob = |m: &Moderator| {
            m.distribute_to(&moderator, bob.jid(), &mut OsRandom, &policy, t)
                .unwrap()
                .with_attr("from", "mod@example.org/r")
        };
        let mut member = Member::new(&room, bob.jid(), moderator.fingerprint());
        // A record that would live 30 days (a moderator built around the check), and one
        // created an hour ahead: refused.
        m.current = new_key(1, Duration::from_secs(30 * 86_400), &mut OsRandom, t).unwrap();
        assert!(matches!(
            member.accept_key(&to_bob(&m), &bob, &ring, &policy, t),
            Err(Error::Replay(Freshness::RoomKeyLifetime { .. }))
        ));
        m.current = new_key(
            1,
            Duration::from_secs(3600),
            &mut OsRandom,
            t + Duration::from_secs(3600),
        )
        .unwrap();
        assert!(matches!(
            member.accept_key(&to_bob(&m), &bob, &ring, &policy, t),
            Err(Error::Replay(Freshness::RoomKeyLifetime { .. }))
        ));
        // Epoch 1, then 2; the state says 2.
        m.current = new_key(1, Duration::from_secs(3600), &mut OsRandom, t).unwrap();
        let d1 = to_bob(&m);
        assert_eq!(member.accept_key(&d1, &bob, &ring, &policy, t).unwrap(), 1);
        m.rotate(&mut OsRandom, t).unwrap();
        assert_eq!(
            member
                .accept_key(&to_bob(&m), &bob, &ring, &policy, t)
                .unwrap(),
            2
        );
        let state = member.state();
        assert_eq!(state, "epoch 2\n");
        // Restarted with the state: the old distribution is refused.
        let mut restarted = Member::new(&room, bob.jid(), moderator.fingerprint());
        restarted.restore_state(&state).unwrap();
        assert!(matches!(
            restarted.accept_key(&d1, &bob, &ring, &policy, t),
            Err(Error::Replay(Freshness::EpochNotNewer { .. }))
        ));
        assert!(restarted.restore_state("epoch two").is_err());
        assert!(restarted.restore_state("").is_ok());
        // Expired keys are forgotten; the epoch is not.
        member.forget_expired(t + Duration::from_secs(3601));
        assert_eq!(member.epoch(), None);
        assert_eq!(member.state(), "epoch 2\n");
        assert!(member.accept_key(&d1, &bob, &ring, &policy, t).is_err());
    }

    /// Review of the eighth round, R1: members keep their newest epoch across restarts, the
    /// moderator could only start again at epoch 1, refused by every member that kept its
    /// state. It resumes after the epoch it saved.
    #[test]
    fn a_restarted_moderator_resumes_after_its_saved_epoch() {
        let Fixture {
            t,
            moderator,
            bob,
            ring,
            policy,
            room,
        } = Fixture::new();
        let hour = Duration::from_secs(3600);
        let mut m = Moderator::new(&room, hour, &mut OsRandom, t).unwrap();
        m.add_member(bob.jid(), bob.public_cert(), &policy, t)
            .unwrap();
        m.rotate(&mut OsRandom, t).unwrap();
        m.rotate(&mut OsRandom, t).unwrap();
        let saved = m.epoch();
        assert_eq!(saved, 3);
        let mut member = Member::new(&room, bob.jid(), moderator.fingerprint());
        let d = m
            .distribute_to(&moderator, bob.jid(), &mut OsRandom, &policy, t)
            .unwrap()
            .with_attr("from", "mod@example.org/r");
        assert_eq!(member.accept_key(&d, &bob, &ring, &policy, t).unwrap(), 3);
        let mut restarted = Member::new(&room, bob.jid(), moderator.fingerprint());
        restarted.restore_state(&member.state()).unwrap();
        // A moderator started anew: refused.
        let mut fresh = Moderator::new(&room, hour, &mut OsRandom, t).unwrap();
        fresh
            .add_member(bob.jid(), bob.public_cert(), &policy, t)
            .unwrap();
        let d = fresh
            .distribute_to(&moderator, bob.jid(), &mut OsRandom, &policy, t)
            .unwrap()
            .with_attr("from", "mod@example.org/r");
        assert!(matches!(
            restarted.accept_key(&d, &bob, &ring, &policy, t),
            Err(Error::Replay(Freshness::EpochNotNewer { .. }))
        ));
        // Resumed after the saved epoch: accepted.
        let mut resumed = Moderator::resume(&room, hour, saved, &mut OsRandom, t).unwrap();
        assert_eq!(resumed.epoch(), 4);
        resumed
            .add_member(bob.jid(), bob.public_cert(), &policy, t)
            .unwrap();
        let d = resumed
            .distribute_to(&moderator, bob.jid(), &mut OsRandom, &policy, t)
            .unwrap()
            .with_attr("from", "mod@example.org/r");
        assert_eq!(
            restarted.accept_key(&d, &bob, &ring, &policy, t).unwrap(),
            4
        );
        assert!(Moderator::resume(&room, hour, MAX_EPOCH, &mut OsRandom, t).is_err());
        assert!(Moderator::resume(&room, Duration::ZERO, 1, &mut OsRandom, t).is_err());
    }
}
