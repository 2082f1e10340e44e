//! The provider extension (beside an IdP or an SP) as a sans-IO state machine: authenticate a
//! trigger, fetch the peer's metadata from the broker with mdq-client's core, check it, integrate
//! it, answer (draft-poehn-dame-06 §4, MDI request and response).
//!
//! ```text
//!  handle_trigger(query, source, now)
//!     ├─ refused (unsigned, forged, stale, replayed, not for us, about ourselves, rate,
//!     │           capacity for a fetch)                   ─► Err: answer with
//!     │                                                       Agent::answer_for(err)
//!     ├─ rollback ─► remove <sha1>.xml + .loc (only if DAME wrote them), forget the cached
//!     │              copy, cancel a fetch of the peer in flight ─► Answer(integrated)
//!     └─ fetchmetadata ─► Fetch(req): GET req.url from the configured broker (never a URL
//!                         from the trigger), then
//!           handle_fetched(token, response, now) / handle_fetch_failure(token, error, now)
//!              ├─ answered in time ─► Answer(MdiResponse): integrated / refused / error
//!              └─ after defer(token) answered accepted-pending ─► Report(url): the signed
//!                                                                status report to GET
//! ```
//! What is integrated was signed by the broker's pinned key (mdq-client verifies the signature,
//! validity and that the document is the entity asked for), has the peer role this side
//! accepts (an SP's agent integrates IdPs, an IdP's agent SPs), and goes to the
//! [`IntegrationTarget`] with the URL it came from. Nothing from a refused trigger is kept.
//!
//! Second agent review: only what the broker answered for this fetch is integrated (a fresh
//! verified 200 or a 304 revalidating the cached copy, never a cached copy on an error or a 404,
//! M3), and only the peer's own EntityDescriptor (L4); a rollback accepted while the peer is
//! being fetched cancels that fetch unless a newer fetch trigger joined it (M1); the broker's
//! verified triggers are not rate limited and rollbacks need no fetch slot (M2); an operator's
//! `<sha1>.xml` without DAME's `.xml.loc` is never replaced or removed (M4).
//!
//! Conversion review M6: what the broker publishes carries a `validUntil` (7 days after it
//! signed), and a pair, once established, is not triggered again. So the agent re-fetches each
//! integrated peer on its own before its copy expires: [`Agent::refresh_due`], called on a
//! timer, asks for a `{sha1}` fetch of every peer whose integrated document has passed half of
//! the validity it had left when it was integrated (never sooner than [`Agent::refresh_retry`]
//! after the last attempt). The broker re-signs its documents at half their validity
//! (`Registry::refresh_documents`), so the fetch brings a document valid for longer.
//!
//! The IdP side also compares an SP's `RequestedAttribute`s with what it can release
//! ([`missing_attributes`]) to ask the broker for conversion rules.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use mdq_client::client::{FetchRequest, Token, Verified, Verifier};
use mdq_client::response::HttpResponse;
use mdq_client::{BaseUrl, Client, Config, FetchNow, Identifier};
use saml_core::dsig::{SigningKey, TrustedKeys};
use saml_metadata::model::{EntityDescriptor, Metadata, RequestedAttribute, sha1_hex};

use crate::error::{Error, ErrorKind, Refusal};
use crate::integration::{IntegrationTarget, root_is_entity};
use crate::mdi::{MAX_REASON_LEN, MdiResponse, MdiStatus, StatusReport};
use crate::policy::RateLimiter;
use crate::trigger::{TriggerAction, TriggerVerifier};

/// Most fetches an agent runs at once (more triggers are refused, [`Refusal::Capacity`]).
pub const MAX_PENDING: usize = 64;

/// Default of [`Agent::refresh_retry`]: an integrated peer is re-fetched by
/// [`Agent::refresh_due`] at most this often (a failed or joined refresh is tried again after
/// it).
pub const REFRESH_RETRY: Duration = Duration::from_secs(10 * 60);

/// When an integrated document without a `validUntil` is re-fetched by [`Agent::refresh_due`]
/// (the broker always writes one; this is for a document that somehow lacks it).
pub const REFRESH_WITHOUT_EXPIRY: Duration = Duration::from_secs(86_400);

/// Which provider the agent stands beside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// An IdP: it integrates SPs.
    Idp,
    /// An SP: it integrates IdPs.
    Sp,
}

