//! The metadata-integration trigger (MDI request, draft-poehn-dame-06 §4) and the rollback
//! trigger, authenticated as the draft leaves open and this crate defines:
//!
//! ```text
//! GET <MetadataSyncLocation>?action=fetchmetadata&entityID=<peer>&to=<addressee>
//!     &issueInstant=<xs:dateTime, UTC>&nonce=<32 hex digits>&SigAlg=<URI>&Signature=<base64>
//! ```
//! `action` is `fetchmetadata` (`fetchmeta`, the name of drafts -00/-01, is accepted when
//! receiving) or `rollback`. The broker signs the octets of the query up to `&Signature=` with
//! its metadata signing key, as the HTTP-Redirect binding signs (RSA-SHA256 or ECDSA-SHA256, no
//! SHA-1). The receiving entity pins the broker's keys from its configuration, refuses a
//! trigger that is unsigned, badly signed, for another entity (`to`), older than 5 minutes or
//! more than 60 s in the future, or whose nonce it has already accepted, and then fetches the
//! peer's metadata from its configured broker only: no URL is ever taken from a trigger.

use std::time::{Duration, SystemTime};

use saml_core::dsig::{SigningKey, TrustedKeys};
use saml_core::time::{format_datetime, parse_datetime};

use crate::error::{Error, Refusal};
use crate::query::{Query, append};
use crate::signed::{
    self, DEFAULT_CLOCK_SKEW, DEFAULT_MAX_AGE, NonceCache, check_time, is_nonce, new_nonce,
};

/// What a trigger asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TriggerAction {
    /// Fetch the peer's metadata from the broker and integrate it.
    FetchMetadata,
    /// Remove what was integrated for the peer (the exchange failed elsewhere).
    Rollback,
}

impl TriggerAction {
    /// The `action` value sent.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerAction::FetchMetadata => "fetchmetadata",
            TriggerAction::Rollback => "rollback",
        }
    }

    fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "fetchmetadata" | "fetchmeta" => Ok(TriggerAction::FetchMetadata),
            "rollback" => Ok(TriggerAction::Rollback),
            other => Err(Error::malformed(
                "trigger",
                format!("unknown action {other:?}"),
            )),
        }
    }
}

/// A trigger, as the broker makes it and as the entity accepts it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Trigger {
    /// What to do.
    pub action: TriggerAction,
    /// The peer whose metadata is meant (`entityID`).
    pub peer: String,
    /// The entity the trigger is for (`to`).
    pub to: String,
    /// When the broker issued it.
    pub issue_instant: SystemTime,
    /// Its nonce.
    pub nonce: String,
}

const NAMES: [&str; 5] = ["action", "entityID", "to", "issueInstant", "nonce"];

impl Trigger {
    /// A new trigger issued at `now` with a nonce from `rng`.
    pub fn new(
        action: TriggerAction,
        peer: &str,
        to: &str,
        now: SystemTime,
        rng: &mut dyn FnMut(&mut [u8]),
    ) -> Self {
        Trigger {
            action,
            peer: peer.to_owned(),
            to: to.to_owned(),
            issue_instant: now,
            nonce: new_nonce(rng),
        }
    }

    /// The signed query string (without `?`).
    pub fn sign(&self, broker_key: &SigningKey) -> Result<String, Error> {
        let instant = format_datetime(self.issue_instant);
        signed::sign(
            &[
                ("action", self.action.as_str()),
                ("entityID", &self.peer),
                ("to", &self.to),
                ("issueInstant", &instant),
                ("nonce", &self.nonce),
            ],
            broker_key,
        )
    }

    /// The URL to GET: the entity's `MetadataSyncLocation` with the signed query.
    pub fn url(&self, sync_location: &str, broker_key: &SigningKey) -> Result<String, Error> {
        Ok(append(sync_location, &self.sign(broker_key)?))
    }
}

/// The entity side: accepts triggers from its broker only.
///
/// Call order: make one per entity with [`TriggerVerifier::new`] (the broker's pinned keys and
/// this entity's entityID), then for each request to the `MetadataSyncLocation` call
/// [`accept`](Self::accept) with the raw query string and the time; on `Ok` fetch the peer from
/// the configured broker, integrate, and answer with an [`crate::mdi::MdiResponse`]. A refused
/// trigger changes nothing.
#[derive(Debug, Clone)]
pub struct TriggerVerifier {
    broker_keys: TrustedKeys,
    me: String,
    /// How old a trigger may be (default 5 minutes).
    pub max_age: Duration,
    /// Clock skew allowed (default 60 s).
    pub clock_skew: Duration,
    nonces: NonceCache,
}

