//! The sans-IO MDQ client: a cache in front of per-entity lookups. The adapter asks
//! [`Client::lookup`]; the core answers from the cache or says what to fetch; the adapter
//! performs the HTTP request and hands the result to [`Client::handle_response`] (or
//! [`Client::handle_failure`]). Time is always an input.
//!
//! ```text
//!  lookup(id, now) ─► Hit(entity, refresh?) | NotFound | Fetch(req) | Pending(token)
//!  Fetch(req) ─ adapter GET req.url with req.headers ─► handle_response(token, resp, now)
//!                                       transport error ─► handle_failure(token, err, now)
//!  poll_timeout() ─► when the next early refresh is due; poll_refresh(now) ─► Fetch(req)
//! ```
//!
//! ## Call order
//!
//! An adapter drives the core in this order (quinn-proto style; `now` is always an input):
//!
//! 1. At start, optionally [`Client::restore`] each persisted [`Snapshot`] (feature `persist`:
//!    `io::persist::restore_into`).
//! 2. For each lookup, call [`Client::lookup`]:
//!    - [`Lookup::Hit`]: use the entity; if `refresh` is `Some`, perform that fetch too (step 3).
//!    - [`Lookup::NotFound`]: the entity does not exist (negative cache).
//!    - [`Lookup::Fetch`]: perform the GET (step 3), then use its result.
//!    - [`Lookup::Pending`]: another caller is fetching it; wait until that token completes,
//!      then call [`Client::lookup`] again.
//! 3. Perform a [`FetchRequest`] (`url`, `headers`), then hand the result back exactly once
//!    with its `token`: [`Client::handle_response`] with the HTTP response, or
//!    [`Client::handle_failure`] for a transport error after the adapter's retries. An adapter
//!    sharing the client between threads takes [`Client::verifier`] instead, runs
//!    [`Verifier::verify`] (the costly part) without holding the client, and hands the result
//!    to [`Client::handle_verified`]: a large document then holds no other lookup.
//! 4. After a fetch produced an entity, optionally persist [`Client::snapshot`].
//! 5. To refresh in the background, arm a timer for [`Client::poll_timeout`]; when it fires,
//!    drain [`Client::poll_refresh`] (each result is a fetch for step 3) until it returns
//!    `None`, then poll the timeout again.
//!
//! Cache lifetimes come from `Cache-Control: max-age` and the metadata's cacheDuration (the
//! shorter of the two, the latter the shortest of the root's, the entity's and its roles'),
//! else `Expires`, bounded by validUntil (the root's, the entity's and its roles'), and
//! clamped to [`Config::min_ttl`, `Config::max_ttl`]
//! (Shibboleth's defaults: 10 minutes and 8 hours); `no-cache` and `no-store` count as a zero
//! max-age, so the minimum, and an answer with `no-store` is never handed out for a persistent
//! cache ([`Client::snapshot`]). An entry is refreshed early once
//! [`Config::refresh_fraction`] of its lifetime has passed; a 404 (or an empty answer) is cached
//! for [`Config::negative_ttl`] (at least [`NEGATIVE_TTL_FLOOR`]); on a failed refresh, and
//! while a refresh is in flight, a stale entry keeps being served for at most
//! [`Config::max_stale`]. Concurrent lookups of one entity share one fetch (`Pending`). After
//! [`BREAKER_THRESHOLD`] failed fetches in a row, lookups that would fetch fail fast
//! ([`Lookup::Unavailable`]) for a backoff. The cache is bounded by entry count and bytes,
//! least recently used out first.
//!
//! Guarantees (issue 12):
//! - No entry is served (fresh, after a 304, stale on error, or restored from a persistent
//!   cache) at or after the effective `validUntil` of the signed document it came from: the
//!   earlier of the entity's and the document root's (SAML Metadata §2.3.1 / §2.3.2: validUntil
//!   is the expiration time of the element and everything it contains). The entry stores it.
//! - A "not found" (a 404, which is not authenticated, or a signed empty aggregate, which is not
//!   bound to the identifier asked for) never replaces a verified entry before that entry
//!   expires, and is remembered for at most [`Config::negative_ttl`], whatever its headers say.
//! - Restored lifetimes are clamped like fresh ones (at most [`Config::max_ttl`] from `now`,
//!   never past validUntil), and all time arithmetic is checked: no input or configuration
//!   value panics (a sum past the representable range saturates at a far-future time).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use saml_core::dsig::TrustedKeys;
use saml_metadata::load::Policy;
use saml_metadata::model::EntityDescriptor;

use crate::error::Error;
use crate::response::{self, Fetched, HttpResponse};
use crate::url::{BaseUrl, Identifier};

/// `application/samlmetadata+xml`
pub const SAML_METADATA_TYPE: &str = "application/samlmetadata+xml";

/// The default [`Config::max_validity`]: 28 days. Shibboleth's MDQ example assumes documents
/// valid for two weeks (P14D) and its aggregate examples allow up to 30 days; MDQ services
/// sign for 7 to 14 days (pyFF's examples 10).
pub const DEFAULT_MAX_VALIDITY: Duration = Duration::from_secs(28 * 86_400);