/// What to do with a trigger that was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum TriggerStep {
    /// Answer the trigger with this now.
    Answer(MdiResponse),
    /// Perform this GET (the broker's MDQ service) and hand the result to
    /// [`Agent::handle_fetched`] or [`Agent::handle_fetch_failure`]. If the trigger must be
    /// answered before that, answer it with [`Agent::defer`].
    Fetch(FetchRequest),
}

/// What to do once a fetch finished.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum FetchOutcome {
    /// Answer the (still open) trigger with this.
    Answer(MdiResponse),
    /// The trigger was answered `accepted-pending`: GET this signed status report URL at the
    /// broker.
    Report(String),
}

#[derive(Debug, Clone)]
struct Pending {
    /// The peer's entityID (from the trigger), or `None` for a restart or refresh fetch by
    /// `{sha1}`.
    peer: Option<String>,
    id: Identifier,
    deferred: bool,
    /// The newest issue instant of the fetch triggers attached (the first and every joined
    /// one); `None` for a restart fetch.
    issued: Option<SystemTime>,
    /// The newest issue instant of a rollback for the peer accepted while this fetch ran
    /// (agent review M1): the fetch integrates only if a trigger newer than it is attached.
    rolled_back_at: Option<SystemTime>,
}

impl Pending {
    /// Whether a rollback accepted during the fetch cancels it: no attached fetch trigger was
    /// issued after it.
    fn rolled_back(&self) -> bool {
        match (self.rolled_back_at, self.issued) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(r), Some(i)) => i <= r,
        }
    }
}

/// The agent. See the [module docs](self).
pub struct Agent<T: IntegrationTarget> {
    me: String,
    side: Side,
    key: SigningKey,
    broker_endpoint: String,
    verifier: TriggerVerifier,
    mdq: Client,
    target: T,
    pending: HashMap<Token, Pending>,
    /// Triggers for a peer already being fetched: answered `accepted-pending`, reported on
    /// when that fetch ends.
    joined: HashMap<Token, usize>,
    reports: VecDeque<String>,
    by_source: RateLimiter,
    /// Nonces of triggers accepted, for the caller to keep ([`Agent::poll_accepted_nonce`]).
    accepted_nonces: VecDeque<(String, SystemTime)>,
    /// Peers rolled back, for the caller to clear up after ([`Agent::poll_rolled_back`]).
    rolled_back: VecDeque<String>,
    /// The issue instant of the latest trigger accepted about each peer (by the SHA-1 key of
    /// its entityID), while a trigger older than it could still pass the time check.
    latest: HashMap<String, SystemTime>,
    /// When each integrated peer (by file stem, the SHA-1 of its entityID) is next due for
    /// [`Agent::refresh_due`]; a stem integrated but not here is due at once (review M6).
    refresh: HashMap<String, SystemTime>,
    refresh_retry: Duration,
}

/// Most accepted trigger nonces an [`Agent`] queues for [`Agent::poll_accepted_nonce`] (the
/// oldest gives way).
const MAX_QUEUED_NONCES: usize = 10_000;

