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
//!
//! [`Registrations`] is the store and API around it: register, update and delete each need a
//! proof; what is uploaded is validated ([`crate::registry::validate`]: https entityID, one SSO
//! role, a signing certificate, https endpoints, a DAME sync location) before a challenge is
//! issued; an entityID is registered once; every step is an audit [`RegistrationEvent`].
//!
//! The proof backs control of the entityID's host and nothing more, while the broker re-signs
//! the upload with its own key. So self-registered metadata may not carry claims only an operator
//! can vouch for ([`crate::registry::validate_self_registered`]): a `shibmd:Scope` outside the
//! entityID host's domain or a regexp one, `mdattr:EntityAttributes` (entity categories,
//! assurance), `mdrpi:RegistrationInfo`/`PublicationInfo`, an endpoint that is not https within
//! the entityID's registrable domain or a role other than an IdP or SP SSO one (conversion
//! review M9: relying parties send back-channel requests to some endpoints). They are refused
//! at [`Registrations::begin`]
//! (before the registrant publishes any proof) and again at [`Registrations::complete`]
//! ([`Error::Unvouched`]). An operator's import ([`Registry::insert`]) is trusted and keeps them.
//!
//! ```text
//! begin(Register|Update, xml, requester) / begin_delete(entityID, requester)
//!                                   -> challenge (name, content, URL) and the requester's secret
//! ... the registrant publishes the content; the service fetches challenge URL ...
//! complete(entityID, secret, xml, status, body, now, registry) -> registered / updated / deleted
//! ```
//!
//! Who may complete a proof: only the requester that began it. The published content proves
//! control of the entityID's host, but anyone can ask the broker to fetch it; so each challenge
//! carries a random secret returned only to its requester, and completing needs it. Without
//! it, a third party calling the verify step between the owner's publishing and the owner's own
//! call would receive the registration's outcome (for a registration, the entity token: the
//! entity taken over). For the same reason challenges for one entityID never replace each
//! other: a third party's begin for someone else's entityID cannot cancel the owner's pending
//! proof, nor use its attempts.
//!
//! Resources held for an unauthenticated requester are bounded: a pending proof keeps the
//! SHA-256 of the upload, not the upload (the registrant sends the same metadata again with the
//! secret), at most [`MAX_PENDING_PER_REQUESTER`] proofs are pending per requester (the service
//! names requesters, e.g. by address), at most [`MAX_PENDING`] in all (when full, the
//! requester holding the most gives way to one holding fewer), and expired ones are
//! forgotten at every new challenge. A registration adds an entity only while its registrable
//! domain holds fewer than [`Registry::max_per_domain`] entities
//! ([`Registry::admits_self_registered`], checked at both steps): proof of ownership is free for
//! every host of a wildcard DNS zone, and one domain must not fill the registry for everyone.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use saml_metadata::model::Metadata;

use crate::error::{Error, Refusal};
use crate::policy::entity_host;
use crate::registry::{EntityPolicy, Registry};

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
    /// The requester's secret (64 hex digits): completing the proof needs it. Returned once
    /// by [`Registrations::begin`] and [`Registrations::begin_delete`]; the pending proof keeps
    /// only its SHA-256.
    pub secret: String,
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
            secret: hex(rng, 32),
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

/// Largest metadata upload (256 KiB: one entity): the most
/// [`Registrations::with_max_upload`] admits.
pub const MAX_UPLOAD: usize = 256 << 10;
/// Largest self-registration upload by default ([`Registrations::max_upload`]; 64 KiB: real
/// SP and IdP metadata is 3 to 30 KiB). Review K2: the registry is bounded in entities, not in
/// bytes, and each self-registered entity may have been [`MAX_UPLOAD`], held twice in memory
/// (its model and its signed document) by every instance.
pub const DEFAULT_MAX_UPLOAD: usize = 64 << 10;
/// Most challenges pending at once (a pending proof holds a few hundred bytes).
pub const MAX_PENDING: usize = 10_000;
/// Most challenges pending at once for one requester.
pub const MAX_PENDING_PER_REQUESTER: usize = 8;

/// What a pending proof will do once it succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A new entityID.
    Register,
    /// New metadata for a registered entityID.
    Update,
    /// Remove a registered entityID.
    Delete,
}