/// Client configuration. Build it with [`Config::new`], then set the fields to change.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The MDQ service's base URL.
    pub base: BaseUrl,
    /// The keys the MDQ service signs with (several for rollover).
    pub keys: TrustedKeys,
    /// Shortest cache lifetime (default 10 minutes).
    pub min_ttl: Duration,
    /// Longest cache lifetime (default 8 hours).
    pub max_ttl: Duration,
    /// Lifetime when nothing says (default 1 hour, then clamped).
    pub default_ttl: Duration,
    /// How long a "not found" is remembered (default 10 minutes).
    pub negative_ttl: Duration,
    /// Fraction of the lifetime after which an entry is refreshed early (default 0.75).
    pub refresh_fraction: f64,
    /// How long past its expiry an entry may be served when refreshing fails (default 1 hour).
    pub max_stale: Duration,
    /// Most entries kept (default 10,000).
    pub max_entries: usize,
    /// Most "not found" entries kept, within `max_entries` (default 1,000). Anyone who can
    /// make the client look up names (an Issuer in a request) makes them: they are evicted
    /// before any verified entry, and never served stale.
    pub max_not_found: usize,
    /// Most document bytes kept (default 256 MiB).
    pub max_bytes: usize,
    /// Largest body accepted (default 4 MiB, decoded).
    pub max_body: usize,
    /// Clock skew for validUntil checks (default 5 minutes).
    pub clock_skew: Duration,
    /// Admit SHA-1 signatures and 1024-bit RSA (default false).
    pub legacy: bool,
    /// Refuse a document without validUntil (default true, as Shibboleth's MDQ examples
    /// configure with a `RequireValidUntil` filter). A signed document without one stays valid for
    /// ever: whoever can replay it (a man in the middle on an `http://` base, a compromised
    /// mirror, a stale cache) can keep serving it after the federation changed the entity
    /// (mdq review L4; it was false before).
    pub require_valid_until: bool,
    /// Refuse a document whose validUntil is further than this in the future (default
    /// [`DEFAULT_MAX_VALIDITY`], 28 days; `None` for no limit): it bounds how long an old
    /// signed version can be replayed (mdq review L4; it was none before).
    pub max_validity: Option<Duration>,
    /// Keep versions in order (default true): an answer older than the newest version taken
    /// of the entity (an earlier `mdrpi:PublicationInfo` `creationInstant` when both carry
    /// one, else an earlier or no validUntil) is not taken while that version is valid: it
    /// renews the cached copy as a 304 would, or, with no cached copy left (a 404, an
    /// eviction), is refused; on a `*_fresh` call it is an error. An MDQ server signs each
    /// version later than the last, so only a replayed older version (a man in the middle, a
    /// stale mirror or cache) goes back; without this, one could undo a key rollover, a
    /// removed endpoint or a removal for as long as the old version's validUntil (mdq review
    /// L4's rest). An older version answered without a break for [`Config::max_ttl`] is taken
    /// (a federation that shortened its validity, a registrar that set an earlier validUntil):
    /// the hold a server can put on its clients, and a man in the middle must keep up to roll
    /// one back. A `creationInstant` later than now plus the clock skew is not used.
    pub version_order: bool,
    /// Largest body of an "all entities" fetch (the blocking adapter's `all`), decoded
    /// (default 256 MiB).
    pub max_aggregate_body: usize,
}

impl Config {
    /// A configuration for `base` trusting `keys`, with the defaults above.
    pub fn new(base: BaseUrl, keys: TrustedKeys) -> Self {
        Config {
            base,
            keys,
            min_ttl: Duration::from_secs(600),
            max_ttl: Duration::from_secs(8 * 3600),
            default_ttl: Duration::from_secs(3600),
            negative_ttl: Duration::from_secs(600),
            refresh_fraction: 0.75,
            max_stale: Duration::from_secs(3600),
            max_entries: 10_000,
            max_not_found: 1_000,
            max_bytes: 256 << 20,
            max_body: 4 << 20,
            clock_skew: Duration::from_secs(300),
            legacy: false,
            require_valid_until: true,
            max_validity: Some(DEFAULT_MAX_VALIDITY),
            version_order: true,
            max_aggregate_body: 256 << 20,
        }
    }
}

/// What verifying one fetch's answer needs, detached from the [`Client`] (see
/// [`Client::verifier`]): `Send`, so that it can run on another thread.
#[derive(Debug, Clone)]
pub struct Verifier {
    token: Token,
    id: Identifier,
    policy: Policy,
    max_body: usize,
}

impl Verifier {
    /// Checks the HTTP answer (status, encoding, size, Content-Type) and verifies the
    /// document it carries: signature, entityID, validUntil (see [`response::handle`]).
    pub fn verify(&self, resp: &HttpResponse<'_>) -> Verified {
        Verified {
            token: self.token,
            outcome: response::handle(&self.id, resp, &self.policy, self.max_body),
        }
    }
}

/// What [`Verifier::verify`] made of one answer, for [`Client::handle_verified`]. Only a
/// verifier makes one: nothing unverified reaches the cache this way.
#[derive(Debug)]
#[must_use = "hand it to Client::handle_verified"]
pub struct Verified {
    token: Token,
    outcome: Result<Fetched, Error>,
}

impl Verified {
    /// The fetch this answer was verified for.
    #[must_use]
    pub fn token(&self) -> Token {
        self.token
    }
}

/// Identifies one fetch in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token(u64);

impl Token {
    /// A token for a request outside the cache (an "all entities" fetch).
    pub fn detached() -> Token {
        Token(0)
    }
}

/// A GET the adapter must perform, then complete with [`Client::handle_response`] or
/// [`Client::handle_failure`] (an uncompleted request keeps its entity pending).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a fetch request must be performed and completed"]
pub struct FetchRequest {
    /// Hand this back with the result.
    pub token: Token,
    /// What is being fetched.
    pub id: Identifier,
    /// The URL.
    pub url: String,
    /// Headers to send: Accept, Accept-Encoding, and If-None-Match (or If-Modified-Since, for
    /// a version cached without an ETag) when revalidating.
    pub headers: Vec<(String, String)>,
}

/// What [`Client::fetch_now`] asks of the adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a fetch request must be performed and completed"]
pub enum FetchNow {
    /// Perform this fetch and complete it.
    Fetch(FetchRequest),
    /// A fetch of the same entity is already in flight under this token: wait for its
    /// completion; there is nothing to send and nothing to complete (a second GET under the
    /// same token went out without the `Accept` the SAML profile requires, and its completion
    /// failed as an unknown token: mdq review I3).
    Joined(Token),
}

