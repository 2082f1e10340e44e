//! `dame-broker`: [`dame_protocol::broker::Broker`] over HTTP, with its state in a [`Store`].
//!
//! ```text
//! GET  /ds?entityID=..&return=..   discovery (IdP Discovery Profile): the IdP list (plain HTML)
//! GET  /ds/search?sp=..&q=..       the IdP list filtered by name, keyword or entityID
//! GET  /ds/choose?idp=..           the user's choice -> 302 (back to the SP, or to the IdP)
//! GET  /DAME?action=authenticate.. AuthnRequest1 -> 302 to the IdP with AuthnRequest2
//! GET  /DAME?action=status..       an entity's signed status report
//! GET  /DAME?action=rules..        conversion rules for an SP's missing attributes (JSON)
//! POST /acs                        Response2 -> 303 /wait (triggers go out)
//! GET  /wait                       the waiting page; then 302 (AuthnRequest1 replayed) or why not
//! GET  /mdq/entities/<id>          the MDQ service (signed per entity, ETag/304)
//! GET  /metadata                   the broker's own signed metadata
//! POST /admin/entities             operator import (Bearer token): metadata XML; query
//!                                  `unmodified_sp`, `allow_unsigned`; or an entity's own
//!                                  token: an update of its own metadata (checked as a
//!                                  self-registration is, and rate limited per address)
//! PUT  /admin/policy?entityID=..   the entity's allow/deny lists and modes (JSON): the
//!                                  operator or the entity's own token (rate limited per
//!                                  address: every change makes each instance reload)
//! PUT  /admin/rules                operator: the conversion rules (JSON)
//! POST /register, /register/verify self-service registration, update and deletion with proof
//!                                  of ownership (see `registration`); a registration returns
//!                                  the entity's token
//! GET  /health, /metrics
//! ```
//! The user's flow is named by the `dame_flow` cookie. Every change to a flow, an entity, a
//! relationship or the rules is written to the store before the answer goes out, so a restart
//! continues where it stopped; audit events go to the store's log, pruned after
//! `audit_retention_days`. A new flow starts unauthenticated (anyone can send a discovery
//! request): such flows are capped per client address (IPv4, or IPv6 /64) and in all, below
//! `max_flows`, and a full share gives way from the address holding the most
//! ([`Store::admit_pending`]), so a few addresses cannot crowd out other users' logins.
//! Bodies are limited to 256 KiB, a registrant's metadata (`/register`, an owner's update) to
//! `[registration] max_upload_bytes` (64 KiB by default; review K2); the listener's `[http]`
//! limits ([`crate::config::HttpLimits`]) bound the time to send a request's header and to send and
//! answer a whole request (30 s by default, the body included), and the connections open at
//! once, in all and per client address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use dame_protocol::broker::{
    Broker, BrokerPolicy, Event, FlowId, FlowRecord, OwedPlan, Phase, Transmit, TriggerOrder,
    UaReply,
};
use dame_protocol::conversion::RuleSet;
use dame_protocol::mdi::{MdiResponse, MdiStatus};
use dame_protocol::mdq_service::{MdqRequest, MdqService};
use dame_protocol::registry::EntityPolicy;
use dame_protocol::trigger::TriggerAction;
use dame_protocol::{ErrorKind, Refusal};
use saml_core::dsig::SignOptions;
use saml_core::protocol::openssl_random;
use saml_metadata::builder::RoleBuilder as _;
use saml_metadata::model::{Binding, EntityDescriptor, Metadata, SpSso};

mod registration;

use crate::config::BrokerConfig;
use crate::error::Error;
use crate::log;
use crate::store::{
    Admission, Changes, FlowCaps, FlowData, FlowSelect, Generation, Origin, OwedTrigger, Store,
    StoredEntity,
};

const COOKIE: &str = "dame_flow";
const BODY_LIMIT: usize = 256 << 10;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `t` as Unix milliseconds (0 before the epoch).
fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[derive(Debug, Default)]
struct Metrics {
    requests: AtomicU64,
    flows_done: AtomicU64,
    flows_failed: AtomicU64,
    triggers_sent: AtomicU64,
    /// Triggers sent again after no acknowledgement ([`Broker::retransmit`]).
    triggers_retried: AtomicU64,
    refusals: AtomicU64,
    /// Times the discovery page's list of IdPs was built (once per registry revision).
    directory_builds: AtomicU64,
}

/// One IdP as the discovery page lists it.
#[derive(Debug)]
struct Listing {
    /// The mdui display name, else the organization's, else the entityID.
    name: String,
    id: String,
    /// The first mdui logo the page may show ([`safe_logo`]).
    logo: Option<String>,
    /// What a search looks in, lowercased: the entityID, the names, the mdui keywords.
    hay: Vec<String>,
    /// Where the entityID points (its host, else the entityID): shown beside the name.
    host: String,
    /// Whether another IdP shows the same name (compared without case, accents kept, white
    /// space collapsed): a registrant can name its IdP like a known one (GÉANT-TrustBroker's
    /// threat "a name that imitates a known one", broker review L5), so both are marked and
    /// the user is told to look at the address.
    shared_name: bool,
}

/// Most `mdui:Keywords` words of one IdP a discovery search looks in (the first ones, over
/// all languages). Review K2: every search scanned all of them, and a registrant's IdP could
/// carry about 250 KiB of keywords.
const MAX_HAY_KEYWORDS: usize = 64;

/// Most bytes of one keyword a discovery search looks in (its beginning).
const MAX_KEYWORD_BYTES: usize = 64;

/// Most display names of one IdP (mdui's, then the organization's, over all languages) a
/// discovery search looks in. Self-registered names were not bounded: a registrant's IdP could
/// carry thousands, each scanned by every search and held in the listing.
const MAX_HAY_NAMES: usize = 32;

/// Most bytes of one name a discovery search looks in, and the page shows (its beginning). Real
/// IdPs' display names are under a hundred bytes.
const MAX_NAME_BYTES: usize = 256;

use saml_core::xml::cursor::cut_to as cut;

/// `word` lower-cased, cut to at most `max` bytes at a character boundary (before and after
/// lower-casing, which can lengthen it).
fn lowered(word: &str, max: usize) -> String {
    let mut w = cut(word, max.saturating_mul(4)).to_lowercase();
    let end = cut(&w, max).len();
    w.truncate(end);
    w
}

/// `word` lower-cased, cut to at most [`MAX_KEYWORD_BYTES`] bytes at a character boundary.
fn keyword(word: &str) -> String {
    lowered(word, MAX_KEYWORD_BYTES)
}

impl Listing {
    /// The listings of `idps`, sorted by name (then entityID).
    fn all(idps: &[Arc<EntityDescriptor>]) -> Vec<Listing> {
        let mut list: Vec<Listing> = idps
            .iter()
            .filter_map(|e| {
                let idp = e.idp()?;
                let id = e.entity_id.clone();
                let ui = idp.common.extensions.ui_info.as_ref();
                let org = e.organization.as_ref();
                let name = ui
                    .and_then(|u| u.display_names.first())
                    .or_else(|| org.and_then(|o| o.display_names.first()))
                    .map_or(id.as_str(), |l| l.value.as_str());
                // An IdP without a display name is listed by its entityID (up to 1,024
                // bytes), cut like a name; the whole entityID is in the small print.
                let name = cut(name, MAX_NAME_BYTES).to_owned();
                let mut hay = vec![id.to_lowercase(), name.to_lowercase()];
                let ui_names = ui.into_iter().flat_map(|u| u.display_names.iter());
                let org_names = org.into_iter().flat_map(|o| o.display_names.iter());
                hay.extend(
                    ui_names
                        .chain(org_names)
                        .take(MAX_HAY_NAMES)
                        .map(|l| lowered(&l.value, MAX_NAME_BYTES)),
                );
                if let Some(u) = ui {
                    hay.extend(
                        u.keywords
                            .iter()
                            .flat_map(|k| k.value.iter())
                            .take(MAX_HAY_KEYWORDS)
                            .map(|w| keyword(w)),
                    );
                }
                let logo = ui
                    .and_then(|u| u.logos.iter().find(|l| safe_logo(&l.url)))
                    .map(|l| l.url.clone());
                let host = reqwest::Url::parse(&id)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_owned))
                    .unwrap_or_else(|| id.clone());
                Some(Listing {
                    name,
                    id,
                    logo,
                    hay,
                    host,
                    shared_name: false,
                })
            })
            .collect();
        list.sort_by(|a, b| (&a.name, &a.id, &a.logo).cmp(&(&b.name, &b.id, &b.logo)));
        let key = |name: &str| {
            name.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase()
        };
        let mut count: HashMap<String, usize> = HashMap::new();
        for l in &list {
            *count.entry(key(&l.name)).or_default() += 1;
        }
        for l in &mut list {
            l.shared_name = count.get(&key(&l.name)).is_some_and(|&n| n > 1);
        }
        list
    }
}

/// The running broker.
pub struct BrokerService<S: Store> {
    core: Mutex<Broker>,
    generation: Mutex<Generation>,
    /// Digests of the stored entities as last loaded (see `load_entities`).
    digests: Mutex<HashMap<String, [u8; 32]>>,
    registrations: Mutex<dame_protocol::registration::Registrations>,
    /// Waiting pages held open, by flow: woken when a step on this instance changes the flow.
    waiters: Mutex<HashMap<String, Arc<tokio::sync::Notify>>>,
    store: S,
    http: reqwest::Client,
    cfg: BrokerConfig,
    token: String,
    metadata: Vec<u8>,
    /// The broker's signing key, for what is signed outside the core's lock (rules answers).
    key: saml_core::dsig::SigningKey,
    metrics: Metrics,
    /// The discovery page's IdPs at a registry entities revision ([`BrokerService::directory`]).
    directory: Mutex<Option<(u64, Arc<Vec<Listing>>)>>,
    /// Triggers in flight per addressed entity ([`TRIGGERS_PER_AGENT`] each).
    pacing: Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
    /// The `dame_flows` gauge as last counted, and when: `/metrics` is open to anyone, so the
    /// store counts at most once per [`METRICS_FLOW_COUNT_AGE`] however often it is asked.
    flow_gauge: tokio::sync::Mutex<Option<(Instant, i64, i64)>>,
    /// When re-signing failures were last logged (at most once a minute).
    resign_logged: Mutex<Option<Instant>>,
    /// The pairs (addressed entity, peer) whose owed trigger this instance is sending or
    /// retrying, with how many chains (see [`BrokerService::retrying`]).
    retrying: Mutex<HashMap<(String, String), usize>>,
}

/// Most published documents re-signed per second (the broker's ticker, through
/// `Registry::refresh_documents`): each is an RSA signature made under the core's lock, so
/// documents signed together at a start are re-signed a few at a time (36,000 an hour; the
/// configuration check keeps `max_entities` within a quarter of `document_validity_hours`).
pub const RESIGN_BATCH: usize = 10;

/// How long `/metrics` answers with the flow count it last took from the store.
const METRICS_FLOW_COUNT_AGE: Duration = Duration::from_secs(1);

/// Triggers in flight at once to one agent: a policy change or a deletion that moves many
/// pairs of one entity is paced, not fired all at once at its agent (agent review M2: beyond
/// the agent's connection cap they were refused, and nothing sent them again).
pub const TRIGGERS_PER_AGENT: usize = 8;

/// When a trigger without acknowledgement (no answer, an unreadable one, or `error`) is sent
/// again, in seconds after the previous attempt: six retries within 270 s, inside the agent's
/// 5-minute window for the decision's issue instant, which a retry keeps.
pub const TRIGGER_RETRY_DELAYS_S: [u64; 6] = [5, 10, 25, 50, 90, 90];

/// How often the triggers given up after [`TRIGGER_RETRY_DELAYS_S`] are planned again, with a
/// fresh issue instant, while the pair's standing still asks for them (an agent down for
/// longer than the retries gets its rollback when it is back, within this time).
pub const OWED_TRIGGER_EVERY: Duration = Duration::from_secs(600);

/// Most triggers owed at once, in the store across every instance ([`Store::owe`]: from the
/// commit of the step that queued a rollback or re-download until its acknowledgement). A
/// deletion of an entity with thousands of peers whose agents are all down fills it; beyond it
/// a new pair's trigger takes the place of one of the recipient owed the most, or, when every
/// recipient is owed about as much, is sent and retried as usual but, given up, is logged and
/// dropped.
pub const MAX_OWED_TRIGGERS: usize = 10_000;

/// The record a trigger is owed by until acknowledged, if it is one the broker owes: a
/// rollback, or a re-download outside a flow (a flow's re-downloads live and die with it).
fn owed_of(t: &Transmit) -> Option<OwedTrigger> {
    (t.action == TriggerAction::Rollback || t.flow.is_none()).then(|| OwedTrigger {
        recipient: t.to.clone(),
        about: t.about.clone(),
        action: t.action.as_str().to_owned(),
        issued: unix_ms(t.issued),
    })
}

/// When an owed trigger still being retried by the instance that sent it becomes due to be
/// planned again by any instance: after its retries ([`TRIGGER_RETRY_DELAYS_S`], 270 s) and a
/// margin. A trigger whose instance stopped during its retries is so planned again.
const OWED_AFTER_RETRIES: Duration = Duration::from_secs(330);

/// Most owed triggers planned again in one round of [`OWED_TRIGGER_EVERY`] (one store
/// transaction each); the rest wait for the next round.
const OWED_BATCH: usize = 1_000;

impl<S: Store> std::fmt::Debug for BrokerService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerService")
            .field("entity_id", &self.cfg.entity_id)
            .finish_non_exhaustive()
    }
}

/// What a step returns besides its changes: the handler's result, the triggers to send, the
/// events to log, and the flows it changed.
type Stepped<R> = (R, Vec<Transmit>, Vec<Event>, Vec<String>);

/// Registers (or replaces) the stored entities in `core` whose metadata or policy changed
/// since `seen` (their digests) was taken, and forgets those no longer stored: a reload costs
/// one re-signature per changed entity, not one per registered entity. Returns what could not
/// be loaded (entityID, why); the others are loaded regardless. An entity the operator did not
/// import that claims more than its owner's proof backs is left out and logged
/// (`entity-not-loaded`), not returned: the broker starts without it.
fn load_entities(
    core: &mut Broker,
    seen: &mut HashMap<String, [u8; 32]>,
    entities: Vec<StoredEntity>,
) -> Vec<(String, String)> {
    let now = SystemTime::now();
    let stored: std::collections::HashSet<&str> =
        entities.iter().map(|e| e.entity_id.as_str()).collect();
    let gone: Vec<String> = core
        .registry
        .entity_ids()
        .filter(|id| !stored.contains(id))
        .map(str::to_owned)
        .collect();
    for id in gone {
        core.registry.remove(&id);
        seen.remove(&id);
    }
    let mut failed = Vec::new();
    for e in entities {
        let mut h = openssl::sha::Sha256::new();
        h.update(e.xml.as_bytes());
        h.update(&[0]);
        h.update(e.policy.as_bytes());
        h.update(&[0]);
        h.update(e.origin.map_or("", Origin::as_str).as_bytes());
        let digest = h.finish();
        if seen.get(&e.entity_id) == Some(&digest) && core.registry.get(&e.entity_id).is_some() {
            continue;
        }
        let entity = match saml_metadata::load::parse_unverified(e.xml.as_bytes()) {
            Ok(Metadata::Entity(ent)) => *ent,
            _ => {
                failed.push((e.entity_id, "the stored metadata does not parse".into()));
                continue;
            }
        };
        let policy: EntityPolicy = match serde_json::from_str(&e.policy) {
            Ok(p) => p,
            Err(err) => {
                failed.push((e.entity_id, format!("policy: {err}")));
                continue;
            }
        };
        // What the operator did not import is held to what its owner's proof backs, also
        // when loaded: rows from before the origin was recorded (a self-registration then
        // re-signed any scope or entity category) and rows written by other means.
        if e.origin != Some(Origin::Operator)
            && let Err(err) = dame_protocol::registry::validate_self_registered(&entity)
        {
            core.registry.remove(&e.entity_id);
            seen.remove(&e.entity_id);
            log(&[
                ("event", "entity-not-loaded".into()),
                ("entity", e.entity_id),
                ("error", err.to_string()),
                (
                    "remedy",
                    "not imported by the operator; if you vouch for it, import it again \
                     (POST /admin/entities), else delete it"
                        .into(),
                ),
            ]);
            continue;
        }
        // What the operator did not import counts against max_self_registered_bytes (review
        // K2); loaded whatever the sum: the store is the record.
        let owned = (e.origin != Some(Origin::Operator)).then_some(e.xml.len());
        match core.registry.insert(entity, policy, now, true) {
            Ok(_) => {
                core.registry.set_self_registered(&e.entity_id, owned);
                seen.insert(e.entity_id, digest);
            }
            Err(err) => failed.push((e.entity_id, err.to_string())),
        }
    }
    failed
}