/// An audit event of registration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistrationEvent {
    /// A challenge was issued.
    ChallengeIssued {
        /// The entityID.
        entity_id: String,
        /// For what.
        operation: Operation,
    },
    /// An upload or a proof was refused.
    Refused {
        /// The entityID, when known.
        entity_id: String,
        /// Why.
        reason: String,
    },
    /// The operation was carried out.
    Done {
        /// The entityID.
        entity_id: String,
        /// What.
        operation: Operation,
    },
}

#[derive(Debug, Clone)]
struct PendingProof {
    /// The challenge, its secret left out (the map's key is the secret's SHA-256).
    challenge: OwnershipChallenge,
    operation: Operation,
    /// SHA-256 of the uploaded metadata (register, update).
    upload: Option<[u8; 32]>,
    policy: EntityPolicy,
    requester: String,
}

/// Pending registrations, updates and deletions, each waiting for its proof of ownership.
#[derive(Debug, Clone)]
pub struct Registrations {
    /// By the SHA-256 of the requester's secret.
    pending: HashMap<[u8; 32], PendingProof>,
    events: VecDeque<RegistrationEvent>,
    /// [`Registrations::max_upload`].
    max_upload: usize,
}

impl Default for Registrations {
    fn default() -> Self {
        Registrations {
            pending: HashMap::new(),
            events: VecDeque::new(),
            max_upload: DEFAULT_MAX_UPLOAD,
        }
    }
}

fn sha256(b: &[u8]) -> [u8; 32] {
    openssl::sha::sha256(b)
}

impl Registrations {
    /// No pending proofs.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The same, refusing uploads larger than `bytes` ([`Registrations::begin`]), at most
    /// [`MAX_UPLOAD`] (a larger value means [`MAX_UPLOAD`]; review K2).
    #[must_use]
    pub fn with_max_upload(mut self, bytes: usize) -> Self {
        self.max_upload = bytes.min(MAX_UPLOAD);
        self
    }

    /// Largest upload [`Registrations::begin`] accepts, in bytes (default
    /// [`DEFAULT_MAX_UPLOAD`]).
    #[must_use]
    pub fn max_upload(&self) -> usize {
        self.max_upload
    }

    /// The next audit event.
    pub fn poll_event(&mut self) -> Option<RegistrationEvent> {
        self.events.pop_front()
    }

    /// Proofs pending.
    #[must_use]
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether none is pending.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    fn refused(&mut self, entity_id: &str, e: Error) -> Error {
        self.events.push_back(RegistrationEvent::Refused {
            entity_id: entity_id.to_owned(),
            reason: e.to_string(),
        });
        e
    }

    /// An upload of `xml` (one EntityDescriptor of at most [`Registrations::max_upload`] bytes,
    /// unsigned or signed: the proof of ownership is
    /// what authenticates it) to register or update, with the provider's `policy` (for a
    /// registration; an update keeps the policy in force when it completes), asked by
    /// `requester` (the service's name for the client, e.g. its address). Returns the challenge
    /// to publish, with the secret [`Registrations::complete`] needs. Challenges for the same
    /// entityID coexist: one from somebody else does not replace the owner's.
    #[allow(clippy::too_many_arguments)]
    pub fn begin(
        &mut self,
        operation: Operation,
        xml: &[u8],
        policy: EntityPolicy,
        registry: &Registry,
        requester: &str,
        now: SystemTime,
        rng: &mut dyn FnMut(&mut [u8]),
    ) -> Result<OwnershipChallenge, Error> {
        if xml.len() > self.max_upload {
            let e = Error::malformed(
                "registration",
                format!(
                    "metadata of {} bytes is larger than the self-registration limit of {} bytes",
                    xml.len(),
                    self.max_upload
                ),
            );
            return Err(self.refused("", e));
        }
        let entity = match saml_metadata::load::parse_unverified(xml) {
            Ok(Metadata::Entity(e)) => *e,
            Ok(_) => {
                let e = Error::malformed("registration", "one EntityDescriptor expected");
                return Err(self.refused("", e));
            }
            Err(e) => return Err(self.refused("", e.into())),
        };
        let id = entity.entity_id.clone();
        if let Err(e) = crate::registry::validate(&entity)
            .and_then(|()| crate::registry::validate_self_registered(&entity))
        {
            return Err(self.refused(&id, e));
        }
        match (operation, registry.get(&id).is_some()) {
            (Operation::Register, true) => {
                return Err(self.refused(&id, Refusal::Duplicate.into()));
            }
            (Operation::Register, false) => {
                // Room in the registry and in the entityID's domain, asked before the
                // challenge is issued (and again at completion).
                if let Err(e) = registry.admits_self_registered(&id, false, xml.len()) {
                    return Err(self.refused(&id, e));
                }
            }
            (Operation::Update, false) => {
                return Err(self.refused(&id, Refusal::UnknownEntity.into()));
            }
            (Operation::Update, true) => {
                // Room for its new size among the self-registered bytes (review K2).
                if let Err(e) = registry.admits_self_registered(&id, true, xml.len()) {
                    return Err(self.refused(&id, e));
                }
            }
            (Operation::Delete, _) => {
                return Err(Error::malformed(
                    "registration",
                    "a deletion carries no metadata: use begin_delete",
                ));
            }
        }
        let digest = sha256(xml);
        self.issue(id, operation, Some(digest), policy, requester, now, rng)
    }