/// The answer to a lookup.
#[derive(Debug, Clone)]
#[must_use = "a lookup may ask for a fetch that must be performed"]
pub enum Lookup {
    /// From the cache; `refresh` when it is due for an early refresh (serve now, fetch too).
    Hit {
        /// The entity.
        entity: Arc<EntityDescriptor>,
        /// An early refresh to perform, if due and none is in flight.
        refresh: Option<FetchRequest>,
    },
    /// Known not to exist (negative cache).
    NotFound,
    /// Not usable from the cache: fetch this.
    Fetch(FetchRequest),
    /// Another lookup is already fetching it: wait for that token to complete, then look up
    /// again.
    Pending(Token),
    /// Not cached, and the server is not asked now: its last [`BREAKER_THRESHOLD`] fetches or
    /// more in a row failed (transport errors, 5xx or 429 answers), so lookups that would
    /// fetch fail at once until `until` (mdq review M3: during an outage each lookup of an
    /// uncached, possibly attacker-chosen, identifier held a thread for a whole cycle of
    /// timeouts and retries). Cached entities are still served, stale within `max_stale`.
    Unavailable {
        /// Fetches failed in a row.
        failures: u32,
        /// When a lookup may fetch again.
        until: SystemTime,
    },
}

/// Fetches failing in a row (a transport error, a 5xx or 429 answer, across identifiers)
/// after which lookups that would fetch are answered [`Lookup::Unavailable`] for
/// [`FAILURE_BACKOFF`], doubled per further failure up to [`Config::min_ttl`].
pub const BREAKER_THRESHOLD: u32 = 3;

/// What a revalidation names the cached version by (RFC 9110 §13.1): its ETag, else its
/// `Last-Modified` date.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Validator {
    /// Sent as `If-None-Match`.
    ETag(String),
    /// Sent as `If-Modified-Since`.
    Date(String),
}

impl Validator {
    fn header(&self) -> (String, String) {
        match self {
            Validator::ETag(e) => ("If-None-Match".to_owned(), e.clone()),
            Validator::Date(d) => ("If-Modified-Since".to_owned(), d.clone()),
        }
    }
}

#[derive(Debug, Clone)]
enum Value {
    Found {
        entity: Arc<EntityDescriptor>,
        etag: Option<String>,
        /// `Last-Modified`, sent back as `If-Modified-Since` when there is no ETag.
        last_modified: Option<String>,
        document: Arc<Vec<u8>>,
        /// The answer said `Cache-Control: no-store`: never snapshotted for a persistent cache.
        no_store: bool,
        /// The document's signed cacheDuration ([`crate::response::signed_cache_duration`]):
        /// a 304 renews the copy for no longer (mdq review L2c).
        cache_duration: Option<Duration>,
    },
    Missing,
}

impl Value {
    fn size(&self) -> usize {
        match self {
            Value::Found { document, .. } => document.len(),
            Value::Missing => 0,
        }
    }
}

/// A cached entity's document and validators, for a persistent cache (see
/// [`Client::snapshot`] and [`Client::restore`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Snapshot {
    /// The entityID.
    pub entity_id: String,
    /// The signed document as received.
    pub document: Arc<Vec<u8>>,
    /// Its ETag.
    pub etag: Option<String>,
    /// Its `Last-Modified` date, the validator when it has no ETag.
    pub last_modified: Option<String>,
    /// When the cache entry expires (an upper bound on restore: the lifetime is clamped to
    /// [`Config::max_ttl`] and the document's validUntil).
    pub expires: SystemTime,
}

/// `t + d`, saturating at a far-future time instead of overflowing.
fn add(t: SystemTime, d: Duration) -> SystemTime {
    const FAR: Duration = Duration::from_secs(1000 * 365 * 86400);
    t.checked_add(d).or_else(|| t.checked_add(FAR)).unwrap_or(t)
}

/// Whether a document whose effective validUntil is `vu` may be served at `now`.
fn valid_at(vu: Option<SystemTime>, now: SystemTime) -> bool {
    vu.is_none_or(|v| now < v)
}

#[derive(Debug, Clone)]
struct Entry {
    value: Value,
    fetched: SystemTime,
    refresh_at: SystemTime,
    expires: SystemTime,
    /// The effective validUntil of the signed document (never served at or after it).
    valid_until: Option<SystemTime>,
    used: u64,
    /// Fetches of it that failed in a row (see [`Client::back_off`]).
    failures: u32,
}

/// The wait after a failed fetch of a cached entity before the next one, doubled per failure
/// in a row up to [`Config::min_ttl`] (at least this).
pub const FAILURE_BACKOFF: Duration = Duration::from_secs(30);

/// The shortest time a "not found" is remembered, whatever the answer's headers say (but never
/// longer than [`Config::negative_ttl`]).
pub const NEGATIVE_TTL_FLOOR: Duration = Duration::from_secs(30);

/// The client core. See the [module docs](self) for the call order.
#[derive(Debug)]
pub struct Client {
    cfg: Config,
    entries: HashMap<String, Entry>,
    /// Per fetch: what, its cache key, and the validator sent (if any).
    inflight: HashMap<Token, (Identifier, String, Option<Validator>)>,
    by_key: HashMap<String, Token>,
    next: u64,
    clock: u64,
    bytes: usize,
    /// Fetches failed in a row (see [`BREAKER_THRESHOLD`]), and until when lookups that would
    /// fetch are answered [`Lookup::Unavailable`].
    failing: u32,
    unavailable_until: Option<SystemTime>,
    /// Answers older than the cached copy, which was kept (see [`Config::version_order`]).
    older_versions: u64,
    /// The newest version taken of each identifier, kept apart from the cache entry so that a
    /// 404, an eviction or an expired entry does not lose it (review of the twelfth round,
    /// F3), until its validUntil passes; at most `max_entries + max_not_found` of them.
    floors: HashMap<String, Floor>,
}

/// The newest version of an entity taken (see [`Config::version_order`]).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Floor {
    valid_until: SystemTime,
    created: Option<SystemTime>,
    /// Since when every answer has been older than this version, if the last one was.
    older_since: Option<SystemTime>,
}

impl Client {
    /// A client with an empty cache.
    pub fn new(cfg: Config) -> Self {
        Client {
            cfg,
            entries: HashMap::new(),
            inflight: HashMap::new(),
            by_key: HashMap::new(),
            next: 0,
            clock: 0,
            bytes: 0,
            failing: 0,
            unavailable_until: None,
            older_versions: 0,
            floors: HashMap::new(),
        }
    }