/// Makes the store's relationships `core`'s: the store is the record (every step writes back
/// what it established), so pairs it no longer holds (an entity deleted here or by another
/// instance) go from memory too, and no trigger is planned for them.
fn load_relationships(core: &mut Broker, pairs: Vec<(String, String, i64)>) {
    core.relationships = dame_protocol::relationships::Relationships::default();
    for (idp, sp, since) in pairs {
        let since = UNIX_EPOCH + Duration::from_secs(u64::try_from(since).unwrap_or(0));
        let _ = core.relationships.record(&idp, &sp, since);
    }
}

impl<S: Store> BrokerService<S> {
    /// The broker for `cfg` with `store`: keys read, state loaded from the store.
    pub async fn new(cfg: BrokerConfig, store: S) -> Result<Arc<Self>, Error> {
        let (key, cert_pem, token) = cfg.secrets()?;
        let der = openssl::x509::X509::from_pem(&cert_pem)
            .and_then(|c| c.to_der())
            .map_err(|e| Error::config("certificate", e.to_string()))?;
        let me = EntityDescriptor::builder(&cfg.entity_id)
            .sp(SpSso::builder()
                .signing_certificate(der)
                .acs(Binding::HttpPost, &format!("{}/acs", cfg.public_url))
                .authn_requests_signed(true))
            .build()
            .map_err(|e| Error::config("entity_id", e.to_string()))?;
        let metadata = me
            .sign(&key, &SignOptions::default())
            .map_err(|e| Error::config("key", e.to_string()))?;
        let order = if cfg.trigger_order == "both" {
            TriggerOrder::Both
        } else {
            TriggerOrder::IdpFirst
        };
        let policy = BrokerPolicy::default()
            .with_trigger_order(order)
            .with_times(
                Duration::from_secs(cfg.flow_lifetime_s),
                Duration::from_secs(cfg.exchange_deadline_s),
            );
        let per_minute = cfg.rate_per_source_per_minute;
        let policy = policy
            .clone()
            .with_rates((f64::from(per_minute) / 60.0, per_minute), policy.per_user)
            .with_max_requests1(
                cfg.max_authn_requests1_per_sp as usize,
                (cfg.max_authn_requests1_per_sp as usize).saturating_mul(20),
            );
        let mut core = Broker::new(me, key.clone(), policy)?;
        core.registry.loopback_http = cfg.allow_loopback_http;
        core.registry.max_entities = cfg.max_entities as usize;
        core.registry.max_per_domain = cfg.max_entities_per_domain as usize;
        core.registry.max_self_registered_bytes =
            usize::try_from(cfg.max_self_registered_bytes).unwrap_or(usize::MAX);
        core.registry.validity = Duration::from_secs(u64::from(cfg.document_validity_hours) * 3600);
        core.registry.cache_duration =
            Duration::from_secs(u64::from(cfg.document_cache_duration_s));
        let generation = store.generation().await?;
        let mut digests = HashMap::new();
        if let Some((id, why)) = load_entities(&mut core, &mut digests, store.entities().await?)
            .into_iter()
            .next()
        {
            return Err(Error::Store(format!("entity {id}: {why}")));
        }
        load_relationships(&mut core, store.relationships().await?);
        if let Some(json) = store.rules().await? {
            core.rules = RuleSet::from_json(json.as_bytes())?;
        }
        // No proxy from the environment: the target checks (public addresses only) see the
        // name the trigger goes to only when the broker resolves it itself (broker review L3).
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(Duration::from_millis(cfg.trigger_timeout_ms))
            .dns_resolver(Arc::new(SyncResolver(SyncTargets::of(&cfg))));
        let http = crate::tls::trust(http, "agent_ca", cfg.agent_ca.as_deref())?
            .build()
            .map_err(|e| Error::Http(e.to_string()))?;
        Ok(Arc::new(BrokerService {
            core: Mutex::new(core),
            generation: Mutex::new(generation),
            digests: Mutex::new(digests),
            waiters: Mutex::new(HashMap::new()),
            flow_gauge: tokio::sync::Mutex::new(None),
            retrying: Mutex::new(HashMap::new()),
            resign_logged: Mutex::new(None),
            registrations: Mutex::new(
                dame_protocol::registration::Registrations::new()
                    .with_max_upload(cfg.registration.max_upload_bytes as usize),
            ),
            store,
            http,
            cfg,
            token,
            metadata,
            key,
            metrics: Metrics::default(),
            directory: Mutex::new(None),
            pacing: Mutex::new(HashMap::new()),
        }))
    }

