//! The broker (the trusted third party) as a sans-IO state machine: one flow per user, from the
//! discovery request to the replay of AuthnRequest1 (draft-poehn-dame-06 §4, Figure 2), with
//! time and randomness as inputs. The HTTP service around it ([`handle_*`](Broker) in,
//! [`poll_*`](Broker::poll_transmit) out, quinn-proto style) owns sockets, cookies and pages.
//!
//! ## A flow
//!
//! ```text
//!              handle_discovery                      handle_idp_chosen
//!   (none) ──────────────────────► ChoosingIdp ──────────────────────────┐
//!     │                                                                  │ draft mode: answer
//!     │ handle_authenticate                                              │ the discovery request
//!     │ (AuthnRequest1 verified, stored)          AwaitingAuthnRequest1 ◄┘ (pair known: Finished)
//!     ▼                                                      │ handle_authenticate
//!  AwaitingResponse2 ◄─────────────────────────────────────-─┘
//!     │  ▲ unmodified-SP mode (per-SP policy): from ChoosingIdp when the pair is new
//!     │ handle_response2 (Response2 validated: the user is authenticated)
//!     ▼
//!  Exchanging ── triggers: IdP first (or both at once), each confirmed by its MDI response or
//!     │           a later status report, before the exchange deadline
//!     ├─ both integrated ─► Done ── handle_user_agent ─► redirect: AuthnRequest1 replayed to
//!     │                                                   the IdP (or the discovery answer)
//!     └─ refused, error, unreachable, timeout ─► Failed ── rollback triggers for what was sent;
//!                                                          the user agent is told why
//! ```
//! Rollback undoes only what a flow added: a pair established before the flow, or by another
//! flow for the same pair while this one was exchanging, is left integrated.
//! A finished, failed or expired flow cannot be resumed: its identifier is forgotten once the
//! user agent has been told the outcome (or when it expires). A message in the wrong state is
//! refused ([`Refusal::WrongState`]) and changes nothing; so does every refusal before it.
//!
//! ## What each step checks
//! - Discovery (SAML IdP Discovery Profile): the SP is registered, `return` is one of its
//!   `DiscoveryResponse` endpoints; `isPassive=true` is answered at once without an IdP.
//! - AuthnRequest1: signed with the SP's registered key (unless the SP's policy admits unsigned
//!   ones), Issuer is that SP, issued within the last 5 minutes (60 s skew) and its ID not
//!   accepted before (an overheard one cannot start another flow), the IdP is registered, both have a DAME sync location, and the
//!   broker's, the SP's and the IdP's peer policies all allow the pair. Its Redirect-binding
//!   octets (`SAMLRequest`, `RelayState`, `SigAlg`, `Signature`) are stored as received, so
//!   the replay verifies at the IdP with the SP's signature. A signed AuthnRequest1 should
//!   carry no `Destination` (the SP cannot know the IdP's endpoint yet) or the IdP's SSO
//!   location; one addressed elsewhere is refused ([`Refusal::WrongFlow`]). Its `IsPassive`
//!   is carried to AuthnRequest2: the broker shows no page of its own on that path, and the
//!   IdP's `NoPassive` fails the flow.
//! - AuthnRequest2: issued by the broker as SP, signed, its ID the only request the flow's
//!   Response2 may answer (a Response2 for another user's flow fails, see session hijacking).
//! - Response2: validated with saml-core against the chosen IdP's registered keys (Issuer,
//!   signature, audience, recipient, times, InResponseTo, one use per assertion): before it,
//!   nothing is exchanged. The user (NameID at the IdP) is rate-limited per exchange.
//! - Triggers: signed per [`crate::trigger`]; results per [`crate::mdi`].
//!
//! ## The unmodified-SP mode
//! A stock SP (Shibboleth SP, SimpleSAMLphp) speaks only the IdP Discovery Profile. With
//! [`crate::registry::EntityPolicy::unmodified_sp`], when such an SP's discovery request ends
//! with an IdP it has not exchanged with, the broker authenticates the user at the IdP itself
//! (AuthnRequest2 / Response2), runs the exchange, and then answers the discovery request; the
//! SP's own AuthnRequest then goes straight to the IdP, which knows it by then. **What this mode
//! does not prove**: there is no AuthnRequest1 signed by the SP, so nothing shows the SP asked
//! for this IdP; the discovery request is unauthenticated, so anyone can make the broker
//! connect a registered SP with a registered IdP that the policies allow, provided a real user
//! of that IdP logs in. The exchange still needs an authenticated user, registered parties
//! and every peer policy, which is why the mode is per SP and off by default.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, SystemTime};

use saml_core::bindings::MessageKind;
use saml_core::bindings::{post, redirect};
use saml_core::dsig::SigningKey;
use saml_core::protocol::{
    AuthnRequest, MemoryReplayCache, ReplayCache, RequestTracker, ValidatedResponse, new_id,
};
use saml_metadata::model::{Binding, EntityDescriptor};

use crate::authenticate::{AuthenticateRequest, VerifiedAuthnRequest};
use crate::discovery::DiscoveryRequest;
use crate::error::{Error, Refusal};
use crate::mdi::{MdiResponse, MdiStatus, StatusReport, StatusReports};
use crate::policy::{PeerPolicy, RateLimiter};
use crate::query::Query;
use crate::registry::{Registered, Registry};
use crate::relationships::Relationships;
use crate::signed::{DEFAULT_CLOCK_SKEW, DEFAULT_MAX_AGE, NonceCache, check_time, new_nonce};
use crate::trigger::{Trigger, TriggerAction};

/// Most audit events kept until drained with [`Broker::poll_event`].
pub const MAX_EVENTS: usize = 10_000;

/// Largest Response2 accepted (decoded, 256 KiB).
pub const MAX_RESPONSE2: usize = 256 << 10;

/// A flow's identifier: 32 random hex digits, a bearer secret the service keeps in the user
/// agent's cookie (never in a URL). Its `Debug` form (what events, logs and the audit table
/// show) is a digest prefix, `FlowId(#1a2b3c4d5e6f)`, never the secret (broker review L6);
/// `Display` and [`FlowId::as_str`] give the identifier itself.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct FlowId(String);

impl std::fmt::Debug for FlowId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = openssl::sha::sha256(self.0.as_bytes());
        write!(f, "FlowId(#")?;
        for b in &d[..6] {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl FlowId {
    /// The identifier as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An identifier as the service read it back (from a cookie); any text is accepted here, an
    /// unknown one is refused by the broker.
    #[must_use]
    pub fn from_text(s: &str) -> Self {
        FlowId(s.to_owned())
    }
}

impl std::fmt::Display for FlowId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// In which order the entities are triggered once the user is authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerOrder {
    /// The IdP first, the SP once the IdP confirmed (the draft's RECOMMENDED order: an IdP that
    /// refuses costs the SP nothing).
    IdpFirst,
    /// Both at once (one round trip less).
    Both,
}

/// The broker's own settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BrokerPolicy {
    /// How long a flow may live from its first message (default 10 minutes).
    pub flow_lifetime: Duration,
    /// How long both confirmations may take from Response2 (default 2 minutes).
    pub exchange_deadline: Duration,
    /// Most flows at once (default 10,000): more are refused ([`Refusal::Capacity`]).
    pub max_flows: usize,
    /// Trigger order (default [`TriggerOrder::IdpFirst`]).
    pub trigger_order: TriggerOrder,
    /// Ask the IdP to authenticate the user afresh (`ForceAuthn`, default false).
    pub force_authn: bool,
    /// Pairs the broker itself allows: applied to both the SP and the IdP.
    pub peers: PeerPolicy,
    /// Requests per second and burst per source address, for discovery and authenticate
    /// (default 1/s, burst 20).
    pub per_source: (f64, u32),
    /// Exchanges per second and burst per user, i.e. NameID at an IdP (default 0.1/s, burst
    /// 5).
    pub per_user: (f64, u32),
    /// Keys each rate limiter remembers (default 100,000).
    pub rate_keys: usize,
    /// AuthnRequest1 IDs remembered for replay detection, per SP (default 10,000: 24 new
    /// logins a second, sustained over the 7 minutes an ID is held) and in all (default
    /// 200,000). An SP beyond its share is refused ([`Refusal::Capacity`]) while the others go
    /// on: a registered SP that signs requests as fast as the rate limits let it fills only
    /// its own share, and crowding every SP out takes the whole cap's worth of registered SPs
    /// acting together (20 at the defaults).
    pub max_requests1: (usize, usize),
}

impl Default for BrokerPolicy {
    fn default() -> Self {
        BrokerPolicy {
            flow_lifetime: Duration::from_secs(600),
            exchange_deadline: Duration::from_secs(120),
            max_flows: 10_000,
            trigger_order: TriggerOrder::IdpFirst,
            force_authn: false,
            peers: PeerPolicy::default(),
            per_source: (1.0, 20),
            per_user: (0.1, 5),
            rate_keys: 100_000,
            max_requests1: (10_000, 200_000),
        }
    }
}