    /// How many answers were older than the newest version taken, and not taken (the cached
    /// copy renewed as by a 304, or the answer refused; see [`Config::version_order`]): more
    /// than none means a server, mirror or cache on the way serves an old version.
    #[must_use]
    pub fn older_versions_kept_out(&self) -> u64 {
        self.older_versions
    }

    /// [`FAILURE_BACKOFF`] after `n` earlier failures in a row: doubled per failure, at most
    /// [`Config::min_ttl`] (or the backoff itself, if longer).
    fn backoff(cfg: &Config, n: u32) -> Duration {
        FAILURE_BACKOFF
            .saturating_mul(1u32 << n.min(16))
            .min(cfg.min_ttl.max(FAILURE_BACKOFF))
    }

    /// Counts a fetch outcome for the breaker ([`BREAKER_THRESHOLD`]): `failed` for a
    /// transport error or a 5xx or 429 answer, else the server answered.
    fn count_outcome(&mut self, failed: bool, now: SystemTime) {
        if !failed {
            self.failing = 0;
            self.unavailable_until = None;
            return;
        }
        self.failing = self.failing.saturating_add(1);
        if self.failing >= BREAKER_THRESHOLD {
            let delay = Self::backoff(&self.cfg, self.failing - BREAKER_THRESHOLD);
            self.unavailable_until = Some(add(now, delay));
        }
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Number of cached entries (positive and negative).
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of cached documents.
    #[must_use]
    pub fn cached_bytes(&self) -> usize {
        self.bytes
    }

    /// A new fetch of `id` (cached under `key`). Callers check first that none is in flight.
    fn request(&mut self, id: &Identifier, key: &str) -> FetchRequest {
        debug_assert!(!self.by_key.contains_key(key), "a second fetch of {key}");
        self.next += 1;
        let token = Token(self.next);
        self.by_key.insert(key.to_owned(), token);
        let mut headers = vec![
            ("Accept".to_owned(), SAML_METADATA_TYPE.to_owned()),
            ("Accept-Encoding".to_owned(), "gzip".to_owned()),
        ];
        let sent = self.cached_validator(key);
        if let Some(v) = &sent {
            headers.push(v.header());
        }
        self.inflight
            .insert(token, (id.clone(), key.to_owned(), sent));
        FetchRequest {
            token,
            id: id.clone(),
            url: self.cfg.base.entity(id),
            headers,
        }
    }

    /// Looks `id` up at `now`.
    pub fn lookup(&mut self, id: &Identifier, now: SystemTime) -> Lookup {
        let key = id.key();
        self.clock += 1;
        let clock = self.clock;
        let pending = self.by_key.get(key).copied();
        let max_stale = self.cfg.max_stale;
        if let Some(e) = self.entries.get_mut(key) {
            e.used = clock;
            // Only an entity whose ID matches is served (a {sha1} and an entityID lookup share the key).
            let fresh = now < e.expires && valid_at(e.valid_until, now);
            // After a failed fetch (the server down or answering badly), the cached entity is
            // served until the backoff ends, stale within `max_stale`: not a new fetch per
            // caller (MDQ review M1).
            // So is it while another lookup's fetch of it is in flight (stale while revalidate:
            // every other caller waited for that fetch, up to its timeouts and retries, with a
            // usable copy at hand: mdq review M2).
            let backing_off = e.failures > 0 && now < e.refresh_at;
            let stale_ok = (backing_off || pending.is_some())
                && now < add(e.expires, max_stale)
                && valid_at(e.valid_until, now);
            match (&e.value, fresh) {
                (Value::Found { entity, .. }, true) if id.matches_keyed(&entity.entity_id) => {
                    let entity = entity.clone();
                    let due = now >= e.refresh_at;
                    let refresh = (due && pending.is_none()).then(|| self.request(id, key));
                    return Lookup::Hit { entity, refresh };
                }
                (Value::Found { entity, .. }, false)
                    if stale_ok && id.matches_keyed(&entity.entity_id) =>
                {
                    return Lookup::Hit {
                        entity: entity.clone(),
                        refresh: None,
                    };
                }
                (Value::Missing, true) => return Lookup::NotFound,
                _ => {}
            }
        }
        match pending {
            Some(t) => Lookup::Pending(t),
            None => match self.unavailable_until {
                Some(until) if now < until => Lookup::Unavailable {
                    failures: self.failing,
                    until,
                },
                _ => Lookup::Fetch(self.request(id, key)),
            },
        }
    }

    /// The policy every document of this client is verified under (the configuration's keys,
    /// skew, algorithms and validUntil rules) at `now`.
    pub(crate) fn policy(&self, now: SystemTime) -> Policy {
        let mut p = Policy::new(self.cfg.keys.clone(), now);
        p.clock_skew = self.cfg.clock_skew;
        p.require_valid_until = self.cfg.require_valid_until;
        p.max_validity = self.cfg.max_validity;
        if self.cfg.legacy {
            p.verify = saml_core::dsig::VerifyOptions::metadata().legacy();
        }
        p
    }

    fn lifetime(
        &self,
        ttl: Option<Duration>,
        valid_until: Option<SystemTime>,
        now: SystemTime,
    ) -> Duration {
        // max then min, not clamp: a configuration with min_ttl > max_ttl must not panic.
        let mut t = ttl
            .unwrap_or(self.cfg.default_ttl)
            .max(self.cfg.min_ttl)
            .min(self.cfg.max_ttl);
        if let Some(vu) = valid_until {
            t = t.min(vu.duration_since(now).unwrap_or(Duration::ZERO));
        }
        t
    }

    fn insert(
        &mut self,
        key: String,
        value: Value,
        ttl: Duration,
        valid_until: Option<SystemTime>,
        now: SystemTime,
    ) {
        let size = value.size();
        if let Value::Found { entity, .. } = &value {
            let entity = entity.clone();
            self.set_floor(&key, &entity, valid_until, now);
        }
        if let Some(old) = self.entries.remove(&key) {
            self.bytes = self.bytes.saturating_sub(old.value.size());
        }
        self.clock += 1;
        let fraction = self.cfg.refresh_fraction;
        let fraction = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            1.0
        };
        let refresh = Duration::try_from_secs_f64(ttl.as_secs_f64() * fraction).unwrap_or(ttl);
        self.entries.insert(
            key,
            Entry {
                value,
                fetched: now,
                refresh_at: add(now, refresh),
                expires: add(now, ttl),
                valid_until,
                used: self.clock,
                failures: 0,
            },
        );
        self.bytes = self.bytes.saturating_add(size);
        self.evict(now);
    }

