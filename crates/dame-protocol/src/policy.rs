//! Policies a broker or an entity applies before any exchange: allow and deny lists by DNS
//! domain (the GÉANT-TrustBroker design), and rate limits (token buckets with time as input and
//! bounded memory).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use crate::error::Refusal;

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

/// DNS domains: `example.org` matches that host only, `.example.org` matches every host below
/// it (not `example.org` itself, not `badexample.org`).
/// With feature `serde` it is a plain list of strings, normalised on the way in like
/// [`DomainList::new`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(from = "Vec<String>", into = "Vec<String>"))]
pub struct DomainList {
    entries: Vec<String>,
}

impl From<Vec<String>> for DomainList {
    fn from(v: Vec<String>) -> Self {
        DomainList::new(v)
    }
}

impl From<DomainList> for Vec<String> {
    fn from(d: DomainList) -> Self {
        d.entries
    }
}

impl DomainList {
    /// A list from entries such as `idp.example.org` and `.example.edu`.
    #[must_use]
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(entries: I) -> Self {
        DomainList {
            entries: entries
                .into_iter()
                .map(|e| e.as_ref().trim().trim_end_matches('.').to_ascii_lowercase())
                .filter(|e| !e.is_empty() && e != ".")
                .collect(),
        }
    }

    /// Whether the list is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `host` (lower-case) is listed.
    #[must_use]
    pub fn matches(&self, host: &str) -> bool {
        self.entries.iter().any(|e| match e.strip_prefix('.') {
            Some(domain) => host
                .strip_suffix(domain)
                .is_some_and(|head| head.ends_with('.') && head.len() > 1),
            None => host == e,
        })
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