    fn core(&self) -> std::sync::MutexGuard<'_, Broker> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn registrations(
        &self,
    ) -> std::sync::MutexGuard<'_, dame_protocol::registration::Registrations> {
        self.registrations.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One step of the protocol in one store transaction: the flows `select` names are
    /// locked and imported, `f` runs on the core, and what it changed (flows, one-time values,
    /// relationships, audit events) is written back before anything leaves: triggers go out
    /// and events are logged only after the commit. The core holds no flow between steps, so
    /// any instance sharing the store can take the next one.
    async fn step<R: Send>(
        self: &Arc<Self>,
        select: FlowSelect<'_>,
        f: impl FnOnce(&mut Broker, SystemTime) -> R + Send,
    ) -> Result<R, Error> {
        self.step_from(select, None, f).await
    }

    /// [`Self::step`] for a request from the client address key `source`: a flow it creates
    /// is recorded with it while unauthenticated (see [`Self::admit`]).
    async fn step_from<R: Send>(
        self: &Arc<Self>,
        select: FlowSelect<'_>,
        source: Option<&str>,
        f: impl FnOnce(&mut Broker, SystemTime) -> R + Send,
    ) -> Result<R, Error> {
        self.step_changing(select, source, None, f).await
    }

    /// [`Self::step`] deleting the entity `deleting` from the store (with its relationships
    /// and tokens) in the step's own transaction: `f` removes it from the core, and the
    /// rollbacks that queues are owed in the same commit as the deletion (review D6: a broker
    /// stopped between a separate deletion and the step lost them). If the step fails, the
    /// core is made what the store holds again (the entity still registered).
    async fn step_deleting<R: Send>(
        self: &Arc<Self>,
        deleting: &str,
        f: impl FnOnce(&mut Broker, SystemTime) -> R + Send,
    ) -> Result<R, Error> {
        let r = self
            .step_changing(FlowSelect::None, None, Some(deleting), f)
            .await;
        if r.is_err() {
            {
                let mut g = self.generation.lock().unwrap_or_else(|p| p.into_inner());
                g.relationships = i64::MIN;
            }
            self.resync(deleting).await;
        }
        r
    }

    /// [`Self::step_from`], deleting the entity `deleting` if given (see
    /// [`Self::step_deleting`]).
    async fn step_changing<R: Send>(
        self: &Arc<Self>,
        select: FlowSelect<'_>,
        source: Option<&str>,
        deleting: Option<&str>,
        f: impl FnOnce(&mut Broker, SystemTime) -> R + Send,
    ) -> Result<R, Error> {
        let started = Instant::now();
        let (out, transmits, events, changed) =
            self.commit_step(select, source, deleting, f).await?;
        // Waiting pages of the flows that changed look again (see `wait`).
        {
            let waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
            for id in &changed {
                if let Some(n) = waiters.get(id) {
                    n.notify_waiters();
                }
            }
        }
        for e in &events {
            match e {
                Event::FlowDone { .. } => {
                    self.metrics.flows_done.fetch_add(1, Ordering::Relaxed);
                }
                Event::FlowFailed { .. } => {
                    self.metrics.flows_failed.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
            log(&[
                ("event", format!("{e:?}")),
                (
                    "ms",
                    format!("{:.1}", started.elapsed().as_secs_f64() * 1e3),
                ),
            ]);
        }
        for t in transmits {
            let svc = self.clone();
            self.metrics.triggers_sent.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(svc.send(t, 0));
        }
        Ok(out)
    }

    /// The part of [`Self::step_from`] up to the commit: what leaves (triggers, events, the
    /// waiting pages of the flows changed) is returned, not yet sent.
    async fn commit_step<R: Send>(
        self: &Arc<Self>,
        select: FlowSelect<'_>,
        source: Option<&str>,
        deleting: Option<&str>,
        f: impl FnOnce(&mut Broker, SystemTime) -> R + Send,
    ) -> Result<Stepped<R>, Error> {
        let now = SystemTime::now();
        // The periodic step takes the flows due, expired ones included (to roll back and
        // forget them).
        let due = matches!(select, FlowSelect::Due(_));
        self.store
            .transact(select, unix(now), |records| {
                let (mut changes, stepped) = self.run_step(records, now, source, due, f);
                changes.deleted.extend(deleting.map(str::to_owned));
                (changes, stepped)
            })
            .await
    }

    /// The synchronous part of [`Self::step`], inside the transaction.
    fn run_step<R>(
        &self,
        records: Vec<String>,
        now: SystemTime,
        source: Option<&str>,
        due: bool,
        f: impl FnOnce(&mut Broker, SystemTime) -> R,
    ) -> (Changes, Stepped<R>) {
        let mut core = self.core();
        let mut before: HashMap<FlowId, String> = HashMap::new();
        for json in records {
            match serde_json::from_str::<FlowRecord>(&json) {
                Ok(rec) => {
                    let id = rec.id.clone();
                    let imported = if due {
                        core.import_due_flow(rec, now)
                    } else {
                        core.import_flow(rec, now)
                    };
                    if imported.is_ok() {
                        before.insert(id, json);
                    }
                }
                Err(e) => log(&[
                    ("event", "store-error".into()),
                    ("error", format!("unreadable flow record: {e}")),
                ]),
            }
        }
        let out = f(&mut core, now);
        let mut changes = Changes::default();
        let held: Vec<FlowId> = core.flow_ids().cloned().collect();
        for id in &held {
            // Before Response2 nobody is authenticated: anyone can have started it.
            let pending = matches!(
                core.phase(id),
                Some(Phase::ChoosingIdp | Phase::AwaitingAuthnRequest1 | Phase::AwaitingResponse2)
            );
            let source = source
                .filter(|_| !before.contains_key(id))
                .map(str::to_owned);
            if let Some(rec) = core.export_flow(id) {
                match serde_json::to_string(&rec) {
                    Ok(json) if before.get(id) != Some(&json) => changes.flows.push((
                        id.as_str().to_owned(),
                        Some(FlowData {
                            record: json,
                            expires: unix(rec.expires()),
                            due: unix(rec.due()),
                            pair: rec
                                .exchanging_pair()
                                .map(|(i, s)| (i.to_owned(), s.to_owned())),
                            pending,
                            source,
                        }),
                    )),
                    Ok(_) => {}
                    Err(e) => log(&[
                        ("event", "store-error".into()),
                        ("error", format!("flow record: {e}")),
                    ]),
                }
            }
            core.forget_flow(id);
        }
        for id in before.keys() {
            if !held.contains(id) {
                changes.flows.push((id.as_str().to_owned(), None));
            }
        }
        changes.consumed = std::iter::from_fn(|| core.poll_consumed())
            .map(|c| (c.key, unix(c.until).saturating_add(1)))
            .collect();
        let transmits: Vec<Transmit> = std::iter::from_fn(|| core.poll_transmit()).collect();
        let events: Vec<Event> = std::iter::from_fn(|| core.poll_event()).collect();
        let at = unix(now);
        // Owed from the commit on, with the lease its first sending renews (review D6).
        let lease = at + OWED_AFTER_RETRIES.as_secs() as i64;
        changes.owed = transmits
            .iter()
            .filter_map(owed_of)
            .map(|o| (o, lease, MAX_OWED_TRIGGERS))
            .collect();
        for e in &events {
            if let Event::RelationshipEstablished { idp, sp } = e {
                changes.relationships.push((idp.clone(), sp.clone(), at));
            }
            changes.audit.push((at, format!("{e:?}")));
        }
        let changed = changes.flows.iter().map(|(id, _)| id.clone()).collect();
        (changes, (out, transmits, events, changed))
    }

    /// Makes `entity_id` in the core what the store holds again, after a change that reached
    /// the core but not the store (a registration, update or deletion whose store write
    /// failed): reloaded now if the store answers, else by the next refresh (every second),
    /// which this marks as due. The store is the record, so a failed write leaves nothing of
    /// the change behind.
    async fn resync(&self, entity_id: &str) {
        self.digests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(entity_id);
        self.generation
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .registry = i64::MIN;
        if let Err(e) = self.refresh().await {
            log(&[
                ("event", "store-error".into()),
                ("entity", entity_id.to_owned()),
                ("error", format!("resync deferred: {e}")),
            ]);
        }
    }

    /// Reloads what another instance changed: the registry and rules when the store's
    /// registry generation moved, the relationships when theirs did.
    async fn refresh(&self) -> Result<(), Error> {
        // The core's registry revision before the store is read: a change this instance makes
        // meanwhile (an import, a registration: stored, then applied to the core) is newer
        // than the snapshot, which would take it back out as "no longer stored".
        let before = self.core().registry.revision();
        let g = self.store.generation().await?;
        let seen = *self.generation.lock().unwrap_or_else(|p| p.into_inner());
        if g == seen {
            return Ok(());
        }
        let entities = if g.registry == seen.registry {
            None
        } else {
            Some((self.store.entities().await?, self.store.rules().await?))
        };
        let pairs = if g.relationships == seen.relationships {
            None
        } else {
            Some(self.store.relationships().await?)
        };
        self.apply_refresh(before, g, entities, pairs)?;
        Ok(())
    }

    /// Re-signs, at `now`, up to [`RESIGN_BATCH`] of the published documents with less than
    /// half their validity left ([`dame_protocol::registry::Registry::refresh_documents`];
    /// conversion review M6: nothing re-signed them while the broker ran, so every integrated
    /// copy expired 7 days after its start). Called every second by the ticker of [`run`].
    ///
    /// The published documents are this instance's, in memory (the store holds the entities'
    /// metadata and policies, not the signed documents), as they were already: each instance
    /// signs at its start and re-signs on its own timer, so two instances may serve one entity
    /// with different `validUntil`s and ETags, each document valid and each ETag the digest of
    /// what that instance serves (an `If-None-Match` from the other instance's copy gets a 200,
    /// never a wrong 304). A document is re-signed only here or when its entity changes, so the
    /// store's generation and the registry's revision do not move.
    fn refresh_documents(&self, now: SystemTime) {
        let (n, failing, why) = {
            let mut core = self.core();
            let n = core.registry.refresh_documents(now, RESIGN_BATCH);
            (
                n,
                core.registry.resign_failures(),
                core.registry.last_resign_error().map(str::to_owned),
            )
        };
        if n > 0 {
            log(&[
                ("event", "documents-re-signed".into()),
                ("entities", n.to_string()),
            ]);
        }
        // Each failing document is tried again after RESIGN_RETRY, never in every tick's
        // batch; said at most once a minute while any fails, with the last reason.
        if failing > 0 {
            let mut last = self.resign_logged.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                *last = Some(Instant::now());
                log(&[
                    ("event", "documents-re-sign-failing".into()),
                    ("entities", failing.to_string()),
                    ("last_error", why.unwrap_or_default()),
                ]);
            }
        }
    }

    /// Applies what [`Self::refresh`] read, unless the core's registry changed since
    /// `before` (then nothing is applied and the generation is not recorded: the next
    /// refresh reads the store again). Returns whether it applied.
    fn apply_refresh(
        &self,
        before: u64,
        g: Generation,
        entities: Option<(Vec<StoredEntity>, Option<String>)>,
        pairs: Option<Vec<(String, String, i64)>>,
    ) -> Result<bool, Error> {
        {
            let mut core = self.core();
            if entities.is_some() && core.registry.revision() != before {
                return Ok(false);
            }
            if let Some((entities, rules)) = entities {
                let mut digests = self.digests.lock().unwrap_or_else(|p| p.into_inner());
                for (id, why) in load_entities(&mut core, &mut digests, entities) {
                    log(&[
                        ("event", "store-error".into()),
                        ("entity", id),
                        ("error", why),
                    ]);
                }
                if let Some(json) = rules {
                    core.rules = RuleSet::from_json(json.as_bytes())?;
                }
            }
            if let Some(pairs) = pairs {
                load_relationships(&mut core, pairs);
            }
        }
        *self.generation.lock().unwrap_or_else(|p| p.into_inner()) = g;
        Ok(true)
    }

    /// Sends one trigger (attempt `attempt`, from 0) and hands its answer to the core.
    /// (Boxed: handling the answer may send triggers again, so the future is recursive.)
    fn send(
        self: Arc<Self>,
        t: Transmit,
        attempt: usize,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(self.send_inner(t, attempt))
    }

    /// The pacing of triggers to `to`.
    fn pace(&self, to: &str) -> Arc<tokio::sync::Semaphore> {
        let mut p = self.pacing.lock().unwrap_or_else(|e| e.into_inner());
        if p.len() > 4 * (self.cfg.max_entities.max(1) as usize) {
            // Entities gone: forget the idle ones.
            p.retain(|_, s| s.available_permits() < TRIGGERS_PER_AGENT);
        }
        p.entry(to.to_owned())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(TRIGGERS_PER_AGENT)))
            .clone()
    }

    async fn send_inner(self: Arc<Self>, t: Transmit, attempt: usize) {
        let owed = owed_of(&t);
        if owed.is_some() && attempt == 0 {
            self.retrying(&t, 1);
        }
        let started = Instant::now();
        let pace = self.pace(&t.to);
        let permit = pace.acquire().await;
        if let Some(o) = &owed {
            // Owed in the store from the commit that queued it (review D6), with a lease
            // renewed at each attempt:
            // an instance that stops while it is retried leaves it to be planned again, by
            // this one restarted or another, once the lease has run out; while this instance
            // retries it, no round plans it again (review D1).
            let now = unix(SystemTime::now());
            let due = now + OWED_AFTER_RETRIES.as_secs() as i64;
            store_logged(self.store.owe(o, now, due, MAX_OWED_TRIGGERS).await);
        }
        let answer = match SyncTargets::of(&self.cfg).check_literal(&t.url) {
            Err(why) => Err(why),
            Ok(()) => match self.http.get(&t.url).send().await {
                Ok(r) => {
                    let code = r.status().as_u16();
                    read_answer(r).await.map(|body| (code, body))
                }
                Err(e) => Err(e.to_string()),
            },
        };
        drop(permit);
        // Acknowledged: the agent read it and answered (integrated, accepted-pending, or a
        // refusal, which a retry would not change).
        let acknowledged = matches!(&answer, Ok((code, body))
            if MdiResponse::from_http(*code, body).is_ok_and(|r| r.status != MdiStatus::Error));
        match &owed {
            Some(o) if acknowledged => {
                self.retrying(&t, -1);
                store_logged(self.store.settle(o).await);
            }
            Some(o) => {
                self.clone()
                    .retry_later(t.clone(), o.clone(), attempt)
                    .await
            }
            None => {}
        }
        log(&[
            ("event", "trigger".into()),
            ("to", t.to.clone()),
            ("action", t.action.as_str().into()),
            ("attempt", attempt.to_string()),
            (
                "answer",
                match &answer {
                    Ok((c, b)) => format!("{c} {b}"),
                    Err(e) => format!("error: {e}"),
                },
            ),
            (
                "ms",
                format!("{:.1}", started.elapsed().as_secs_f64() * 1e3),
            ),
        ]);
        let Some(flow) = t.flow else { return };
        // The other exchanging flows of the pair (in any instance) and its relationship as
        // stored now: a failure rolls back only what no other flow of the pair has sent, and
        // nothing of a pair established meanwhile (broker review M2).
        if let Err(e) = self.refresh().await {
            log(&[("event", "store-error".into()), ("error", e.to_string())]);
        }
        let res = self
            .step(FlowSelect::Pair(&t.to, &t.about), |core, now| {
                let mut rng = openssl_random;
                match &answer {
                    Ok((code, body)) => {
                        core.handle_trigger_answer(&flow, &t.to, *code, body, now, &mut rng)
                    }
                    Err(e) => core.handle_trigger_failure(&flow, &t.to, e, now, &mut rng),
                }
            })
            .await;
        match res {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => log(&[
                ("event", "trigger-answer-refused".into()),
                ("error", e.to_string()),
            ]),
            Err(e) => log(&[("event", "store-error".into()), ("error", e.to_string())]),
        }
    }

    /// Sends `t` again after the delay for `attempt`, if the core still wants it then
    /// ([`Broker::retransmit`]: signed anew, same issue instant); after the last, leaves it
    /// owed, due now, for [`BrokerService::send_owed`].
    async fn retry_later(self: Arc<Self>, t: Transmit, owed: OwedTrigger, attempt: usize) {
        let Some(delay) = TRIGGER_RETRY_DELAYS_S.get(attempt).copied() else {
            // Planned again by the next round (`send_owed`): a rollback lost here left the peer
            // at the agent for good (its refresh keeps fetching what the broker's MDQ still
            // serves).
            self.retrying(&t, -1);
            let now = unix(SystemTime::now());
            let kept = store_logged(self.store.owe(&owed, now, now, MAX_OWED_TRIGGERS).await)
                .unwrap_or(false);
            log(&[
                ("event", "trigger-given-up".into()),
                ("to", t.to.clone()),
                ("action", t.action.as_str().into()),
                ("about", t.about.clone()),
                ("owed", kept.to_string()),
            ]);
            return;
        };
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(delay)).await;
            let again = self.core().retransmit(&t, &mut openssl_random);
            match again {
                Some(next) => {
                    self.metrics
                        .triggers_retried
                        .fetch_add(1, Ordering::Relaxed);
                    self.send(next, attempt + 1).await;
                }
                None => {
                    // No longer wanted (the pair's standing changed): no longer owed.
                    self.retrying(&t, -1);
                    store_logged(self.store.settle(&owed).await);
                    log(&[
                        ("event", "trigger-retry-dropped".into()),
                        ("to", t.to.clone()),
                        ("action", t.action.as_str().into()),
                        ("about", t.about.clone()),
                    ]);
                }
            }
        });
    }

    /// Counts `t`'s pair in (`+1`) or out (`-1`) of the owed triggers this instance is sending
    /// or retrying: [`BrokerService::send_owed`] leaves those to their chain.
    fn retrying(&self, t: &Transmit, by: i32) {
        let mut r = self.retrying.lock().unwrap_or_else(|p| p.into_inner());
        let key = (t.to.clone(), t.about.clone());
        if by > 0 {
            *r.entry(key).or_insert(0) += 1;
        } else if let Some(n) = r.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                r.remove(&key);
            }
        }
    }

    /// Plans again, with a fresh issue instant, every trigger given up after its retries whose
    /// pair's standing still asks for it (`Broker::plan_owed_trigger`: a rollback while the
    /// pair is not established and allowed, a re-download while it is, none while a flow of
    /// the pair is exchanging), and sends them with the usual retries; one given up again is
    /// owed again. Called by the ticker every [`OWED_TRIGGER_EVERY`]. Returns how many were
    /// planned.
    async fn send_owed(self: &Arc<Self>) -> usize {
        self.send_owed_at(unix(SystemTime::now())).await
    }

    /// [`BrokerService::send_owed`] of the triggers due at `now` (Unix seconds).
    async fn send_owed_at(self: &Arc<Self>, now: i64) -> usize {
        let again = now + OWED_AFTER_RETRIES.as_secs() as i64;
        let owed = match self.store.take_owed(now, OWED_BATCH, again).await {
            Ok(owed) => owed,
            Err(e) => {
                log(&[("event", "store-error".into()), ("error", e.to_string())]);
                return 0;
            }
        };
        if owed.is_empty() {
            return 0;
        }
        if let Err(e) = self.refresh().await {
            log(&[("event", "store-error".into()), ("error", e.to_string())]);
        }
        let mut planned = 0;
        for o in owed {
            let action = match o.action.as_str() {
                "rollback" => TriggerAction::Rollback,
                "fetchmetadata" => TriggerAction::FetchMetadata,
                _ => {
                    // Not written by this broker: forgotten.
                    let _ = self.store.settle(&o).await;
                    continue;
                }
            };
            let (to, about) = (&o.recipient, &o.about);
            if self
                .retrying
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(&(to.clone(), about.clone()))
            {
                // This instance is still sending or retrying the pair's trigger: taken again
                // after `again` if it is still owed then (review D1).
                continue;
            }
            // The pair's exchanging flows in any instance, as the store holds them now.
            let res = self
                .step(FlowSelect::Pair(to, about), |core, now| {
                    core.plan_owed_trigger(action, to, about, now, &mut openssl_random)
                })
                .await;
            match res {
                // Sent by the ticker's next poll: owed again from that sending on.
                Ok(OwedPlan::Planned) => planned += 1,
                // A flow of the pair is exchanging: its outcome decides; still owed, taken
                // again after `again` (review D2).
                Ok(OwedPlan::Later) => {}
                Ok(_) => {
                    log(&[
                        ("event", "owed-trigger-dropped".into()),
                        ("to", to.clone()),
                        ("action", action.as_str().into()),
                        ("about", about.clone()),
                    ]);
                    store_logged(self.store.settle(&o).await);
                }
                // Due again after `again`.
                Err(e) => log(&[("event", "store-error".into()), ("error", e.to_string())]),
            }
        }
        planned
    }

    /// Whether the store has room for one more flow, which starts unauthenticated, from the
    /// client address key `source` (`max_flows`, `max_pending_flows`,
    /// `max_pending_flows_per_address`, across every instance): see [`Store::admit_pending`].
    async fn admit(&self, source: &str) -> Result<bool, Error> {
        let caps = FlowCaps {
            flows: self.cfg.max_flows,
            pending: self.cfg.pending_flow_cap(),
            pending_per_source: self.cfg.max_pending_flows_per_address,
        };
        let a = self
            .store
            .admit_pending(source, unix(SystemTime::now()), caps)
            .await?;
        match a {
            Admission::Room { evicted } => {
                if evicted > 0 {
                    log(&[
                        ("event", "unauthenticated-flows-evicted".into()),
                        ("source", source.to_owned()),
                        ("evicted", evicted.to_string()),
                    ]);
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// One shared rate-limit hit for the client address key `source`.
    async fn within_rate(&self, source: &str) -> Result<bool, Error> {
        self.within(
            &format!("source {source}"),
            self.cfg.rate_per_source_per_minute,
        )
        .await
    }

    /// One hit in the separate window of steps that follow a flow already admitted
    /// (`/ds/choose`, `/wait`): a user makes several per login, so they have four times the
    /// per-address rate of their own and do not use up the rate of new logins (broker review,
    /// "same class, smaller").
    async fn within_follow_rate(&self, source: &str) -> Result<bool, Error> {
        self.within(
            &format!("follow {source}"),
            self.cfg.rate_per_source_per_minute.saturating_mul(4),
        )
        .await
    }

    /// One hit against `limit` per minute for `key`, shared by every instance.
    async fn within(&self, key: &str, limit: u32) -> Result<bool, Error> {
        let window = unix(SystemTime::now()) / 60;
        self.store.hit(key, window, limit).await
    }

    /// The router.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/ds", get(discovery::<S>))
            .route("/ds/choose", get(choose::<S>))
            .route("/ds/search", get(search::<S>))
            .route("/DAME", get(dame::<S>))
            .route("/acs", post(acs::<S>))
            .route("/wait", get(wait::<S>))
            .route("/mdq/entities/{*id}", get(mdq::<S>))
            .route("/mdq/entities", get(mdq::<S>))
            .route("/metadata", get(own_metadata::<S>))
            .route("/admin/entities", post(admin_entity::<S>))
            .route("/admin/rules", put(admin_rules::<S>))
            .route("/admin/policy", put(registration::policy::<S>))
            .route("/register", post(registration::begin::<S>))
            .route("/register/verify", post(registration::verify::<S>))
            .route("/health", get(|| async { "ok" }))
            .route("/metrics", get(metrics::<S>))
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .with_state(self.clone())
    }

    fn secure(&self) -> bool {
        self.cfg.public_url.starts_with("https://")
    }

    /// The answer to the user agent, with the flow cookie when `set` names one.
    fn reply(&self, r: UaReply, set: Option<&FlowId>) -> Response {
        let mut resp = match r {
            UaReply::Redirect(url) => redirect(StatusCode::FOUND, &url),
            UaReply::ChooseIdp { sp, .. } => page(StatusCode::OK, &self.choice_page(&sp, None)),
            UaReply::Wait { retry_after, .. } => {
                let mut r = page(
                    StatusCode::OK,
                    "<meta http-equiv=\"refresh\" content=\"1;url=/wait\"><p>Exchanging metadata between your identity provider and the service. This page continues by itself.</p><p><a href=\"/wait\">Continue</a></p>",
                );
                if let Ok(v) = HeaderValue::from_str(&retry_after.as_secs().max(1).to_string()) {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
                r
            }
            UaReply::Failed(why) => page(
                StatusCode::CONFLICT,
                &format!(
                    "<h1>The login could not continue</h1><p>{}</p>",
                    html_escape(&why.to_string())
                ),
            ),
        };
        if let Some(flow) = set {
            let attrs = if self.secure() {
                "; Secure; SameSite=None"
            } else {
                "; SameSite=Lax"
            };
            if let Ok(v) = HeaderValue::from_str(&format!(
                "{COOKIE}={}; Path=/; HttpOnly{attrs}",
                flow.as_str()
            )) {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        resp
    }

    /// The registered IdPs as the discovery page lists them, sorted: built once per registry
    /// revision. Every discovery and search request (unauthenticated) used to walk the whole
    /// registry under the core's lock, which every login step needs; now a request holds the
    /// lock to read the revision, and the walk (only cloning each IdP's reference) happens once
    /// per change of the registry's entities. The list depends on the IdPs' metadata only, not
    /// on any policy: it follows [`dame_protocol::registry::Registry::entities_revision`], which
    /// a policy change does not move (review K3: each `PUT /admin/policy` rebuilt it).
    fn directory(&self) -> Arc<Vec<Listing>> {
        let (revision, idps) = {
            let core = self.core();
            let revision = core.registry.entities_revision();
            if let Some((r, list)) = &*self.directory.lock().unwrap_or_else(|p| p.into_inner())
                && *r == revision
            {
                return list.clone();
            }
            let idps: Vec<Arc<EntityDescriptor>> = core
                .registry
                .entity_ids()
                .filter_map(|id| core.registry.get(id))
                .filter(|r| r.entity.idp().is_some())
                .map(|r| r.entity.clone())
                .collect();
            (revision, idps)
        };
        self.metrics
            .directory_builds
            .fetch_add(1, Ordering::Relaxed);
        let list = Arc::new(Listing::all(&idps));
        let mut cached = self.directory.lock().unwrap_or_else(|p| p.into_inner());
        // Revisions only grow: a list built from an older one does not replace a newer one.
        if cached.as_ref().is_none_or(|(r, _)| *r < revision) {
            *cached = Some((revision, list.clone()));
        }
        list
    }

    /// The discovery page: the registered IdPs by their mdui display name (else the
    /// organization's, else the entityID), with their mdui logo when it is an https URL or a
    /// raster `data:` image, and a search form (plain HTML, no script). `search` keeps the IdPs
    /// whose names, keywords or entityID contain it (case-insensitive).
    fn choice_page(&self, sp: &str, search: Option<&str>) -> String {
        let needle = search
            .map(str::to_lowercase)
            .filter(|n| !n.trim().is_empty());
        let needle = needle.as_deref().map(str::trim);
        let directory = self.directory();
        let mut idps = Vec::new();
        let mut more = 0usize;
        for l in directory.iter() {
            if needle.is_some_and(|n| !l.hay.iter().any(|h| h.contains(n))) {
                continue;
            }
            if idps.len() < MAX_LISTED_IDPS {
                idps.push(l);
            } else {
                more += 1;
            }
        }
        let items: String = idps
            .iter()
            .map(|l| {
                let img = l.logo.as_ref().map_or_else(String::new, |u| {
                    format!(
                        "<img src=\"{}\" alt=\"\" height=\"32\" style=\"max-width:96px\"> ",
                        html_escape(u)
                    )
                });
                // The address is shown with the name, not only in small print; a name two
                // IdPs share is marked on both.
                let warning = if l.shared_name {
                    " <strong>(another identity provider has this name: check its address)</strong>"
                } else {
                    ""
                };
                format!(
                    "<li>{img}<a href=\"/ds/choose?idp={}\">{}</a> at <b>{}</b>{warning} \
                     <small>{}</small></li>",
                    html_escape(&saml_core::bindings::url_encode(&l.id)),
                    html_escape(&l.name),
                    html_escape(&l.host),
                    html_escape(&l.id)
                )
            })
            .collect();
        let none = if idps.is_empty() {
            "<p>No identity provider matches.</p>".to_owned()
        } else if more > 0 {
            format!("<p>{more} more: search to narrow the list.</p>")
        } else {
            String::new()
        };
        format!(
            "<h1>Choose your identity provider</h1><p>for {sp_html}</p>\
             <form method=\"get\" action=\"/ds/search\"><input type=\"hidden\" name=\"sp\" value=\"{sp_html}\">\
             <label>Search <input type=\"search\" name=\"q\" value=\"{q}\"></label> <button>Search</button></form>\
             {none}<ul>{items}</ul>",
            sp_html = html_escape(sp),
            q = html_escape(search.unwrap_or_default()),
        )
    }
}

/// Which addresses triggers may go to: public ones, loopback ones with `allow_loopback_http`
/// (one-host tests), private ones with `allow_private_sync_locations`. A registrant chooses
/// its `MetadataSyncLocation`; without this it could have the broker connect to any host of
/// its network (and read, from the flow's failure, which ports answer), past the
/// global-address rule of the ownership proof.
#[derive(Debug, Clone, Copy)]
struct SyncTargets {
    loopback: bool,
    private: bool,
}

impl SyncTargets {
    fn of(cfg: &BrokerConfig) -> Self {
        SyncTargets {
            loopback: cfg.allow_loopback_http,
            private: cfg.allow_private_sync_locations,
        }
    }

    fn allows(self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        dame_protocol::registration::is_global(ip)
            || self.private
            || (self.loopback && ip.is_loopback())
    }

    /// A URL naming an address (which no resolver sees) is held to the same rule.
    fn check_literal(self, url: &str) -> Result<(), String> {
        let url = reqwest::Url::parse(url).map_err(|e| format!("bad trigger URL: {e}"))?;
        let host = url.host_str().unwrap_or_default();
        let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        else {
            return Ok(());
        };
        if self.allows(ip) {
            Ok(())
        } else {
            Err(format!(
                "the sync location's address {ip} is not a public one"
            ))
        }
    }
}

/// Resolves the hosts triggers go to, keeping only the addresses [`SyncTargets`] allows (the
/// connection uses what this returned: no second lookup to rebind).
struct SyncResolver(SyncTargets);

impl reqwest::dns::Resolve for SyncResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let targets = self.0;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| targets.allows(a.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// Longest logo URL shown on the discovery page: a registrant's `data:` logo of any size was
/// copied into every unauthenticated discovery page.
const MAX_LOGO_URL: usize = 16 * 1024;

/// Most identity providers listed on one discovery page (a search narrows them).
const MAX_LISTED_IDPS: usize = 500;

/// A logo the discovery page may show: an https URL, or a PNG, JPEG or GIF `data:` URI (no
/// SVG: an image the page embeds must not be able to carry script), at most
/// [`MAX_LOGO_URL`] bytes.
fn safe_logo(url: &str) -> bool {
    url.len() <= MAX_LOGO_URL
        && (url.starts_with("https://")
            || ["data:image/png;", "data:image/jpeg;", "data:image/gif;"]
                .iter()
                .any(|p| url.starts_with(p)))
}

fn page(status: StatusCode, body: &str) -> Response {
    let mut r = (
        status,
        format!("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>DAME broker</title></head><body>{body}</body></html>\n"),
    )
        .into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

fn redirect(status: StatusCode, url: &str) -> Response {
    match HeaderValue::from_str(url) {
        Ok(v) => {
            let mut r = status.into_response();
            r.headers_mut().insert(header::LOCATION, v);
            r
        }
        Err(_) => page(StatusCode::INTERNAL_SERVER_ERROR, "bad redirect"),
    }
}

/// A refusal or an error as an HTTP answer.
fn error_response(e: &dame_protocol::Error) -> Response {
    let status = match (e.refusal(), e.kind()) {
        (Some(Refusal::RateLimited), _) => StatusCode::TOO_MANY_REQUESTS,
        (Some(Refusal::Capacity), _) => StatusCode::SERVICE_UNAVAILABLE,
        (Some(Refusal::UnknownFlow), _) => StatusCode::NOT_FOUND,
        (Some(Refusal::WrongState), _) => StatusCode::CONFLICT,
        (Some(_), _) | (None, ErrorKind::Rejected) => StatusCode::FORBIDDEN,
        (None, ErrorKind::Malformed) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    page(
        status,
        &format!("<h1>Refused</h1><p>{}</p>", html_escape(&e.to_string())),
    )
}

/// Logs a store error that does not stop what is under way (`store-error`); the value, if any.
fn store_logged<T>(r: Result<T, Error>) -> Option<T> {
    r.map_err(|e| log(&[("event", "store-error".into()), ("error", e.to_string())]))
        .ok()
}

fn store_error(e: &Error) -> Response {
    log(&[("event", "store-error".into()), ("error", e.to_string())]);
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "the broker's store is unavailable",
    )
}

fn cookie_flow(headers: &HeaderMap) -> Option<FlowId> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("dame_flow="))
        .filter(|v| v.len() <= 64)
        .map(FlowId::from_text)
}

async fn guard(f: impl std::future::Future<Output = Response>) -> Response {
    tokio::time::timeout(REQUEST_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| page(StatusCode::GATEWAY_TIMEOUT, "timed out"))
}

type Svc<S> = State<Arc<BrokerService<S>>>;

/// A store failure, or the refusal of a value already used on another instance.
fn step_error(e: &Error) -> Response {
    match e {
        Error::Replayed(what) => page(
            StatusCode::FORBIDDEN,
            &format!("<h1>Refused</h1><p>replayed: {}</p>", html_escape(what)),
        ),
        other => store_error(other),
    }
}

fn too_many() -> Response {
    page(
        StatusCode::TOO_MANY_REQUESTS,
        "too many requests from your address",
    )
}

/// The answer to a request a rate-limit hit refuses (429), or whose hit the store could not
/// record; `None` lets the request through.
fn refused(hit: Result<bool, Error>) -> Option<Response> {
    match hit {
        Ok(true) => None,
        Ok(false) => Some(too_many()),
        Err(e) => Some(store_error(&e)),
    }
}

fn full() -> Response {
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "the broker holds its maximum of logins in progress; try again later",
    )
}

async fn discovery<S: Store>(
    State(svc): Svc<S>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    RawQuery(q): RawQuery,
) -> Response {
    guard(async move {
        svc.metrics.requests.fetch_add(1, Ordering::Relaxed);
        let source = crate::source_key(remote.ip());
        if let Some(r) = refused(svc.within_rate(&source).await) {
            return r;
        }
        let q = q.unwrap_or_default();
        // Room is made only for a request that can start a flow (a registered SP, not
        // passive): a refused one must not make another client's flow give way.
        let starts_a_flow = dame_protocol::discovery::DiscoveryRequest::parse(&q)
            .is_ok_and(|d| !d.is_passive && svc.core().registry.get(&d.entity_id).is_some());
        if starts_a_flow {
            match svc.admit(&source).await {
                Ok(true) => {}
                Ok(false) => return full(),
                Err(e) => return store_error(&e),
            }
        }
        let r = svc
            .step_from(FlowSelect::None, Some(&source), |core, now| {
                core.handle_discovery(&q, &source, now, &mut openssl_random)
            })
            .await;
        match r {
            Ok(Ok(UaReply::ChooseIdp { flow, sp })) => {
                let reply = UaReply::ChooseIdp {
                    flow: flow.clone(),
                    sp,
                };
                svc.reply(reply, Some(&flow))
            }
            Ok(Ok(other)) => svc.reply(other, None),
            Ok(Err(e)) => {
                svc.metrics.refusals.fetch_add(1, Ordering::Relaxed);
                error_response(&e)
            }
            Err(e) => step_error(&e),
        }
    })
    .await
}

fn query_param(q: &str, name: &str) -> Option<String> {
    q.split('&').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k == name)
            .then(|| saml_core::bindings::url_decode(v).ok())
            .flatten()
    })
}

/// The answer to a user-agent step on one flow.
fn ua_answer<S: Store>(
    svc: &BrokerService<S>,
    r: Result<Result<UaReply, dame_protocol::Error>, Error>,
) -> Response {
    match r {
        Ok(Ok(reply)) => svc.reply(reply, None),
        Ok(Err(e)) => {
            svc.metrics.refusals.fetch_add(1, Ordering::Relaxed);
            error_response(&e)
        }
        Err(e) => step_error(&e),
    }
}

/// `GET /ds/search?sp=..&q=..`: the discovery page filtered (the flow stays in its cookie;
/// `sp` is only shown).
async fn search<S: Store>(
    State(svc): Svc<S>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    RawQuery(q): RawQuery,
) -> Response {
    // Each search walks the registry: counted with discovery against the address's limit.
    if let Some(r) = refused(svc.within_rate(&crate::source_key(remote.ip())).await) {
        return r;
    }
    // An HTML form sends spaces as '+'.
    let q = q.unwrap_or_default().replace('+', "%20");
    let sp = query_param(&q, "sp").unwrap_or_default();
    let needle = query_param(&q, "q").unwrap_or_default();
    if sp.len() > 1024 || needle.len() > 256 {
        return page(StatusCode::BAD_REQUEST, "too long");
    }
    page(StatusCode::OK, &svc.choice_page(&sp, Some(&needle)))
}

async fn choose<S: Store>(
    State(svc): Svc<S>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    guard(async move {
        // A store transaction for any cookie value: bounded per address.
        if let Some(r) = refused(
            svc.within_follow_rate(&crate::source_key(remote.ip()))
                .await,
        ) {
            return r;
        }
        let Some(flow) = cookie_flow(&headers) else {
            return page(StatusCode::BAD_REQUEST, "no flow: start from your service");
        };
        let Some(idp) = query_param(&q.unwrap_or_default(), "idp") else {
            return page(StatusCode::BAD_REQUEST, "no idp");
        };
        let r = svc
            .step(FlowSelect::One(flow.as_str()), |core, now| {
                core.handle_idp_chosen(&flow, &idp, now, &mut openssl_random)
            })
            .await;
        ua_answer(&svc, r)
    })
    .await
}

async fn dame<S: Store>(
    State(svc): Svc<S>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    guard(async move {
        svc.metrics.requests.fetch_add(1, Ordering::Relaxed);
        let q = q.unwrap_or_default();
        match query_param(&q, "action").as_deref() {
            Some("authenticate") => {
                let source = crate::source_key(remote.ip());
                if let Some(r) = refused(svc.within_rate(&source).await) {
                    return r;
                }
                let flow = cookie_flow(&headers);
                // Every request that can start a flow is admitted first: one whose cookie names
                // no live flow (none, junk, finished, expired) starts one (broker review M1: a
                // junk cookie skipped the per-address and total caps).
                let live = match &flow {
                    Some(f) => match svc
                        .store
                        .flow_live(f.as_str(), unix(SystemTime::now()))
                        .await
                    {
                        Ok(live) => live,
                        Err(e) => return store_error(&e),
                    },
                    None => false,
                };
                if !live {
                    match svc.admit(&source).await {
                        Ok(true) => {}
                        Ok(false) => return full(),
                        Err(e) => return store_error(&e),
                    }
                }
                let select = flow
                    .as_ref()
                    .map_or(FlowSelect::None, |f| FlowSelect::One(f.as_str()));
                let r = svc
                    .step_from(select, Some(&source), |core, now| {
                        // A cookie of a finished or foreign flow does not block a new one.
                        let usable = flow.as_ref().filter(|f| core.phase(f).is_some());
                        if usable.is_none() && live {
                            // It ended since the check above: the new flow was not admitted.
                            return Err(dame_protocol::Refusal::Capacity.into());
                        }
                        core.handle_authenticate(usable, &q, &source, now, &mut openssl_random)
                    })
                    .await;
                match r {
                    Ok(Ok((flow, reply))) => svc.reply(reply, Some(&flow)),
                    Ok(Err(e)) => {
                        svc.metrics.refusals.fetch_add(1, Ordering::Relaxed);
                        error_response(&e)
                    }
                    Err(e) => step_error(&e),
                }
            }
            Some("status") => {
                // Unauthenticated until the core checks the signature, after the store
                // transaction: bounded per address like every other such request.
                if let Some(r) = refused(svc.within_rate(&crate::source_key(remote.ip())).await) {
                    return r;
                }
                // The flows waiting for this pair: the reporter and its peer, in either role.
                let reporter = dame_protocol::mdi::StatusReport::reporter_of(&q).ok();
                let peer = query_param(&q, "peer");
                let select = match (&reporter, &peer) {
                    (Some(r), Some(p)) => FlowSelect::Pair(r, p),
                    _ => FlowSelect::None,
                };
                let r = svc
                    .step(select, |core, now| {
                        core.handle_status_report(&q, now, &mut openssl_random)
                    })
                    .await;
                match r {
                    Ok(Ok(_)) => page(StatusCode::OK, "ok"),
                    Ok(Err(e)) => error_response(&e),
                    Err(e) => step_error(&e),
                }
            }
            Some("rules") => {
                // Anyone may ask (rules are shared data), within the per-address rate; the
                // answer is found under the core's lock, written as JSON after it (broker
                // review M4).
                if let Some(r) = refused(svc.within_rate(&crate::source_key(remote.ip())).await) {
                    return r;
                }
                let answer = svc.core().handle_rules_query(&q);
                // Written and signed (conversion review L1) after the lock is released.
                let answer = answer.and_then(|set| {
                    let json = set.to_json()?;
                    let sig = dame_protocol::conversion::sign_answer(
                        &q,
                        json.as_bytes(),
                        &svc.key,
                        SystemTime::now(),
                    )?;
                    Ok((json, sig))
                });
                match answer {
                    Ok((json, signature)) => {
                        let mut r = (StatusCode::OK, json).into_response();
                        r.headers_mut().insert(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("application/json"),
                        );
                        if let Ok(v) = HeaderValue::from_str(&signature) {
                            r.headers_mut()
                                .insert(dame_protocol::conversion::ANSWER_SIGNATURE_HEADER, v);
                        }
                        r
                    }
                    Err(e) => error_response(&e),
                }
            }
            _ => page(StatusCode::BAD_REQUEST, "unknown action"),
        }
    })
    .await
}

async fn acs<S: Store>(
    State(svc): Svc<S>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    guard(async move {
        let Some(flow) = cookie_flow(&headers) else {
            return page(StatusCode::BAD_REQUEST, "no flow cookie with this Response");
        };
        // Each attempt costs a store refresh, a transaction and a signature check, and an
        // invalid Response2 changes nothing (the real one may still come): bounded per source
        // like every other unauthenticated endpoint.
        if let Some(r) = refused(svc.within_rate(&crate::source_key(remote.ip())).await) {
            return r;
        }
        let Ok(form) = std::str::from_utf8(&body) else {
            return page(StatusCode::BAD_REQUEST, "the form is not UTF-8");
        };
        // Whether the pair is already established decides what a failure may roll back:
        // see what other instances recorded.
        if let Err(e) = svc.refresh().await {
            return store_error(&e);
        }
        let r = svc
            .step(FlowSelect::One(flow.as_str()), |core, now| {
                core.handle_response2(&flow, form, now, &mut openssl_random)
            })
            .await;
        match r {
            Ok(Ok(UaReply::Wait { .. })) => redirect(StatusCode::SEE_OTHER, "/wait"),
            other => ua_answer(&svc, other),
        }
    })
    .await
}

/// How long the waiting page is held open for an exchanging flow before it answers "wait".
const LONG_POLL: Duration = Duration::from_secs(10);
/// How often a held waiting page looks at the store when another instance may change the flow
/// (a shared store); with a store of its own the instance's notification is enough and the
/// look is only a safety net.
const LONG_POLL_STEP_SHARED: Duration = Duration::from_millis(250);
const LONG_POLL_STEP_OWN: Duration = Duration::from_secs(2);

async fn wait<S: Store>(
    State(svc): Svc<S>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    guard(async move {
        // Each request holds a waiter and looks at the store: bounded per address (the page
        // asks again only after LONG_POLL, so a user stays far below the rate).
        if let Some(r) = refused(
            svc.within_follow_rate(&crate::source_key(remote.ip()))
                .await,
        ) {
            return r;
        }
        let Some(flow) = cookie_flow(&headers) else {
            return page(StatusCode::BAD_REQUEST, "no flow");
        };
        // Held open while the exchange runs: answered as soon as the flow is done or failed
        // (woken by the step that changed it; another instance's change is seen within
        // LONG_POLL_STEP_SHARED), so the user waits for the exchange, not for a refresh period.
        let notify = {
            let mut w = svc.waiters.lock().unwrap_or_else(|p| p.into_inner());
            w.entry(flow.as_str().to_owned()).or_default().clone()
        };
        // Well within the listener's request timeout, which would otherwise answer 408.
        let held = LONG_POLL.min(Duration::from_secs(svc.cfg.http.request_timeout_s) / 2);
        let until = Instant::now() + held;
        let r = loop {
            // Registered before the step, so a change during it is not missed.
            let woken = notify.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let r = svc
                .step(FlowSelect::One(flow.as_str()), |core, now| {
                    core.handle_user_agent(&flow, now)
                })
                .await;
            if !matches!(r, Ok(Ok(UaReply::Wait { .. }))) || Instant::now() >= until {
                break r;
            }
            let step = if svc.store.shared() {
                LONG_POLL_STEP_SHARED
            } else {
                LONG_POLL_STEP_OWN
            };
            let _ = tokio::time::timeout(step, woken).await;
        };
        {
            let mut w = svc.waiters.lock().unwrap_or_else(|p| p.into_inner());
            if w.get(flow.as_str())
                .is_some_and(|n| Arc::strong_count(n) <= 2)
            {
                w.remove(flow.as_str());
            }
        }
        drop(notify);
        ua_answer(&svc, r)
    })
    .await
}

async fn mdq<S: Store>(State(svc): Svc<S>, uri: Uri, headers: HeaderMap) -> Response {
    let h = |n: header::HeaderName| headers.get(n).and_then(|v| v.to_str().ok());
    let a = {
        let core = svc.core();
        MdqService::new("/mdq/").answer(
            &MdqRequest {
                method: "GET",
                path: uri.path(),
                accept: h(header::ACCEPT),
                if_none_match: h(header::IF_NONE_MATCH),
            },
            &core.registry,
        )
    };
    let mut r = (
        StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        // The registry's document itself, not a copy made under the core's lock.
        Bytes::from_owner(a.body),
    )
        .into_response();
    for (k, v) in a.headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            r.headers_mut().insert(k, v);
        }
    }
    r
}

