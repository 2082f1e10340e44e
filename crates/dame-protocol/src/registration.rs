//! Proof of ownership at registration (the GÉANT-TrustBroker design): before the broker accepts
//! metadata for an entityID, the registrant places a file with a random name and random content
//! on the entityID's host, and the broker fetches it.
//!
//! ```text
//! broker: OwnershipChallenge::new(entityID, now, rng)        -> name, content, expiry
//! registrant: serve https://<entityID host>/.well-known/dame-ownership/<name> with <content>
//! broker: challenge.fetch_plan()                             -> the one URL to GET
//!         challenge.check_address(ip, allow_private)          for every address the host
//!                                                               resolves to, before connecting
//!         challenge.verify(now, status, body)                 -> Ok, or a typed refusal
//! ```
//! The fetch goes only to the entityID's own host, over https, follows no redirect (a 3xx is a
//! failure), and refuses private, loopback, link-local and other non-global addresses unless the
//! operator allows them, so registration cannot be used to probe the broker's network (SSRF).
//! A challenge expires (default 1 hour) and allows a bounded number of attempts (default 5).

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use crate::error::{Error, Refusal};
use crate::policy::entity_host;

/// Where challenges are served on the registrant's host.
pub const WELL_KNOWN_PATH: &str = "/.well-known/dame-ownership/";
/// Largest answer body read (bytes).
pub const MAX_BODY: usize = 1024;

/// A pending proof-of-ownership challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct OwnershipChallenge {
    /// The entityID being registered.
    pub entity_id: String,
    /// Its host (from the entityID, which must be an https URL).
    pub host: String,
    /// The random file name (32 hex digits).
    pub name: String,
    /// The random content expected (64 hex digits).
    pub content: String,
    /// Until when the challenge can be answered.
    pub expires: SystemTime,
    /// Fetch attempts left.
    pub attempts_left: u32,
}

fn hex(rng: &mut dyn FnMut(&mut [u8]), n: usize) -> String {
    let mut b = vec![0u8; n];
    rng(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Whether `ip` is an address on the public internet (not private, loopback, link-local,
/// unspecified, multicast, documentation, shared, benchmarking, unique-local or mapped ones).
#[must_use]
pub fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10 shared
                || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15 benchmarking
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_global(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x0064 && s[1] == 0xff9b)) // NAT64 well-known prefix
        }
    }
}

impl OwnershipChallenge {
    /// A challenge for `entity_id` (an `https://` URL with a DNS host) issued at `now`, valid
    /// for one hour, five attempts.
    pub fn new(
        entity_id: &str,
        now: SystemTime,
        rng: &mut dyn FnMut(&mut [u8]),
    ) -> Result<Self, Error> {
        if !entity_id.starts_with("https://") {
            return Err(Error::malformed(
                "registration",
                "proof of ownership needs an https entityID",
            ));
        }
        let host = entity_host(entity_id)
            .ok_or_else(|| Error::malformed("registration", "the entityID has no DNS host"))?;
        if host.parse::<IpAddr>().is_ok() || !host.contains('.') {
            return Err(Error::malformed(
                "registration",
                "the entityID's host must be a DNS name",
            ));
        }
        Ok(OwnershipChallenge {
            entity_id: entity_id.to_owned(),
            host,
            name: hex(rng, 16),
            content: hex(rng, 32),
            expires: now + Duration::from_secs(3600),
            attempts_left: 5,
        })
    }

    /// The one URL the broker fetches (https, the entityID's host, default port).
    #[must_use]
    pub fn fetch_plan(&self) -> String {
        format!("https://{}{WELL_KNOWN_PATH}{}", self.host, self.name)
    }

    /// Checks an address the host resolved to, before connecting: refused unless global or
    /// `allow_private` (an operator's choice for test networks).
    pub fn check_address(&self, ip: IpAddr, allow_private: bool) -> Result<(), Refusal> {
        if is_global(ip) || allow_private {
            Ok(())
        } else {
            Err(Refusal::NotPermitted)
        }
    }

    /// Judges one fetch: HTTP `status` and `body` at `now`. Each call uses an attempt, the
    /// successful one included; an expired or exhausted challenge is refused without looking
    /// at the answer.
    pub fn verify(&mut self, now: SystemTime, status: u16, body: &[u8]) -> Result<(), Error> {
        if now >= self.expires {
            return Err(Refusal::Stale.into());
        }
        if self.attempts_left == 0 {
            return Err(Refusal::RateLimited.into());
        }
        self.attempts_left -= 1;
        if status != 200 {
            return Err(Refusal::NotPermitted.into());
        }
        if body.len() > MAX_BODY {
            return Err(Error::malformed("ownership answer", "body too large"));
        }
        let text = std::str::from_utf8(body)
            .map_err(|_| Error::malformed("ownership answer", "not UTF-8"))?;
        if ct_eq(
            text.trim_end_matches(['\r', '\n']).as_bytes(),
            self.content.as_bytes(),
        ) {
            Ok(())
        } else {
            Err(Refusal::NotPermitted.into())
        }
    }
}

/// Equality without an early exit on the first differing byte.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