impl BrokerPolicy {
    /// The policy with `order`.
    #[must_use]
    pub fn with_trigger_order(mut self, order: TriggerOrder) -> Self {
        self.trigger_order = order;
        self
    }

    /// The policy with `peers` as the broker-wide pair policy.
    #[must_use]
    pub fn with_peers(mut self, peers: PeerPolicy) -> Self {
        self.peers = peers;
        self
    }

    /// The policy with these flow lifetime and exchange deadline.
    #[must_use]
    pub fn with_times(mut self, flow_lifetime: Duration, exchange_deadline: Duration) -> Self {
        self.flow_lifetime = flow_lifetime;
        self.exchange_deadline = exchange_deadline;
        self
    }

    /// The policy with these rate limits (per second, burst).
    #[must_use]
    pub fn with_rates(mut self, per_source: (f64, u32), per_user: (f64, u32)) -> Self {
        self.per_source = per_source;
        self.per_user = per_user;
        self
    }

    /// The policy with at most `n` flows.
    #[must_use]
    pub fn with_max_flows(mut self, n: usize) -> Self {
        self.max_flows = n;
        self
    }

    /// The policy remembering at most `per_sp` AuthnRequest1 IDs of one SP and `total` in
    /// all (see [`BrokerPolicy::max_requests1`]).
    #[must_use]
    pub fn with_max_requests1(mut self, per_sp: usize, total: usize) -> Self {
        self.max_requests1 = (per_sp, total);
        self
    }
}

/// What [`Broker::plan_owed_trigger`] made of an owed trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OwedPlan {
    /// Planned again: take it with [`Broker::poll_transmit`].
    Planned,
    /// The pair's standing no longer asks for it (or the addressed entity is gone): it is no
    /// longer owed.
    NotWanted,
    /// A flow of the pair is exchanging: its outcome decides. Still owed; ask again later
    /// (review D2: forgotten here, it was lost when that flow then failed before reaching the
    /// entity it is addressed to).
    Later,
}

/// Why a flow failed (what the user agent is told).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum FlowFailure {
    /// The IdP answered Response2 with an error status (the user cancelled, or was refused).
    AuthenticationFailed {
        /// The SAML status code.
        status: String,
    },
    /// An entity refused or failed the integration.
    Integration {
        /// Which entity.
        entity: String,
        /// Its status.
        status: MdiStatus,
        /// Its reason.
        reason: String,
    },
    /// An entity could not be reached (or answered nonsense).
    Unreachable {
        /// Which entity.
        entity: String,
        /// What went wrong.
        error: String,
    },
    /// The confirmations did not arrive before the exchange deadline.
    Timeout,
    /// The flow outlived its lifetime.
    Expired,
}

impl std::fmt::Display for FlowFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlowFailure::AuthenticationFailed { status } => {
                write!(
                    f,
                    "the identity provider did not authenticate you ({status})"
                )
            }
            FlowFailure::Integration {
                entity,
                status,
                reason,
            } => write!(
                f,
                "{entity} did not integrate the metadata ({}: {reason})",
                status.as_str()
            ),
            FlowFailure::Unreachable { entity, error } => {
                write!(f, "{entity} could not be reached ({error})")
            }
            FlowFailure::Timeout => f.write_str("the metadata exchange took too long"),
            FlowFailure::Expired => f.write_str("the login took too long"),
        }
    }
}

/// What the service answers the user agent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum UaReply {
    /// Show the IdP choice for `sp` (the discovery page); then call
    /// [`Broker::handle_idp_chosen`].
    ChooseIdp {
        /// The flow (set it as the cookie).
        flow: FlowId,
        /// The SP asking.
        sp: String,
    },
    /// Redirect (302) to this URL.
    Redirect(String),
    /// Show a waiting page that comes back ([`Broker::handle_user_agent`]) after `retry_after`.
    Wait {
        /// The flow.
        flow: FlowId,
        /// When to come back.
        retry_after: Duration,
    },
    /// The flow failed: show why.
    Failed(FlowFailure),
}

/// A request the service sends for the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
#[non_exhaustive]
pub struct Transmit {
    /// The flow it belongs to (`None` for a re-download after a metadata update).
    pub flow: Option<FlowId>,
    /// The entity addressed.
    pub to: String,
    /// What the trigger asks.
    pub action: TriggerAction,
    /// The entity the trigger is about (its `entityID` parameter).
    pub about: String,
    /// When the broker decided it (the trigger's `issueInstant`; a retry keeps it, see
    /// [`Broker::retransmit`]).
    pub issued: SystemTime,
    /// The signed trigger URL (GET it; hand the answer to [`Broker::handle_trigger_answer`]
    /// or [`Broker::handle_trigger_failure`]).
    pub url: String,
}

/// What happened, for the audit log and the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A flow started.
    FlowStarted {
        /// The flow.
        flow: FlowId,
        /// The SP.
        sp: String,
    },
    /// AuthnRequest1 verified and stored.
    AuthnRequestStored {
        /// The flow.
        flow: FlowId,
        /// The SP.
        sp: String,
        /// The IdP.
        idp: String,
        /// Whether it was signed.
        signed: bool,
    },
    /// Response2 validated: the user is authenticated.
    UserAuthenticated {
        /// The flow.
        flow: FlowId,
        /// The IdP.
        idp: String,
        /// The NameID value (at most [`MAX_EVENT_SUBJECT`] bytes of it, then `…`).
        subject: String,
    },
    /// An entity confirmed the integration.
    Integrated {
        /// The flow.
        flow: FlowId,
        /// Which entity.
        entity: String,
    },
    /// A new IdP-SP pair.
    RelationshipEstablished {
        /// The IdP.
        idp: String,
        /// The SP.
        sp: String,
    },
    /// The flow ended well.
    FlowDone {
        /// The flow.
        flow: FlowId,
    },
    /// The flow failed.
    FlowFailed {
        /// The flow.
        flow: FlowId,
        /// Why.
        failure: FlowFailure,
    },
    /// A rollback trigger was planned.
    RollbackPlanned {
        /// The flow.
        flow: FlowId,
        /// Which entity.
        entity: String,
    },
}

/// How far one entity is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
enum Leg {
    NotSent,
    Sent,
    Pending,
    Integrated,
}

/// Why the flow exists: the draft's AuthnRequest1, or a discovery request (unmodified SP).
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
enum Origin {
    AuthnRequest1 {
        /// `SAMLRequest=..[&RelayState=..][&SigAlg=..&Signature=..]`, raw octets.
        replay_query: String,
    },
    Discovery(DiscoveryRequest),
}

#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
enum State {
    ChoosingIdp {
        discovery: DiscoveryRequest,
    },
    AwaitingAuthnRequest1 {
        idp: String,
    },
    AwaitingResponse2 {
        idp: String,
        origin: Origin,
        request2_id: String,
    },
    Exchanging {
        idp: String,
        origin: Origin,
        idp_leg: Leg,
        sp_leg: Leg,
        deadline: SystemTime,
        /// Pair established before this flow: never rolled back.
        known_pair: bool,
    },
    Done {
        reply: String,
    },
    Failed(FlowFailure),
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::ChoosingIdp { .. } => "choosing-idp",
            State::AwaitingAuthnRequest1 { .. } => "awaiting-authn-request1",
            State::AwaitingResponse2 { .. } => "awaiting-response2",
            State::Exchanging { .. } => "exchanging",
            State::Done { .. } => "done",
            State::Failed(_) => "failed",
        }
    }
}

#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
struct Flow {
    sp: String,
    state: State,
    expires: SystemTime,
}

/// One flow as a value: what a service keeps in a shared store so that the flow continues on
/// another broker instance or after a restart ([`Broker::export_flow`],
/// [`Broker::import_flow`]). Serializable with feature `serde`; its content is opaque.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct FlowRecord {
    /// The flow's identifier.
    pub id: FlowId,
    flow: Flow,
}

impl FlowRecord {
    /// When the flow expires.
    #[must_use]
    pub fn expires(&self) -> SystemTime {
        self.flow.expires
    }

    /// When [`Broker::handle_timeout`] must see this flow: its exchange deadline while
    /// exchanging, else its expiry (a shared store selects the flows due with it).
    #[must_use]
    pub fn due(&self) -> SystemTime {
        match &self.flow.state {
            State::Exchanging { deadline, .. } => (*deadline).min(self.flow.expires),
            _ => self.flow.expires,
        }
    }

    /// The IdP and the SP of an exchanging flow (a shared store finds the flows a status
    /// report completes with it); `None` in every other phase.
    #[must_use]
    pub fn exchanging_pair(&self) -> Option<(&str, &str)> {
        match &self.flow.state {
            State::Exchanging { idp, .. } => Some((idp, &self.flow.sp)),
            _ => None,
        }
    }
}