async fn own_metadata<S: Store>(State(svc): Svc<S>) -> Response {
    let mut r = (StatusCode::OK, svc.metadata.clone()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/samlmetadata+xml"),
    );
    r
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// Whether the request carries the operator's token (compared in constant time).
fn authorized<S: Store>(svc: &BrokerService<S>, headers: &HeaderMap) -> bool {
    let given = bearer(headers).unwrap_or_default();
    openssl::memcmp::eq(
        openssl::sha::sha256(given.as_bytes()).as_slice(),
        openssl::sha::sha256(svc.token.as_bytes()).as_slice(),
    )
}

async fn admin_entity<S: Store>(
    State(svc): Svc<S>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    guard(async move {
        let operator = authorized(&svc, &headers);
        if !operator && bearer(&headers).is_none() {
            return page(StatusCode::UNAUTHORIZED, "a bearer token is required");
        }
        // Anyone with a token (or guessing one) is limited like every other client: an
        // upload bumps the store's generation (each instance reloads) and triggers every peer.
        if !operator
            && let Some(r) = refused(svc.within_rate(&crate::source_key(remote.ip())).await)
        {
            return r;
        }
        // An owner's update is a self-registration's upload: the same limit (review K2); the
        // operator's import keeps the body limit.
        let most = svc.cfg.registration.max_upload_bytes as usize;
        if !operator && body.len() > most {
            return page(
                StatusCode::BAD_REQUEST,
                &format!(
                    "metadata of {} bytes is larger than the self-registration limit of {most} bytes",
                    body.len()
                ),
            );
        }
        let entity = match saml_metadata::load::parse_unverified(&body) {
            Ok(Metadata::Entity(e)) => *e,
            Ok(_) => return page(StatusCode::BAD_REQUEST, "one EntityDescriptor expected"),
            Err(e) => return page(StatusCode::BAD_REQUEST, &html_escape(&e.to_string())),
        };
        let q = q.unwrap_or_default();
        let modes_named = ["unmodified_sp", "allow_unsigned"]
            .iter()
            .any(|m| matches!(query_param(&q, m).as_deref(), Some("true" | "false")));
        let policy = if operator {
            // A re-import keeps the entity's policy (its peer lists, its modes): only what the
            // query names changes (broker review M3: an import reset a deny list to allow-all
            // and told the denied peers to fetch the entity again).
            let flag = |name: &str| match query_param(&q, name).as_deref() {
                Some("true") => Some(true),
                Some("false") => Some(false),
                _ => None,
            };
            let current = svc
                .core()
                .registry
                .get(&entity.entity_id)
                .map(|r| r.policy.clone());
            let mut policy = current.unwrap_or_default();
            if let Some(on) = flag("unmodified_sp") {
                policy = policy.with_unmodified_sp(on);
            }
            if let Some(on) = flag("allow_unsigned") {
                policy = policy.with_unsigned_authn_request(on);
            }
            policy
        } else {
            // An entity's own token updates its own metadata only, keeping its policy.
            match registration::may_manage(&svc, &headers, &entity.entity_id).await {
                Ok(true) => {}
                Ok(false) => return page(StatusCode::FORBIDDEN, "not your entity"),
                Err(e) => return store_error(&e),
            }
            let core = svc.core();
            match core.registry.get(&entity.entity_id) {
                Some(r) => r.policy.clone(),
                None => return page(StatusCode::FORBIDDEN, "not registered"),
            }
        };
        let Ok(xml) = String::from_utf8(body.to_vec()) else {
            return page(StatusCode::BAD_REQUEST, "not UTF-8");
        };
        let Ok(policy_json) = serde_json::to_string(&policy) else {
            return page(StatusCode::INTERNAL_SERVER_ERROR, "policy");
        };
        let id = entity.entity_id.clone();
        let stored = StoredEntity {
            entity_id: id.clone(),
            xml,
            policy: policy_json,
            origin: Some(if operator {
                Origin::Operator
            } else {
                Origin::Owner
            }),
        };
        // Checked by the core first (the metadata, and room for a new entity); stored before
        // the re-download triggers go out; and if the core refuses it after all (its room
        // taken meanwhile), the store is given back what it held before.
        let checked = {
            let core = svc.core();
            dame_protocol::registry::validate_with(&entity, core.registry.loopback_http)
                .and_then(|()| {
                    // An entity's own upload is vouched for by nobody but itself: the same
                    // limits as a self-registration (scopes, entity attributes, registration
                    // info); the operator's import is trusted.
                    if operator {
                        Ok(())
                    } else {
                        dame_protocol::registry::validate_self_registered(&entity)
                    }
                })
                .and_then(|()| {
                    // An owner's update: room for its new size among the self-registered
                    // entities' bytes (review K2).
                    if operator {
                        core.registry.admits(&id, true)
                    } else {
                        core.registry.admits_self_registered(&id, true, body.len())
                    }
                })
        };
        if let Err(e) = checked {
            return error_response(&e);
        }
        let previous = match svc.store.entity(&id).await {
            Ok(p) => p,
            Err(e) => return store_error(&e),
        };
        // The metadata, keeping the policy stored (another instance may have changed it since
        // this one read it: broker review L2); the operator's named modes then, by themselves.
        let written = match svc.store.put_metadata(&stored).await {
            Ok(()) if operator && modes_named => {
                svc.store.put_policy(&id, &stored.policy).await.map(|_| ())
            }
            other => other,
        };
        if let Err(e) = written {
            return store_error(&e);
        }
        let r = svc
            .step(FlowSelect::None, |core, now| {
                let n = core.update_entity(entity, policy, now, &mut openssl_random)?;
                // The operator's import is not counted; an owner's update is, at its size.
                core.registry
                    .set_self_registered(&id, (!operator).then_some(body.len()));
                Ok(n)
            })
            .await;
        if let Ok(Err(_)) = &r {
            let restored = match &previous {
                Some(p) => svc.store.put_entity(p).await,
                None => svc.store.delete_entity(&id).await,
            };
            if let Err(e) = restored {
                log(&[
                    ("event", "store-error".into()),
                    ("entity", id.clone()),
                    ("error", format!("refused import not taken back: {e}")),
                ]);
            }
        }
        match r {
            Ok(Ok(n)) => {
                log(&[("event", "entity-imported".into()), ("entity", id.clone())]);
                page(
                    StatusCode::OK,
                    &format!(
                        "registered {}; {n} peers told to re-fetch",
                        html_escape(&id)
                    ),
                )
            }
            Ok(Err(e)) => error_response(&e),
            Err(e) => step_error(&e),
        }
    })
    .await
}

async fn admin_rules<S: Store>(State(svc): Svc<S>, headers: HeaderMap, body: Bytes) -> Response {
    guard(async move {
        if !authorized(&svc, &headers) {
            return page(StatusCode::UNAUTHORIZED, "operator token required");
        }
        match RuleSet::from_json(&body) {
            Ok(rules) => {
                let Ok(json) = rules.to_json() else {
                    return page(StatusCode::INTERNAL_SERVER_ERROR, "rules");
                };
                if let Err(e) = svc.store.put_rules(&json).await {
                    return store_error(&e);
                }
                let n = rules.rules.len();
                svc.core().rules = rules;
                page(StatusCode::OK, &format!("{n} rules"))
            }
            Err(e) => error_response(&e),
        }
    })
    .await
}

async fn metrics<S: Store>(State(svc): Svc<S>) -> Response {
    let (flows, owed) = {
        // One count at a time, reused for a second: a flood of scrapes costs no store work.
        let mut gauge = svc.flow_gauge.lock().await;
        match *gauge {
            Some((at, n, owed)) if at.elapsed() < METRICS_FLOW_COUNT_AGE => (n, owed),
            _ => {
                let counted = match svc.store.flow_count(unix(SystemTime::now())).await {
                    Ok(n) => svc.store.owed_count().await.map(|owed| (n, owed)),
                    Err(e) => Err(e),
                };
                match counted {
                    Ok((n, owed)) => {
                        *gauge = Some((Instant::now(), n, owed));
                        (n, owed)
                    }
                    Err(e) => return store_error(&e),
                }
            }
        }
    };
    let (entities, pairs, failing) = {
        let core = svc.core();
        (
            core.registry.len(),
            core.relationships.len(),
            core.registry.resign_failures(),
        )
    };
    let m = &svc.metrics;
    let text = format!(
        "# TYPE dame_requests_total counter\ndame_requests_total {}\n\
         # TYPE dame_flows_done_total counter\ndame_flows_done_total {}\n\
         # TYPE dame_flows_failed_total counter\ndame_flows_failed_total {}\n\
         # TYPE dame_triggers_sent_total counter\ndame_triggers_sent_total {}\n\
         # TYPE dame_triggers_retried_total counter\ndame_triggers_retried_total {}\n\
         # TYPE dame_refusals_total counter\ndame_refusals_total {}\n\
         # TYPE dame_directory_builds_total counter\ndame_directory_builds_total {}\n\
         # TYPE dame_flows gauge\ndame_flows {flows}\n\
         # TYPE dame_entities gauge\ndame_entities {entities}\n\
         # TYPE dame_relationships gauge\ndame_relationships {pairs}\n\
         # TYPE dame_documents_resign_failing gauge\ndame_documents_resign_failing {failing}\n\
         # TYPE dame_triggers_owed gauge\ndame_triggers_owed {owed}\n",
        m.requests.load(Ordering::Relaxed),
        m.flows_done.load(Ordering::Relaxed),
        m.flows_failed.load(Ordering::Relaxed),
        m.triggers_sent.load(Ordering::Relaxed),
        m.triggers_retried.load(Ordering::Relaxed),
        m.refusals.load(Ordering::Relaxed),
        m.directory_builds.load(Ordering::Relaxed),
    );
    let mut r = (StatusCode::OK, text).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

/// Runs the broker for `cfg` on `store` until `shutdown` resolves.
pub async fn run<S: Store>(
    cfg: BrokerConfig,
    store: S,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let listen = cfg.listen;
    let svc = BrokerService::new(cfg, store).await?;
    let tls = crate::tls::configured(
        svc.cfg.tls_certificate.as_deref(),
        svc.cfg.tls_key.as_deref(),
    )?;
    log(&[
        ("event", "listening".into()),
        ("address", listen.to_string()),
        ("tls", tls.is_some().to_string()),
        ("entities", svc.core().registry.len().to_string()),
    ]);
    // Every second: what other instances changed is reloaded, and flows past their deadline
    // or lifetime are handled (whichever instance gets to them first; the others skip them).
    // At start and every minute: one-time values and rate windows that can no longer matter
    // are dropped, and audit events older than the retention or beyond the row cap.
    let ticker = svc.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut n: u64 = 0;
        loop {
            tick.tick().await;
            n += 1;
            let now = unix(SystemTime::now());
            let mut result = ticker.refresh().await;
            ticker.refresh_documents(SystemTime::now());
            if result.is_ok() {
                result = ticker
                    .step(FlowSelect::Due(now), |core, now| {
                        core.handle_timeout(now, &mut openssl_random);
                    })
                    .await;
            }
            if n.is_multiple_of(OWED_TRIGGER_EVERY.as_secs()) {
                let owed = ticker.clone();
                tokio::spawn(async move { owed.send_owed().await });
            }
            if result.is_ok() && n % 60 == 1 {
                result = ticker.store.sweep(now).await;
                if result.is_ok() {
                    let retention = i64::from(ticker.cfg.audit_retention_days) * 86_400;
                    result = match ticker
                        .store
                        .prune_audit(now - retention, ticker.cfg.audit_max_rows)
                        .await
                    {
                        Ok(0) => Ok(()),
                        Ok(n) => {
                            log(&[("event", "audit-pruned".into()), ("rows", n.to_string())]);
                            Ok(())
                        }
                        Err(e) => Err(e),
                    };
                }
            }
            if let Err(e) = result {
                log(&[("event", "store-error".into()), ("error", e.to_string())]);
            }
        }
    });
    crate::tls::serve(listen, tls, &svc.cfg.http, svc.router(), shutdown).await
}