    /// Drops expired-beyond-stale entries (expired "not found" ones: they are never served
    /// stale), then the least recently used "not found" entries beyond `max_not_found`, then the
    /// least recently used until within bounds, "not found" entries first (MDQ review L2: a
    /// flood of lookups of names that do not exist evicted verified entities).
    fn evict(&mut self, now: SystemTime) {
        let max_stale = self.cfg.max_stale;
        let mut freed = 0;
        let mut not_found = 0usize;
        self.entries.retain(|_, e| {
            let keep = match e.value {
                Value::Missing => now < e.expires,
                Value::Found { .. } => {
                    now < add(e.expires, max_stale) && valid_at(e.valid_until, now)
                }
            };
            if !keep {
                freed += e.value.size();
            } else if matches!(e.value, Value::Missing) {
                not_found += 1;
            }
            keep
        });
        self.bytes = self.bytes.saturating_sub(freed);
        loop {
            let over_not_found = not_found > self.cfg.max_not_found;
            if !over_not_found
                && self.entries.len() <= self.cfg.max_entries
                && self.bytes <= self.cfg.max_bytes
            {
                break;
            }
            // Over the not-found cap: only those; otherwise not-found ones first, then the
            // least recently used.
            let Some(k) = self
                .entries
                .iter()
                .filter(|(_, e)| !over_not_found || matches!(e.value, Value::Missing))
                .min_by_key(|(_, e)| (matches!(e.value, Value::Found { .. }), e.used))
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = self.entries.remove(&k) {
                if matches!(e.value, Value::Missing) {
                    not_found -= 1;
                }
                self.bytes = self.bytes.saturating_sub(e.value.size());
            }
        }
    }

    /// Ends the fetch `token`: what it fetched, its cache key, and the validator it sent.
    fn finish(&mut self, token: Token) -> Result<(Identifier, String, Option<Validator>), Error> {
        let (id, key, sent) = self
            .inflight
            .remove(&token)
            .ok_or_else(|| Error::State(format!("unknown fetch token {token:?}")))?;
        self.by_key.remove(&key);
        Ok((id, key, sent))
    }

    /// The validator of the document cached under `key`: its ETag, else its `Last-Modified`
    /// date (mdq review L5: a server sending no ETag had every unchanged entity sent whole).
    fn cached_validator(&self, key: &str) -> Option<Validator> {
        match self.entries.get(key) {
            Some(Entry {
                value:
                    Value::Found {
                        etag,
                        last_modified,
                        ..
                    },
                ..
            }) => etag
                .clone()
                .map(Validator::ETag)
                .or_else(|| last_modified.clone().map(Validator::Date)),
            _ => None,
        }
    }

    /// A stale entry still allowed on failure (never past its document's validUntil).
    fn stale(&self, key: &str, id: &Identifier, now: SystemTime) -> Option<Arc<EntityDescriptor>> {
        self.usable(key, id, now, self.cfg.max_stale)
    }

    /// A fetch of the cached entity `key` failed at `now` (a transport error, a bad answer, a
    /// 404 that keeps it): no early refresh or new fetch of it is handed out before
    /// [`FAILURE_BACKOFF`], doubled per failure in a row up to [`Config::min_ttl`]. Without it
    /// every lookup in the refresh window ran another failing refresh inline, and
    /// `poll_timeout` stayed in the past (a refresher spinning against the failing server:
    /// MDQ review M2).
    fn back_off(&mut self, key: &str, now: SystemTime) {
        if let Some(e) = self.entries.get_mut(key)
            && matches!(e.value, Value::Found { .. })
        {
            let delay = Self::backoff(&self.cfg, e.failures);
            e.failures = e.failures.saturating_add(1);
            e.refresh_at = add(now, delay);
        }
    }

    /// The cached entity for `key` if it is usable at `now`, `grace` past its expiry.
    fn usable(
        &self,
        key: &str,
        id: &Identifier,
        now: SystemTime,
        grace: Duration,
    ) -> Option<Arc<EntityDescriptor>> {
        match self.entries.get(key) {
            Some(Entry {
                value: Value::Found { entity, .. },
                expires,
                valid_until,
                ..
            }) if now < add(*expires, grace)
                && valid_at(*valid_until, now)
                && id.matches_keyed(&entity.entity_id) =>
            {
                Some(entity.clone())
            }
            _ => None,
        }
    }

    /// A fetch of `id` whatever the cache holds: for a push notice that the entity changed (a
    /// DAME metadata-integration trigger). Sends `If-None-Match` (or `If-Modified-Since`) when a
    /// version is cached, so an unchanged entity costs a 304. Complete a [`FetchNow::Fetch`] like any
    /// [`FetchRequest`]; a fetch of the same entity already in flight is joined
    /// ([`FetchNow::Joined`]: nothing to send).
    pub fn fetch_now(&mut self, id: &Identifier) -> FetchNow {
        let key = id.key().to_owned();
        match self.by_key.get(&key) {
            Some(t) => FetchNow::Joined(*t),
            None => FetchNow::Fetch(self.request(id, &key)),
        }
    }