impl TriggerVerifier {
    /// A verifier for entity `me` trusting `broker_keys` (from configuration, never from the
    /// trigger); it remembers up to 10,000 live nonces.
    #[must_use]
    pub fn new(broker_keys: TrustedKeys, me: &str) -> Self {
        TriggerVerifier {
            broker_keys,
            me: me.to_owned(),
            max_age: DEFAULT_MAX_AGE,
            clock_skew: DEFAULT_CLOCK_SKEW,
            nonces: NonceCache::new(10_000),
        }
    }

    /// Checks the trigger in `query` at `now`: signature by the broker, addressed to this
    /// entity, fresh, nonce not seen. Only an accepted trigger's nonce is remembered.
    pub fn accept(&mut self, query: &str, now: SystemTime) -> Result<Trigger, Error> {
        self.accept_with(query, now, |_| Ok(()))
    }

    /// [`TriggerVerifier::accept`], with `admit` asked last, once everything else was checked:
    /// its refusal (the receiver's capacity for this action) is returned and the nonce is not
    /// remembered, so the broker may send the trigger again.
    pub fn accept_with(
        &mut self,
        query: &str,
        now: SystemTime,
        admit: impl FnOnce(&Trigger) -> Result<(), Error>,
    ) -> Result<Trigger, Error> {
        // An unsigned trigger of an older broker is refused as such, whatever else it holds.
        let q = Query::parse("trigger", query)?;
        if q.raw("Signature").is_none() {
            let _ = TriggerAction::parse(&q.required("trigger", "action")?)?;
            return Err(Refusal::Unsigned.into());
        }
        let v = signed::verify("trigger", query, &NAMES, &self.broker_keys)?;
        let [action, peer, to, instant, nonce] = <[String; 5]>::try_from(v)
            .map_err(|_| Error::malformed("trigger", "wrong parameter count"))?;
        let action = TriggerAction::parse(&action)?;
        if peer.is_empty() || to.is_empty() {
            return Err(Error::malformed(
                "trigger",
                "entityID and to must not be empty",
            ));
        }
        let issue_instant = parse_datetime(&instant).ok_or_else(|| {
            Error::malformed(
                "trigger",
                format!("issueInstant {instant:?} is not xs:dateTime"),
            )
        })?;
        if !is_nonce(&nonce) {
            return Err(Error::malformed(
                "trigger",
                "nonce must be 32 lowercase hex digits",
            ));
        }
        if to != self.me {
            return Err(Refusal::NotForUs.into());
        }
        check_time(issue_instant, now, self.max_age, self.clock_skew)?;
        self.nonces.check(&nonce, now)?;
        let t = Trigger {
            action,
            peer,
            to,
            issue_instant,
            nonce,
        };
        admit(&t)?;
        let until = self.nonce_until(&t);
        self.nonces.remember(&t.nonce, until);
        Ok(t)
    }

    /// Until when the accepted trigger `t`'s nonce is remembered: past then its time check
    /// refuses it anyway.
    #[must_use]
    pub fn nonce_until(&self, t: &Trigger) -> SystemTime {
        t.issue_instant
            .checked_add(
                self.max_age
                    .saturating_add(self.clock_skew.saturating_mul(2)),
            )
            .unwrap_or(t.issue_instant)
    }

    /// The nonces of accepted triggers still remembered at `now`, with until when: what an
    /// entity keeps across a restart (agent review L2), to give back with
    /// [`TriggerVerifier::restore_nonce`].
    #[must_use]
    pub fn live_nonces(&self, now: SystemTime) -> Vec<(String, SystemTime)> {
        self.nonces
            .live(now)
            .map(|(n, until)| (n.to_owned(), until))
            .collect()
    }

    /// Remembers a nonce accepted before a restart until `until`; whether it was taken (a
    /// malformed nonce, one expired at `now`, or one beyond the cache's room is not; the
    /// room is the capacity, so a full cache refuses new triggers as it would have).
    pub fn restore_nonce(&mut self, nonce: &str, until: SystemTime, now: SystemTime) -> bool {
        if !is_nonce(nonce) || until <= now || self.nonces.check(nonce, now).is_err() {
            return false;
        }
        self.nonces.remember(nonce, until);
        true
    }
}
