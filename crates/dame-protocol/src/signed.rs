//! Signed query strings, the way the SAML HTTP-Redirect binding signs (SAML Bindings §3.4.4.1):
//! the signature covers the exact octets of the query as sent, `name=value` pairs in a fixed
//! order ending with `SigAlg`, then `&Signature=` carries the base64 signature. DAME's triggers
//! and status reports use it (see the crate documentation for the wire format).

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use saml_core::dsig::{SignatureAlgorithm, SigningKey, TrustedKeys};

use crate::error::{Error, Refusal};
use crate::query::{Query, write};

/// Clock skew accepted on `issueInstant` in both directions (60 s).
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(60);
/// How old a signed query may be when it arrives (5 minutes).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// Bytes of randomness in a nonce (16, written as 32 lowercase hex digits).
pub const NONCE_LEN: usize = 16;

/// A fresh nonce from the caller's randomness (`rng` fills the buffer).
pub fn new_nonce(rng: &mut dyn FnMut(&mut [u8])) -> String {
    let mut b = [0u8; NONCE_LEN];
    rng(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Whether `n` is a nonce as [`new_nonce`] writes it.
pub(crate) fn is_nonce(n: &str) -> bool {
    n.len() == 2 * NONCE_LEN
        && n.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Writes `pairs` (values encoded), appends `SigAlg` and the signature made with `key` (its
/// natural algorithm; SHA-1 is never used).
pub(crate) fn sign(pairs: &[(&str, &str)], key: &SigningKey) -> Result<String, Error> {
    let alg = key.default_algorithm();
    let mut q = write(pairs);
    q.push_str("&SigAlg=");
    q.push_str(&saml_core::bindings::url_encode(alg.uri()));
    let sig = key.sign_octets(alg, q.as_bytes())?;
    q.push_str("&Signature=");
    q.push_str(&saml_core::bindings::url_encode(
        &base64::engine::general_purpose::STANDARD.encode(sig),
    ));
    Ok(q)
}

/// Checks that the query has exactly `names` then `SigAlg` and `Signature`, in that order, and
/// that the signature over the octets before `&Signature=` verifies with one of `keys`
/// (RSA at least 2048 bits, no SHA-1). Returns the decoded values of `names` (possibly empty).
pub(crate) fn verify(
    what: &'static str,
    raw: &str,
    names: &[&str],
    keys: &TrustedKeys,
) -> Result<Vec<String>, Error> {
    let raw = raw.strip_prefix('?').unwrap_or(raw);
    let q = Query::parse(what, raw)?;
    let (Some(_), Some(sig)) = (q.raw("SigAlg"), q.raw("Signature")) else {
        return Err(Refusal::Unsigned.into());
    };
    let got: Vec<&str> = q.pairs.iter().map(|(k, _)| *k).collect();
    let mut want: Vec<&str> = names.to_vec();
    want.extend(["SigAlg", "Signature"]);
    if got != want {
        return Err(Error::malformed(
            what,
            format!("parameters must be exactly {want:?} in this order, got {got:?}"),
        ));
    }
    let signed_len = raw
        .rfind("&Signature=")
        .ok_or_else(|| Error::malformed(what, "no &Signature="))?;
    let signed = &raw[..signed_len];
    let alg = q.required(what, "SigAlg")?;
    let alg = SignatureAlgorithm::from_uri(&alg, false).map_err(saml_core::Error::from)?;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(
            saml_core::bindings::url_decode(sig)
                .map_err(|e| Error::malformed(what, format!("Signature: {e}")))?,
        )
        .map_err(|e| Error::malformed(what, format!("Signature is not base64: {e}")))?;
    if keys
        .verify_octets(alg, 2048, signed.as_bytes(), &sig)
        .is_err()
    {
        return Err(Refusal::BadSignature.into());
    }
    // Every name is present (the order check above); values may be empty.
    names
        .iter()
        .map(|n| Ok(q.get(what, n)?.unwrap_or_default()))
        .collect()
}

/// Checks an `issueInstant` against `now`: not older than `max_age`, not ahead by more than
/// `skew`.
pub(crate) fn check_time(
    issued: SystemTime,
    now: SystemTime,
    max_age: Duration,
    skew: Duration,
) -> Result<(), Refusal> {
    if issued > now.checked_add(skew).unwrap_or(now) {
        return Err(Refusal::FromFuture);
    }
    let oldest = now
        .checked_sub(max_age.saturating_add(skew))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    if issued < oldest {
        return Err(Refusal::Stale);
    }
    Ok(())
}

/// Nonces accepted recently, each remembered until it could no longer pass the time check:
/// a replay inside the window is refused, memory is bounded, and a full table of live nonces
/// refuses new ones ([`Refusal::Capacity`]) rather than forgetting one. Expired nonces are
/// swept when the table has doubled since the last sweep or is full, so a check costs
/// amortized constant time (a sweep on every check made each one a scan of up to `capacity`
/// entries, which whoever can send nonces could keep full).
#[derive(Debug, Clone)]
pub struct NonceCache {
    seen: std::collections::HashMap<String, SystemTime>,
    capacity: usize,
    /// Size at which the next check sweeps expired nonces.
    sweep_at: usize,
    /// When the first of the held nonces expires: before then a sweep would find nothing (a
    /// table kept full of live nonces is not scanned on every check).
    earliest: SystemTime,
}

/// Nonces below which a [`NonceCache`] is not swept.
const SWEEP_MIN: usize = 64;

impl NonceCache {
    /// A cache of at most `capacity` live nonces.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        NonceCache {
            seen: std::collections::HashMap::new(),
            capacity: capacity.max(1),
            sweep_at: SWEEP_MIN,
            earliest: SystemTime::UNIX_EPOCH,
        }
    }

    /// Nonces held (expired ones included until the next sweep).
    #[must_use]
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Whether `nonce` can be accepted at `now` (not seen, room to remember it).
    pub(crate) fn check(&mut self, nonce: &str, now: SystemTime) -> Result<(), Refusal> {
        if self.seen.len() >= self.sweep_at.min(self.capacity) {
            self.sweep(now);
        }
        if self.seen.get(nonce).is_some_and(|until| *until > now) {
            return Err(Refusal::Replayed);
        }
        if self.seen.len() >= self.capacity {
            return Err(Refusal::Capacity);
        }
        Ok(())
    }

    /// Forgets the nonces expired at `now` (nothing to do before the earliest expires).
    pub(crate) fn sweep(&mut self, now: SystemTime) {
        if now < self.earliest {
            return;
        }
        let mut earliest: Option<SystemTime> = None;
        self.seen.retain(|_, until| {
            let live = *until > now;
            if live {
                earliest = Some(earliest.map_or(*until, |e| e.min(*until)));
            }
            live
        });
        self.earliest = earliest.unwrap_or(SystemTime::UNIX_EPOCH);
        self.sweep_at = (2 * self.seen.len()).max(SWEEP_MIN);
    }

    /// The nonces held that are live at `now`, with until when.
    pub(crate) fn live(&self, now: SystemTime) -> impl Iterator<Item = (&str, SystemTime)> {
        self.seen
            .iter()
            .filter(move |(_, until)| **until > now)
            .map(|(n, until)| (n.as_str(), *until))
    }

    /// Remembers `nonce` until `until` (call after [`Self::check`] and every other check).
    pub(crate) fn remember(&mut self, nonce: &str, until: SystemTime) {
        if self.seen.is_empty() || until < self.earliest {
            self.earliest = until;
        }
        self.seen.insert(nonce.to_owned(), until);
    }
}

#[cfg(test)]
mod nonce_cache_tests {
    use super::{NonceCache, Refusal};
    use std::time::{Duration, UNIX_EPOCH};

    /// Replays inside the window are refused, expired nonces neither count as replays nor hold
    /// room, a full table of live nonces refuses new ones, and what is held stays within twice
    /// the live nonces at the last sweep.
    #[test]
    fn replays_capacity_and_sweeps() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut c = NonceCache::new(1000);
        for i in 0..1000u64 {
            let now = t0 + Duration::from_millis(i);
            c.check(&i.to_string(), now).unwrap();
            c.remember(&i.to_string(), now + Duration::from_secs(60));
        }
        let now = t0 + Duration::from_secs(1);
        assert_eq!(c.check("5", now), Err(Refusal::Replayed));
        assert_eq!(c.check("new", now), Err(Refusal::Capacity));
        // A minute later all have expired: room again, and an old nonce is not a replay (the
        // time check refuses it elsewhere).
        let later = t0 + Duration::from_secs(120);
        assert_eq!(c.check("5", later), Ok(()));
        assert!(c.len() < 64, "{}", c.len());
        // One live nonce at a time: the table stays small.
        for i in 0..100_000u64 {
            let now = later + Duration::from_secs(i);
            let n = format!("b{i}");
            c.check(&n, now).unwrap();
            c.remember(&n, now + Duration::from_secs(1));
            assert!(c.len() <= 128, "{}", c.len());
        }
    }
}