impl<T: IntegrationTarget> std::fmt::Debug for Agent<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("me", &self.me)
            .field("side", &self.side)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl<T: IntegrationTarget> Agent<T> {
    /// An agent for entity `me` on `side`, trusting the broker's `broker_keys` (configuration,
    /// never a trigger), fetching from the broker's MDQ service at `broker_mdq`, reporting to
    /// `broker_endpoint` (the broker's DAME URL) signed with the entity's `key`, integrating
    /// into `target`.
    pub fn new(
        me: &str,
        side: Side,
        broker_keys: TrustedKeys,
        broker_mdq: &str,
        broker_endpoint: &str,
        key: SigningKey,
        target: T,
    ) -> Result<Self, Error> {
        let mut cfg = Config::new(BaseUrl::parse(broker_mdq)?, broker_keys.clone());
        // A failed fetch must not integrate an older copy (fetches are completed with
        // `handle_response_fresh`, which never falls back; this keeps the cache from serving
        // one anyway).
        cfg.max_stale = Duration::ZERO;
        cfg.max_entries = 1_000;
        // The broker signs every document with a validUntil (required, as by default), for
        // as long as its operator configured, up to a year (dame-broker's
        // `document_validity_hours`, 2 to 8760): longer than mdq-client's default bound.
        cfg.max_validity = Some(Duration::from_secs(366 * 86_400));
        // What the broker answers now is what the agent integrates, even when it is valid for
        // less than the copy held (an operator who shortened `document_validity_hours`, an
        // older entity re-imported): the broker is reached over an authenticated channel, its
        // triggers are signed and ordered, and a fetch started before a rollback is refused
        // already. With the client's version order, such an update was reported integrated
        // while the old copy stayed (review of the twelfth round, F4).
        cfg.version_order = false;
        Ok(Agent {
            me: me.to_owned(),
            side,
            key,
            broker_endpoint: broker_endpoint.to_owned(),
            verifier: TriggerVerifier::new(broker_keys, me),
            mdq: Client::new(cfg),
            target,
            pending: HashMap::new(),
            joined: HashMap::new(),
            reports: VecDeque::new(),
            by_source: RateLimiter::new(10.0, 50, 10_000),
            accepted_nonces: VecDeque::new(),
            rolled_back: VecDeque::new(),
            latest: HashMap::new(),
            refresh: HashMap::new(),
            refresh_retry: REFRESH_RETRY,
        })
    }

    /// The agent re-fetching an integrated peer at most once per `every` (default
    /// [`REFRESH_RETRY`]; see [`Agent::refresh_due`]).
    #[must_use]
    pub fn with_refresh_retry(mut self, every: Duration) -> Self {
        self.refresh_retry = every;
        self
    }

    /// How often, at most, [`Agent::refresh_due`] re-fetches one peer.
    #[must_use]
    pub fn refresh_retry(&self) -> Duration {
        self.refresh_retry
    }

    /// The largest metadata body (decoded) accepted from the broker, default 4 MiB: set it to
    /// the adapter's own body limit, so that a document the adapter downloads in full is not
    /// refused by the check after it (agent review M3).
    #[must_use]
    pub fn with_max_body(mut self, bytes: usize) -> Self {
        let mut cfg = self.mdq.config().clone();
        cfg.max_body = bytes;
        // Nothing is cached yet when built: a new core loses nothing but the cache.
        self.mdq = Client::new(cfg);
        self
    }

    /// The integration target.
    #[must_use]
    pub fn target(&self) -> &T {
        &self.target
    }

    /// The integration target, mutably (an operator's manual removal).
    pub fn target_mut(&mut self) -> &mut T {
        &mut self.target
    }

    /// Fetches in flight.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The answer to give for a refused trigger or a failed step: `refused` (403) for a
    /// refusal or a malformed request, `error` (500) otherwise, with the reason.
    pub fn answer_for(err: &Error) -> MdiResponse {
        let status = match err.kind() {
            ErrorKind::Malformed | ErrorKind::Rejected => MdiStatus::Refused,
            _ => MdiStatus::Error,
        };
        MdiResponse {
            status,
            reason: Some(reason(err)),
        }
    }

    /// A trigger (`query`, as received) from `source` at `now`.
    ///
    /// The trigger is verified first; only a request that fails (unsigned, malformed, forged,
    /// stale, replayed, not for us) is charged to `source`'s rate limit, so that the broker's
    /// own triggers, however many at once (a policy change rolling back many peers), are never
    /// refused for rate (agent review M2). A fetch is refused at [`MAX_PENDING`] fetches in
    /// flight (before its nonce is used); a rollback needs no fetch slot and is always taken.
    pub fn handle_trigger(
        &mut self,
        query: &str,
        source: &str,
        now: SystemTime,
    ) -> Result<TriggerStep, Error> {
        let pending = self.pending.len();
        let accepted = self.verifier.accept_with(query, now, |t| {
            if t.action == TriggerAction::FetchMetadata && pending >= MAX_PENDING {
                return Err(Refusal::Capacity.into());
            }
            Ok(())
        });
        let t = match accepted {
            Ok(t) => t,
            Err(e) => {
                if e.refusal() != Some(Refusal::Capacity) {
                    self.by_source.check(source, now)?;
                }
                return Err(e);
            }
        };
        if self.accepted_nonces.len() >= MAX_QUEUED_NONCES {
            self.accepted_nonces.pop_front();
        }
        self.accepted_nonces
            .push_back((t.nonce.clone(), self.verifier.nonce_until(&t)));
        // The broker's copy of this entity is not for its own trust store (agent review L5).
        if t.peer == self.me {
            return Err(Refusal::WrongFlow.into());
        }
        // The broker's later decision about a peer stands: a trigger issued before one already
        // accepted (delayed in the network, or a retry of a lost one) is refused (agent review
        // M1). Triggers of the same second apply in the order they arrive.
        let key = sha1_hex(&t.peer);
        if self.latest.get(&key).is_some_and(|l| t.issue_instant < *l) {
            return Err(Refusal::Superseded.into());
        }
        if self.latest.len() >= MAX_QUEUED_NONCES {
            // Past the time window an older trigger is refused as stale anyway.
            let window = self
                .verifier
                .max_age
                .saturating_add(self.verifier.clock_skew.saturating_mul(2));
            let horizon = now.checked_sub(window).unwrap_or(SystemTime::UNIX_EPOCH);
            self.latest.retain(|_, l| *l >= horizon);
        }
        self.latest.insert(key.clone(), t.issue_instant);
        match t.action {
            TriggerAction::Rollback => {
                // A fetch for the peer in flight must not integrate after this rollback, unless
                // a fetch trigger issued after it joins (agent review M1).
                if let Ok(id) = Identifier::entity_id(&t.peer) {
                    for p in self.pending.values_mut() {
                        if p.id.key() == id.key() {
                            p.rolled_back_at = p.rolled_back_at.max(Some(t.issue_instant));
                        }
                    }
                }
                let removed = self.target.remove(&t.peer)?;
                self.refresh.remove(&key);
                // Removed now or before: what the caller derived from the peer goes too.
                self.note_rolled_back(t.peer.clone());
                // No later 304 or failure may bring the old copy back (agent review M3).
                if let Ok(id) = Identifier::entity_id(&t.peer) {
                    self.mdq.forget(&id);
                }
                Ok(TriggerStep::Answer(MdiResponse {
                    status: MdiStatus::Integrated,
                    reason: Some(
                        if removed {
                            "removed"
                        } else {
                            "nothing to remove"
                        }
                        .into(),
                    ),
                }))
            }
            TriggerAction::FetchMetadata => {
                let id = Identifier::entity_id(&t.peer)?;
                let req = match self.mdq.fetch_now(&id) {
                    FetchNow::Fetch(req) => req,
                    FetchNow::Joined(token) => {
                        // The same peer is already being fetched for another user's exchange
                        // (or by a restart's re-initialisation): this trigger waits for that
                        // fetch, and a status report follows it ([`Agent::poll_report`]).
                        let Some(p) = self.pending.get_mut(&token) else {
                            // Every fetch of this client is the agent's: a fetch it does not
                            // track would never be reported on.
                            return Err(Error::malformed(
                                "trigger",
                                "a fetch of the peer is in flight that this agent does not track",
                            ));
                        };
                        p.issued = p.issued.max(Some(t.issue_instant));
                        // A restart's fetch (by {sha1}) names no peer: the report names this
                        // trigger's, or the broker could not match it.
                        if p.peer.is_none() {
                            p.peer = Some(t.peer);
                        }
                        *self.joined.entry(token).or_default() += 1;
                        return Ok(TriggerStep::Answer(MdiResponse {
                            status: MdiStatus::AcceptedPending,
                            reason: Some("the peer is being fetched for another exchange".into()),
                        }));
                    }
                };
                self.pending.insert(
                    req.token,
                    Pending {
                        peer: Some(t.peer),
                        id,
                        deferred: false,
                        issued: Some(t.issue_instant),
                        rolled_back_at: None,
                    },
                );
                Ok(TriggerStep::Fetch(req))
            }
        }
    }

    /// At start: a fetch of every entity integrated before (one per `.xml.loc` in the target),
    /// by `{sha1}` from the configured broker, so that a restart re-initialises what the
    /// broker publishes now. Complete each like a trigger's fetch; the outcome's answer is for
    /// the log (no trigger waits for it). A fetch that fails leaves the file as it was.
    pub fn reinitialise(&mut self) -> Result<Vec<FetchRequest>, Error> {
        let mut out = Vec::new();
        for stem in self.target.sources()?.into_keys() {
            let Ok(id) = Identifier::parse_sha1(&format!("{{sha1}}{stem}")) else {
                continue;
            };
            // A stem fetched already (two calls): that fetch answers for it.
            out.extend(self.fetch_by_sha1(id));
        }
        Ok(out)
    }

    /// A fetch of `id` (a `{sha1}` identifier, no peer named) tracked as pending, or `None`
    /// when one is in flight already (this one joins it).
    fn fetch_by_sha1(&mut self, id: Identifier) -> Option<FetchRequest> {
        let FetchNow::Fetch(req) = self.mdq.fetch_now(&id) else {
            return None;
        };
        self.pending.insert(
            req.token,
            Pending {
                peer: None,
                id,
                deferred: false,
                issued: None,
                rolled_back_at: None,
            },
        );
        Some(req)
    }

    /// Review M6: fetches (by `{sha1}`, from the configured broker) of the integrated peers
    /// (one per `.xml.loc` in the target) whose refresh is due at `now`, the most overdue
    /// first; complete each like a [`Agent::reinitialise`] fetch. Call it on a timer (every
    /// minute or so), without any trigger.
    ///
    /// A peer is due once half of the validity its document had left when it was integrated
    /// has passed (a document valid for 7 days is re-fetched after 3.5 days, while the broker
    /// re-signs at half its validity too), and not sooner than [`Agent::refresh_retry`] after
    /// it was integrated or last asked for. A peer integrated before this agent ran (its
    /// validity not yet seen here: [`Agent::reinitialise`] fetches it, and that fetch records
    /// it) is due at once. A peer whose fetch is in flight (a trigger's or a restart's) joins
    /// it: nothing is returned for it, and that fetch's integration records its new validity.
    /// A fetch that fails leaves the file as it was and is asked for again after
    /// [`Agent::refresh_retry`]. At most half of [`MAX_PENDING`] fetches are in flight after
    /// this call, so that triggers keep room; the rest stay due for the next call.
    pub fn refresh_due(&mut self, now: SystemTime) -> Result<Vec<FetchRequest>, Error> {
        let listed: BTreeSet<String> = self.target.sources()?.into_keys().collect();
        self.refresh_due_listed(&listed, now)
    }

    /// [`Agent::refresh_due`] with the integration target's listing made by the caller
    /// without holding the agent (the stems of [`IntegrationTarget::sources`], e.g.
    /// [`crate::integration::committed_sources`] on a blocking thread): listing a directory
    /// of 10,000 peers took about 100 ms under the agent's lock, every trigger waiting (still
    /// open after the seventh round). Here only the entries found due, and those the agent
    /// remembers but the listing lacks, are looked up again ([`IntegrationTarget::holds`]):
    /// one rolled back or removed since the listing is not fetched (it would be integrated
    /// again), one integrated since it is kept.
    pub fn refresh_due_listed(
        &mut self,
        listed: &BTreeSet<String>,
        now: SystemTime,
    ) -> Result<Vec<FetchRequest>, Error> {
        // Rolled back, or removed by the operator: nothing to refresh.
        let unlisted: Vec<String> = self
            .refresh
            .keys()
            .filter(|stem| !listed.contains(*stem))
            .cloned()
            .collect();
        for stem in unlisted {
            if !self.target.holds(&stem)? {
                self.refresh.remove(&stem);
            }
        }
        let mut due: Vec<(SystemTime, &String)> = listed
            .iter()
            .filter_map(|stem| {
                let at = self
                    .refresh
                    .get(stem)
                    .copied()
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                (at <= now).then_some((at, stem))
            })
            .collect();
        due.sort_unstable();
        let mut out = Vec::new();
        for (_, stem) in due {
            if self.pending.len() >= MAX_PENDING / 2 {
                break;
            }
            // Listed without the agent held: gone since (a rollback) is not fetched again.
            if !self.target.holds(stem)? {
                self.refresh.remove(stem);
                continue;
            }
            let Ok(id) = Identifier::parse_sha1(&format!("{{sha1}}{stem}")) else {
                continue;
            };
            // Asked for now, or joined to a fetch in flight: not again before the retry
            // interval, unless an integration records a later time first.
            self.refresh.insert(stem.clone(), now + self.refresh_retry);
            out.extend(self.fetch_by_sha1(id));
        }
        Ok(out)
    }

    /// When a peer whose document, integrated at `now`, is valid until `valid_until` is next
    /// due for [`Agent::refresh_due`]: after half of the validity left, at least
    /// [`Agent::refresh_retry`] from now.
    fn next_refresh(&self, now: SystemTime, valid_until: Option<SystemTime>) -> SystemTime {
        let wait = valid_until.map_or(REFRESH_WITHOUT_EXPIRY, |v| {
            v.duration_since(now).unwrap_or_default() / 2
        });
        now + wait.max(self.refresh_retry)
    }

    /// The nonce of a trigger accepted since the last call, with until when a replay of it
    /// must be refused. An agent that restarts within that time gives them back with
    /// [`Agent::restore_trigger_nonce`]; without that, whoever read a trigger URL (a proxy's
    /// access log) could replay it within minutes of a restart (agent review L2). Drain after
    /// every [`Agent::handle_trigger`] and keep each durably (at most 10,000 wait; the oldest
    /// gives way).
    pub fn poll_accepted_nonce(&mut self) -> Option<(String, SystemTime)> {
        self.accepted_nonces.pop_front()
    }

    /// The entityID of a peer a rollback trigger was accepted for since the last call (its
    /// integrated document removed now, or before), or whose expired copy a fetch removed
    /// because the broker no longer publishes it. Drain after every
    /// [`Agent::handle_trigger`] and every fetch completion ([`Agent::handle_fetched`],
    /// [`Agent::handle_verified`]) and withdraw what was derived from the peer outside the
    /// integration target: an IdP's service empties the conversion rules it wrote for a
    /// rolled-back SP (the rules of a rolled-back SP stayed in force: still open after the
    /// sixth round). At most 10,000 wait; the oldest gives way.
    pub fn poll_rolled_back(&mut self) -> Option<String> {
        self.rolled_back.pop_front()
    }

    /// Remembers the nonce of a trigger accepted before a restart (from
    /// [`Agent::poll_accepted_nonce`]) until `until`; whether it was taken (not when malformed
    /// or expired at `now`).
    pub fn restore_trigger_nonce(
        &mut self,
        nonce: &str,
        until: SystemTime,
        now: SystemTime,
    ) -> bool {
        self.verifier.restore_nonce(nonce, until, now)
    }

    /// The nonces of accepted triggers still remembered at `now`, with until when (to rewrite
    /// a kept list without the expired ones).
    #[must_use]
    pub fn live_trigger_nonces(&self, now: SystemTime) -> Vec<(String, SystemTime)> {
        self.verifier.live_nonces(now)
    }

    /// The next signed status report URL to GET at the broker, for triggers that joined a fetch
    /// already in flight (drain after every [`Agent::handle_fetched`] and
    /// [`Agent::handle_fetch_failure`]).
    pub fn poll_report(&mut self) -> Option<String> {
        self.reports.pop_front()
    }

    /// The trigger of fetch `token` must be answered before the fetch ends: `accepted-pending`
    /// now, a status report later ([`FetchOutcome::Report`]).
    pub fn defer(&mut self, token: Token) -> Result<MdiResponse, Error> {
        let p = self
            .pending
            .get_mut(&token)
            .ok_or_else(|| Error::malformed("fetch", "no such fetch in flight"))?;
        p.deferred = true;
        Ok(MdiResponse {
            status: MdiStatus::AcceptedPending,
            reason: None,
        })
    }

    /// The broker's answer to fetch `token` at `now`; `rng` for a status report's nonce.
    /// [`Agent::verifier`] and [`Agent::handle_verified`] in one call: a service that shares
    /// the agent between tasks verifies without holding it instead.
    pub fn handle_fetched(
        &mut self,
        token: Token,
        url: &str,
        resp: &HttpResponse<'_>,
        now: SystemTime,
        rng: &mut dyn FnMut(&mut [u8]),
    ) -> Result<FetchOutcome, Error> {
        let verified = self.verifier(token, now)?.verify(resp);
        self.handle_verified(token, url, verified, now, rng)
    }

    /// What verifying the broker's answer to fetch `token` at `now` needs, detached from the
    /// agent (`Send`): a service runs [`Verifier::verify`] (the parse and signature checks,
    /// the costly part) without holding the agent, so that one large document does not hold
    /// every trigger, report and fetch behind it, then hands the result to
    /// [`Agent::handle_verified`].
    pub fn verifier(&self, token: Token, now: SystemTime) -> Result<Verifier, Error> {
        if !self.pending.contains_key(&token) {
            return Err(Error::malformed("fetch", "no such fetch in flight"));
        }
        Ok(self.mdq.verifier(token, now)?)
    }

    /// Completes fetch `token` with what [`Verifier::verify`] made of the broker's answer, as
    /// [`Agent::handle_fetched`] does; `url` is where it was fetched from, `rng` for a status
    /// report's nonce.
    pub fn handle_verified(
        &mut self,
        token: Token,
        url: &str,
        verified: Verified,
        now: SystemTime,
        rng: &mut dyn FnMut(&mut [u8]),
    ) -> Result<FetchOutcome, Error> {
        // Checked before anything is taken: an answer verified for another fetch leaves both
        // fetches in flight (the fetch's entry was removed first, and the client kept the
        // fetch, so later triggers for the peer joined a fetch nobody would report on).
        if verified.token() != token {
            return Err(Error::malformed(
                "fetch",
                "the answer was verified for another fetch",
            ));
        }
        let p = self
            .pending
            .remove(&token)
            .ok_or_else(|| Error::malformed("fetch", "no such fetch in flight"))?;
        // Only what the broker answered now: a fresh verified 200, or a 304 revalidating the
        // cached entry; never a cached copy on a 404 or an error (agent review M3).
        let result = self
            .mdq
            .handle_verified_fresh(token, verified, now)
            .map_err(Error::from)
            .and_then(|e| {
                if p.rolled_back() {
                    // Rolled back while fetching (M1): nothing is written, nothing kept.
                    self.mdq.forget(&p.id);
                    return Err(Refusal::RolledBack.into());
                }
                self.integrate(&p, e.as_deref(), url, now)
            });
        self.outcome(token, p, result, now, rng)
    }

    /// Fetch `token` failed in transport.
    pub fn handle_fetch_failure(
        &mut self,
        token: Token,
        error: &str,
        now: SystemTime,
        rng: &mut dyn FnMut(&mut [u8]),
    ) -> Result<FetchOutcome, Error> {
        let p = self
            .pending
            .remove(&token)
            .ok_or_else(|| Error::malformed("fetch", "no such fetch in flight"))?;
        let result = self
            .mdq
            .handle_failure(token, error, now)
            .map_err(Error::from)
            .and_then(|_| {
                // Even with a copy in the cache, the trigger asked for a fresh fetch.
                Err(mdq_client::Error::Transport(format!(
                    "the broker could not be reached: {error}"
                ))
                .into())
            });
        self.outcome(token, p, result, now, rng)
    }

    fn integrate(
        &mut self,
        p: &Pending,
        entity: Option<&EntityDescriptor>,
        url: &str,
        now: SystemTime,
    ) -> Result<(), Error> {
        let Some(entity) = entity else {
            // Best effort: a copy that cannot be read or removed now is looked at again at
            // the next refresh; the answer stays that the broker does not know the peer.
            let _ = self.drop_expired(&p.id, now);
            return Err(Refusal::UnknownEntity.into());
        };
        // mdq-client checked that the entity answers the identifier (its entityID, or the
        // SHA-1 of it for a restart fetch).
        let peer = p.peer.as_deref().unwrap_or(&entity.entity_id);
        let role_ok = match self.side {
            Side::Sp => entity.idp().is_some(),
            Side::Idp => entity.sp().is_some(),
        };
        if !role_ok {
            return Err(Refusal::WrongRole.into());
        }
        // The document just verified, whatever its answer said about persistent caches (a
        // broker or proxy sending `no-store` made every integration fail with `snapshot`).
        let document = self
            .mdq
            .cached_document(&p.id)
            .ok_or_else(|| Error::malformed("fetch", "the fetched document is not cached"))?;
        // What is written is the document itself: exactly one EntityDescriptor, the peer's, as
        // the LocalDynamic layout holds (agent review L4: an EntitiesDescriptor holding the
        // peer among others is refused, not written whole). The client verified these bytes
        // and matched the entity to the peer; only the root is looked at here.
        root_is_entity(&document)?;
        self.target.integrate(peer, &document, url)?;
        // The verified document's validUntil decides when it is fetched again (review M6).
        let next = self.next_refresh(now, entity.valid_until);
        self.refresh.insert(sha1_hex(peer), next);
        Ok(())
    }

    /// The broker answered that it does not publish the peer `id` (a verified 404): a copy
    /// DAME integrated for it that has expired at `now` is removed as a rollback would
    /// remove it (and reported by [`Agent::poll_rolled_back`]). The broker deleted the peer
    /// and its rollback did not reach this agent (the agent was down, or the broker gave up
    /// its retries): the copy was fetched again every [`Agent::refresh_retry`] for good (still
    /// open after the seventh round). A copy still valid stays until it expires: the 404 is
    /// not signed, and relying parties keep trusting that copy until then anyway; the
    /// broker's signed rollback is what removes one sooner. The copy is read without a
    /// signature check (the agent verified it before writing it; this only removes).
    fn drop_expired(&mut self, id: &Identifier, now: SystemTime) -> Result<(), Error> {
        let stem = id.key().to_owned();
        let max = self.mdq.config().max_body;
        let Some(doc) = self.target.document(&stem, max)? else {
            return Ok(());
        };
        let Ok(Metadata::Entity(e)) = saml_metadata::load::parse_unverified(&doc) else {
            return Ok(());
        };
        if sha1_hex(&e.entity_id) != stem || e.valid_until.is_none_or(|v| v > now) {
            return Ok(());
        }
        if self.target.remove(&e.entity_id)? {
            self.refresh.remove(&stem);
            self.mdq.forget(id);
            self.note_rolled_back(e.entity_id);
        }
        Ok(())
    }

    /// Queues `peer` for [`Agent::poll_rolled_back`] (at most 10,000 wait; the oldest gives
    /// way).
    fn note_rolled_back(&mut self, peer: String) {
        if self.rolled_back.len() >= MAX_QUEUED_NONCES {
            self.rolled_back.pop_front();
        }
        self.rolled_back.push_back(peer);
    }

    fn outcome(
        &mut self,
        token: Token,
        p: Pending,
        result: Result<(), Error>,
        now: SystemTime,
        rng: &mut dyn FnMut(&mut [u8]),
    ) -> Result<FetchOutcome, Error> {
        let answer = match &result {
            Ok(()) => MdiResponse {
                status: MdiStatus::Integrated,
                reason: None,
            },
            Err(e) => Self::answer_for(e),
        };
        let report = |me: &Self, rng: &mut dyn FnMut(&mut [u8])| {
            StatusReport::new(
                &me.me,
                p.peer.as_deref().unwrap_or(""),
                answer.status,
                answer.reason.as_deref().unwrap_or(""),
                now,
                rng,
            )
            .url(&me.broker_endpoint, &me.key)
        };
        // One report covers every joined trigger: the broker applies it to every flow waiting
        // for this pair.
        if self.joined.remove(&token).is_some() && !p.deferred {
            let url = report(self, rng)?;
            self.reports.push_back(url);
        }
        if !p.deferred {
            return Ok(FetchOutcome::Answer(answer));
        }
        Ok(FetchOutcome::Report(report(self, rng)?))
    }
}

