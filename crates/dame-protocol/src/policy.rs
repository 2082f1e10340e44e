//! Policies a broker or an entity applies before any exchange: allow and deny lists by DNS
//! domain (the GÉANT-TrustBroker design), and rate limits (token buckets with time as input and
//! bounded memory).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use crate::error::{Error, Refusal};

/// The DNS host of an entityID that is an `https://` or `http://` URL (lower-cased, without
/// port); `None` for URNs and anything else.
#[must_use]
pub fn entity_host(entity_id: &str) -> Option<String> {
    let rest = entity_id
        .strip_prefix("https://")
        .or_else(|| entity_id.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.contains('@') {
        return None;
    }
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
    .then_some(host)
}

/// Most entries one [`DomainList`] built from outside input holds ([`DomainList::try_new`],
/// and every list deserialized: a policy PUT, a policy loaded from the store). Review K3: the
/// lists had no bound, so one `PUT /admin/policy` of 256 KiB held about 43,000 entries, each
/// scanned per discovery, login step and established peer on a policy change, under the
/// broker's core lock.
pub const MAX_DOMAIN_ENTRIES: usize = 256;

/// Most bytes of one [`DomainList`] entry after normalisation, its leading `.` not counted
/// (the longest DNS name, review K3).
pub const MAX_DOMAIN_LEN: usize = 253;

/// DNS domains: `example.org` matches that host only, `.example.org` matches every host below
/// it (not `example.org` itself, not `badexample.org`).
/// With feature `serde` it is a plain list of strings, normalised and checked on the way in
/// like [`DomainList::try_new`] (a list beyond its bounds does not deserialize).
///
/// Matching looks up the host and each of its parent domains in hash sets: its cost depends
/// on the host's labels, not on the list's length (review K3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(try_from = "Vec<String>", into = "Vec<String>")
)]
pub struct DomainList {
    /// The entries as given (normalised), in order: what is serialized.
    entries: Vec<String>,
    /// Entries naming one host.
    exact: HashSet<String>,
    /// Entries naming the hosts below a domain, without their leading `.`.
    below: HashSet<String>,
}

impl TryFrom<Vec<String>> for DomainList {
    type Error = Error;

    fn try_from(v: Vec<String>) -> Result<Self, Error> {
        DomainList::try_new(v)
    }
}

impl From<DomainList> for Vec<String> {
    fn from(d: DomainList) -> Self {
        d.entries
    }
}