    /// Completes the fetch `token` with the HTTP response. Returns the entity (`None`: it does
    /// not exist). A bad response keeps a usable stale entry (served for at most `max_stale`,
    /// never past its validUntil), otherwise it is the error; a bad response never replaces a
    /// good cache entry. A "not found" does not replace an entry that has not expired yet (that
    /// entry is returned), and is cached for at most `negative_ttl`. A 304 revalidates only the
    /// version the request named with `If-None-Match` or `If-Modified-Since` (a 304 to a
    /// request without one is a bad response), and one for an entry past its validUntil is an
    /// error.
    pub fn handle_response(
        &mut self,
        token: Token,
        resp: &HttpResponse<'_>,
        now: SystemTime,
    ) -> Result<Option<Arc<EntityDescriptor>>, Error> {
        self.complete(token, resp, now, false)
    }

    /// Completes the fetch `token` like [`Client::handle_response`], but never answers from
    /// the cache: the entity is returned only for a verified 200 (now cached) or a 304 that
    /// revalidates the cached entry. A bad response is its error (no stale entry), and a "not
    /// found" is `None` even while a verified entry has not expired (that entry stays cached,
    /// as with [`Client::handle_response`], but is not returned). For a push notice that asked
    /// for this fetch (a DAME trigger, agent review M3): what the caller acts on must be what
    /// the server answered now, not an older copy.
    pub fn handle_response_fresh(
        &mut self,
        token: Token,
        resp: &HttpResponse<'_>,
        now: SystemTime,
    ) -> Result<Option<Arc<EntityDescriptor>>, Error> {
        self.complete(token, resp, now, true)
    }

    /// Forgets what is cached for `id` (found or not found): the next lookup fetches it, with
    /// no validator. For a caller that stopped trusting the entity (a DAME rollback,
    /// agent review M3), so that no later failure or 304 serves the old copy. A fetch of `id`
    /// in flight is not affected (its completion caches what it gets).
    pub fn forget(&mut self, id: &Identifier) {
        if let Some(e) = self.entries.remove(id.key()) {
            self.bytes = self.bytes.saturating_sub(e.value.size());
        }
        self.floors.remove(id.key());
    }

    /// What verifying the answer to the fetch `token` needs (its identifier, the policy at
    /// `now`, the body bound), detached from the client: an adapter runs
    /// [`Verifier::verify`] (the parse, canonicalization and signature checks, the costly
    /// part) without holding the client, then hands the result to
    /// [`Client::handle_verified`]. [`Client::handle_response`] is the two in one call.
    pub fn verifier(&self, token: Token, now: SystemTime) -> Result<Verifier, Error> {
        let (id, _, _) = self
            .inflight
            .get(&token)
            .ok_or_else(|| Error::State(format!("unknown fetch token {token:?}")))?;
        Ok(Verifier {
            token,
            id: id.clone(),
            policy: self.policy(now),
            max_body: self.cfg.max_body,
        })
    }

    /// Completes the fetch `token` with what [`Verifier::verify`] made of its response, like
    /// [`Client::handle_response`].
    pub fn handle_verified(
        &mut self,
        token: Token,
        verified: Verified,
        now: SystemTime,
    ) -> Result<Option<Arc<EntityDescriptor>>, Error> {
        self.apply(token, verified, now, false)
    }

    /// Completes the fetch `token` with what [`Verifier::verify`] made of its response, like
    /// [`Client::handle_response_fresh`].
    pub fn handle_verified_fresh(
        &mut self,
        token: Token,
        verified: Verified,
        now: SystemTime,
    ) -> Result<Option<Arc<EntityDescriptor>>, Error> {
        self.apply(token, verified, now, true)
    }

    fn complete(
        &mut self,
        token: Token,
        resp: &HttpResponse<'_>,
        now: SystemTime,
        fresh: bool,
    ) -> Result<Option<Arc<EntityDescriptor>>, Error> {
        let verified = self.verifier(token, now)?.verify(resp);
        self.apply(token, verified, now, fresh)
    }