/// A reason short enough for an MDI answer: no control characters, at most
/// [`MAX_REASON_LEN`] bytes, cut on a character boundary (agent review L6: a limit in characters
/// let multi-byte reasons exceed it, and the answer or status report then failed).
fn reason(err: &Error) -> String {
    let mut out = String::new();
    for c in err.to_string().chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > MAX_REASON_LEN {
            break;
        }
        out.push(c);
    }
    out
}

/// The SP's requested attributes (every `AttributeConsumingService`) that the IdP cannot
/// release: `releasable` holds the attribute names (URIs such as `urn:oid:...`) it has. The
/// IdP's agent asks the broker for conversion rules for these.
#[must_use]
pub fn missing_attributes<'a>(
    sp: &'a EntityDescriptor,
    releasable: &[&str],
) -> Vec<&'a RequestedAttribute> {
    let Some(role) = sp.sp() else {
        return Vec::new();
    };
    // Sets, not scans: linear in what the SP requests and the IdP has (broker review M4).
    let releasable: std::collections::HashSet<&str> = releasable.iter().copied().collect();
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut out: Vec<&RequestedAttribute> = Vec::new();
    for acs in &role.attribute_consuming {
        for a in &acs.requested {
            let name = a.attribute.name.as_str();
            if !releasable.contains(name) && seen.insert(name) {
                out.push(a);
            }
        }
    }
    out
}