/// Lower-cased, without surrounding white space or trailing dots.
fn normalise(entry: &str) -> String {
    entry.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `domain` (an entry without its leading `.`) is a DNS name [`entity_host`] can
/// return: at most [`MAX_DOMAIN_LEN`] bytes of labels of 1 to 63 letters, digits and hyphens,
/// no label starting or ending with a hyphen.
fn dns_name(domain: &str) -> bool {
    domain.len() <= MAX_DOMAIN_LEN
        && domain.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl DomainList {
    /// A list from entries such as `idp.example.org` and `.example.edu`, as the program gives
    /// them (not checked; empty entries are dropped). Input from outside goes through
    /// [`DomainList::try_new`].
    #[must_use]
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(entries: I) -> Self {
        let mut list = DomainList::default();
        for e in entries {
            let e = normalise(e.as_ref());
            if !e.is_empty() && e != "." {
                list.push(e);
            }
        }
        list
    }

    /// A list from entries given from outside (a policy an entity or the operator sends):
    /// refused ([`Error::Malformed`], naming the bound) beyond [`MAX_DOMAIN_ENTRIES`]
    /// entries, or with an entry that is not a DNS name of at most [`MAX_DOMAIN_LEN`] bytes
    /// after an optional leading `.` (review K3). Empty entries are dropped, as by
    /// [`DomainList::new`], and do not count.
    pub fn try_new<I: IntoIterator<Item = S>, S: AsRef<str>>(entries: I) -> Result<Self, Error> {
        let mut list = DomainList::default();
        for e in entries {
            let e = normalise(e.as_ref());
            if e.is_empty() {
                continue;
            }
            if list.entries.len() >= MAX_DOMAIN_ENTRIES {
                return Err(Error::malformed(
                    "domain list",
                    format!("more than {MAX_DOMAIN_ENTRIES} entries"),
                ));
            }
            if !dns_name(e.strip_prefix('.').unwrap_or(&e)) {
                let shown: String = e.chars().take(64).collect();
                return Err(Error::malformed(
                    "domain list",
                    format!(
                        "{shown:?} is not a DNS name (labels of letters, digits and hyphens, \
                         at most {MAX_DOMAIN_LEN} bytes), with an optional leading '.'"
                    ),
                ));
            }
            list.push(e);
        }
        Ok(list)
    }

    fn push(&mut self, e: String) {
        match e.strip_prefix('.') {
            Some(domain) => self.below.insert(domain.to_owned()),
            None => self.exact.insert(e.clone()),
        };
        self.entries.push(e);
    }

    /// Whether the list is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether `host` (lower-case) is listed: the host itself, or one of its parent domains
    /// below a label (`a.b.example.org` looks up `b.example.org`, `example.org` and `org`).
    #[must_use]
    pub fn matches(&self, host: &str) -> bool {
        if self.exact.contains(host) {
            return true;
        }
        if self.below.is_empty() {
            return false;
        }
        host.match_indices('.')
            .any(|(i, _)| i > 0 && self.below.contains(&host[i + 1..]))
    }
}

/// Which peers a provider accepts: the deny list wins; with a non-empty allow list only listed
/// peers pass. A peer whose entityID is not an http(s) URL has no domain: it passes only when
/// the allow list is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PeerPolicy {
    /// Peers accepted (empty: all not denied).
    pub allow: DomainList,
    /// Peers refused.
    pub deny: DomainList,
}

impl PeerPolicy {
    /// Whether `peer` may be exchanged with.
    pub fn check(&self, peer: &str) -> Result<(), Refusal> {
        match entity_host(peer) {
            Some(h) if self.deny.matches(&h) => Err(Refusal::NotPermitted),
            Some(h) if self.allow.is_empty() || self.allow.matches(&h) => Ok(()),
            None if self.allow.is_empty() => Ok(()),
            _ => Err(Refusal::NotPermitted),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: SystemTime,
}

/// Token buckets per key (a source address, a user, an entity): `burst` requests at once, then
/// `per_second` on average. Memory is bounded by `max_keys`: a full bucket is the same as no
/// bucket, so full ones are dropped first; when every held bucket is in use, a new key is
/// refused ([`Refusal::Capacity`]) rather than letting someone reset their own limit.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    max_keys: usize,
    buckets: HashMap<String, Bucket>,
}

impl RateLimiter {
    /// `per_second` sustained, `burst` at once, at most `max_keys` keys remembered.
    #[must_use]
    pub fn new(per_second: f64, burst: u32, max_keys: usize) -> Self {
        RateLimiter {
            per_second: per_second.max(0.0),
            burst: f64::from(burst.max(1)),
            max_keys: max_keys.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Keys remembered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether none is remembered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    fn refill(&self, b: &mut Bucket, now: SystemTime) {
        let elapsed = now.duration_since(b.at).unwrap_or_default().as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_second).min(self.burst);
        b.at = b.at.max(now);
    }

    /// Takes one token for `key` at `now`.
    pub fn check(&mut self, key: &str, now: SystemTime) -> Result<(), Refusal> {
        if let Some(mut b) = self.buckets.get(key).copied() {
            self.refill(&mut b, now);
            if b.tokens < 1.0 {
                self.buckets.insert(key.to_owned(), b);
                return Err(Refusal::RateLimited);
            }
            b.tokens -= 1.0;
            self.buckets.insert(key.to_owned(), b);
            return Ok(());
        }
        if self.buckets.len() >= self.max_keys {
            let (per_second, burst) = (self.per_second, self.burst);
            self.buckets.retain(|_, b| {
                let elapsed = now.duration_since(b.at).unwrap_or_default().as_secs_f64();
                b.tokens + elapsed * per_second < burst
            });
            if self.buckets.len() >= self.max_keys {
                return Err(Refusal::Capacity);
            }
        }
        self.buckets.insert(
            key.to_owned(),
            Bucket {
                tokens: self.burst - 1.0,
                at: now,
            },
        );
        Ok(())
    }

    /// How long until `key` has a token again (zero when it has one now).
    #[must_use]
    pub fn retry_after(&self, key: &str, now: SystemTime) -> Duration {
        let Some(mut b) = self.buckets.get(key).copied() else {
            return Duration::ZERO;
        };
        self.refill(&mut b, now);
        if b.tokens >= 1.0 || self.per_second <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((1.0 - b.tokens) / self.per_second)
    }
}