    fn apply(
        &mut self,
        token: Token,
        verified: Verified,
        now: SystemTime,
        fresh: bool,
    ) -> Result<Option<Arc<EntityDescriptor>>, Error> {
        if verified.token != token {
            return Err(Error::State(format!(
                "the answer verified for {:?} handed in for {token:?}",
                verified.token
            )));
        }
        let (id, key, sent) = self.finish(token)?;
        let unavailable = matches!(&verified.outcome,
            Err(Error::Status { status }) if *status >= 500 || *status == 429);
        self.count_outcome(unavailable, now);
        let handled = match verified.outcome {
            // A 304 is not authenticated: it only revalidates the version this request named
            // with If-None-Match or If-Modified-Since, and only while that version is the one
            // cached (MDQ review L1: without a validator, a forged 304 kept any old document
            // for ever).
            Ok(Fetched::NotModified { .. })
                if sent.is_none() || self.cached_validator(&key) != sent =>
            {
                Err(Error::Response(
                    "304 to a request that named no cached version \
                     (If-None-Match or If-Modified-Since)"
                        .into(),
                ))
            }
            other => other,
        };
        // An answer older than the newest version taken renews the cached copy, as a 304
        // would (both are signed, the copy is the later version), or is refused when no copy
        // is left (mdq review L4's rest; F3). The older answer's own `no-store` does not
        // apply to the copy it did not replace.
        let handled = match handled {
            Ok(Fetched::Entity {
                ref entity,
                valid_until,
                ttl,
                ..
            }) if self.cfg.version_order => {
                match self.older_than_taken(&key, entity, valid_until, now) {
                    Some(why) => {
                        self.older_versions = self.older_versions.saturating_add(1);
                        let cached = matches!(
                            self.entries.get(&key),
                            Some(Entry { value: Value::Found { .. }, valid_until: vu, .. })
                                if valid_at(*vu, now)
                        );
                        if cached && !fresh {
                            Ok(Fetched::NotModified {
                                ttl,
                                no_store: false,
                            })
                        } else {
                            Err(Error::Response(why))
                        }
                    }
                    None => handled,
                }
            }
            other => other,
        };
        match handled {
            Ok(Fetched::Entity {
                entity,
                etag,
                last_modified,
                ttl,
                valid_until,
                cache_duration,
                document,
                no_store,
            }) => {
                let entity: Arc<EntityDescriptor> = Arc::from(entity);
                let t = self.lifetime(ttl, valid_until, now);
                self.insert(
                    key,
                    Value::Found {
                        entity: entity.clone(),
                        etag,
                        last_modified,
                        document: Arc::new(document),
                        no_store,
                        cache_duration,
                    },
                    t,
                    valid_until,
                    now,
                );
                Ok(Some(entity))
            }
            Ok(Fetched::NotModified { ttl, no_store }) => {
                let Some(mut old) = self.entries.get(&key).cloned() else {
                    return Err(Error::Response(
                        "304 for an entity that is not cached".into(),
                    ));
                };
                let Value::Found {
                    entity,
                    cache_duration,
                    ..
                } = &old.value
                else {
                    return Err(Error::Response(
                        "304 for an entity that is not cached".into(),
                    ));
                };
                // The stored effective validUntil (the root's too), not just the entity's.
                let vu = old.valid_until;
                if !valid_at(vu, now) {
                    if let Some(e) = self.entries.remove(&key) {
                        self.bytes = self.bytes.saturating_sub(e.value.size());
                    }
                    return Err(Error::Response(
                        "304 for a cached document past its validUntil".into(),
                    ));
                }
                // The signed cacheDuration of the copy bounds its renewal as it bounded its
                // first lifetime (a 304 with a long max-age, or none, stretched it to
                // max-age or `default_ttl`: mdq review L2c).
                let ttl = crate::response::bounded_by_signed(ttl, *cache_duration);
                let t = self.lifetime(ttl, vu, now);
                let entity = entity.clone();
                if let Value::Found { no_store: kept, .. } = &mut old.value {
                    *kept |= no_store;
                }
                self.insert(key, old.value, t, vu, now);
                Ok(Some(entity))
            }
            Ok(Fetched::NotFound { ttl }) => {
                // Neither a 404 nor a signed empty aggregate is bound to this identifier: a
                // verified entry stays until it expires.
                if let Some(kept) = self.usable(&key, &id, now, Duration::ZERO) {
                    self.back_off(&key, now);
                    return Ok((!fresh).then_some(kept));
                }
                // At least NEGATIVE_TTL_FLOOR (or negative_ttl, if shorter): a 404 with
                // `max-age=0` switched negative caching off (mdq review L6).
                let neg = self.cfg.negative_ttl;
                let t = ttl.map_or(neg, |t| t.max(NEGATIVE_TTL_FLOOR).min(neg));
                self.insert(key, Value::Missing, t, None, now);
                Ok(None)
            }
            Err(e) => {
                self.back_off(&key, now);
                if fresh {
                    return Err(e);
                }
                match self.stale(&key, &id, now) {
                    Some(s) => Ok(Some(s)),
                    None => Err(e),
                }
            }
        }
    }

    /// The `creationInstant` of `entity`, unless later than `now` plus the clock skew (a
    /// signer's clock or a registrar's value far ahead would otherwise hold every later
    /// version out: F5).
    fn created(&self, entity: &EntityDescriptor, now: SystemTime) -> Option<SystemTime> {
        entity
            .extensions
            .publication
            .as_ref()?
            .creation_instant
            .filter(|t| *t <= add(now, self.cfg.clock_skew))
    }

    /// Why a fetched version of `key` is older than the newest version taken, if it is and
    /// has been answered for less than [`Config::max_ttl`] without a break (see
    /// [`Config::version_order`]). A floor whose validUntil passed orders nothing.
    fn older_than_taken(
        &mut self,
        key: &str,
        entity: &EntityDescriptor,
        valid_until: Option<SystemTime>,
        now: SystemTime,
    ) -> Option<String> {
        let created = self.created(entity, now);
        let hold = self.cfg.max_ttl;
        let floor = self.floors.get_mut(key)?;
        if !valid_at(Some(floor.valid_until), now) {
            self.floors.remove(key);
            return None;
        }
        let shown = |t: SystemTime| saml_core::time::format_datetime(t);
        let why = match (floor.created, created) {
            (Some(old), Some(new)) => (new < old).then(|| {
                format!(
                    "an older version of {}: created {} before the newest taken ({})",
                    entity.entity_id,
                    shown(new),
                    shown(old)
                )
            }),
            _ => match valid_until {
                Some(new) if new >= floor.valid_until => None,
                new => Some(format!(
                    "an older version of {}: valid until {} before the newest taken ({})",
                    entity.entity_id,
                    new.map_or_else(|| "(no validUntil)".to_owned(), shown),
                    shown(floor.valid_until)
                )),
            },
        };
        let Some(why) = why else {
            floor.older_since = None;
            return None;
        };
        let since = *floor.older_since.get_or_insert(now);
        if now.duration_since(since).unwrap_or(Duration::ZERO) >= hold {
            // Answered without a break for the hold: taken (its own floor replaces this one).
            return None;
        }
        Some(why)
    }

    /// Notes `entity`, valid until `valid_until`, as the newest version of `key` taken (the
    /// same version keeps its floor, and so when older answers began).
    fn set_floor(
        &mut self,
        key: &str,
        entity: &EntityDescriptor,
        valid_until: Option<SystemTime>,
        now: SystemTime,
    ) {
        let Some(valid_until) = valid_until else {
            self.floors.remove(key);
            return;
        };
        let created = self.created(entity, now);
        if let Some(f) = self.floors.get_mut(key) {
            if f.valid_until == valid_until && f.created == created {
                return;
            }
            *f = Floor {
                valid_until,
                created,
                older_since: None,
            };
            return;
        }
        let cap = self
            .cfg
            .max_entries
            .saturating_add(self.cfg.max_not_found)
            .max(1);
        if self.floors.len() >= cap {
            self.floors
                .retain(|_, f| valid_at(Some(f.valid_until), now));
        }
        if self.floors.len() >= cap
            && let Some(first) = self
                .floors
                .iter()
                .min_by_key(|(_, f)| f.valid_until)
                .map(|(k, _)| k.clone())
        {
            self.floors.remove(&first);
        }
        self.floors.insert(
            key.to_owned(),
            Floor {
                valid_until,
                created,
                older_since: None,
            },
        );
    }