    /// A request by `requester` to delete the registered `entity_id`; returns the challenge,
    /// with the secret [`Registrations::complete`] needs.
    pub fn begin_delete(
        &mut self,
        entity_id: &str,
        registry: &Registry,
        requester: &str,
        now: SystemTime,
        rng: &mut dyn FnMut(&mut [u8]),
    ) -> Result<OwnershipChallenge, Error> {
        if registry.get(entity_id).is_none() {
            return Err(self.refused(entity_id, Refusal::UnknownEntity.into()));
        }
        self.issue(
            entity_id.to_owned(),
            Operation::Delete,
            None,
            EntityPolicy::default(),
            requester,
            now,
            rng,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn issue(
        &mut self,
        id: String,
        operation: Operation,
        upload: Option<[u8; 32]>,
        policy: EntityPolicy,
        requester: &str,
        now: SystemTime,
        rng: &mut dyn FnMut(&mut [u8]),
    ) -> Result<OwnershipChallenge, Error> {
        self.pending.retain(|_, p| now < p.challenge.expires);
        let mine = self
            .pending
            .values()
            .filter(|p| p.requester == requester)
            .count();
        if mine >= MAX_PENDING_PER_REQUESTER {
            return Err(self.refused(&id, Refusal::RateLimited.into()));
        }
        if self.pending.len() >= MAX_PENDING {
            // Full: the requester holding the most gives way (its oldest proof), if it holds
            // more than this one, so that many requesters at their share (a /48 of IPv6 /64s)
            // cannot close registration for everyone else (broker review L4).
            let mut counts: HashMap<&str, usize> = HashMap::new();
            for p in self.pending.values() {
                *counts.entry(p.requester.as_str()).or_default() += 1;
            }
            let top = counts
                .into_iter()
                .max_by_key(|(_, n)| *n)
                .filter(|(_, n)| *n > mine)
                .map(|(r, _)| r.to_owned());
            let Some(top) = top else {
                return Err(self.refused(&id, Refusal::Capacity.into()));
            };
            let oldest = self
                .pending
                .iter()
                .filter(|(_, p)| p.requester == top)
                .min_by_key(|(_, p)| p.challenge.expires)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.pending.remove(&k);
            }
        }
        let challenge = match OwnershipChallenge::new(&id, now, rng) {
            Ok(c) => c,
            Err(e) => return Err(self.refused(&id, e)),
        };
        self.pending.insert(
            sha256(challenge.secret.as_bytes()),
            PendingProof {
                challenge: OwnershipChallenge {
                    secret: String::new(),
                    ..challenge.clone()
                },
                operation,
                upload,
                policy,
                requester: requester.to_owned(),
            },
        );
        self.events.push_back(RegistrationEvent::ChallengeIssued {
            entity_id: id,
            operation,
        });
        Ok(challenge)
    }

    /// The pending proof of `entity_id` that `secret` opens, with `upload` (the metadata sent
    /// again; ignored for a deletion) checked against what was uploaded at the beginning.
    fn pending_for(
        &self,
        entity_id: &str,
        secret: &str,
        upload: Option<&[u8]>,
    ) -> Result<[u8; 32], Error> {
        let key = sha256(secret.as_bytes());
        let Some(p) = self
            .pending
            .get(&key)
            .filter(|p| p.challenge.entity_id == entity_id)
        else {
            return Err(Refusal::UnknownEntity.into());
        };
        if let Some(want) = p.upload
            && upload.is_none_or(|u| !openssl::memcmp::eq(&sha256(u), &want))
        {
            return Err(Error::malformed(
                "registration",
                "the metadata differs from what was uploaded when the proof began",
            ));
        }
        Ok(key)
    }

    /// The challenge of `entity_id` that `secret` opens (its fetch plan and address check),
    /// after checking that `upload` is the metadata uploaded at the beginning (for a
    /// registration or an update; `None` for a deletion). Refused (`UnknownEntity`) without the
    /// right secret: only the requester learns of its own challenge.
    pub fn challenge(
        &self,
        entity_id: &str,
        secret: &str,
        upload: Option<&[u8]>,
    ) -> Result<&OwnershipChallenge, Error> {
        let key = self.pending_for(entity_id, secret, upload)?;
        self.pending
            .get(&key)
            .map(|p| &p.challenge)
            .ok_or_else(|| Refusal::UnknownEntity.into())
    }

    /// The answer the service fetched (HTTP `status`, `body`) at `now` for the challenge of
    /// `entity_id` that `secret` opens, `upload` being the metadata sent again (register,
    /// update) and checked against the beginning's. On success the operation is applied to
    /// `registry` and every pending proof of the entityID is forgotten; a wrong answer uses an
    /// attempt; an expired or exhausted challenge is forgotten. Without the right secret nothing
    /// changes (`UnknownEntity`).
    #[allow(clippy::too_many_arguments)]
    pub fn complete(
        &mut self,
        entity_id: &str,
        secret: &str,
        upload: Option<&[u8]>,
        status: u16,
        body: &[u8],
        registry: &mut Registry,
        now: SystemTime,
    ) -> Result<Operation, Error> {
        let key = match self.pending_for(entity_id, secret, upload) {
            Ok(k) => k,
            Err(e) => return Err(self.refused(entity_id, e)),
        };
        let Some(p) = self.pending.get_mut(&key) else {
            return Err(self.refused(entity_id, Refusal::UnknownEntity.into()));
        };
        if let Err(e) = p.challenge.verify(now, status, body) {
            if matches!(e.refusal(), Some(Refusal::Stale | Refusal::RateLimited))
                || p.challenge.attempts_left == 0
            {
                self.pending.remove(&key);
            }
            return Err(self.refused(entity_id, e));
        }
        let Some(p) = self.pending.remove(&key) else {
            return Err(Refusal::UnknownEntity.into());
        };
        let result = match (p.operation, upload) {
            (Operation::Delete, _) => {
                registry.remove(entity_id);
                Ok(())
            }
            (op, Some(xml)) => match saml_metadata::load::parse_unverified(xml) {
                Ok(Metadata::Entity(entity)) if entity.entity_id == entity_id => 'op: {
                    // Checked at the beginning already; again here, the last step before the
                    // broker signs the upload as its own word.
                    if let Err(e) = crate::registry::validate_self_registered(&entity) {
                        break 'op Err(e);
                    }
                    // An update keeps the policy in force now: one set while the proof was
                    // pending (by the entity or the operator) is not undone by the upload.
                    let policy = match op {
                        Operation::Update => registry
                            .get(entity_id)
                            .map_or(p.policy, |r| r.policy.clone()),
                        _ => p.policy,
                    };
                    let replace = op == Operation::Update;
                    if let Err(e) = registry.admits_self_registered(entity_id, replace, xml.len()) {
                        break 'op Err(e);
                    }
                    let done = registry.insert(*entity, policy, now, replace).map(|_| ());
                    if done.is_ok() {
                        registry.set_self_registered(entity_id, Some(xml.len()));
                    }
                    done
                }
                Ok(_) => Err(Error::malformed(
                    "registration",
                    "one EntityDescriptor expected",
                )),
                Err(e) => Err(e.into()),
            },
            (_, None) => Err(Error::malformed("registration", "no metadata sent")),
        };
        match result {
            Ok(()) => {
                // The entityID's other pending proofs are moot (and may be somebody else's).
                self.pending
                    .retain(|_, other| other.challenge.entity_id != entity_id);
                self.events.push_back(RegistrationEvent::Done {
                    entity_id: entity_id.to_owned(),
                    operation: p.operation,
                });
                Ok(p.operation)
            }
            Err(e) => Err(self.refused(entity_id, e)),
        }
    }
}