/// A one-time value a broker accepted ([`Broker::poll_consumed`]): several instances record it
/// in their shared store, so that a value used on one instance is refused on every other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    /// The value, prefixed with its kind (`authn-request1`, `status-report`) and issuer,
    /// separated by spaces (a store may refuse NUL characters; the last part, an XML ID or a
    /// hex nonce, has no space, so the key is unambiguous).
    pub key: String,
    /// Until when it must be remembered (after that the time checks refuse it anyway).
    pub until: SystemTime,
}

/// The phase a flow is in, for observers and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// The user picks an IdP.
    ChoosingIdp,
    /// Waiting for the SP's AuthnRequest1.
    AwaitingAuthnRequest1,
    /// Waiting for the IdP's Response2.
    AwaitingResponse2,
    /// Triggers out, waiting for confirmations.
    Exchanging,
    /// Done; the user agent has not collected the result yet.
    Done,
    /// Failed; the user agent has not been told yet.
    Failed,
}

/// The broker's replay cache as one Response2 validation sees it: what the validation
/// remembers stays in `added` until the Response2 is accepted.
struct ReplayOverlay<'c> {
    base: &'c MemoryReplayCache,
    added: Vec<(String, String, SystemTime)>,
}

impl ReplayCache for ReplayOverlay<'_> {
    fn seen(&self, issuer: &str, id: &str, now: SystemTime) -> bool {
        self.base.seen(issuer, id, now)
            || self
                .added
                .iter()
                .any(|(i, d, until)| i == issuer && d == id && *until > now)
    }

    fn insert_if_absent(
        &mut self,
        issuer: &str,
        id: &str,
        until: SystemTime,
        now: SystemTime,
    ) -> bool {
        if self.seen(issuer, id, now) {
            return false;
        }
        self.added.push((issuer.to_owned(), id.to_owned(), until));
        true
    }
}

/// One request outstanding for one flow: the only InResponseTo its Response2 may carry.
struct FlowRequest<'a> {
    id: &'a str,
    idp: &'a str,
    expires: SystemTime,
    done: bool,
}

impl RequestTracker for FlowRequest<'_> {
    fn is_outstanding(&self, id: &str, idp: &str, now: SystemTime) -> bool {
        !self.done && id == self.id && idp == self.idp && now < self.expires
    }

    fn consume(&mut self, id: &str, idp: &str, now: SystemTime) -> bool {
        if !self.is_outstanding(id, idp, now) {
            return false;
        }
        self.done = true;
        true
    }
}

/// The broker: registered entities, relationships, flows. See the [module docs](self). Cloning
/// copies every table (a template for tests and fuzzing).
#[derive(Clone)]
pub struct Broker {
    entity: EntityDescriptor,
    key: SigningKey,
    /// Its settings.
    pub policy: BrokerPolicy,
    /// The registered providers.
    pub registry: Registry,
    /// The established pairs.
    pub relationships: Relationships,
    /// The attribute conversion rules the broker shares.
    pub rules: crate::conversion::RuleSet,
    flows: HashMap<FlowId, Flow>,
    replay: MemoryReplayCache,
    /// AuthnRequest1 IDs accepted (per SP), until they could no longer pass the time check.
    requests1: Requests1,
    reports: StatusReports,
    by_source: RateLimiter,
    by_user: RateLimiter,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    events_dropped: u64,
    consumed: VecDeque<Consumed>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("entity_id", &self.entity.entity_id)
            .field("flows", &self.flows.len())
            .field("registered", &self.registry.len())
            .field("relationships", &self.relationships.len())
            .finish_non_exhaustive()
    }
}

/// The AuthnRequest1 IDs each SP had accepted, until they could no longer pass the time
/// check (draft-poehn-dame-06 §4: AuthnRequest1 starts a flow once), in one [`NonceCache`] per
/// SP so that one SP's volume cannot refuse another's logins: each SP has `per_sp`, all
/// together `total`. Entries are counted as the caches change; when the total is reached,
/// every SP's expired IDs are swept, at most once a second (the caches of SPs that went quiet
/// hold expired IDs until then).
#[derive(Debug, Clone)]
struct Requests1 {
    by_sp: HashMap<String, NonceCache>,
    per_sp: usize,
    total: usize,
    held: usize,
    next_sweep: SystemTime,
}

impl Requests1 {
    fn new(per_sp: usize, total: usize) -> Self {
        Requests1 {
            by_sp: HashMap::new(),
            per_sp: per_sp.max(1),
            total: total.max(1),
            held: 0,
            next_sweep: SystemTime::UNIX_EPOCH,
        }
    }

    /// Whether `sp` may start a flow with the AuthnRequest1 `id` at `now`.
    fn check(&mut self, sp: &str, id: &str, now: SystemTime) -> Result<(), Refusal> {
        if self.held >= self.total && now >= self.next_sweep {
            let mut held = 0;
            self.by_sp.retain(|_, c| {
                c.sweep(now);
                held += c.len();
                !c.is_empty()
            });
            self.held = held;
            self.next_sweep = now + Duration::from_secs(1);
        }
        let cache = match self.by_sp.get_mut(sp) {
            Some(c) => c,
            None => {
                if self.held >= self.total {
                    return Err(Refusal::Capacity);
                }
                self.by_sp
                    .entry(sp.to_owned())
                    .or_insert_with(|| NonceCache::new(self.per_sp))
            }
        };
        let before = cache.len();
        let checked = cache.check(id, now);
        self.held = self.held - before + cache.len();
        checked?;
        if self.held >= self.total {
            return Err(Refusal::Capacity);
        }
        Ok(())
    }

    /// Remembers `sp`'s `id` until `until` (after [`Self::check`] and every other check).
    fn remember(&mut self, sp: &str, id: &str, until: SystemTime) {
        let cache = self
            .by_sp
            .entry(sp.to_owned())
            .or_insert_with(|| NonceCache::new(self.per_sp));
        let before = cache.len();
        cache.remember(id, until);
        self.held = self.held - before + cache.len();
    }

    /// Forgets a removed SP's IDs.
    fn forget(&mut self, sp: &str) {
        if let Some(c) = self.by_sp.remove(sp) {
            self.held -= c.len();
        }
    }
}

fn leg_sent(l: Leg) -> bool {
    l != Leg::NotSent
}

impl Broker {
    /// A broker whose own SP metadata is `entity` (its entityID and HTTP-POST ACS, where
    /// Response2 arrives), signing AuthnRequest2, triggers and published metadata with `key`.
    pub fn new(
        entity: EntityDescriptor,
        key: SigningKey,
        policy: BrokerPolicy,
    ) -> Result<Self, Error> {
        if entity.sp().is_none() {
            return Err(Error::malformed(
                "broker metadata",
                "the broker needs an SPSSODescriptor (it is the SP of AuthnRequest2)",
            ));
        }
        Ok(Broker {
            by_source: RateLimiter::new(policy.per_source.0, policy.per_source.1, policy.rate_keys),
            by_user: RateLimiter::new(policy.per_user.0, policy.per_user.1, policy.rate_keys),
            requests1: Requests1::new(policy.max_requests1.0, policy.max_requests1.1),
            registry: Registry::new(key.clone()),
            entity,
            key,
            policy,
            relationships: Relationships::new(),
            rules: crate::conversion::RuleSet::default(),
            flows: HashMap::new(),
            replay: MemoryReplayCache::new(),
            reports: StatusReports::default(),
            transmits: VecDeque::new(),
            consumed: VecDeque::new(),
            events: VecDeque::new(),
            events_dropped: 0,
        })
    }

    /// The broker's entityID.
    #[must_use]
    pub fn entity_id(&self) -> &str {
        &self.entity.entity_id
    }

    /// Flows held (running, or finished and not yet collected).
    #[must_use]
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// The phase of `flow`, if it exists.
    #[must_use]
    pub fn phase(&self, flow: &FlowId) -> Option<Phase> {
        self.flows.get(flow).map(|f| match f.state {
            State::ChoosingIdp { .. } => Phase::ChoosingIdp,
            State::AwaitingAuthnRequest1 { .. } => Phase::AwaitingAuthnRequest1,
            State::AwaitingResponse2 { .. } => Phase::AwaitingResponse2,
            State::Exchanging { .. } => Phase::Exchanging,
            State::Done { .. } => Phase::Done,
            State::Failed(_) => Phase::Failed,
        })
    }