    /// Completes the fetch `token` with a transport failure (after the adapter's retries).
    pub fn handle_failure(
        &mut self,
        token: Token,
        error: &str,
        now: SystemTime,
    ) -> Result<Option<Arc<EntityDescriptor>>, Error> {
        let (id, key, _) = self.finish(token)?;
        self.back_off(&key, now);
        self.count_outcome(true, now);
        match self.stale(&key, &id, now) {
            Some(s) => Ok(Some(s)),
            None => Err(Error::Transport(error.to_owned())),
        }
    }

    /// When the next early refresh is due (`poll_timeout`-style), if any entry will need one.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<SystemTime> {
        self.entries
            .iter()
            .filter(|(k, e)| {
                matches!(e.value, Value::Found { .. }) && !self.by_key.contains_key(*k)
            })
            .map(|(_, e)| e.refresh_at)
            .min()
    }

    /// A refresh fetch for an entry due at `now`, if any.
    #[must_use]
    pub fn poll_refresh(&mut self, now: SystemTime) -> Option<FetchRequest> {
        let (key, id) = self.entries.iter().find_map(|(k, e)| match &e.value {
            Value::Found { entity, .. } if now >= e.refresh_at && !self.by_key.contains_key(k) => {
                Identifier::entity_id(&entity.entity_id)
                    .ok()
                    .map(|i| (k.clone(), i))
            }
            _ => None,
        })?;
        Some(self.request(&id, &key))
    }

    /// The cached document of `id`, for a persistent cache; `None` also for one whose answer
    /// said `Cache-Control: no-store` (it is used and kept in memory, never written to disk).
    #[must_use]
    pub fn snapshot(&self, id: &Identifier) -> Option<Snapshot> {
        match self.entries.get(id.key()) {
            Some(Entry {
                value:
                    Value::Found {
                        entity,
                        etag,
                        last_modified,
                        document,
                        no_store: false,
                        ..
                    },
                expires,
                ..
            }) if id.matches_keyed(&entity.entity_id) => Some(Snapshot {
                entity_id: entity.entity_id.clone(),
                document: document.clone(),
                etag: etag.clone(),
                last_modified: last_modified.clone(),
                expires: *expires,
            }),
            _ => None,
        }
    }

    /// The verified document cached for `id`, whatever its answer said about persistent
    /// caches (for a caller that acts on the document it just fetched, as a DAME agent writes
    /// a peer's metadata where its SAML software reads it; [`Client::snapshot`] is what a
    /// persistent cache stores).
    #[must_use]
    pub fn cached_document(&self, id: &Identifier) -> Option<Arc<Vec<u8>>> {
        match self.entries.get(id.key()) {
            Some(Entry {
                value: Value::Found {
                    entity, document, ..
                },
                ..
            }) if id.matches_keyed(&entity.entity_id) => Some(document.clone()),
            _ => None,
        }
    }

    /// Whether the entry cached for `id` came with `Cache-Control: no-store` (a persistent
    /// cache drops what it holds for it).
    #[must_use]
    pub fn is_no_store(&self, id: &Identifier) -> bool {
        matches!(
            self.entries.get(id.key()),
            Some(Entry {
                value: Value::Found { no_store: true, .. },
                ..
            })
        )
    }

    /// Restores a persisted entry: the document is verified again under the current policy
    /// (keys, validUntil at `now`) and must hold the entity `snapshot.entity_id` as a fetch
    /// would accept it (alone, or among others in an aggregate answer). The
    /// lifetime is `snapshot.expires` clamped like a fresh one: at most [`Config::max_ttl`] from
    /// `now`, and never past the document's validUntil (the earlier of the entity's and the
    /// root's). An entry already past `expires` is kept for revalidation (If-None-Match) and as
    /// stale for what remains of [`Config::max_stale`] after that original expiry; one expired
    /// longer ago is refused. (A restart used to make an entry of any age expire now, so that
    /// each restart served it stale for `max_stale` again: MDQ review M3.)
    pub fn restore(&mut self, snapshot: &Snapshot, now: SystemTime) -> Result<(), Error> {
        if add(snapshot.expires, self.cfg.max_stale) <= now {
            return Err(Error::Response(format!(
                "the persisted entry expired more than max_stale ({} s) ago",
                self.cfg.max_stale.as_secs()
            )));
        }
        let id = Identifier::entity_id(&snapshot.entity_id)?;
        let agg = saml_metadata::load::load(&snapshot.document, &self.policy(now))?;
        // The entity as the fetch path picked it: alone, or out of an aggregate answer (such
        // answers were saved and then never restored: mdq review I4).
        let (found, vu) = crate::response::pick(&id, &agg, now)?;
        let Some(e) = found else {
            return Err(Error::Response(format!(
                "the persisted document does not hold {}",
                snapshot.entity_id
            )));
        };
        let value = Value::Found {
            entity: Arc::new(e.clone()),
            etag: snapshot.etag.clone(),
            last_modified: snapshot.last_modified.clone(),
            document: snapshot.document.clone(),
            no_store: false,
            cache_duration: crate::response::signed_cache_duration(&agg, e),
        };
        let mut ttl = snapshot
            .expires
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(self.cfg.max_ttl);
        if let Some(v) = vu {
            ttl = ttl.min(v.duration_since(now).unwrap_or(Duration::ZERO));
        }
        let key = id.key().to_owned();
        self.insert(key.clone(), value, ttl, vu, now);
        // Stale is measured from the original expiry.
        if let Some(e) = self.entries.get_mut(&key)
            && snapshot.expires < e.expires
        {
            e.expires = snapshot.expires;
        }
        Ok(())
    }

    /// When the cached entry for `id` was fetched and when it expires.
    #[must_use]
    pub fn entry_times(&self, id: &Identifier) -> Option<(SystemTime, SystemTime)> {
        self.entries.get(id.key()).map(|e| (e.fetched, e.expires))
    }
}