/// Largest trigger answer read (bytes): an agent answers with a short status
/// (draft-poehn-dame-06 §4.4), so more is refused.
const MAX_TRIGGER_ANSWER: usize = 4096;

/// The body of a trigger's answer, read in chunks and given up on as soon as it passes
/// [`MAX_TRIGGER_ANSWER`]: a sync location that streams without end (anyone can register one)
/// holds the broker for no longer than it takes to send 4 KiB, not until `trigger_timeout_ms`,
/// and never makes it buffer more.
async fn read_answer(mut r: reqwest::Response) -> Result<String, String> {
    const TOO_LARGE: &str = "answer larger than 4 KiB";
    if r.content_length()
        .is_some_and(|n| n > MAX_TRIGGER_ANSWER as u64)
    {
        return Err(TOO_LARGE.to_owned());
    }
    let mut body = Vec::new();
    while let Some(chunk) = r.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_TRIGGER_ANSWER {
            return Err(TOO_LARGE.to_owned());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::SqliteStore;
    use saml_metadata::model::SpSso;
    use testkit::signer::TestKey;

    const SP: &str = "https://sp.example.org/shibboleth";

    async fn service(dir: &std::path::Path) -> Arc<BrokerService<SqliteStore>> {
        service_with(dir, "").await
    }

    /// [`service`] with more configuration lines.
    async fn service_with(dir: &std::path::Path, extra: &str) -> Arc<BrokerService<SqliteStore>> {
        let (k, c) = TestKey::rsa("broker").write_pem(dir, "broker");
        let token = dir.join("admin.token");
        testkit::signer::write_secret(&token, b"0123456789abcdef0123456789abcdef-operator");
        let cfg = dir.join("broker.toml");
        std::fs::write(
            &cfg,
            format!(
                "entity_id = \"https://broker.example.com/sp\"\n\
                 public_url = \"https://broker.example.com\"\n\
                 listen = \"127.0.0.1:0\"\n\
                 key = \"{}\"\ncertificate = \"{}\"\n\
                 database = \"{}\"\nadmin_token_file = \"{}\"\n{extra}",
                k.display(),
                c.display(),
                dir.join("broker.db").display(),
                token.display()
            ),
        )
        .unwrap();
        let cfg = BrokerConfig::load(&cfg).unwrap();
        let store = SqliteStore::open(&dir.join("broker.db")).await.unwrap();
        BrokerService::new(cfg, store).await.unwrap()
    }

    fn sp(acs: &str) -> EntityDescriptor {
        EntityDescriptor::builder(SP)
            .sp(SpSso::builder()
                .signing_certificate(TestKey::rsa("sp").cert_der())
                .acs(Binding::HttpPost, acs))
            .dame_sync_location("https://sp.example.org/dame")
            .build()
            .unwrap()
    }

    /// The SP, its agent at `sync`.
    fn sp_syncing_at(sync: &str) -> EntityDescriptor {
        EntityDescriptor::builder(SP)
            .sp(SpSso::builder()
                .signing_certificate(TestKey::rsa("sp").cert_der())
                .acs(Binding::HttpPost, "https://sp.example.org/acs"))
            .dame_sync_location(sync)
            .build()
            .unwrap()
    }

    fn idp(host: &str, org: &str) -> EntityDescriptor {
        EntityDescriptor::builder(&format!("https://{host}/idp"))
            .idp(
                saml_metadata::model::IdpSso::builder()
                    .signing_certificate(TestKey::rsa("idp").cert_der())
                    .sso(Binding::HttpRedirect, &format!("https://{host}/sso")),
            )
            .organization("en", org, &format!("https://{host}/"))
            .dame_sync_location(&format!("https://{host}/dame"))
            .build()
            .unwrap()
    }

    /// Finding: every discovery and search request (unauthenticated, 120 a minute per
    /// address) walked the whole registry (up to 100,000 entities) under the core's lock,
    /// which every login step needs. The list is now built once per registry revision and
    /// searched without the lock; it follows every change.
    #[tokio::test]
    async fn the_discovery_list_is_built_once_per_registry_change() {
        let tmp = tempfile::tempdir().unwrap();
        let svc = service(tmp.path()).await;
        let now = SystemTime::now();
        let builds = || svc.metrics.directory_builds.load(Ordering::Relaxed);
        for (host, org) in [("idp.a.example", "Alpha"), ("idp.b.example", "Beta")] {
            svc.core()
                .registry
                .insert(idp(host, org), EntityPolicy::default(), now, false)
                .unwrap();
        }
        for _ in 0..20 {
            let page = svc.choice_page(SP, None);
            assert!(page.contains("Alpha") && page.contains("Beta"));
        }
        let page = svc.choice_page(SP, Some("BET"));
        assert!(page.contains("Beta") && !page.contains("Alpha"), "{page}");
        assert_eq!(builds(), 1, "one build for 21 pages");
        // A change is seen at once: a new IdP, a removed one.
        svc.core()
            .registry
            .insert(
                idp("idp.c.example", "Gamma"),
                EntityPolicy::default(),
                now,
                false,
            )
            .unwrap();
        assert!(svc.choice_page(SP, None).contains("Gamma"));
        svc.core().registry.remove("https://idp.a.example/idp");
        let page = svc.choice_page(SP, None);
        assert!(!page.contains("Alpha") && page.contains("Gamma"));
        assert_eq!(builds(), 3);
        // SPs are not listed; registering one changes the revision, not the list.
        svc.core()
            .registry
            .insert(
                sp("https://sp.example.org/acs"),
                EntityPolicy::default(),
                now,
                false,
            )
            .unwrap();
        assert!(!svc.choice_page(SP, None).contains("sp.example.org/acs"));
        let built = builds();
        // Review K3: the list does not depend on any policy, and a policy change (one an
        // entity's own token may make) rebuilt it over every IdP; it no longer does.
        let (status, body) = put_policy(
            &svc,
            "https://idp.b.example/idp",
            r#"{"peers": {"allow": [], "deny": [".evil.example"]}}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(svc.choice_page(SP, None).contains("Beta"));
        assert_eq!(builds(), built, "a policy change does not rebuild the list");
    }

    /// `PUT /admin/policy?entityID=<id>` with the operator's token and `body`, through its
    /// handler: the status and the page.
    /// A handler's answer: its status and its body as text.
    async fn status_and_page(r: Response) -> (StatusCode, String) {
        let status = r.status();
        let page = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&page).into_owned())
    }

    async fn put_policy(
        svc: &Arc<BrokerService<SqliteStore>>,
        id: &str,
        body: &str,
    ) -> (StatusCode, String) {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer 0123456789abcdef0123456789abcdef-operator"),
        );
        let r = registration::policy(
            State(svc.clone()),
            ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))),
            headers,
            RawQuery(Some(format!(
                "entityID={}",
                saml_core::bindings::url_encode(id)
            ))),
            Bytes::from(body.to_owned()),
        )
        .await;
        status_and_page(r).await
    }

    /// Review K3: a policy's peer lists had no bound, so one `PUT /admin/policy` of 256 KiB
    /// (an entity's own token suffices) held about 43,000 entries, scanned per login step and,
    /// on the change, per established peer under the core's lock. Beyond 256 entries, or with
    /// an entry that is not a DNS name, the PUT gets 400 naming the bound, and nothing changes.
    #[tokio::test]
    async fn a_policy_beyond_the_peer_list_bounds_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let svc = service(tmp.path()).await;
        svc.core()
            .registry
            .insert(
                sp("https://sp.example.org/acs"),
                EntityPolicy::default(),
                SystemTime::now(),
                false,
            )
            .unwrap();
        let many: Vec<String> = (0..300).map(|i| format!("\"h{i}.example.org\"")).collect();
        let body = format!(
            r#"{{"peers": {{"allow": [{}], "deny": []}}}}"#,
            many.join(",")
        );
        let (status, page) = put_policy(&svc, SP, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
        assert!(page.contains("more than 256 entries"), "{page}");
        let (status, page) = put_policy(
            &svc,
            SP,
            r#"{"peers": {"allow": ["*.example.org"], "deny": []}}"#,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
        assert!(svc.core().registry.get(SP).unwrap().policy == EntityPolicy::default());
        let body = format!(
            r#"{{"peers": {{"allow": [{}], "deny": []}}}}"#,
            many[..256].join(",")
        );
        let (status, page) = put_policy(&svc, SP, &body).await;
        assert_eq!(status, StatusCode::OK, "{page}");
    }

    /// Review K2: a self-registration could upload 256 KiB of metadata, held twice in memory
    /// by every instance for each of up to 100,000 entities. `/register` now refuses an upload
    /// beyond `[registration] max_upload_bytes` (default 64 KiB) with 400 naming the limit;
    /// the key is checked (1024 to 262144) and applied.
    #[tokio::test]
    async fn a_self_registration_upload_beyond_the_limit_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let svc = service(tmp.path()).await;
        let mut xml = sp("https://sp.example.org/acs")
            .to_xml()
            .unwrap()
            .into_bytes();
        xml.resize(100 << 10, b' ');
        let begin = |svc: Arc<BrokerService<SqliteStore>>, body: Vec<u8>| async move {
            let r = registration::begin(
                State(svc),
                ConnectInfo(SocketAddr::from(([198, 51, 100, 1], 1))),
                RawQuery(Some("operation=register".into())),
                Bytes::from(body),
            )
            .await;
            status_and_page(r).await
        };
        let (status, page) = begin(svc.clone(), xml.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
        assert!(
            page.contains("larger than the self-registration limit of 65536 bytes"),
            "{page}"
        );
        assert_eq!(svc.registrations().max_upload(), 64 << 10);
        // An owner's update through /admin/entities with its token: the same limit; the
        // operator's import of the same 100 KiB is not held to it.
        let import = |svc: Arc<BrokerService<SqliteStore>>, token: &'static str, body: Vec<u8>| async move {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
            );
            let r = admin_entity(
                State(svc),
                ConnectInfo(SocketAddr::from(([198, 51, 100, 1], 1))),
                headers,
                RawQuery(None),
                Bytes::from(body),
            )
            .await;
            status_and_page(r).await
        };
        let (status, page) = import(svc.clone(), "an-entity-token", xml.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
        assert!(
            page.contains("self-registration limit of 65536 bytes"),
            "{page}"
        );
        let (status, page) = import(
            svc.clone(),
            "0123456789abcdef0123456789abcdef-operator",
            xml.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let tmp = tempfile::tempdir().unwrap();
        let svc = service_with(tmp.path(), "[registration]\nmax_upload_bytes = 131072\n").await;
        assert_eq!(svc.registrations().max_upload(), 128 << 10);
        let (_, page) = begin(svc.clone(), xml).await;
        assert!(!page.contains("self-registration limit"), "{page}");
        let mut cfg = svc.cfg.clone();
        cfg.registration.max_upload_bytes = 300_000;
        let err = cfg.check().unwrap_err().to_string();
        assert!(err.contains("registration.max_upload_bytes"), "{err}");
    }

    /// Review K2: every discovery search scanned all of each IdP's `mdui:Keywords`, and a
    /// registrant's IdP could carry about 250 KiB of them. The search looks in the first 64
    /// words, each cut to 64 bytes.
    #[test]
    fn discovery_keywords_are_bounded() {
        let mut e = idp("idp.k.example", "Kappa");
        let mut words: Vec<String> = (0..100).map(|i| format!("word{i}")).collect();
        words[1] = format!("{}é{}", "L".repeat(63), "x".repeat(200));
        for role in &mut e.roles {
            if let saml_metadata::model::Role::Idp(i) = role {
                i.common.extensions.ui_info = Some(Box::new(saml_metadata::ext::UiInfo {
                    keywords: vec![saml_metadata::model::Localized {
                        lang: "en".into(),
                        value: words.clone(),
                    }],
                    ..Default::default()
                }));
            }
        }
        let list = Listing::all(&[Arc::new(e)]);
        let hay = &list[0].hay;
        assert!(hay.iter().any(|h| h == "word0"));
        assert!(hay.iter().any(|h| h == "word63"));
        assert!(!hay.iter().any(|h| h.contains("word64")), "{hay:?}");
        // The entityID, the name, the organization's name and 64 words of at most 64 bytes.
        assert_eq!(hay.len(), 3 + 64, "{hay:?}");
        assert!(hay.iter().all(|h| h.len() <= 64), "{hay:?}");
        assert!(
            hay.iter().any(|h| *h == "l".repeat(63)),
            "cut at a character boundary"
        );
    }

    /// Self-registered display names were not bounded in the discovery listing: every name of
    /// an IdP, however many and however long, was held lower-cased and scanned by every
    /// search, and the first shown whole on the page. The search looks in the first 32 names
    /// (mdui's, then the organization's), each cut to 256 bytes; the page shows at most 256.
    #[test]
    fn discovery_names_are_bounded() {
        let mut e = idp("idp.n.example", "Nu");
        let long = format!("{}é{}", "N".repeat(255), "x".repeat(10_000));
        let names: Vec<saml_metadata::model::Localized<String>> = (0..1000)
            .map(|i| saml_metadata::model::Localized {
                lang: format!("l{i}"),
                value: if i == 0 {
                    long.clone()
                } else {
                    format!("name{i}")
                },
            })
            .collect();
        for role in &mut e.roles {
            if let saml_metadata::model::Role::Idp(i) = role {
                i.common.extensions.ui_info = Some(Box::new(saml_metadata::ext::UiInfo {
                    display_names: names.clone(),
                    ..Default::default()
                }));
            }
        }
        let list = Listing::all(&[Arc::new(e)]);
        let l = &list[0];
        assert_eq!(l.name, "N".repeat(255), "cut at a character boundary");
        assert!(l.hay.iter().any(|h| h == "name31"));
        assert!(!l.hay.iter().any(|h| h == "name32"), "{:?}", l.hay.len());
        // The entityID, the name, 32 names.
        assert_eq!(l.hay.len(), 2 + 32);
        assert!(l.hay.iter().all(|h| h.len() <= 256));

        // Without a display name, the entityID (here 996 bytes) is the name, cut alike.
        let mut bare = idp(&format!("idp.n.example/{}", "i".repeat(970)), "Nu");
        bare.organization = None;
        let long_id = bare.entity_id.clone();
        let list = Listing::all(&[Arc::new(bare)]);
        assert_eq!(list[0].id, long_id);
        assert_eq!(
            list[0].name,
            long_id[..256],
            "the fallback name is cut (G8)"
        );
    }

    /// Review K2: the registry was bounded in entities, not in bytes. `max_self_registered_bytes`
    /// bounds the metadata of the entities the operator did not import: counted as loaded
    /// from the store (by the row's origin), and an owner's update through `/admin/entities`
    /// beyond it is refused with 503 and changes nothing.
    #[tokio::test]
    async fn self_registered_bytes_are_bounded_by_configuration() {
        let tmp = tempfile::tempdir().unwrap();
        let svc = service_with(tmp.path(), "max_self_registered_bytes = 20000\n").await;
        assert_eq!(svc.core().registry.max_self_registered_bytes, 20_000);
        let owned = idp("idp.a.example", "Alpha").to_xml().unwrap();
        let imported = idp("idp.b.example", "Beta").to_xml().unwrap();
        for (id, xml, origin) in [
            ("https://idp.a.example/idp", &owned, Origin::Owner),
            ("https://idp.b.example/idp", &imported, Origin::Operator),
        ] {
            svc.store
                .put_entity(&StoredEntity {
                    entity_id: id.into(),
                    xml: xml.clone(),
                    policy: serde_json::to_string(&EntityPolicy::default()).unwrap(),
                    origin: Some(origin),
                })
                .await
                .unwrap();
        }
        svc.refresh().await.unwrap();
        assert_eq!(svc.core().registry.len(), 2);
        assert_eq!(svc.core().registry.self_registered_bytes(), owned.len());
        // The owner's update with its token, padded past the budget: refused, nothing changes.
        let token = "an-entity-token-of-idp-a";
        svc.store
            .put_token(
                &registration::token_hash(token),
                "https://idp.a.example/idp",
            )
            .await
            .unwrap();
        let mut body = owned.clone().into_bytes();
        body.resize(20_001, b' ');
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        let r = admin_entity(
            State(svc.clone()),
            ConnectInfo(SocketAddr::from(([198, 51, 100, 1], 1))),
            headers,
            RawQuery(None),
            Bytes::from(body),
        )
        .await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(svc.core().registry.self_registered_bytes(), owned.len());
        let mut cfg = svc.cfg.clone();
        cfg.max_self_registered_bytes = 0;
        let err = cfg.check().unwrap_err().to_string();
        assert!(err.contains("max_self_registered_bytes"), "{err}");
    }

    /// Broker review L5: a registrant could name its IdP like a known one (the GNTB threat "a
    /// name that imitates a known one"); the page showed the entityID in small print only.
    /// Each IdP is shown with its host, and two IdPs of one name (without case or extra
    /// white space) are both marked.
    #[tokio::test]
    async fn idps_that_share_a_name_are_marked_and_hosts_shown() {
        let tmp = tempfile::tempdir().unwrap();
        let svc = service(tmp.path()).await;
        let now = SystemTime::now();
        for (host, org) in [
            ("idp.uni-x.example", "Universität X"),
            ("idp.attacker.example", "universität  X"),
            ("idp.other.example", "Other"),
        ] {
            svc.core()
                .registry
                .insert(idp(host, org), EntityPolicy::default(), now, false)
                .unwrap();
        }
        let page = svc.choice_page(SP, None);
        let item = |host: &str| {
            page.split("<li>")
                .find(|i| i.contains(&format!("at <b>{host}</b>")))
                .unwrap_or_else(|| panic!("{host} not listed: {page}"))
                .to_owned()
        };
        assert!(item("idp.uni-x.example").contains("another identity provider has this name"));
        assert!(item("idp.attacker.example").contains("another identity provider has this name"));
        assert!(!item("idp.other.example").contains("another identity provider"));
    }

    /// Finding: self-registration re-signed any scope or entity category before 2026-12-06,
    /// and the store did not record who vouched for an entity, so such a registration stayed
    /// published across the fix. Now each row records its origin: a row the operator did not
    /// import (an owner's, or one from before the origin was recorded) that claims more than
    /// the owner's proof backs is not loaded; the operator's import of the same is.
    #[tokio::test]
    async fn a_stored_entity_claiming_more_than_its_proof_is_not_loaded() {
        let tmp = tempfile::tempdir().unwrap();
        let svc = service(tmp.path()).await;
        let claiming = |host: &str| {
            EntityDescriptor::builder(&format!("https://{host}/idp"))
                .idp(
                    saml_metadata::model::IdpSso::builder()
                        .signing_certificate(TestKey::rsa("idp").cert_der())
                        .sso(Binding::HttpRedirect, &format!("https://{host}/sso"))
                        .scope("victim.example", false),
                )
                .dame_sync_location(&format!("https://{host}/dame"))
                .build()
                .unwrap()
                .to_xml()
                .unwrap()
        };
        let policy = serde_json::to_string(&EntityPolicy::default()).unwrap();
        for (host, origin) in [
            ("idp.legacy.example", None),
            ("idp.owner.example", Some(Origin::Owner)),
            ("idp.imported.example", Some(Origin::Operator)),
        ] {
            svc.store
                .put_entity(&StoredEntity {
                    entity_id: format!("https://{host}/idp"),
                    xml: claiming(host),
                    policy: policy.clone(),
                    origin,
                })
                .await
                .unwrap();
        }
        svc.refresh().await.unwrap();
        let loaded = |id: &str| svc.core().registry.get(id).is_some();
        assert!(!loaded("https://idp.legacy.example/idp"));
        assert!(!loaded("https://idp.owner.example/idp"));
        assert!(loaded("https://idp.imported.example/idp"));
        // A policy change (origin None when written) keeps the recorded origin.
        let mut row = svc
            .store
            .entity("https://idp.imported.example/idp")
            .await
            .unwrap()
            .unwrap();
        row.origin = None;
        svc.store.put_entity(&row).await.unwrap();
        let row = svc.store.entity(&row.entity_id).await.unwrap().unwrap();
        assert_eq!(row.origin, Some(Origin::Operator));
        // The operator's import of the legacy row makes it loaded.
        let mut row = svc
            .store
            .entity("https://idp.legacy.example/idp")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.origin, None);
        row.origin = Some(Origin::Operator);
        svc.store.put_entity(&row).await.unwrap();
        svc.refresh().await.unwrap();
        assert!(loaded("https://idp.legacy.example/idp"));
    }

    /// Conversion review M6, at the service: documents signed more than half their validity
    /// ago are re-signed by the ticker's `refresh_documents`, at most [`RESIGN_BATCH`] per
    /// call, and the MDQ route then serves the new document (later validUntil, new ETag).
    #[tokio::test]
    async fn the_ticker_re_signs_documents_a_batch_at_a_time() {
        let tmp = tempfile::tempdir().unwrap();
        let svc = service(tmp.path()).await;
        let now = SystemTime::now();
        let signed = now - Duration::from_secs(4 * 86_400);
        let n = RESIGN_BATCH + 2;
        for i in 0..n {
            svc.core()
                .registry
                .insert(
                    idp(&format!("idp{i}.example.org"), "Org"),
                    EntityPolicy::default(),
                    signed,
                    false,
                )
                .unwrap();
        }
        let id = "https://idp0.example.org/idp";
        let get = |svc: Arc<BrokerService<SqliteStore>>| async move {
            let uri: Uri = format!("/mdq/entities/{}", saml_core::bindings::url_encode(id))
                .parse()
                .unwrap();
            let r = mdq(State(svc), uri, HeaderMap::new()).await;
            assert_eq!(r.status(), StatusCode::OK);
            let etag = r.headers().get(header::ETAG).unwrap().clone();
            let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
            let until = match saml_metadata::load::parse_unverified(&body).unwrap() {
                Metadata::Entity(e) => e.valid_until.unwrap(),
                _ => panic!("not an entity"),
            };
            (etag, until)
        };
        let (etag, until) = get(svc.clone()).await;
        assert!(until < now + Duration::from_secs(4 * 86_400));
        let revision = svc.core().registry.revision();
        svc.refresh_documents(now);
        let fresh = |svc: &BrokerService<SqliteStore>| {
            let core = svc.core();
            core.registry
                .entity_ids()
                .filter(|id| {
                    core.registry.get(id).unwrap().valid_until
                        >= now + Duration::from_secs(6 * 86_400)
                })
                .count()
        };
        assert_eq!(fresh(&svc), RESIGN_BATCH);
        svc.refresh_documents(now);
        assert_eq!(fresh(&svc), n);
        assert_eq!(svc.core().registry.revision(), revision);
        let (new_etag, new_until) = get(svc.clone()).await;
        assert_ne!(new_etag, etag);
        assert!(new_until >= now + Duration::from_secs(6 * 86_400));
    }

    /// A flake of the broker integration test, explained: a refresh that read the store just
    /// before this instance imported an entity (stored, then applied to the core) applied its
    /// older snapshot afterwards and took the new entity back out of the core as "no longer
    /// stored", until the next refresh: a discovery page in between listed no IdP. A snapshot
    /// older than the core's last change is not applied now.
    #[tokio::test]
    async fn a_refresh_older_than_a_local_change_does_not_undo_it() {
        let tmp = tempfile::tempdir().unwrap();
        let svc = service(tmp.path()).await;
        let id = "https://idp.a.example/idp";
        // The refresh reads the store (nothing there yet)...
        let before = svc.core().registry.revision();
        let g = svc.store.generation().await.unwrap();
        let snapshot = svc.store.entities().await.unwrap();
        // ...while the operator's import is stored and applied.
        let e = idp("idp.a.example", "Alpha");
        svc.store
            .put_entity(&StoredEntity {
                entity_id: id.into(),
                xml: e.to_xml().unwrap(),
                policy: serde_json::to_string(&EntityPolicy::default()).unwrap(),
                origin: Some(Origin::Operator),
            })
            .await
            .unwrap();
        svc.core()
            .registry
            .insert(e, EntityPolicy::default(), SystemTime::now(), true)
            .unwrap();
        let applied = svc
            .apply_refresh(before, g, Some((snapshot, None)), None)
            .unwrap();
        assert!(!applied);
        assert!(svc.core().registry.get(id).is_some(), "the import stays");
        // The next refresh reads the store again and keeps it.
        svc.refresh().await.unwrap();
        assert!(svc.core().registry.get(id).is_some());
        assert!(svc.choice_page(SP, None).contains("Alpha"));
    }

    /// Broker review L2: a policy change wrote the whole row from this instance's copy of the
    /// metadata, and a metadata update the whole row from its copy of the policy: across two
    /// instances (each a second behind the other), one undid the other (a key rotation
    /// reverted, a deny list lifted). Each now writes its own column.
    #[tokio::test]
    async fn policy_and_metadata_writes_do_not_undo_each_other() {
        let tmp = tempfile::tempdir().unwrap();
        let svc = service(tmp.path()).await;
        let id = "https://idp.a.example/idp";
        let row = |xml: String, policy: &EntityPolicy| StoredEntity {
            entity_id: id.into(),
            xml,
            policy: serde_json::to_string(policy).unwrap(),
            origin: Some(Origin::Operator),
        };
        let (v1, v2) = (
            idp("idp.a.example", "Alpha").to_xml().unwrap(),
            idp("idp.a.example", "Alpha rotated").to_xml().unwrap(),
        );
        svc.store
            .put_entity(&row(v1.clone(), &EntityPolicy::default()))
            .await
            .unwrap();
        // Instance A sets a policy; instance B, which has not seen it, updates the metadata
        // (its copy of the policy is the default).
        let denying = EntityPolicy::default().with_unsigned_authn_request(true);
        let denying_json = serde_json::to_string(&denying).unwrap();
        assert!(svc.store.put_policy(id, &denying_json).await.unwrap());
        svc.store
            .put_metadata(&row(v2.clone(), &EntityPolicy::default()))
            .await
            .unwrap();
        let stored = svc.store.entity(id).await.unwrap().unwrap();
        assert_eq!(stored.xml, v2);
        assert_eq!(stored.policy, denying_json);
        // And the other order: a policy change does not write metadata back.
        svc.store.put_policy(id, &denying_json).await.unwrap();
        assert_eq!(svc.store.entity(id).await.unwrap().unwrap().xml, v2);
        assert!(
            !svc.store
                .put_policy("https://nobody.example/x", "{}")
                .await
                .unwrap()
        );
    }

    fn acs_in_core(svc: &BrokerService<SqliteStore>) -> Option<String> {
        let core = svc.core();
        let r = core.registry.get(SP)?;
        Some(
            r.entity.sp()?.assertion_consumer[0]
                .endpoint
                .location
                .to_string(),
        )
    }

    /// A registrant's sync location naming an internal address (or a name resolving to one)
    /// made the broker connect there; now only public addresses, loopback ones in one-host
    /// tests, private ones when the operator allows them.
    #[tokio::test]
    async fn triggers_go_only_to_addresses_the_operator_allows() {
        use reqwest::dns::Resolve as _;
        let public = SyncTargets {
            loopback: false,
            private: false,
        };
        for url in [
            "https://10.0.0.5:8443/dame",
            "https://127.0.0.1:6443/dame",
            "https://[::1]/dame",
            "https://[::ffff:192.168.1.1]/dame",
            "https://169.254.169.254/latest",
        ] {
            assert!(public.check_literal(url).is_err(), "{url}");
        }
        assert!(public.check_literal("https://192.0.43.10/dame").is_ok());
        assert!(
            public
                .check_literal("https://agent.example.org/dame")
                .is_ok()
        );
        let name = |n: &str| n.parse::<reqwest::dns::Name>().unwrap();
        assert!(
            SyncResolver(public)
                .resolve(name("localhost"))
                .await
                .is_err()
        );
        let tests = SyncTargets {
            loopback: true,
            private: false,
        };
        assert!(tests.check_literal("https://127.0.0.1:6443/dame").is_ok());
        assert!(tests.check_literal("https://10.0.0.5/dame").is_err());
        let addrs: Vec<_> = SyncResolver(tests)
            .resolve(name("localhost"))
            .await
            .unwrap()
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
        let internal = SyncTargets {
            loopback: false,
            private: true,
        };
        assert!(internal.check_literal("https://10.0.0.5/dame").is_ok());
    }

    /// A registrant's `data:` logo of any size was copied into every unauthenticated discovery
    /// page (one of 250 KiB per IdP made pages of hundreds of MB); longer ones are not shown.
    #[test]
    fn the_discovery_page_shows_no_oversized_logo() {
        let png = |n: usize| format!("data:image/png;base64,{}", "A".repeat(n));
        assert!(safe_logo(&png(1000)));
        assert!(safe_logo("https://idp.example.org/logo.png"));
        assert!(!safe_logo(&png(MAX_LOGO_URL)));
        assert!(!safe_logo(&png(250 * 1024)));
        assert!(!safe_logo("data:image/svg+xml;base64,PHN2Zz4="));
    }

    /// A registration, update, deletion or policy change that reached the core but whose
    /// store write failed leaves nothing behind: `resync` makes the core what the store holds.
    #[tokio::test]
    async fn a_change_the_store_did_not_take_is_undone_in_the_core() {
        let tmp = tempfile::tempdir().unwrap();
        let svc = service(tmp.path()).await;
        let now = SystemTime::now();
        let old = "https://sp.example.org/old/acs";
        let new = "https://sp.example.org/new/acs";
        // Registered in the core only: gone again.
        svc.core()
            .registry
            .insert(sp(old), EntityPolicy::default(), now, true)
            .unwrap();
        svc.resync(SP).await;
        assert_eq!(acs_in_core(&svc), None);
        // Stored and loaded, then updated in the core only: the stored version again.
        svc.store
            .put_entity(&StoredEntity {
                entity_id: SP.into(),
                xml: sp(old).to_xml().unwrap(),
                policy: serde_json::to_string(&EntityPolicy::default()).unwrap(),
                origin: Some(Origin::Operator),
            })
            .await
            .unwrap();
        svc.refresh().await.unwrap();
        assert_eq!(acs_in_core(&svc).as_deref(), Some(old));
        svc.core()
            .registry
            .insert(sp(new), EntityPolicy::default(), now, true)
            .unwrap();
        svc.refresh().await.unwrap();
        assert_eq!(acs_in_core(&svc).as_deref(), Some(new), "nothing to reload");
        svc.resync(SP).await;
        assert_eq!(acs_in_core(&svc).as_deref(), Some(old));
        // Deleted in the core only: back.
        svc.core().registry.remove(SP);
        svc.resync(SP).await;
        assert_eq!(acs_in_core(&svc).as_deref(), Some(old));
        // A policy set in the core only: the stored one again.
        let unmodified = || svc.core().registry.get(SP).unwrap().policy.unmodified_sp;
        svc.core()
            .registry
            .set_policy(SP, EntityPolicy::default().with_unmodified_sp(true))
            .unwrap();
        assert!(unmodified());
        svc.resync(SP).await;
        assert!(!unmodified());
    }

    /// A stub agent on loopback: answers 200 with `head` then `body`, then keeps the connection
    /// open (the body never ends) until the client goes away.
    fn endless_agent(head: &'static str, body: Vec<u8>) -> String {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/dame", l.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut req = [0u8; 4096];
            let _ = c.read(&mut req);
            let _ = c.write_all(head.as_bytes());
            let _ = c.write_all(&body);
            let _ = c.flush();
            // Held open: returns when the client closes its end.
            let _ = c.read(&mut req);
        });
        url
    }

    /// Finding: a trigger's answer was read whole (`text()`) before its size was checked, so a
    /// sync location streaming without end held the broker, and its memory, until
    /// `trigger_timeout_ms`. With a long client timeout, the answer is refused for its size
    /// as soon as 4 KiB have passed (before the fix: a timeout error or a buffered body).
    #[tokio::test]
    async fn a_trigger_answer_past_4_kib_is_refused_without_waiting_for_its_end() {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        // No Content-Length (chunked-less, read until close) and a too-large declared one.
        for head in [
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n",
        ] {
            let url = endless_agent(head, vec![b'a'; 5 << 10]);
            let r = http.get(&url).send().await.unwrap();
            assert_eq!(
                read_answer(r).await.unwrap_err(),
                "answer larger than 4 KiB"
            );
        }
        // A short answer is read whole.
        let url = endless_agent(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
            b"ok".to_vec(),
        );
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(read_answer(r).await.unwrap(), "ok");
    }

    /// An agent on loopback that answers its first trigger with a 500 `error` and every later
    /// one `integrated`: its `MetadataSyncLocation` and the request lines it received.
    fn agent_failing_once() -> (String, Arc<Mutex<Vec<String>>>) {
        agent_failing(1)
    }

    /// An agent at the returned URL answering its first `fails` requests with an error and
    /// the others with `integrated`; the request lines it saw.
    fn agent_failing(fails: usize) -> (String, Arc<Mutex<Vec<String>>>) {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let sync = format!("http://{}/dame", l.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let s2 = seen.clone();
        std::thread::spawn(move || {
            for (i, c) in l.incoming().enumerate() {
                let Ok(mut c) = c else { continue };
                let mut req = [0u8; 8192];
                let n = c.read(&mut req).unwrap_or(0);
                let line = String::from_utf8_lossy(&req[..n])
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                s2.lock().unwrap().push(line);
                let (head, body) = if i < fails {
                    ("500 Internal Server Error", "status=error&reason=busy")
                } else {
                    ("200 OK", "status=integrated&reason=removed")
                };
                let _ = write!(
                    c,
                    "HTTP/1.1 {head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (sync, seen)
    }

    /// Agent review M2, the broker's side: a trigger the agent did not acknowledge (no answer,
    /// or `error`) was never sent again, so a lost rollback left a denied or deleted peer's
    /// metadata at the agent for good. It is now sent again, signed anew with the decision's
    /// own issue instant, while the core still wants it.
    /// The SP (its agent at `sync`) and an IdP registered in `svc`'s core, the pair
    /// established, then the IdP removed: the rollback trigger to the SP's agent. With
    /// `remove` false, only the SP is registered (a restarted instance) and `None` returned.
    fn rollback_of_a_removed_idp(
        svc: &Arc<BrokerService<SqliteStore>>,
        sync: &str,
        remove: bool,
    ) -> Option<Transmit> {
        let now = SystemTime::now();
        let mut core = svc.core();
        core.registry
            .insert(sp_syncing_at(sync), EntityPolicy::default(), now, true)
            .unwrap();
        if !remove {
            return None;
        }
        let idp = idp("idp.uni-a.example", "Uni A");
        core.registry
            .insert(idp.clone(), EntityPolicy::default(), now, true)
            .unwrap();
        core.relationships.record(&idp.entity_id, SP, now);
        assert_eq!(
            core.remove_entity(&idp.entity_id, now, &mut openssl_random),
            1
        );
        core.poll_transmit()
    }

    #[tokio::test]
    async fn a_rollback_without_acknowledgement_is_sent_again() {
        let tmp = tempfile::tempdir().unwrap();
        let svc = service_with(tmp.path(), "allow_loopback_http = true\n").await;
        // The SP's agent: busy at first (500 error), then it takes the rollback.
        let (sync, seen) = agent_failing_once();
        let transmit = rollback_of_a_removed_idp(&svc, &sync, true).unwrap();
        svc.clone().send(transmit, 0).await;
        let mut lines = Vec::new();
        for _ in 0..200 {
            lines = seen.lock().unwrap().clone();
            if lines.len() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(lines.len(), 2, "sent again after the error: {lines:?}");
        let param = |l: &str, name: &str| {
            l.split(['?', '&', ' '])
                .find_map(|p| p.strip_prefix(&format!("{name}=")))
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(param(&lines[0], "action"), "rollback");
        assert_eq!(
            param(&lines[0], "issueInstant"),
            param(&lines[1], "issueInstant")
        );
        assert_ne!(param(&lines[0], "nonce"), param(&lines[1], "nonce"));
        assert_eq!(svc.metrics.triggers_retried.load(Ordering::Relaxed), 1);
    }

    /// A rollback given up after its retries (the agent down for longer than the agent's
    /// 5-minute window) was lost for good, and the agent's refresh kept fetching the peer from
    /// the broker's MDQ service: the denied or deleted pair stayed integrated. It is now owed
    /// and planned again with a fresh issue instant (`send_owed`, every ten minutes) while the
    /// pair's standing still asks for it.
    #[tokio::test]
    async fn a_rollback_given_up_is_sent_again_when_the_agent_is_back() {
        let tmp = tempfile::tempdir().unwrap();
        let svc = service_with(tmp.path(), "allow_loopback_http = true\n").await;
        // The SP's agent: down (500 error) for the first request, then back.
        let (sync, seen) = agent_failing_once();
        let now = SystemTime::now();
        let sp = sp_syncing_at(&sync);
        let idp_a = idp("idp.uni-a.example", "Uni A");
        let transmit = {
            let mut core = svc.core();
            core.registry
                .insert(sp, EntityPolicy::default(), now, true)
                .unwrap();
            core.registry
                .insert(idp_a.clone(), EntityPolicy::default(), now, true)
                .unwrap();
            core.relationships.record(&idp_a.entity_id, SP, now);
            assert_eq!(
                core.remove_entity(&idp_a.entity_id, now, &mut openssl_random),
                1
            );
            core.poll_transmit().unwrap()
        };
        // Its last attempt: not acknowledged, given up, owed.
        svc.clone()
            .send(transmit, TRIGGER_RETRY_DELAYS_S.len())
            .await;
        assert_eq!(seen.lock().unwrap().len(), 1);
        assert_eq!(svc.store.owed_count().await.unwrap(), 1);
        // The next round plans it again, signed now, and the agent takes it.
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(svc.send_owed().await, 1);
        let mut lines = Vec::new();
        for _ in 0..100 {
            lines = seen.lock().unwrap().clone();
            if lines.len() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(lines.len(), 2, "{lines:?}");
        let param = |l: &str, name: &str| {
            l.split(['?', '&', ' '])
                .find_map(|p| p.strip_prefix(&format!("{name}=")))
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(param(&lines[1], "action"), "rollback");
        assert!(
            param(&lines[1], "issueInstant") > param(&lines[0], "issueInstant"),
            "{lines:?}"
        );
        // Acknowledged: no longer owed.
        for _ in 0..100 {
            if svc.store.owed_count().await.unwrap() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(svc.store.owed_count().await.unwrap(), 0);

        // An owed rollback of a pair that stands again (established and allowed) is dropped,
        // as is a re-download of a pair that is gone.
        let other = idp("idp.uni-b.example", "Uni B");
        {
            let mut core = svc.core();
            core.registry
                .insert(other.clone(), EntityPolicy::default(), now, true)
                .unwrap();
            core.relationships.record(&other.entity_id, SP, now);
        }
        let due = unix(SystemTime::now());
        for (about, action) in [
            (&other.entity_id, "rollback"),
            (&idp_a.entity_id, "fetchmetadata"),
        ] {
            let o = OwedTrigger {
                recipient: SP.into(),
                about: about.clone(),
                action: action.into(),
                issued: 0,
            };
            assert!(
                svc.store
                    .owe(&o, due, due, MAX_OWED_TRIGGERS)
                    .await
                    .unwrap()
            );
        }
        assert_eq!(svc.send_owed().await, 0);
        assert_eq!(svc.store.owed_count().await.unwrap(), 0);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(seen.lock().unwrap().len(), 2, "nothing more sent");
    }

    /// Owed triggers lived in the instance's memory: a broker restarted while a rollback was
    /// being retried, or after it was given up, never sent it again, and the pair stayed
    /// integrated at the agent. A rollback is owed in the store from its first sending; the
    /// restarted broker (a new service over the same database) plans it once its retries
    /// would have ended, and the agent, back by then, takes it.
    #[tokio::test]
    async fn a_rollback_being_retried_survives_a_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let (sync, seen) = agent_failing_once();
        let setup = |svc: &Arc<BrokerService<SqliteStore>>, remove: bool| {
            rollback_of_a_removed_idp(svc, &sync, remove)
        };
        let first = service_with(tmp.path(), "allow_loopback_http = true\n").await;
        let transmit = setup(&first, true).unwrap();
        // Its first sending: the agent is down; the instance stops during the retries.
        first.clone().send(transmit, 0).await;
        assert_eq!(seen.lock().unwrap().len(), 1);
        drop(first);
        let second = service_with(tmp.path(), "allow_loopback_http = true\n").await;
        let _ = setup(&second, false);
        assert_eq!(second.store.owed_count().await.unwrap(), 1);
        // Not while the first instance's retries could still be running...
        let at = unix(SystemTime::now());
        assert_eq!(second.send_owed_at(at).await, 0);
        // ...then planned again, and taken by the agent.
        let later = at + OWED_AFTER_RETRIES.as_secs() as i64 + 1;
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(second.send_owed_at(later).await, 1);
        let mut lines = Vec::new();
        for _ in 0..100 {
            lines = seen.lock().unwrap().clone();
            if lines.len() >= 2 && second.store.owed_count().await.unwrap() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[1].contains("action=rollback"), "{lines:?}");
        assert_eq!(second.store.owed_count().await.unwrap(), 0);
    }

    /// The IdP "Uni A" registered in `svc`'s core and established with the SP.
    fn pair_with_uni_a(svc: &Arc<BrokerService<SqliteStore>>) -> EntityDescriptor {
        let uni_a = idp("idp.uni-a.example", "Uni A");
        let mut core = svc.core();
        let now = SystemTime::now();
        core.registry
            .insert(uni_a.clone(), EntityPolicy::default(), now, true)
            .unwrap();
        core.relationships.record(&uni_a.entity_id, SP, now);
        uni_a
    }

    /// Review D6: a rollback a step queued was owed only from its first sending, in a task
    /// spawned after the step's commit, so a broker stopped in between (a deployment's
    /// restart) lost it for good. It is owed in the step's own transaction: here the broker
    /// stops right after the commit, and the restarted one plans the rollback once its lease
    /// has run out.
    #[tokio::test]
    async fn a_rollback_queued_by_a_step_survives_a_stop_before_its_sending() {
        let tmp = tempfile::tempdir().unwrap();
        let (sync, seen) = agent_failing(0);
        let first = service_with(tmp.path(), "allow_loopback_http = true\n").await;
        let _ = rollback_of_a_removed_idp(&first, &sync, false);
        let uni_a = pair_with_uni_a(&first);
        let (told, transmits, _, _) = first
            .commit_step(FlowSelect::None, None, None, |core, now| {
                core.remove_entity(&uni_a.entity_id, now, &mut openssl_random)
            })
            .await
            .unwrap();
        assert_eq!((told, transmits.len()), (1, 1));
        // The broker stops here: nothing is sent.
        drop((transmits, first));
        let second = service_with(tmp.path(), "allow_loopback_http = true\n").await;
        let _ = rollback_of_a_removed_idp(&second, &sync, false);
        assert_eq!(second.store.owed_count().await.unwrap(), 1);
        let later = unix(SystemTime::now()) + OWED_AFTER_RETRIES.as_secs() as i64 + 1;
        assert_eq!(second.send_owed_at(later).await, 1);
        let mut lines = Vec::new();
        for _ in 0..100 {
            lines = seen.lock().unwrap().clone();
            if !lines.is_empty() && second.store.owed_count().await.unwrap() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("action=rollback"), "{lines:?}");
        assert_eq!(second.store.owed_count().await.unwrap(), 0);
    }

    /// Review D6, a deletion's side: the entity was deleted from the store in one transaction
    /// and its peers' rollbacks queued by a step after it, so a broker stopped in between lost
    /// the rollbacks while the deletion stood. Both are one commit now.
    #[tokio::test]
    async fn a_deletion_and_its_rollbacks_are_one_commit() {
        let tmp = tempfile::tempdir().unwrap();
        let (sync, _seen) = agent_failing(0);
        let svc = service_with(tmp.path(), "allow_loopback_http = true\n").await;
        let _ = rollback_of_a_removed_idp(&svc, &sync, false);
        let uni_a = pair_with_uni_a(&svc);
        svc.store
            .put_entity(&StoredEntity {
                entity_id: uni_a.entity_id.clone(),
                xml: uni_a.to_xml().unwrap(),
                policy: serde_json::to_string(&EntityPolicy::default()).unwrap(),
                origin: Some(Origin::Operator),
            })
            .await
            .unwrap();
        let stored = |svc: &Arc<BrokerService<SqliteStore>>| {
            let svc = svc.clone();
            async move {
                svc.store
                    .entities()
                    .await
                    .unwrap()
                    .iter()
                    .any(|e| e.entity_id == "https://idp.uni-a.example/idp")
            }
        };
        assert!(stored(&svc).await);
        let (told, transmits, _, _) = svc
            .commit_step(
                FlowSelect::None,
                None,
                Some(&uni_a.entity_id),
                |core, now| core.remove_entity(&uni_a.entity_id, now, &mut openssl_random),
            )
            .await
            .unwrap();
        assert_eq!((told, transmits.len()), (1, 1));
        // Committed together: the entity is gone and its peer's rollback owed.
        assert!(!stored(&svc).await);
        assert_eq!(svc.store.owed_count().await.unwrap(), 1);
    }

    /// Review D1: a row owed from a trigger's first sending became due 330 s later whatever
    /// its chain of retries was doing, and each round started a new chain for it beside the
    /// one still retrying: against an agent that never answers, chains piled up. While this
    /// instance sends or retries a pair's trigger, a round leaves the pair to it (and each
    /// attempt renews the row's lease for other instances).
    #[tokio::test]
    async fn an_owed_trigger_being_retried_is_not_planned_again() {
        let tmp = tempfile::tempdir().unwrap();
        let svc = service_with(tmp.path(), "allow_loopback_http = true\n").await;
        let (sync, seen) = agent_failing_once();
        let transmit = rollback_of_a_removed_idp(&svc, &sync, true).unwrap();
        // Its first sending fails: its chain waits 5 s for the next attempt.
        svc.clone().send(transmit, 0).await;
        assert_eq!(seen.lock().unwrap().len(), 1);
        assert_eq!(svc.store.owed_count().await.unwrap(), 1);
        // A round after the lease would have run out: left to the chain, still owed.
        let later = unix(SystemTime::now()) + OWED_AFTER_RETRIES.as_secs() as i64 + 1;
        assert_eq!(svc.send_owed_at(later).await, 0);
        assert_eq!(svc.store.owed_count().await.unwrap(), 1);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(seen.lock().unwrap().len(), 1, "no second chain");
    }

    /// Agent review M2, the broker's side: every trigger of a step was sent at once, so a
    /// policy change or deletion moving many pairs of one entity opened as many connections
    /// to its agent (beyond its per-address cap they were refused). At most
    /// `TRIGGERS_PER_AGENT` are in flight to one agent now; all are delivered.
    #[tokio::test]
    async fn triggers_to_one_agent_are_paced() {
        use std::io::{Read, Write};
        use std::sync::atomic::AtomicUsize;
        let tmp = tempfile::tempdir().unwrap();
        let svc = service_with(tmp.path(), "allow_loopback_http = true\n").await;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let sync = format!("http://{}/dame", l.local_addr().unwrap());
        let (open, most, served) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (o, m, d) = (open.clone(), most.clone(), served.clone());
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { continue };
                let (o, m, d) = (o.clone(), m.clone(), d.clone());
                std::thread::spawn(move || {
                    let now_open = o.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(now_open, Ordering::SeqCst);
                    let mut req = [0u8; 8192];
                    let _ = c.read(&mut req);
                    std::thread::sleep(Duration::from_millis(200));
                    let body = "status=integrated&reason=removed";
                    o.fetch_sub(1, Ordering::SeqCst);
                    d.fetch_add(1, Ordering::SeqCst);
                    let _ = write!(
                        c,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        let now = SystemTime::now();
        let sp = sp_syncing_at(&sync);
        let n = 3 * TRIGGERS_PER_AGENT;
        let transmits: Vec<Transmit> = {
            let mut core = svc.core();
            core.registry
                .insert(sp, EntityPolicy::default(), now, true)
                .unwrap();
            (0..n)
                .map(|i| {
                    let idp = idp(&format!("idp{i}.uni.example"), "Uni");
                    core.registry
                        .insert(idp.clone(), EntityPolicy::default(), now, true)
                        .unwrap();
                    core.relationships.record(&idp.entity_id, SP, now);
                    core.remove_entity(&idp.entity_id, now, &mut openssl_random);
                    core.poll_transmit().unwrap()
                })
                .collect()
        };
        let sends: Vec<_> = transmits
            .into_iter()
            .map(|t| tokio::spawn(svc.clone().send(t, 0)))
            .collect();
        for s in sends {
            s.await.unwrap();
        }
        assert_eq!(served.load(Ordering::SeqCst), n);
        let most = most.load(Ordering::SeqCst);
        assert!((1..=TRIGGERS_PER_AGENT).contains(&most), "{most} at once");
    }
}