    /// The next request to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next audit event, if any. At most [`MAX_EVENTS`] wait to be drained; beyond that
    /// the oldest are dropped and counted ([`Broker::events_dropped`]).
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next one-time value accepted (an AuthnRequest1 ID, a status report's nonce), for a
    /// store shared by several instances: record it there inside the same transaction as the
    /// flows the call changed, and refuse the call (write nothing) when another instance
    /// already recorded it. A single instance may ignore these; at most [`MAX_EVENTS`] wait.
    pub fn poll_consumed(&mut self) -> Option<Consumed> {
        self.consumed.pop_front()
    }

    fn consume(&mut self, key: String, until: SystemTime) {
        if self.consumed.len() >= MAX_EVENTS {
            self.consumed.pop_front();
        }
        self.consumed.push_back(Consumed { key, until });
    }

    /// Events dropped because nobody drained them.
    #[must_use]
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    fn event(&mut self, e: Event) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
            self.events_dropped += 1;
        }
        self.events.push_back(e);
    }

    /// When [`Broker::handle_timeout`] must next be called, if any flow is held.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<SystemTime> {
        self.flows
            .values()
            .map(|f| match &f.state {
                State::Exchanging { deadline, .. } => (*deadline).min(f.expires),
                _ => f.expires,
            })
            .min()
    }

    fn registered(&self, id: &str) -> Result<&Registered, Error> {
        self.registry
            .get(id)
            .ok_or_else(|| Refusal::UnknownEntity.into())
    }

    fn check_source(&mut self, source: &str, now: SystemTime) -> Result<(), Error> {
        Ok(self.by_source.check(source, now)?)
    }

    fn new_flow(
        &mut self,
        sp: &str,
        state: State,
        now: SystemTime,
        rng: &mut dyn FnMut(&mut [u8]),
    ) -> Result<FlowId, Error> {
        if self.flows.len() >= self.policy.max_flows {
            self.expire(now);
            if self.flows.len() >= self.policy.max_flows {
                return Err(Refusal::Capacity.into());
            }
        }
        let id = FlowId(new_nonce(rng));
        self.flows.insert(
            id.clone(),
            Flow {
                sp: sp.to_owned(),
                state,
                expires: now + self.policy.flow_lifetime,
            },
        );
        self.event(Event::FlowStarted {
            flow: id.clone(),
            sp: sp.to_owned(),
        });
        Ok(id)
    }

    /// The pair policies: the broker's, the SP's for the IdP and the IdP's for the SP; both
    /// registered and DAME-capable.
    fn check_pair(&self, sp: &str, idp: &str) -> Result<(), Error> {
        let s = self.registered(sp)?;
        let i = self.registered(idp)?;
        if s.entity.sp().is_none() || i.entity.idp().is_none() {
            return Err(Refusal::WrongRole.into());
        }
        if s.sync_location().is_none() || i.sync_location().is_none() {
            return Err(Refusal::NotDameCapable.into());
        }
        self.policy.peers.check(sp)?;
        self.policy.peers.check(idp)?;
        s.policy.peers.check(idp)?;
        i.policy.peers.check(sp)?;
        Ok(())
    }

    fn flow(&self, id: &FlowId, now: SystemTime) -> Result<&Flow, Error> {
        match self.flows.get(id) {
            Some(f) if now < f.expires => Ok(f),
            _ => Err(Refusal::UnknownFlow.into()),
        }
    }

    /// A discovery request (`query`, the SAML IdP Discovery Profile) from `source` (the
    /// client address) at `now`. Returns the page to show: the IdP choice (a new flow), or, for
    /// `isPassive`, the answer without an IdP.
    pub fn handle_discovery(
        &mut self,
        query: &str,
        source: &str,
        now: SystemTime,
        rng: &mut dyn FnMut(&mut [u8]),
    ) -> Result<UaReply, Error> {
        let d = DiscoveryRequest::parse(query)?;
        let sp = self.registered(&d.entity_id)?;
        if sp.entity.sp().is_none() {
            return Err(Refusal::WrongRole.into());
        }
        // Refuses an unregistered return before anything is remembered.
        let bare = d.answer(&sp.entity, None)?;
        self.check_source(source, now)?;
        if d.is_passive {
            return Ok(UaReply::Redirect(bare));
        }
        let sp = d.entity_id.clone();
        let flow = self.new_flow(&sp, State::ChoosingIdp { discovery: d }, now, rng)?;
        Ok(UaReply::ChooseIdp { flow, sp })
    }

    /// The user chose `idp` in `flow`. Draft mode: the discovery answer (the SP then sends
    /// AuthnRequest1 here, or goes straight to the IdP when it knows it). Unmodified-SP mode
    /// with a new pair: a redirect to the IdP with AuthnRequest2.
    pub fn handle_idp_chosen(
        &mut self,
        flow: &FlowId,
        idp: &str,
        now: SystemTime,
        rng: &mut dyn FnMut(&mut [u8]),
    ) -> Result<UaReply, Error> {
        let f = self.flow(flow, now)?;
        let State::ChoosingIdp { discovery } = &f.state else {
            return Err(Refusal::WrongState.into());
        };
        let sp = f.sp.clone();
        let discovery = discovery.clone();
        let sp_reg = self.registered(&sp)?;
        let answer = discovery.answer(&sp_reg.entity, Some(idp))?;
        let unmodified = sp_reg.policy.unmodified_sp;
        // Today's policies, even for a pair that exchanged before.
        self.check_pair(&sp, idp)?;
        if self.relationships.contains(idp, &sp) {
            // Plain SSO from here: the SP and the IdP know each other.
            self.flows.remove(flow);
            return Ok(UaReply::Redirect(answer));
        }
        if unmodified {
            let (url, request2_id) = self.authn_request2(idp, false, now, rng)?;
            if let Some(f) = self.flows.get_mut(flow) {
                f.state = State::AwaitingResponse2 {
                    idp: idp.to_owned(),
                    origin: Origin::Discovery(discovery),
                    request2_id,
                };
            }
            return Ok(UaReply::Redirect(url));
        }
        if let Some(f) = self.flows.get_mut(flow) {
            f.state = State::AwaitingAuthnRequest1 {
                idp: idp.to_owned(),
            };
        }
        Ok(UaReply::Redirect(answer))
    }

    /// AuthnRequest2 to `idp`: the URL to redirect to and the request's ID. `passive`: the
    /// SP asked for no user interaction (AuthnRequest1's `IsPassive`), so AuthnRequest2 asks
    /// the IdP for none either (SAML Core §3.4.1: neither the IdP nor the user agent may
    /// take visible control); an IdP that cannot authenticate the user so answers
    /// `NoPassive`, which fails the flow ([`FlowFailure::AuthenticationFailed`]).
    fn authn_request2(
        &self,
        idp: &str,
        passive: bool,
        now: SystemTime,
        rng: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(String, String), Error> {
        let idp_reg = self.registered(idp)?;
        let (mut req, sso) = saml_metadata::sso::authn_request(
            &self.entity,
            &idp_reg.entity,
            Binding::HttpRedirect,
            new_id(rng),
            now,
        )?;
        if self.policy.force_authn {
            // With IsPassive too: a fresh authentication without the user (Kerberos, a client
            // certificate), or NoPassive.
            req.force_authn = Some(true);
        }
        if passive {
            req.is_passive = Some(true);
        }
        let q = redirect::encode(
            MessageKind::Request,
            req.to_xml().as_bytes(),
            None,
            Some(&self.key),
            None,
        )?;
        Ok((redirect::url(&sso, &q), req.id))
    }

    /// `action=authenticate` with AuthnRequest1 (`query`, as received) from `source` at
    /// `now`, in `flow` when the user agent brought one from discovery. Returns the flow (a new
    /// one without `flow`: set it as the cookie) and the redirect to the IdP with
    /// AuthnRequest2. Refused without any state change when the SP is unknown,
    /// the signature does not verify, the pair is not allowed, or `flow` is not waiting for
    /// this SP's AuthnRequest1 for this IdP.
    pub fn handle_authenticate(
        &mut self,
        flow: Option<&FlowId>,
        query: &str,
        source: &str,
        now: SystemTime,
        rng: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(FlowId, UaReply), Error> {
        let req = AuthenticateRequest::parse(query)?;
        let sp_id = req.issuer()?;
        let sp = self.registered(&sp_id)?;
        let verified = req.verify(&sp.entity, sp.policy.allow_unsigned_authn_request)?;
        let idp = verified.idp_entity_id.clone();
        self.check_pair(&sp_id, &idp)?;
        let idp_reg = self.registered(&idp)?;
        // The Destination is where the request is replayed: the IdP's HTTP-Redirect SSO
        // endpoint (one of its other endpoints was accepted, and the IdP then refused a
        // request addressed elsewhere, after the exchange: review B3).
        if let Some(d) = &verified.request.destination {
            let sso = saml_metadata::sso::sso_location(&idp_reg.entity, &Binding::HttpRedirect)
                .map_err(|_| Refusal::WrongFlow)?;
            if sso != *d {
                return Err(Refusal::WrongFlow.into());
            }
        }
        if let Some(id) = flow {
            let f = self.flow(id, now)?;
            match &f.state {
                State::AwaitingAuthnRequest1 { idp: chosen } => {
                    if f.sp != sp_id || *chosen != idp {
                        return Err(Refusal::WrongFlow.into());
                    }
                }
                _ => return Err(Refusal::WrongState.into()),
            }
        }
        // Fresh (5 minutes, 60 s skew) and used once: an overheard AuthnRequest1 cannot start
        // another flow.
        check_time(
            verified.request.issue_instant,
            now,
            DEFAULT_MAX_AGE,
            DEFAULT_CLOCK_SKEW,
        )?;
        self.requests1.check(&sp_id, &verified.request.id, now)?;
        let replay_query = replay_query(query)?;
        self.check_source(source, now)?;
        let passive = verified.request.is_passive == Some(true);
        let (url, request2_id) = self.authn_request2(&idp, passive, now, rng)?;
        let state = State::AwaitingResponse2 {
            idp: idp.clone(),
            origin: Origin::AuthnRequest1 { replay_query },
            request2_id,
        };
        let id = match flow {
            Some(id) => {
                if let Some(f) = self.flows.get_mut(id) {
                    f.state = state;
                }
                id.clone()
            }
            None => self.new_flow(&sp_id, state, now, rng)?,
        };
        let until =
            verified.request.issue_instant + DEFAULT_MAX_AGE + DEFAULT_CLOCK_SKEW.saturating_mul(2);
        self.requests1.remember(&sp_id, &verified.request.id, until);
        self.consume(
            format!("authn-request1 {sp_id} {}", verified.request.id),
            until,
        );
        self.stored_event(&id, &verified);
        Ok((id, UaReply::Redirect(url)))
    }

    fn stored_event(&mut self, flow: &FlowId, v: &VerifiedAuthnRequest) {
        self.event(Event::AuthnRequestStored {
            flow: flow.clone(),
            sp: v.request.issuer.clone(),
            idp: v.idp_entity_id.clone(),
            signed: v.signed,
        });
    }

    /// Response2 (`form`, the HTTP-POST body with `SAMLResponse`) at the broker's ACS, in
    /// `flow` (from the cookie). Validated against the flow's IdP and its AuthnRequest2; then
    /// the triggers go out ([`Broker::poll_transmit`]) and the user agent waits. An invalid
    /// Response2 is refused and changes nothing (the real one may still come); an error status
    /// from the IdP fails the flow.
    pub fn handle_response2(
        &mut self,
        flow: &FlowId,
        form: &str,
        now: SystemTime,
        rng: &mut dyn FnMut(&mut [u8]),
    ) -> Result<UaReply, Error> {
        let f = self.flow(flow, now)?;
        let State::AwaitingResponse2 {
            idp, request2_id, ..
        } = &f.state
        else {
            return Err(Refusal::WrongState.into());
        };
        let (idp, request2_id, sp) = (idp.clone(), request2_id.clone(), f.sp.clone());
        let msg = post::decode_form(form, MAX_RESPONSE2)?;
        if msg.kind != MessageKind::Response {
            return Err(Error::malformed(
                "Response2",
                "a SAMLRequest, not a SAMLResponse",
            ));
        }
        let idp_reg = self.registered(&idp)?;
        let validator = saml_metadata::sso::response_validator(&self.entity, &idp_reg.entity)?;
        let mut tracker = FlowRequest {
            id: &request2_id,
            idp: &idp,
            expires: f.expires,
            done: false,
        };
        // Only an accepted Response2 is remembered: what the validation remembers is kept
        // beside the cache until then (not a copy of the whole cache per attempt, which let
        // anyone holding a flow cookie make the broker copy every remembered assertion ID).
        let mut replay = ReplayOverlay {
            base: &self.replay,
            added: Vec::new(),
        };
        let validated: ValidatedResponse =
            match validator.validate(&msg.xml, now, &mut tracker, &mut replay) {
                Ok(v) => v,
                // An error status is unauthenticated unless signed: it fails the flow only when
                // it answers this flow's AuthnRequest2, whose random ID only the user agent
                // and the IdP saw.
                Err(saml_core::Error::Protocol(saml_core::protocol::ProtocolError::Status {
                    code,
                    ..
                })) if answers(&msg.xml, &request2_id) => {
                    return Ok(self.fail(
                        flow,
                        // Bounded: a code other than SAML's is the whole `Value` (up to
                        // 64 KiB, unsigned), logged and audited with the failure (review G1).
                        FlowFailure::AuthenticationFailed {
                            status: bounded_subject(&code.to_string()),
                        },
                        now,
                        rng,
                    ));
                }
                Err(e) => return Err(e.into()),
            };
        // The user, by the NameID: a Response2 without one (an EncryptedID or BaseID, which
        // saml-core does not read) put every such user of the IdP in one rate-limit bucket
        // (review S6). A NameID has no length bound of its own (a signed Response2 of 256 KiB
        // could carry one): the rate limiter keeps a digest of it and the event at most
        // MAX_EVENT_SUBJECT bytes of it (review S2).
        // The IdP answered this flow and will not answer again: the flow fails (review G5).
        let Some(name_id) = validated.name_id() else {
            return Ok(self.fail(
                flow,
                FlowFailure::AuthenticationFailed {
                    status: "no saml:NameID names the user (an EncryptedID or BaseID is not read)"
                        .into(),
                },
                now,
                rng,
            ));
        };
        let user_key = {
            let mut h = openssl::sha::Sha256::new();
            h.update(idp.as_bytes());
            h.update(&[0]);
            h.update(name_id.value.as_bytes());
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD_NO_PAD,
                h.finish(),
            )
        };
        let subject = bounded_subject(&name_id.value);
        let added = replay.added;
        self.by_user.check(&user_key, now)?;
        for (issuer, id, until) in added {
            // Not remembered before: the overlay checked the cache, under this `&mut self`.
            self.replay.insert_if_absent(&issuer, &id, until, now);
        }
        self.event(Event::UserAuthenticated {
            flow: flow.clone(),
            idp: idp.clone(),
            subject,
        });
        let known_pair = self.relationships.contains(&idp, &sp);
        let Some(f) = self.flows.get_mut(flow) else {
            return Err(Refusal::UnknownFlow.into());
        };
        let origin = match std::mem::replace(&mut f.state, State::Failed(FlowFailure::Expired)) {
            State::AwaitingResponse2 { origin, .. } => origin,
            _ => return Err(Refusal::WrongState.into()),
        };
        f.state = State::Exchanging {
            idp: idp.clone(),
            origin,
            idp_leg: Leg::NotSent,
            sp_leg: Leg::NotSent,
            deadline: now + self.policy.exchange_deadline,
            known_pair,
        };
        self.send_trigger(flow, &idp, &sp, now, rng)?;
        if self.policy.trigger_order == TriggerOrder::Both {
            self.send_trigger(flow, &sp, &idp, now, rng)?;
        }
        Ok(Self::wait(flow))
    }

    /// Queues the fetchmetadata trigger telling `to` to fetch `peer`, and marks its leg sent.
    fn send_trigger(
        &mut self,
        flow: &FlowId,
        to: &str,
        peer: &str,
        now: SystemTime,
        rng: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(), Error> {
        let t = self.transmit(Some(flow), TriggerAction::FetchMetadata, to, peer, now, rng)?;
        if let Some(Flow {
            state:
                State::Exchanging {
                    idp,
                    idp_leg,
                    sp_leg,
                    ..
                },
            ..
        }) = self.flows.get_mut(flow)
        {
            if to == idp {
                *idp_leg = Leg::Sent;
            } else {
                *sp_leg = Leg::Sent;
            }
        }
        self.transmits.push_back(t);
        Ok(())
    }

    /// A trigger of `action` to `to` about `about`, decided at `issued`, signed with a fresh
    /// nonce.
    fn transmit(
        &self,
        flow: Option<&FlowId>,
        action: TriggerAction,
        to: &str,
        about: &str,
        issued: SystemTime,
        rng: &mut dyn FnMut(&mut [u8]),
    ) -> Result<Transmit, Error> {
        let reg = self.registered(to)?;
        let loc = reg.sync_location().ok_or(Refusal::NotDameCapable)?;
        let url = Trigger::new(action, about, to, issued, rng).url(loc, &self.key)?;
        Ok(Transmit {
            flow: flow.cloned(),
            to: to.to_owned(),
            action,
            about: about.to_owned(),
            issued,
            url,
        })
    }

    /// `t` signed again with a fresh nonce and its original issue instant, for a service whose
    /// trigger got no acknowledgement (no answer, or an `error`), when today's standing of the
    /// pair still asks for it: a rollback while the pair is not established and allowed (a
    /// failed flow's, a policy's, a deletion's), a flow-less re-download while it is. `None`
    /// otherwise, for a flow's fetch (the flow decides), or once the addressed entity is gone.
    ///
    /// Keeping the issue instant bounds the retries to the agent's time window (5 minutes by
    /// default) and lets the agent refuse a retry that arrives after a later decision about the
    /// same peer ([`Refusal::Superseded`]): a rollback retried while a new flow for the pair
    /// is integrating cannot undo it. A rollback is idempotent at the agent.
    pub fn retransmit(&self, t: &Transmit, rng: &mut dyn FnMut(&mut [u8])) -> Option<Transmit> {
        let established = self.relationships.contains(&t.to, &t.about)
            || self.relationships.contains(&t.about, &t.to);
        let wanted = match t.action {
            TriggerAction::Rollback => !(established && self.pair_allowed(&t.to, &t.about)),
            TriggerAction::FetchMetadata => {
                t.flow.is_none() && established && self.pair_allowed(&t.to, &t.about)
            }
        };
        if !wanted {
            return None;
        }
        self.transmit(t.flow.as_ref(), t.action, &t.to, &t.about, t.issued, rng)
            .ok()
    }

    /// A trigger the service gave up sending (no acknowledgement before its retries ran out of
    /// the agent's time window for its issue instant: the agent was down or unreachable for
    /// longer), planned again with a fresh issue instant when today's standing of the pair
    /// still asks for it: a rollback while the pair is not established and allowed, a
    /// re-download while it is (as for [`Broker::retransmit`]), and no flow of the pair is
    /// exchanging (its outcome decides; a newer rollback would undo what it integrates, a
    /// re-download would be its own): see [`OwedPlan`].
    ///
    /// Without it a rollback given up was lost for good: the agent keeps the peer, and its
    /// refresh fetches every integrated peer again from the broker's MDQ service, which serves
    /// every registered entity, so a denied or deleted pair stayed integrated.
    pub fn plan_owed_trigger(
        &mut self,
        action: TriggerAction,
        to: &str,
        about: &str,
        now: SystemTime,
        rng: &mut dyn FnMut(&mut [u8]),
    ) -> OwedPlan {
        let stands = (self.relationships.contains(to, about)
            || self.relationships.contains(about, to))
            && self.pair_allowed(to, about);
        let wanted = match action {
            TriggerAction::Rollback => !stands,
            TriggerAction::FetchMetadata => stands,
        };
        let exchanging = self.flows.values().any(|f| {
            matches!(&f.state, State::Exchanging { idp, .. }
                if (idp == to && f.sp == about) || (idp == about && f.sp == to))
        });
        if exchanging {
            return OwedPlan::Later;
        }
        if !wanted {
            return OwedPlan::NotWanted;
        }
        match self.transmit(None, action, to, about, now, rng) {
            Ok(t) => {
                self.transmits.push_back(t);
                OwedPlan::Planned
            }
            Err(_) => OwedPlan::NotWanted,
        }
    }

    /// The answer to a trigger of `flow` sent to `entity`: the HTTP status and body as
    /// received. An answer for a flow that is no longer exchanging (a rollback's answer, a late
    /// one) changes nothing.
    pub fn handle_trigger_answer(
        &mut self,
        flow: &FlowId,
        entity: &str,
        status: u16,
        body: &str,
        now: SystemTime,
        rng: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(), Error> {
        match MdiResponse::from_http(status, body) {
            Ok(r) => self.leg_result(
                flow,
                entity,
                r.status,
                r.reason.unwrap_or_default(),
                now,
                rng,
            ),
            Err(e) => self.handle_trigger_failure(flow, entity, &e.to_string(), now, rng),
        }
    }

    /// A trigger of `flow` to `entity` failed in transport (after the service's retries).
    pub fn handle_trigger_failure(
        &mut self,
        flow: &FlowId,
        entity: &str,
        error: &str,
        now: SystemTime,
        rng: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(), Error> {
        let f = self.flow(flow, now)?;
        if !matches!(f.state, State::Exchanging { .. }) {
            // A rollback's or a late answer: nothing to do.
            return Ok(());
        }
        self.leg(flow, entity)?;
        let _ = self.fail(
            flow,
            FlowFailure::Unreachable {
                entity: entity.to_owned(),
                error: error.chars().take(256).collect(),
            },
            now,
            rng,
        );
        Ok(())
    }

    /// A status report (`query`, signed by the reporting entity) at the broker's DAME
    /// endpoint: the final result of an integration answered `accepted-pending`.
    pub fn handle_status_report(
        &mut self,
        query: &str,
        now: SystemTime,
        rng: &mut dyn FnMut(&mut [u8]),
    ) -> Result<StatusReport, Error> {
        let reporter = StatusReport::reporter_of(query)?;
        let keys = self.registered(&reporter)?.signing_keys()?;
        // Find the flows first so that a report for nothing does not use up its nonce. Every
        // flow waiting for this pair's integration at the reporter takes the result.
        let peer = Query::parse("status report", query)?.required("status report", "peer")?;
        let flows: Vec<FlowId> = self
            .flows
            .iter()
            .filter(|(_, f)| match &f.state {
                State::Exchanging {
                    idp,
                    idp_leg,
                    sp_leg,
                    ..
                } => {
                    (reporter == *idp && peer == f.sp && *idp_leg == Leg::Pending)
                        || (reporter == f.sp && peer == *idp && *sp_leg == Leg::Pending)
                }
                _ => false,
            })
            .map(|(id, _)| id.clone())
            .collect();
        if flows.is_empty() {
            return Err(Refusal::UnknownFlow.into());
        }
        let report = self.reports.accept(query, &keys, now)?;
        let until =
            report.issue_instant + self.reports.max_age + self.reports.clock_skew.saturating_mul(2);
        self.consume(
            format!("status-report {} {}", report.reporter, report.nonce),
            until,
        );
        for flow in &flows {
            self.leg_result(
                flow,
                &reporter,
                report.status,
                report.reason.clone(),
                now,
                rng,
            )?;
        }
        Ok(report)
    }

    fn leg(&self, flow: &FlowId, entity: &str) -> Result<Leg, Error> {
        match self.flows.get(flow) {
            Some(Flow {
                sp,
                state:
                    State::Exchanging {
                        idp,
                        idp_leg,
                        sp_leg,
                        ..
                    },
                ..
            }) => {
                if entity == idp {
                    Ok(*idp_leg)
                } else if entity == sp {
                    Ok(*sp_leg)
                } else {
                    Err(Refusal::WrongFlow.into())
                }
            }
            Some(_) => Err(Refusal::WrongState.into()),
            None => Err(Refusal::UnknownFlow.into()),
        }
    }

    fn set_leg(&mut self, flow: &FlowId, entity: &str, to: Leg) {
        if let Some(Flow {
            sp,
            state:
                State::Exchanging {
                    idp,
                    idp_leg,
                    sp_leg,
                    ..
                },
            ..
        }) = self.flows.get_mut(flow)
        {
            if entity == idp {
                *idp_leg = to;
            } else if entity == sp {
                *sp_leg = to;
            }
        }
    }

    fn leg_result(
        &mut self,
        flow: &FlowId,
        entity: &str,
        status: MdiStatus,
        reason: String,
        now: SystemTime,
        rng: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(), Error> {
        let f = self.flow(flow, now)?;
        if !matches!(f.state, State::Exchanging { .. }) {
            // A rollback's answer or a late one: nothing to do.
            return Ok(());
        }
        let leg = self.leg(flow, entity)?;
        if !matches!(leg, Leg::Sent | Leg::Pending) {
            return Err(Refusal::WrongState.into());
        }
        match status {
            MdiStatus::AcceptedPending => {
                if leg == Leg::Pending {
                    return Err(Refusal::WrongState.into());
                }
                self.set_leg(flow, entity, Leg::Pending);
            }
            MdiStatus::Integrated => {
                self.set_leg(flow, entity, Leg::Integrated);
                self.event(Event::Integrated {
                    flow: flow.clone(),
                    entity: entity.to_owned(),
                });
                self.advance(flow, now, rng)?;
            }
            MdiStatus::Refused | MdiStatus::Error => {
                let _ = self.fail(
                    flow,
                    FlowFailure::Integration {
                        entity: entity.to_owned(),
                        status,
                        reason,
                    },
                    now,
                    rng,
                );
            }
        }
        Ok(())
    }

    /// After a confirmation: send the SP's trigger (IdP first), or finish.
    fn advance(
        &mut self,
        flow: &FlowId,
        now: SystemTime,
        rng: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(), Error> {
        let Some(f) = self.flows.get(flow) else {
            return Ok(());
        };
        let State::Exchanging {
            idp,
            origin,
            idp_leg,
            sp_leg,
            ..
        } = &f.state
        else {
            return Ok(());
        };
        let (idp, sp) = (idp.clone(), f.sp.clone());
        match (idp_leg, sp_leg) {
            (Leg::Integrated, Leg::NotSent) => self.send_trigger(flow, &sp, &idp, now, rng),
            (Leg::Integrated, Leg::Integrated) => {
                let reply = match origin {
                    Origin::AuthnRequest1 { replay_query } => {
                        let sso = saml_metadata::sso::sso_location(
                            &self.registered(&idp)?.entity,
                            &Binding::HttpRedirect,
                        )?;
                        redirect::url(&sso, replay_query)
                    }
                    Origin::Discovery(d) => d.answer(&self.registered(&sp)?.entity, Some(&idp))?,
                };
                if self.relationships.record(&idp, &sp, now) {
                    self.event(Event::RelationshipEstablished {
                        idp: idp.clone(),
                        sp: sp.clone(),
                    });
                }
                if let Some(f) = self.flows.get_mut(flow) {
                    f.state = State::Done { reply };
                }
                self.event(Event::FlowDone { flow: flow.clone() });
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Fails the flow: rollback triggers for every leg that was sent (unless the pair existed
    /// before this flow, or another flow for the same pair established it since: its
    /// integration is what the agents hold now, and the relationship stays), the failure for
    /// the user agent.
    fn fail(
        &mut self,
        flow: &FlowId,
        failure: FlowFailure,
        now: SystemTime,
        rng: &mut dyn FnMut(&mut [u8]),
    ) -> UaReply {
        let Some(f) = self.flows.get_mut(flow) else {
            return UaReply::Failed(failure);
        };
        let old = std::mem::replace(&mut f.state, State::Failed(failure.clone()));
        let sp = f.sp.clone();
        if let State::Exchanging {
            idp,
            idp_leg,
            sp_leg,
            known_pair: false,
            ..
        } = old
            && !self.relationships.contains(&idp, &sp)
        {
            // A leg another flow of the pair has sent too (still exchanging) is that flow's:
            // its own outcome decides, and if it fails it rolls back. Rolled back now, the
            // agent would drop what the other flow is integrating, and the pair would be
            // recorded established with metadata gone (broker review M2).
            let shared = |to_idp: bool| {
                self.flows.iter().any(|(id, g)| {
                    id != flow
                        && g.sp == sp
                        && matches!(&g.state, State::Exchanging { idp: i, idp_leg, sp_leg, .. }
                            if *i == idp && leg_sent(if to_idp { *idp_leg } else { *sp_leg }))
                })
            };
            let (idp_shared, sp_shared) = (shared(true), shared(false));
            for (to, peer, sent) in [
                (idp.as_str(), sp.as_str(), leg_sent(idp_leg) && !idp_shared),
                (sp.as_str(), idp.as_str(), leg_sent(sp_leg) && !sp_shared),
            ] {
                if !sent {
                    continue;
                }
                if let Ok(t) =
                    self.transmit(Some(flow), TriggerAction::Rollback, to, peer, now, rng)
                {
                    self.transmits.push_back(t);
                    self.event(Event::RollbackPlanned {
                        flow: flow.clone(),
                        entity: to.to_owned(),
                    });
                }
            }
        }
        self.event(Event::FlowFailed {
            flow: flow.clone(),
            failure: failure.clone(),
        });
        UaReply::Failed(failure)
    }

    /// The waiting page's answer while `flow` runs.
    fn wait(flow: &FlowId) -> UaReply {
        UaReply::Wait {
            flow: flow.clone(),
            retry_after: Duration::from_secs(1),
        }
    }

    /// The user agent (the waiting page) asks how `flow` is going. While exchanging: wait;
    /// done: the redirect (AuthnRequest1 replayed to the IdP, or the discovery answer); failed:
    /// why. A done or failed flow is forgotten once answered here, so it cannot be resumed.
    pub fn handle_user_agent(&mut self, flow: &FlowId, now: SystemTime) -> Result<UaReply, Error> {
        let f = self.flow(flow, now)?;
        match &f.state {
            State::Exchanging { .. } => Ok(Self::wait(flow)),
            State::Done { .. } | State::Failed(_) => {
                let f = self.flows.remove(flow).ok_or(Refusal::UnknownFlow)?;
                Ok(match f.state {
                    State::Done { reply } => UaReply::Redirect(reply),
                    State::Failed(why) => UaReply::Failed(why),
                    _ => UaReply::Failed(FlowFailure::Expired),
                })
            }
            _ => Err(Refusal::WrongState.into()),
        }
    }

    /// Time passes: exchanges past their deadline fail (rollback planned), flows past their
    /// lifetime are forgotten (an exchanging one rolled back first).
    pub fn handle_timeout(&mut self, now: SystemTime, rng: &mut dyn FnMut(&mut [u8])) {
        let due: Vec<(FlowId, bool)> = self
            .flows
            .iter()
            .filter_map(|(id, f)| {
                let expired = now >= f.expires;
                match &f.state {
                    State::Exchanging { deadline, .. } if now >= *deadline || expired => {
                        Some((id.clone(), expired))
                    }
                    _ if expired => Some((id.clone(), true)),
                    _ => None,
                }
            })
            .collect();
        for (id, expired) in due {
            if matches!(
                self.flows.get(&id).map(|f| &f.state),
                Some(State::Exchanging { .. })
            ) {
                let why = if expired {
                    FlowFailure::Expired
                } else {
                    FlowFailure::Timeout
                };
                let _ = self.fail(&id, why, now, rng);
            }
            if expired {
                self.flows.remove(&id);
            }
        }
    }

    /// Forgets expired flows that need no rollback (used when the flow table is full).
    fn expire(&mut self, now: SystemTime) {
        self.flows
            .retain(|_, f| now < f.expires || matches!(f.state, State::Exchanging { .. }));
    }

    /// Registers or replaces `entity`'s metadata (an operator's import or a completed
    /// registration update) and plans a re-download trigger to each established peer that
    /// today's policies still allow for the pair (the broker's, the SP's and the IdP's, as for a
    /// new login); a peer whose policy now refuses the pair gets a rollback trigger instead, so
    /// that neither the new metadata nor the old stays integrated there. Returns how many
    /// re-download triggers were planned.
    pub fn update_entity(
        &mut self,
        entity: EntityDescriptor,
        policy: crate::registry::EntityPolicy,
        now: SystemTime,
        rng: &mut dyn FnMut(&mut [u8]),
    ) -> Result<usize, Error> {
        let id = entity.entity_id.clone();
        self.registry.insert(entity, policy, now, true)?;
        Ok(self.tell_peers(&id, None, now, rng))
    }

    /// Changes `entity_id`'s policy and tells both sides of each established pair whose
    /// standing the change moves what the pair's policies now say (the broker's, the SP's and
    /// the IdP's, as for a new login): a pair they now refuse is rolled back on both agents
    /// (the peer lets go of this entity's metadata and this entity's agent of the peer's, so a
    /// denied IdP's assertions stop being accepted at once); a pair they now allow again is
    /// fetched again on both (an earlier denial rolled it back; the relationship stays recorded
    /// either way, and a login for a refused pair is refused). A pair allowed (or refused)
    /// before and after is not told: a policy change costs triggers for what it changes only.
    /// Returns how many pairs were rolled back. Nothing changes for an unknown entity.
    pub fn change_policy(
        &mut self,
        entity_id: &str,
        policy: crate::registry::EntityPolicy,
        now: SystemTime,
        rng: &mut dyn FnMut(&mut [u8]),
    ) -> Result<usize, Error> {
        // Only the pairs whose standing the change moves are told: a change that leaves a
        // pair allowed (or refused) sends nothing for it. Otherwise every policy change, by
        // the entity itself with its token, sent two triggers per established peer.
        let peers = self.relationships.peers_of(entity_id);
        let before: Vec<bool> = peers
            .iter()
            .map(|p| self.pair_allowed(entity_id, p))
            .collect();
        self.registry.set_policy(entity_id, policy)?;
        let moved: HashSet<String> = peers
            .into_iter()
            .zip(before)
            .filter(|(p, was)| self.pair_allowed(entity_id, p) != *was)
            .map(|(p, _)| p)
            .collect();
        Ok(self.tell_peers(entity_id, Some(&moved), now, rng))
    }

    /// Whether today's policies allow the established pair of `id` and its `peer`.
    fn pair_allowed(&self, id: &str, peer: &str) -> bool {
        let (idp, sp) = self.pair_of(id, peer);
        self.check_pair(sp, idp).is_ok()
    }

    /// The established pair of `id` and its `peer` as (IdP, SP).
    fn pair_of<'p>(&self, id: &'p str, peer: &'p str) -> (&'p str, &'p str) {
        if self.relationships.contains(id, peer) {
            (id, peer)
        } else {
            (peer, id)
        }
    }

    /// Plans triggers to the established peers of `id`, by what today's policies say of each
    /// pair: after a metadata update (`policy_moved` `None`), the peer re-downloads it, or
    /// rolls it back where the pair is refused; after a policy change, for the peers in
    /// `policy_moved` only, both sides re-download each other's, or roll each other's back.
    /// Returns, after an update, how many re-downloads were planned; after a policy change,
    /// how many pairs were rolled back.
    fn tell_peers(
        &mut self,
        id: &str,
        policy_moved: Option<&HashSet<String>>,
        now: SystemTime,
        rng: &mut dyn FnMut(&mut [u8]),
    ) -> usize {
        let update = policy_moved.is_none();
        let mut n = 0;
        for peer in self.relationships.peers_of(id) {
            if policy_moved.is_some_and(|m| !m.contains(&peer)) {
                continue;
            }
            let allowed = self.pair_allowed(id, &peer);
            let action = if allowed {
                TriggerAction::FetchMetadata
            } else {
                TriggerAction::Rollback
            };
            if update == allowed {
                n += 1;
            }
            // The peer about this entity; after a policy change, this entity about the peer.
            let mut legs = vec![(peer.clone(), id.to_owned())];
            if !update {
                legs.push((id.to_owned(), peer.clone()));
            }
            for (to, about) in legs {
                if let Ok(t) = self.transmit(None, action, &to, &about, now, rng) {
                    self.transmits.push_back(t);
                }
            }
        }
        n
    }

    /// Removes `entity_id` (a deletion proven by its owner): its registration and its
    /// relationships, with a rollback trigger planned to each established peer so that what
    /// their agents integrated for it goes too. Returns how many triggers were planned.
    pub fn remove_entity(
        &mut self,
        entity_id: &str,
        now: SystemTime,
        rng: &mut dyn FnMut(&mut [u8]),
    ) -> usize {
        let peers = self.relationships.peers_of(entity_id);
        self.relationships.remove_entity(entity_id);
        self.registry.remove(entity_id);
        self.requests1.forget(entity_id);
        let mut n = 0;
        for peer in peers {
            if let Ok(t) = self.transmit(None, TriggerAction::Rollback, &peer, entity_id, now, rng)
            {
                self.transmits.push_back(t);
                n += 1;
            }
        }
        n
    }

    /// A conversion-rule query (`action=rules`, see [`crate::conversion::RulesQuery`]): the
    /// rules for the attributes the registered SP requests and the asking IdP lacks.
    pub fn handle_rules_query(&self, query: &str) -> Result<crate::conversion::RuleSet, Error> {
        let q = crate::conversion::RulesQuery::parse(query)?;
        let sp = self.registered(&q.sp)?;
        q.answer(&sp.entity, &self.rules)
    }

    /// [`Broker::handle_rules_query`] as it goes on the wire at `now`: the JSON body and its
    /// [`ANSWER_SIGNATURE_HEADER`](crate::conversion::ANSWER_SIGNATURE_HEADER) value, signed
    /// with the broker's key over `query` and the body ([`crate::conversion::sign_answer`]).
    pub fn rules_answer(&self, query: &str, now: SystemTime) -> Result<(String, String), Error> {
        let json = self.handle_rules_query(query)?.to_json()?;
        let signature = crate::conversion::sign_answer(query, json.as_bytes(), &self.key, now)?;
        Ok((json, signature))
    }

    /// `flow` as a record for a shared store (`None` when the broker does not hold it).
    #[must_use]
    pub fn export_flow(&self, flow: &FlowId) -> Option<FlowRecord> {
        self.flows.get(flow).map(|f| FlowRecord {
            id: flow.clone(),
            flow: f.clone(),
        })
    }

    /// Takes over a flow from a shared store (written by this or another instance); replaces
    /// what this instance held for it. An expired record is refused ([`Refusal::UnknownFlow`]),
    /// so is one beyond the flow cap ([`Refusal::Capacity`]). What stays per instance: the
    /// replay windows (Response2 assertion IDs, AuthnRequest1 IDs, status-report nonces) and the
    /// rate limiters; a deployment of several instances shares them through its store.
    pub fn import_flow(&mut self, record: FlowRecord, now: SystemTime) -> Result<(), Error> {
        if now >= record.flow.expires {
            return Err(Refusal::UnknownFlow.into());
        }
        self.import_due_flow(record, now)
    }

    /// Imports a stored flow whatever its expiry, for [`Broker::handle_timeout`] to fail (and
    /// roll back) or forget: what a shared store's periodic step does with the flows due. A
    /// flow past its lifetime is refused by [`Broker::import_flow`] (no request may resume
    /// it), so without this it would stay in the store for good, and an exchange that expired
    /// would never be rolled back. Only [`Broker::handle_timeout`] should run on flows
    /// imported this way. The flow cap applies as for [`Broker::import_flow`].
    pub fn import_due_flow(&mut self, record: FlowRecord, now: SystemTime) -> Result<(), Error> {
        if !self.flows.contains_key(&record.id) && self.flows.len() >= self.policy.max_flows {
            self.expire(now);
            if self.flows.len() >= self.policy.max_flows {
                return Err(Refusal::Capacity.into());
            }
        }
        self.flows.insert(record.id, record.flow);
        Ok(())
    }

    /// Forgets `flow` on this instance (after writing it back to a shared store); whether it
    /// was held.
    pub fn forget_flow(&mut self, flow: &FlowId) -> bool {
        self.flows.remove(flow).is_some()
    }

    /// The flows this instance holds.
    pub fn flow_ids(&self) -> impl Iterator<Item = &FlowId> {
        self.flows.keys()
    }

    /// The state name of `flow` (for logs).
    #[must_use]
    pub fn state_name(&self, flow: &FlowId) -> Option<&'static str> {
        self.flows.get(flow).map(|f| f.state.name())
    }
}

/// The Redirect-binding part of an authenticate query, octets as received, in the order the
/// binding signs them: `SAMLRequest`, `RelayState`, `SigAlg`, then `Signature`.
fn replay_query(query: &str) -> Result<String, Error> {
    let q = Query::parse("authenticate request", query)?;
    let mut out = String::new();
    for name in ["SAMLRequest", "RelayState", "SigAlg", "Signature"] {
        if let Some(v) = q.raw(name) {
            if !out.is_empty() {
                out.push('&');
            }
            out.push_str(name);
            out.push('=');
            out.push_str(v);
        }
    }
    Ok(out)
}

/// Most bytes of a NameID value a broker event carries, and of a status code a failed flow
/// does (its beginning, cut at a character boundary, then `…`): events are logged and kept in
/// the audit table, and neither has a length bound of its own (review S2, G1). Real NameIDs are under 256 bytes (SAML Core §8.3.7,
/// §8.3.8 bound persistent and transient ones so).
pub const MAX_EVENT_SUBJECT: usize = 256;

/// `subject` as a broker event carries it ([`MAX_EVENT_SUBJECT`]).
fn bounded_subject(subject: &str) -> String {
    saml_core::xml::cursor::shortened(subject, MAX_EVENT_SUBJECT).into_owned()
}

/// Whether the Response `xml`'s root `InResponseTo` is `request_id` (read unverified: only used
/// to tie an unsigned error status to the flow whose random request ID it names). The root's
/// attribute as parsed: a search of the bytes found the ID in a `StatusMessage` or a comment
/// and failed a flow on a Response that answered nothing, and missed one written with single
/// quotes (review S4).
fn answers(xml: &[u8], request_id: &str) -> bool {
    let Ok(mut r) = saml_core::xml::Reader::new(xml, saml_core::xml::Limits::default()) else {
        return false;
    };
    loop {
        match r.next() {
            Ok(Some(saml_core::xml::Event::Start(root))) => {
                return root
                    .attribute("InResponseTo")
                    .is_some_and(|a| a.value() == request_id);
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return false,
        }
    }
}

/// Parses a stored AuthnRequest1 replay query (for tests and observers): the request inside.
pub fn replayed_request(query: &str) -> Result<AuthnRequest, Error> {
    let m = redirect::decode(query, crate::authenticate::MAX_AUTHN_REQUEST)?;
    Ok(AuthnRequest::parse(&m.xml)?)
}

#[cfg(test)]
mod requests1_tests {
    #![allow(clippy::unwrap_used)]
    use super::Requests1;
    use crate::error::Refusal;
    use std::time::{Duration, UNIX_EPOCH};

    /// One SP's volume fills its own share only; the total is a cap over all SPs, whose
    /// expired IDs a full table sweeps; a removed SP's IDs are forgotten.
    #[test]
    fn each_sp_has_its_share_and_the_total_is_bounded() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let until = t0 + Duration::from_secs(420);
        let mut r = Requests1::new(100, 250);
        for i in 0..100 {
            let id = format!("_a{i}");
            r.check("https://evil.example/sp", &id, t0).unwrap();
            r.remember("https://evil.example/sp", &id, until);
        }
        assert_eq!(
            r.check("https://evil.example/sp", "_more", t0),
            Err(Refusal::Capacity)
        );
        // Another SP still logs its users in, and replays stay refused per SP.
        r.check("https://good.example/sp", "_a1", t0).unwrap();
        r.remember("https://good.example/sp", "_a1", until);
        assert_eq!(
            r.check("https://good.example/sp", "_a1", t0),
            Err(Refusal::Replayed)
        );
        // Two more SPs at their share reach the total: now nobody new gets in ...
        for sp in ["https://evil.example/sp2", "https://evil.example/sp3"] {
            for i in 0..100 {
                let id = format!("_b{i}");
                if r.check(sp, &id, t0).is_ok() {
                    r.remember(sp, &id, until);
                }
            }
        }
        assert_eq!(r.held, 250);
        assert_eq!(
            r.check("https://good.example/sp", "_a2", t0),
            Err(Refusal::Capacity)
        );
        // ... until the IDs expire: the next check sweeps every SP's.
        let later = until + Duration::from_secs(1);
        r.check("https://good.example/sp", "_a2", later).unwrap();
        assert_eq!(r.held, 0);
        assert!(r.by_sp.len() <= 1, "{}", r.by_sp.len());
        // A removed SP's IDs no longer count.
        r.remember(
            "https://good.example/sp",
            "_a2",
            later + Duration::from_secs(420),
        );
        r.forget("https://good.example/sp");
        assert_eq!(r.held, 0);
    }
}
