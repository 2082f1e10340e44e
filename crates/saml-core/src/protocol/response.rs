//! Validating a `samlp:Response` (SAML Core §3.2.2, §3.3.3) and its `saml:Assertion` (§2.3.3) as
//! a service provider under the Web Browser SSO profile (SAML Profiles §4.1.4.3, §4.1.4.5).
//!
//! Rules, in the order they are checked:
//! 1. The whole document passes the hardened reader; the root is `samlp:Response`, Version 2.0;
//!    it holds exactly one `saml:Assertion` or `saml:EncryptedAssertion` child.
//! 2. Signatures: a `ds:Signature` on the Response is verified (it must verify; there is no
//!    fallback); an EncryptedAssertion is decrypted *before* the signature of the assertion inside
//!    it is verified; a signed assertion must be the Response's own assertion child (a signed
//!    element found anywhere else is signature wrapping, XSW1-8). At least one of Response or
//!    Assertion must be signed ([`ResponseValidator::require_signed_assertion`] wants the
//!    assertion itself). Keys come only from the configuration (the IdP's metadata).
//! 3. Only signed content is used: the model is built from the verified events.
//! 4. Issuer (Response, if present, and Assertion) is the expected IdP; Destination, if present
//!    (required on a signed Response, SAML Bindings §3.5.5.2), is one of this SP's ACS URLs;
//!    the status is Success; InResponseTo names a request outstanding *for this IdP* (the
//!    [`RequestTracker`] records where each request went), or the Response is unsolicited and
//!    that is allowed.
//! 5. The Response's and the Assertion's IssueInstant are not later than now plus the clock
//!    skew nor older than [`ResponseValidator::max_issue_age`] plus the skew. Conditions:
//!    NotBefore / NotOnOrAfter within the clock skew; at least one AudienceRestriction (SAML
//!    Profiles §4.1.4.2) and every AudienceRestriction names this SP; a bearer SubjectConfirmation with Recipient = an ACS URL, NotOnOrAfter in
//!    the future and InResponseTo = the request; at least one AuthnStatement, its
//!    SessionNotOnOrAfter not passed.
//! 6. Replay: the assertion ID is unknown to the replay cache.
//!
//! Only when everything passed are the request ID marked complete and the assertion ID
//! remembered, so a rejected Response changes no state.
//!
//! Values are returned as signed: `xs:string` content (NameID, Issuer, AttributeValue) is not
//! trimmed at all, `xs:anyURI` content (Audience, AuthnContextClassRef) is collapsed over XML
//! white space only (XML Schema Part 2 §4.3.6), so no Unicode space (U+00A0, U+3000, U+2028,
//! U+0085...) ever disappears from an identity. Time arithmetic saturates: any `clock_skew`,
//! `Duration::MAX` included, is safe.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use openssl::pkey::{PKey, Private};

use super::xmlenc::{self, DecryptOptions, EncryptedData};
use super::{Attribute, BEARER, NameId, ProtocolError, SAML_NS, SAMLP_NS, Status, StatusCode};
use crate::dsig::{self, DSIG_NS, TrustedKeys, VerifyOptions};
use crate::error::Error;
use crate::time::format_datetime_exact;
use crate::xml::cursor::{Cursor, Elem, is_xml_space, xml_trim};
use crate::xml::{Event, Limits, NsDecl, Reader, effective_scope, escape_attr};

/// `saml:SubjectConfirmationData` (§2.4.1.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubjectConfirmationData {
    /// `NotBefore`.
    pub not_before: Option<SystemTime>,
    /// `NotOnOrAfter`.
    pub not_on_or_after: Option<SystemTime>,
    /// `Recipient`.
    pub recipient: Option<String>,
    /// `InResponseTo`.
    pub in_response_to: Option<String>,
    /// `Address`.
    pub address: Option<String>,
}

/// `saml:SubjectConfirmation` (§2.4.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectConfirmation {
    /// `Method` (e.g. [`BEARER`]).
    pub method: String,
    /// `SubjectConfirmationData`.
    pub data: Option<SubjectConfirmationData>,
}

/// `saml:Subject` (§2.4.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subject {
    /// `NameID`.
    pub name_id: Option<NameId>,
    /// `SubjectConfirmation`s.
    pub confirmations: Vec<SubjectConfirmation>,
}

/// `saml:Conditions` (§2.5.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Conditions {
    /// `NotBefore`.
    pub not_before: Option<SystemTime>,
    /// `NotOnOrAfter`.
    pub not_on_or_after: Option<SystemTime>,
    /// Each `AudienceRestriction`'s `Audience` values.
    pub audience_restrictions: Vec<Vec<String>>,
    /// `OneTimeUse` present.
    pub one_time_use: bool,
    /// `ProxyRestriction@Count`.
    pub proxy_count: Option<u32>,
}

/// `saml:AuthnStatement` (§2.7.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthnStatement {
    /// `AuthnInstant`.
    pub authn_instant: SystemTime,
    /// `SessionIndex`.
    pub session_index: Option<String>,
    /// `SessionNotOnOrAfter`.
    pub session_not_on_or_after: Option<SystemTime>,
    /// `AuthnContext/AuthnContextClassRef`.
    pub class_ref: Option<String>,
    /// `AuthnContext/AuthnContextDeclRef`.
    pub decl_ref: Option<String>,
    /// `AuthnContext/AuthenticatingAuthority` values.
    pub authenticating_authorities: Vec<String>,
}

/// `saml:Assertion` (§2.3.3), as far as the Web SSO profile uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    /// `ID`.
    pub id: String,
    /// `IssueInstant`.
    pub issue_instant: SystemTime,
    /// `Issuer`.
    pub issuer: String,
    /// `Subject`.
    pub subject: Subject,
    /// `Conditions`.
    pub conditions: Option<Conditions>,
    /// `AuthnStatement`s.
    pub authn_statements: Vec<AuthnStatement>,
    /// The attributes of every `AttributeStatement`, in order.
    pub attributes: Vec<Attribute>,
}

impl Assertion {
    /// The first attribute named `name` (its `Name`, a URI such as
    /// `urn:oid:0.9.2342.19200300.100.1.3`). SAML Core §2.7.3.1: `FriendlyName` MUST NOT be used
    /// to identify an attribute, so it is not looked at (an attribute only *labelled*
    /// `eduPersonPrincipalName`, such as a user-editable displayName, was returned for that
    /// name before); see [`Assertion::attribute_by_friendly_name`] for display.
    #[must_use]
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }

    /// The first attribute whose `FriendlyName` is `friendly_name`: a label for display, never
    /// an identification (SAML Core §2.7.3.1).
    #[must_use]
    pub fn attribute_by_friendly_name(&self, friendly_name: &str) -> Option<&Attribute> {
        self.attributes
            .iter()
            .find(|a| a.friendly_name.as_deref() == Some(friendly_name))
    }
}

/// A Response that passed every check: only signed content, but for `response_id` when the
/// Response itself was not signed ([`ValidatedResponse::response_signed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedResponse {
    /// The Response's `ID` (unsigned content unless [`ValidatedResponse::response_signed`]:
    /// review S3 of session 28).
    pub response_id: String,
    /// Its `InResponseTo` (the request it answers; `None` for an unsolicited Response).
    pub in_response_to: Option<String>,
    /// The IdP's entityID.
    pub issuer: String,
    /// The assertion.
    pub assertion: Assertion,
    /// Whether the Response element was signed (and verified).
    pub response_signed: bool,
    /// Whether the Assertion element was signed (and verified).
    pub assertion_signed: bool,
    /// Whether the assertion came encrypted.
    pub encrypted: bool,
    /// Index, in the configured IdP keys, of the key that verified the assertion (or the
    /// Response, when only it was signed).
    pub key_index: usize,
}

impl ValidatedResponse {
    /// The subject's NameID. For the persistent and transient formats (the Format compared
    /// after white-space collapse) its `NameQualifier`, if present, is the IdP and its
    /// `SPNameQualifier` this SP or a configured affiliation (SAML Core §8.3.7, §8.3.8); for
    /// every other format SAML leaves the qualifiers to the IdP and they are not checked: key
    /// accounts on the asserting IdP ([`ValidatedResponse::issuer`]) and the value, not on the
    /// qualifiers alone.
    #[must_use]
    pub fn name_id(&self) -> Option<&NameId> {
        self.assertion.subject.name_id.as_ref()
    }

    /// The first AuthnStatement's SessionIndex.
    #[must_use]
    pub fn session_index(&self) -> Option<&str> {
        self.assertion
            .authn_statements
            .first()
            .and_then(|s| s.session_index.as_deref())
    }
}

/// The SP's record of the requests it sent and still waits for (InResponseTo correlation), and
/// to which IdP each went: an SP with several IdPs must not accept IdP B's answer to a request
/// sent to IdP A (SAML Profiles §4.1.4.3, InResponseTo names the request the IdP received).
///
/// ## Several SP nodes sharing one store
/// [`RequestTracker::is_outstanding`] is an early exit, read before any signature work;
/// [`RequestTracker::consume`] decides. A store shared between processes (a database, Redis)
/// must make `consume` one atomic step (a `DELETE ... WHERE id = ? AND idp = ? AND expires > ?`
/// that reports the rows it removed), so that of two nodes validating answers to one request at
/// the same moment only one succeeds.
pub trait RequestTracker {
    /// Whether `id` is a request outstanding at `now` that was sent to the IdP `idp` (its
    /// entityID, as in [`ResponseValidator::idp_entity_id`]). A cheap early exit: the decision is
    /// [`RequestTracker::consume`]'s.
    fn is_outstanding(&self, id: &str, idp: &str, now: SystemTime) -> bool;
    /// `id` was answered by a Response that passed every other check: forget it, in one atomic
    /// step, if it is still outstanding at `now` for `idp`. Returns whether this call forgot it
    /// (`false`: it was answered meanwhile, expired, or never sent to `idp`, and the Response is
    /// refused with [`ProtocolError::UnknownRequest`]).
    fn consume(&mut self, id: &str, idp: &str, now: SystemTime) -> bool;
}

/// An in-memory [`RequestTracker`]: request IDs with the IdP each was sent to and an expiry.
///
/// Bounded in time and memory whoever starts logins: expired requests are dropped as new ones
/// come, through an index by expiry (each insert costs O(log n), not a scan of every request
/// held), and at most [`OutstandingRequests::with_max`] requests are held (default
/// [`DEFAULT_MAX_OUTSTANDING`]): when full, the one that expires first gives way, so a flood of
/// logins pushes out only requests older than its own (their users start again).
#[derive(Debug, Clone)]
pub struct OutstandingRequests {
    ids: HashMap<String, (String, SystemTime)>,
    by_expiry: BTreeSet<(SystemTime, String)>,
    max: usize,
}

/// Most requests an [`OutstandingRequests`] holds by default: 100,000 (about 160 logins a
/// second with a 10-minute request lifetime).
pub const DEFAULT_MAX_OUTSTANDING: usize = 100_000;

impl Default for OutstandingRequests {
    fn default() -> Self {
        OutstandingRequests {
            ids: HashMap::new(),
            by_expiry: BTreeSet::new(),
            max: DEFAULT_MAX_OUTSTANDING,
        }
    }
}

impl OutstandingRequests {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The same store holding at most `max` requests (at least one).
    #[must_use]
    pub fn with_max(mut self, max: usize) -> Self {
        self.max = max.max(1);
        self
    }

    /// Records a request `id` sent to the IdP `idp` (its entityID), valid until `expires`;
    /// also drops the requests expired at `now`, and when the store is full the one that
    /// expires first. Only a Response validated for that IdP answers it.
    pub fn insert(&mut self, id: &str, idp: &str, expires: SystemTime, now: SystemTime) {
        while let Some((e, _)) = self.by_expiry.first()
            && *e <= now
        {
            if let Some((_, gone)) = self.by_expiry.pop_first() {
                self.ids.remove(&gone);
            }
        }
        self.forget(id);
        if self.ids.len() >= self.max
            && let Some((_, gone)) = self.by_expiry.pop_first()
        {
            self.ids.remove(&gone);
        }
        self.ids.insert(id.to_owned(), (idp.to_owned(), expires));
        self.by_expiry.insert((expires, id.to_owned()));
    }

    fn forget(&mut self, id: &str) {
        if let Some((_, e)) = self.ids.remove(id) {
            self.by_expiry.remove(&(e, id.to_owned()));
        }
    }

    /// Number of requests recorded.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether none is recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

impl RequestTracker for OutstandingRequests {
    fn is_outstanding(&self, id: &str, idp: &str, now: SystemTime) -> bool {
        self.ids
            .get(id)
            .is_some_and(|(to, e)| to == idp && *e > now)
    }

    fn consume(&mut self, id: &str, idp: &str, now: SystemTime) -> bool {
        if !self.is_outstanding(id, idp, now) {
            return false;
        }
        self.forget(id);
        true
    }
}

/// Assertion IDs already consumed, until they expire (SAML Profiles §4.1.4.5: a bearer assertion
/// is used once).
///
/// ## Several SP nodes sharing one cache
/// [`ReplayCache::seen`] is an early exit, read before the other checks;
/// [`ReplayCache::insert_if_absent`] decides. A cache shared between processes must make it
/// one atomic step (Redis `SET key 1 NX PXAT until`, SQL `INSERT ... ON CONFLICT DO NOTHING`
/// reporting the rows inserted), so that of two nodes given one bearer assertion at the same
/// moment only one accepts it.
pub trait ReplayCache {
    /// Whether the assertion `id` from `issuer` was already used and is remembered at `now`.
    fn seen(&self, issuer: &str, id: &str, now: SystemTime) -> bool;
    /// Remembers the assertion until `until` (after which it is expired anyway) unless it is
    /// remembered at `now` already, in one atomic step. Returns whether this call remembered it
    /// (`false`: a replay, refused with [`ProtocolError::Replayed`]).
    fn insert_if_absent(
        &mut self,
        issuer: &str,
        id: &str,
        until: SystemTime,
        now: SystemTime,
    ) -> bool;
}

/// An in-memory [`ReplayCache`]; expired entries are dropped as new ones come, in one sweep
/// whenever the cache has doubled since the last one (so remembering costs amortized constant
/// time, not a scan of every entry per accepted Response).
#[derive(Debug, Clone, Default)]
pub struct MemoryReplayCache {
    seen: HashMap<(String, String), SystemTime>,
    /// Size at which the next [`ReplayCache::insert_if_absent`] sweeps expired entries.
    sweep_at: usize,
}

/// Entries below which a [`MemoryReplayCache`] is not swept.
const SWEEP_MIN: usize = 1024;

impl MemoryReplayCache {
    /// An empty cache.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Entries held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether it is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

impl ReplayCache for MemoryReplayCache {
    fn seen(&self, issuer: &str, id: &str, now: SystemTime) -> bool {
        self.seen
            .get(&(issuer.to_owned(), id.to_owned()))
            .is_some_and(|until| *until > now)
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
        if self.seen.len() >= self.sweep_at {
            self.seen.retain(|_, u| *u > now);
            self.sweep_at = (2 * self.seen.len()).max(SWEEP_MIN);
        }
        self.seen.insert((issuer.to_owned(), id.to_owned()), until);
        true
    }
}

/// What a service provider checks Responses against. Build with [`ResponseValidator::new`] and
/// adjust the public fields.
///
/// ## Call order (a sans-IO flow: time and storage are the caller's)
/// 1. Once: `ResponseValidator::new(sp, acs, idp, idp_keys)` (or `saml_metadata::sso::
///    response_validator` from the two EntityDescriptors), then set `decryption_keys` and the
///    policy fields; keep one [`OutstandingRequests`] (or your own [`RequestTracker`]) and one
///    [`MemoryReplayCache`] (or your own [`ReplayCache`]) per SP, shared by all users.
/// 2. Per login: build the `AuthnRequest`, then `requests.insert(id, idp, deadline, now)` before
///    sending it.
/// 3. At the ACS: decode the binding (`bindings::post::decode_form`), then
///    [`validate`](Self::validate)`(xml, now, &mut requests, &mut replay)`. On success the
///    request is completed and the assertion remembered; on any error neither changed, so the
///    same request may still be answered correctly.
/// 4. From time to time: nothing; both stores drop expired entries as they are used.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ResponseValidator {
    /// This SP's entityID (the audience).
    pub sp_entity_id: String,
    /// This SP's AssertionConsumerService URLs (Destination and Recipient must be one of them).
    pub acs_urls: Vec<String>,
    /// The IdP's entityID (Issuer).
    pub idp_entity_id: String,
    /// The IdP's signing keys (from its metadata; several for rollover).
    pub idp_keys: TrustedKeys,
    /// This SP's decryption keys (for EncryptedAssertion), tried in order.
    pub decryption_keys: Vec<PKey<Private>>,
    /// Allowed clock difference (default 3 minutes). Any value is safe, `Duration::MAX`
    /// included (sums saturate).
    pub clock_skew: Duration,
    /// How old the Response's and the Assertion's `IssueInstant` may be (plus `clock_skew`);
    /// neither may be later than now plus `clock_skew`. Default 5 minutes.
    pub max_issue_age: Duration,
    /// Accept Responses without InResponseTo (IdP-initiated SSO). Default false.
    pub allow_unsolicited: bool,
    /// Require the Assertion itself to be signed, not only the Response. Default false.
    pub require_signed_assertion: bool,
    /// Require assertions to come encrypted. Default false.
    pub require_encrypted: bool,
    /// Admit SHA-1 signatures and 1024-bit RSA keys. Default false.
    pub legacy_signatures: bool,
    /// Admit TripleDES-CBC content encryption (pysaml2's default), under the same rules as
    /// AES-CBC: inside a verified Response signature, or without one only with
    /// `allow_unauthenticated_cbc` too. Default false.
    pub allow_tripledes: bool,
    /// Admit CBC content (AES, or TripleDES with `allow_tripledes`) in a Response that is not
    /// signed around it. **A decryption oracle by design** (padding and format oracles, Jager
    /// and Somorovsky, CCS 2011): every failure after the key unwrap, up to and including the
    /// decrypted assertion's signature, is then the one opaque
    /// [`xmlenc::OPAQUE_FAILURE`] error, but timing still tells failures apart. Default false:
    /// AES-GCM always, CBC only under a verified Response signature.
    pub allow_unauthenticated_cbc: bool,
    /// `SPNameQualifier` values accepted besides [`ResponseValidator::sp_entity_id`] (the
    /// affiliations this SP belongs to, SAML Metadata §2.5). Default empty.
    pub sp_name_qualifiers: Vec<String>,
    /// Reader limits (default [`ResponseValidator::default_limits`]: 1 MiB documents).
    pub limits: Limits,
}

impl ResponseValidator {
    /// A validator for `sp_entity_id` receiving at `acs_url` from `idp_entity_id` signing with
    /// `idp_keys`.
    #[must_use]
    pub fn new(
        sp_entity_id: &str,
        acs_url: &str,
        idp_entity_id: &str,
        idp_keys: TrustedKeys,
    ) -> Self {
        ResponseValidator {
            sp_entity_id: sp_entity_id.to_owned(),
            acs_urls: vec![acs_url.to_owned()],
            idp_entity_id: idp_entity_id.to_owned(),
            idp_keys,
            decryption_keys: Vec::new(),
            clock_skew: Duration::from_secs(180),
            max_issue_age: Duration::from_secs(300),
            allow_unsolicited: false,
            require_signed_assertion: false,
            require_encrypted: false,
            legacy_signatures: false,
            allow_tripledes: false,
            allow_unauthenticated_cbc: false,
            sp_name_qualifiers: Vec::new(),
            limits: Self::default_limits(),
        }
    }

    /// The reader limits a new validator starts with: the defaults, sized for federation
    /// metadata (256 MiB documents, 16 MiB text), cut to what a Response can be: at most
    /// [`crate::bindings::post::DEFAULT_MAX_MESSAGE`] (1 MiB) of document and of text. A
    /// caller handing the XML straight to the validator (a SASL server, an ACS without the
    /// POST decoder's bound) no longer admits 256 MiB before any signature is checked.
    #[must_use]
    pub fn default_limits() -> Limits {
        let mut l = Limits::default();
        l.max_document_size = crate::bindings::post::DEFAULT_MAX_MESSAGE;
        l.max_text_len = l
            .max_text_len
            .min(crate::bindings::post::DEFAULT_MAX_MESSAGE);
        l
    }

    fn verify_options(&self, id: &str) -> VerifyOptions {
        let mut o = VerifyOptions::protocol(id);
        o.limits = self.limits;
        if self.legacy_signatures {
            o = o.legacy();
        }
        o
    }

    /// Validates the Response `xml` (already decoded from its binding) at `now`. On success the
    /// answered request is consumed in `requests` and the assertion ID remembered in `replay`;
    /// on any error neither is touched (one exception, with stores shared between nodes: when
    /// another Response answered the same request between this one's checks and its writes,
    /// this one is refused as [`ProtocolError::UnknownRequest`] and its assertion stays
    /// remembered, which changes nothing since its request is gone).
    pub fn validate(
        &self,
        xml: &[u8],
        now: SystemTime,
        requests: &mut dyn RequestTracker,
        replay: &mut dyn ReplayCache,
    ) -> Result<ValidatedResponse, Error> {
        // One verification pass per signature and one model build from verified events: a
        // shallow, unverified read finds the Response's ID, its assertion and which of them is
        // signed (rule 1: shape); the models are built only from content a signature covered
        // (or, for an assertion inside a verified Response, from that Response's content).
        let reader = Reader::new(xml, self.limits)?;
        let first = read_response(Cursor::unverified(reader), Depth::Shallow)?;
        if first.items.len() > 1 {
            return Err(ProtocolError::AssertionCount(first.items.len()).into());
        }
        // Rule 2: the Response signature, then the assertion's.
        let mut key_index = None;
        let (resp, response_signed) = if first.signed {
            let v = dsig::verify(xml, &self.idp_keys, &self.verify_options(&first.id))?;
            if v.signed_range().start != first.start {
                return Err(ProtocolError::Wrapped.into());
            }
            key_index = Some(v.key_index());
            (read_response(Cursor::verified(&v)?, Depth::Full)?, true)
        } else {
            (first, false)
        };
        // An error status carries no assertion. It is the IdP's answer to one of our requests
        // only when signed by the IdP and naming that request; otherwise anyone who learnt a
        // request ID could post it, and a caller must not end that login on it.
        if resp.head.status.code != StatusCode::Success {
            let authentic = response_signed
                && resp
                    .head
                    .issuer
                    .as_deref()
                    .is_none_or(|i| i == self.idp_entity_id)
                && resp
                    .head
                    .in_response_to
                    .as_deref()
                    .is_some_and(|id| requests.is_outstanding(id, &self.idp_entity_id, now));
            let st = resp.head.status;
            return Err(ProtocolError::Status {
                code: st.code,
                second: st.second,
                message: st.message,
                authentic,
            }
            .into());
        }
        if resp.items.len() != 1 {
            return Err(ProtocolError::AssertionCount(resp.items.len()).into());
        }
        let item = resp
            .items
            .into_iter()
            .next()
            .ok_or(ProtocolError::AssertionCount(0))?;
        let (assertion, assertion_signed, encrypted) = match item {
            Item::Plain {
                start,
                id,
                signed,
                assertion,
            } => {
                if signed {
                    let v = dsig::verify(xml, &self.idp_keys, &self.verify_options(&id))?;
                    if v.signed_range().start != start {
                        return Err(ProtocolError::Wrapped.into());
                    }
                    key_index = Some(v.key_index());
                    // Built from the verified Response when there is one (the same bytes: the
                    // element at `start` is the one this signature covers), else from the
                    // assertion's own verified events.
                    let a = match assertion {
                        Some(a) => *a,
                        None => {
                            let mut c = Cursor::verified(&v)?;
                            let root = c.next_child("Assertion")?.ok_or(ProtocolError::Wrapped)?;
                            read_assertion(&mut c, &root)?
                        }
                    };
                    (a, true, false)
                } else if let (true, Some(a)) = (response_signed, assertion) {
                    (*a, false, false)
                } else {
                    return Err(ProtocolError::Unsigned(
                        "neither the Response nor its Assertion is signed".into(),
                    )
                    .into());
                }
            }
            Item::Encrypted { data, scope } => {
                let opts = DecryptOptions {
                    allow_tripledes: self.allow_tripledes,
                    allow_unauthenticated_cbc: self.allow_unauthenticated_cbc,
                    recipient: Some(self.sp_entity_id.clone()),
                };
                let key =
                    xmlenc::content_key(&data, &self.decryption_keys, &opts, response_signed)?;
                // After the key unwrap: under unauthenticated CBC every failure (padding,
                // UTF-8, XML, shape, signature) is one opaque error (xmlenc module docs).
                let (assertion, signed, ki) = key
                    .decrypt(&data)
                    .and_then(|plain| standalone(&plain, &scope))
                    .and_then(|doc| self.decrypted_assertion(&doc, response_signed))
                    .map_err(|e| {
                        if key.is_unauthenticated_cbc() {
                            ProtocolError::Decryption(xmlenc::OPAQUE_FAILURE.into()).into()
                        } else {
                            e
                        }
                    })?;
                if let Some(k) = ki {
                    key_index = Some(k);
                }
                (assertion, signed, true)
            }
        };
        if self.require_signed_assertion && !assertion_signed {
            return Err(ProtocolError::Unsigned(
                "the Assertion must be signed itself (require_signed_assertion)".into(),
            )
            .into());
        }
        if self.require_encrypted && !encrypted {
            return Err(ProtocolError::Decryption(
                "the assertion must be encrypted (require_encrypted)".into(),
            )
            .into());
        }
        // Rules 4-6 on signed content only.
        self.check(
            &resp.head,
            &assertion,
            response_signed,
            now,
            &*requests,
            &*replay,
        )?;
        // The writes, each one atomic step that reports whether it was first (several nodes
        // sharing one store: the reads in `check` are early exits). The assertion first: of
        // two posts of one Response, the second is refused without touching the request.
        let until = replay_until(&assertion, now, self.clock_skew, self.max_issue_age);
        if !replay.insert_if_absent(&assertion.issuer, &assertion.id, until, now) {
            return Err(ProtocolError::Replayed(assertion.id.clone()).into());
        }
        if let Some(id) = &resp.head.in_response_to
            && !requests.consume(id, &self.idp_entity_id, now)
        {
            return Err(ProtocolError::UnknownRequest(id.clone()).into());
        }
        Ok(ValidatedResponse {
            response_id: resp.id,
            in_response_to: resp.head.in_response_to,
            issuer: assertion.issuer.clone(),
            assertion,
            response_signed,
            assertion_signed,
            encrypted,
            key_index: key_index.unwrap_or(0),
        })
    }

    /// The decrypted assertion as a document: verified when it carries a signature, trusted as
    /// is only when the Response around it was verified.
    fn decrypted_assertion(
        &self,
        doc: &[u8],
        response_signed: bool,
    ) -> Result<(Assertion, bool, Option<usize>), Error> {
        let mut c = Cursor::unverified(Reader::new(doc, self.limits)?);
        let root = c
            .next_child("(decrypted)")?
            .ok_or(ProtocolError::Decryption(
                "the decrypted content has no element".into(),
            ))?;
        if !root.is(SAML_NS, "Assertion") {
            return Err(root
                .invalid("the decrypted content is not a saml:Assertion")
                .into());
        }
        let (id, start) = (super::message_id(&root)?, root.start);
        if has_signature_child(&mut c, &root)? {
            let v = dsig::verify(doc, &self.idp_keys, &self.verify_options(&id))?;
            if v.signed_range().start != start {
                return Err(ProtocolError::Wrapped.into());
            }
            let mut c = Cursor::verified(&v)?;
            let root = c.next_child("Assertion")?.ok_or(ProtocolError::Wrapped)?;
            Ok((read_assertion(&mut c, &root)?, true, Some(v.key_index())))
        } else if response_signed {
            // Decrypted from a verified Response: its content is what that signature covered.
            let mut c = Cursor::unverified(Reader::new(doc, self.limits)?);
            let root = c.next_child("(decrypted)")?.ok_or(ProtocolError::Wrapped)?;
            Ok((read_assertion(&mut c, &root)?, false, None))
        } else {
            Err(ProtocolError::Unsigned(
                "neither the Response nor the decrypted Assertion is signed".into(),
            )
            .into())
        }
    }

    fn check(
        &self,
        head: &Head,
        a: &Assertion,
        response_signed: bool,
        now: SystemTime,
        requests: &dyn RequestTracker,
        replay: &dyn ReplayCache,
    ) -> Result<(), Error> {
        let skew = self.clock_skew;
        let expect_issuer = |found: &str| -> Result<(), Error> {
            if found == self.idp_entity_id {
                Ok(())
            } else {
                Err(ProtocolError::IssuerMismatch {
                    expected: self.idp_entity_id.clone(),
                    found: found.to_owned(),
                }
                .into())
            }
        };
        if let Some(i) = &head.issuer {
            expect_issuer(i)?;
        }
        expect_issuer(&a.issuer)?;
        match &head.destination {
            Some(d) if !self.acs_urls.iter().any(|u| u == d) => {
                return Err(ProtocolError::DestinationMismatch { found: d.clone() }.into());
            }
            None if response_signed => {
                return Err(ProtocolError::Malformed {
                    element: "Response".into(),
                    offset: 0,
                    message: "a signed Response must carry Destination (SAML Bindings §3.5.5.2)"
                        .into(),
                }
                .into());
            }
            _ => {}
        }
        match &head.in_response_to {
            Some(id) if !requests.is_outstanding(id, &self.idp_entity_id, now) => {
                return Err(ProtocolError::UnknownRequest(id.clone()).into());
            }
            None if !self.allow_unsolicited => return Err(ProtocolError::Unsolicited.into()),
            _ => {}
        }
        check_instant(
            "Response IssueInstant",
            head.issue_instant,
            now,
            self.max_issue_age,
            skew,
        )?;
        check_instant(
            "Assertion IssueInstant",
            a.issue_instant,
            now,
            self.max_issue_age,
            skew,
        )?;
        // SAML Profiles §4.1.4.2: the assertion MUST contain an AudienceRestriction including
        // the SP's unique identifier; every AudienceRestriction present must name it (SAML
        // Core §2.5.1.4).
        let restrictions = a
            .conditions
            .as_ref()
            .map(|c| c.audience_restrictions.as_slice())
            .unwrap_or_default();
        if restrictions.is_empty() {
            return Err(ProtocolError::NoAudienceRestriction.into());
        }
        if let Some(c) = &a.conditions {
            window("Conditions", c.not_before, c.not_on_or_after, now, skew)?;
            for audiences in &c.audience_restrictions {
                if !audiences.contains(&self.sp_entity_id) {
                    return Err(ProtocolError::AudienceMismatch {
                        sp: self.sp_entity_id.clone(),
                        audiences: audiences.clone(),
                    }
                    .into());
                }
            }
        }
        // SAML Core §8.3.7, §8.3.8: a persistent or transient identifier's NameQualifier is the
        // IdP and its SPNameQualifier the SP (or its affiliation). Another value would file
        // the user under another party's namespace for a consumer keying on all three. The
        // Format is compared as xs:anyURI reads it (white space collapsed: review of the
        // eighth round, S1, a padded persistent Format passed unchecked). Other formats'
        // qualifiers are the IdP's to choose (SAML Core §8.3.1-8.3.6; Shibboleth's
        // `idpNameQualifier`, SimpleSAMLphp's `NameQualifier` options set them): not checked,
        // as `ValidatedResponse::name_id` says.
        if let Some(n) = &a.subject.name_id
            && matches!(
                n.format.as_deref().map(crate::xml::cursor::xml_trim),
                Some(super::NAMEID_PERSISTENT | super::NAMEID_TRANSIENT)
            )
        {
            let mismatch = |attribute: &str, found: &str| -> Error {
                ProtocolError::NameQualifierMismatch {
                    attribute: attribute.to_owned(),
                    found: found.to_owned(),
                }
                .into()
            };
            if let Some(q) = n.name_qualifier.as_deref()
                && q != self.idp_entity_id
            {
                return Err(mismatch("NameQualifier", q));
            }
            if let Some(q) = n.sp_name_qualifier.as_deref()
                && q != self.sp_entity_id
                && !self.sp_name_qualifiers.iter().any(|s| s == q)
            {
                return Err(mismatch("SPNameQualifier", q));
            }
        }
        self.bearer(a, head.in_response_to.as_deref(), now)?;
        if a.authn_statements.is_empty() {
            return Err(ProtocolError::Malformed {
                element: "Assertion".into(),
                offset: 0,
                message: "no AuthnStatement (the Web SSO profile requires one)".into(),
            }
            .into());
        }
        for s in &a.authn_statements {
            // The user cannot have authenticated after now (SAML review I2): an AuthnInstant
            // in the future is a broken clock or a made-up authentication.
            window(
                "AuthnStatement AuthnInstant",
                Some(s.authn_instant),
                None,
                now,
                skew,
            )?;
            window(
                "AuthnStatement session",
                None,
                s.session_not_on_or_after,
                now,
                skew,
            )?;
        }
        if replay.seen(&a.issuer, &a.id, now) {
            return Err(ProtocolError::Replayed(a.id.clone()).into());
        }
        Ok(())
    }

    /// SAML Profiles §4.1.4.2-3: a bearer SubjectConfirmation whose data names this ACS, is not
    /// expired and answers the request.
    fn bearer(
        &self,
        a: &Assertion,
        in_response_to: Option<&str>,
        now: SystemTime,
    ) -> Result<(), Error> {
        let mut reasons = Vec::new();
        for sc in a
            .subject
            .confirmations
            .iter()
            .filter(|c| c.method == BEARER)
        {
            let Some(d) = &sc.data else {
                reasons.push("no SubjectConfirmationData".to_owned());
                continue;
            };
            match &d.recipient {
                Some(r) if self.acs_urls.iter().any(|u| u == r) => {}
                Some(r) => {
                    reasons.push(format!("Recipient {r:?} is not this SP's ACS"));
                    continue;
                }
                None => {
                    reasons.push("no Recipient".into());
                    continue;
                }
            }
            if d.not_on_or_after.is_none() {
                reasons.push("no NotOnOrAfter".into());
                continue;
            }
            if let Err(e) = window(
                "SubjectConfirmationData",
                d.not_before,
                d.not_on_or_after,
                now,
                self.clock_skew,
            ) {
                reasons.push(e.to_string());
                continue;
            }
            if d.in_response_to.as_deref() != in_response_to {
                reasons.push(format!(
                    "InResponseTo {:?} does not match the Response's {:?}",
                    d.in_response_to, in_response_to
                ));
                continue;
            }
            return Ok(());
        }
        if reasons.is_empty() {
            reasons.push("the Subject has no bearer SubjectConfirmation".into());
        }
        Err(ProtocolError::NoBearerConfirmation(reasons.join("; ")).into())
    }
}

/// How long to remember a consumed assertion: as long as the IssueInstant check would still
/// admit it (`IssueInstant + max_age + skew`), at least an hour. The assertion's own
/// NotOnOrAfter bounds can only end its acceptance earlier, so they do not lengthen it: an IdP
/// writing `9999-12-31` kept every login's entry in the cache for good (unbounded memory in
/// `MemoryReplayCache`, millennia of TTL in a caller's store).
fn replay_until(a: &Assertion, now: SystemTime, skew: Duration, max_age: Duration) -> SystemTime {
    let later = |t: SystemTime, d: Duration| {
        t.checked_add(d)
            .or_else(|| t.checked_add(Duration::from_secs(u64::from(u32::MAX))))
            .unwrap_or(t)
    };
    // One second past the last instant `check_instant` admits (its end is inclusive, the
    // cache's exclusive: an unsolicited assertion was accepted again in that last second,
    // review of the eighth round, I2).
    later(
        later(later(a.issue_instant, max_age), skew),
        Duration::from_secs(1),
    )
    .max(later(now, Duration::from_secs(3600)))
}

/// An `IssueInstant` check (SAML Core §3.2.2, §2.3.3; SAML Profiles §4.1.4.3 leaves the window
/// to the relying party): `instant` is not later than `now` plus `skew`, nor older than
/// `max_age` plus `skew`. Sums that do not fit saturate (never a panic).
pub(crate) fn check_instant(
    what: &'static str,
    instant: SystemTime,
    now: SystemTime,
    max_age: Duration,
    skew: Duration,
) -> Result<(), Error> {
    if now.checked_add(skew).is_some_and(|late| instant > late) {
        return Err(ProtocolError::NotYetValid {
            what,
            at: format_datetime_exact(instant),
            now: format_datetime_exact(now),
        }
        .into());
    }
    if instant
        .checked_add(max_age)
        .and_then(|t| t.checked_add(skew))
        .is_some_and(|end| end < now)
    {
        return Err(ProtocolError::Expired {
            what,
            at: format_datetime_exact(instant.checked_add(max_age).unwrap_or(instant)),
            now: format_datetime_exact(now),
        }
        .into());
    }
    Ok(())
}

fn window(
    what: &'static str,
    not_before: Option<SystemTime>,
    not_on_or_after: Option<SystemTime>,
    now: SystemTime,
    skew: Duration,
) -> Result<(), Error> {
    // Saturating: a skew so large that the sum does not fit (Duration::MAX) accepts every
    // time, it never panics.
    if let Some(nb) = not_before
        && now.checked_add(skew).is_some_and(|late| late < nb)
    {
        return Err(ProtocolError::NotYetValid {
            what,
            at: format_datetime_exact(nb),
            now: format_datetime_exact(now),
        }
        .into());
    }
    if let Some(na) = not_on_or_after
        && na.checked_add(skew).is_some_and(|end| now >= end)
    {
        return Err(ProtocolError::Expired {
            what,
            at: format_datetime_exact(na),
            now: format_datetime_exact(now),
        }
        .into());
    }
    Ok(())
}

/// Response-level values.
struct Head {
    issue_instant: SystemTime,
    in_response_to: Option<String>,
    destination: Option<String>,
    issuer: Option<String>,
    status: Status,
}

enum Item<'a> {
    Plain {
        start: usize,
        id: String,
        signed: bool,
        /// The model, built only when the Response was read from verified content
        /// ([`Depth::Full`]); a shallow read notes where the assertion is and whether it is
        /// signed.
        assertion: Option<Box<Assertion>>,
    },
    Encrypted {
        data: EncryptedData,
        scope: Vec<NsDecl<'a>>,
    },
}

struct ResponseParts<'a> {
    id: String,
    start: usize,
    signed: bool,
    head: Head,
    items: Vec<Item<'a>>,
}

/// How much of a Response to build.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Depth {
    /// Head (ID, Issuer, Status, ...) and where each assertion is, whether it is signed: what
    /// decides which signatures to verify. Assertion models are not built.
    Shallow,
    /// Everything, assertion models included (from verified content).
    Full,
}

/// Whether the element just returned (an assertion) has a `ds:Signature` child; consumes it.
fn has_signature_child(c: &mut Cursor<'_>, e: &Elem<'_>) -> Result<bool, Error> {
    let mut signed = false;
    while let Some(ch) = c.next_child(e.local)? {
        signed |= ch.is(DSIG_NS, "Signature");
        c.skip(&ch)?;
    }
    Ok(signed)
}

fn read_response<'a>(mut c: Cursor<'a>, depth: Depth) -> Result<ResponseParts<'a>, Error> {
    let root = c
        .next_child("(document)")?
        .ok_or(ProtocolError::Malformed {
            element: "(document)".into(),
            offset: 0,
            message: "no root element".into(),
        })?;
    if !root.is(SAMLP_NS, "Response") {
        return Err(root.invalid("the root is not samlp:Response").into());
    }
    super::check_version(&root)?;
    let issue_instant = root.required_time("IssueInstant")?;
    let mut parts = ResponseParts {
        id: super::message_id(&root)?,
        start: root.start,
        signed: false,
        head: Head {
            issue_instant,
            in_response_to: root.string("InResponseTo"),
            destination: root.string("Destination"),
            issuer: None,
            status: Status::success(),
        },
        items: Vec::new(),
    };
    let mut have_status = false;
    while let Some(ch) = c.next_child("Response")? {
        // SAML Profiles §4.1.4.2 (one assertion here): refused at the second, before it is
        // read. The whole Response was read first (unverified), each EncryptedAssertion with
        // a copy of its namespace scope and its decoded ciphertexts, about 11x the input.
        if parts.items.len() == 1
            && ch.ns == SAML_NS
            && matches!(ch.local, "Assertion" | "EncryptedAssertion")
        {
            return Err(ProtocolError::AssertionCount(2).into());
        }
        match (ch.ns, ch.local) {
            // SAML Core §3.2.2: one Issuer and one Status at most (a second one won, where a
            // processor reading the first disagrees: review of the eighth round, I1).
            (SAML_NS, "Issuer") if parts.head.issuer.is_some() => {
                return Err(ch.invalid("occurs more than once in samlp:Response").into());
            }
            (SAMLP_NS, "Status") if have_status => {
                return Err(ch.invalid("occurs more than once in samlp:Response").into());
            }
            (SAML_NS, "Issuer") => {
                entity_format(&ch)?;
                parts.head.issuer = Some(c.text()?);
            }
            (DSIG_NS, "Signature") => {
                parts.signed = true;
                c.skip(&ch)?;
            }
            (SAMLP_NS, "Extensions") => c.skip(&ch)?,
            (SAMLP_NS, "Status") => {
                parts.head.status = status(&mut c, &ch)?;
                have_status = true;
            }
            (SAML_NS, "Assertion") => {
                let id = super::message_id(&ch)?;
                let (assertion, signed) = match depth {
                    Depth::Full => {
                        let (a, signed) = read_assertion_signed(&mut c, &ch)?;
                        (Some(Box::new(a)), signed)
                    }
                    Depth::Shallow => (None, has_signature_child(&mut c, &ch)?),
                };
                parts.items.push(Item::Plain {
                    start: ch.start,
                    id,
                    signed,
                    assertion,
                });
            }
            (SAML_NS, "EncryptedAssertion") => {
                let scope = effective_scope(c.reader().scope());
                let data = xmlenc::read_encrypted(&mut c, &ch)?;
                parts.items.push(Item::Encrypted { data, scope });
            }
            _ => return Err(ch.invalid("unexpected element in samlp:Response").into()),
        }
    }
    if !have_status {
        return Err(root.invalid("missing samlp:Status").into());
    }
    Ok(parts)
}

fn status(c: &mut Cursor<'_>, e: &Elem<'_>) -> Result<Status, Error> {
    let mut st: Option<Status> = None;
    while let Some(ch) = c.next_child("Status")? {
        match (ch.ns, ch.local) {
            // One top-level StatusCode (SAML Core §3.2.2.1, maxOccurs 1): a second one replaced
            // the first, so that Requester then Success read as Success where OpenSAML refuses
            // the document (review S7).
            (SAMLP_NS, "StatusCode") if st.is_some() => {
                return Err(ch
                    .invalid("a second samlp:StatusCode in samlp:Status")
                    .into());
            }
            (SAMLP_NS, "StatusCode") => {
                let code = StatusCode::from_uri(ch.required("Value")?);
                let mut second = None;
                while let Some(inner) = c.next_child("StatusCode")? {
                    if inner.is(SAMLP_NS, "StatusCode") && second.is_none() {
                        second = Some(StatusCode::from_uri(inner.required("Value")?));
                    }
                    c.skip(&inner)?;
                }
                st = Some(Status {
                    code,
                    second,
                    message: None,
                });
            }
            (SAMLP_NS, "StatusMessage") => {
                let m = c.text()?;
                if let Some(s) = st.as_mut() {
                    s.message = Some(m);
                }
            }
            _ => c.skip(&ch)?,
        }
    }
    Ok(st.ok_or_else(|| e.invalid("missing samlp:StatusCode"))?)
}

/// Reads the assertion whose start tag `e` was just returned.
pub(crate) fn read_assertion(c: &mut Cursor<'_>, e: &Elem<'_>) -> Result<Assertion, Error> {
    Ok(read_assertion_signed(c, e)?.0)
}

/// Reads the assertion whose start tag `e` was just returned, and whether it has a
/// `ds:Signature` child.
fn read_assertion_signed(c: &mut Cursor<'_>, e: &Elem<'_>) -> Result<(Assertion, bool), Error> {
    let mut signed = false;
    if !e.is(SAML_NS, "Assertion") {
        return Err(e.invalid("not a saml:Assertion").into());
    }
    super::check_version(e)?;
    let mut a = Assertion {
        id: super::message_id(e)?,
        issue_instant: e.required_time("IssueInstant")?,
        issuer: String::new(),
        subject: Subject::default(),
        conditions: None,
        authn_statements: Vec::new(),
        attributes: Vec::new(),
    };
    // SAML Core §2.3.3: Issuer, Subject and Conditions occur at most once. A second one was
    // read as "last wins", so another processor of the same signed assertion (a proxy, an
    // audit log, another SP library) reading the first would disagree on the subject or the
    // audience: refused.
    let once = |seen: &mut bool, ch: &Elem<'_>| {
        if std::mem::replace(seen, true) {
            Err(ch.invalid("occurs more than once in saml:Assertion"))
        } else {
            Ok(())
        }
    };
    let (mut issuer, mut subject_seen, mut conditions_seen) = (false, false, false);
    while let Some(ch) = c.next_child("Assertion")? {
        match (ch.ns, ch.local) {
            (SAML_NS, "Issuer") => {
                once(&mut issuer, &ch)?;
                entity_format(&ch)?;
                a.issuer = c.text()?;
            }
            (DSIG_NS, "Signature") => {
                signed = true;
                c.skip(&ch)?;
            }
            (SAML_NS, "Subject") => {
                once(&mut subject_seen, &ch)?;
                a.subject = subject(c, &ch)?;
            }
            (SAML_NS, "Conditions") => {
                once(&mut conditions_seen, &ch)?;
                a.conditions = Some(conditions(c, &ch)?);
            }
            (SAML_NS, "AuthnStatement") => a.authn_statements.push(authn_statement(c, &ch)?),
            (SAML_NS, "AttributeStatement") => {
                while let Some(x) = c.next_child("AttributeStatement")? {
                    if x.is(SAML_NS, "Attribute") {
                        a.attributes.push(attribute(c, &x)?);
                    } else {
                        c.skip(&x)?; // EncryptedAttribute: not supported, not used
                    }
                }
            }
            (SAML_NS, "Advice") | (SAML_NS, "AuthzDecisionStatement") | (SAML_NS, "Statement") => {
                c.skip(&ch)?
            }
            _ => return Err(ch.invalid("unexpected element in saml:Assertion").into()),
        }
    }
    if a.issuer.is_empty() {
        return Err(e.invalid("missing saml:Issuer").into());
    }
    Ok((a, signed))
}

/// SAML Profiles §4.1.4.1, §4.1.4.2: an Issuer's `Format`, if present, is the entity format (an
/// Issuer in another format names no SP or IdP).
pub(crate) fn entity_format(e: &Elem<'_>) -> Result<(), Error> {
    match e.attr("Format") {
        None | Some("urn:oasis:names:tc:SAML:2.0:nameid-format:entity") => Ok(()),
        Some(f) => Err(e
            .invalid(format!("Issuer Format {f:?} is not the entity format"))
            .into()),
    }
}

/// Longest `saml:NameID` value accepted (bytes). SAML Core §8.3.7 and §8.3.8 bound persistent
/// and transient identifiers to 256 characters; e-mail addresses, X.509 subject names and
/// Kerberos principals are shorter than this. It was bounded only by the reader's text limit
/// (1 MiB), and callers key sessions, rate limits and logs on it (review G6 of session 28).
pub const MAX_NAME_ID: usize = 4096;

pub(crate) fn name_id(c: &mut Cursor<'_>, e: &Elem<'_>) -> Result<NameId, Error> {
    let value = c.text()?;
    if value.len() > MAX_NAME_ID {
        return Err(e
            .invalid(format!("a NameID longer than {MAX_NAME_ID} bytes"))
            .into());
    }
    Ok(NameId {
        format: e.string("Format"),
        name_qualifier: e.string("NameQualifier"),
        sp_name_qualifier: e.string("SPNameQualifier"),
        value,
    })
}

fn subject(c: &mut Cursor<'_>, e: &Elem<'_>) -> Result<Subject, Error> {
    let mut s = Subject::default();
    while let Some(ch) = c.next_child("Subject")? {
        match (ch.ns, ch.local) {
            // SAML Core §2.4.1: one identifier at most (last wins would disagree with a
            // processor reading the first).
            (SAML_NS, "NameID") if s.name_id.is_some() => {
                return Err(ch.invalid("a second saml:NameID in saml:Subject").into());
            }
            (SAML_NS, "NameID") => s.name_id = Some(name_id(c, &ch)?),
            (SAML_NS, "SubjectConfirmation") => {
                let mut sc = SubjectConfirmation {
                    method: ch.required("Method")?.to_owned(),
                    data: None,
                };
                while let Some(x) = c.next_child("SubjectConfirmation")? {
                    if x.is(SAML_NS, "SubjectConfirmationData") && sc.data.is_some() {
                        return Err(x.invalid("a second saml:SubjectConfirmationData").into());
                    }
                    if x.is(SAML_NS, "SubjectConfirmationData") {
                        sc.data = Some(SubjectConfirmationData {
                            not_before: x.time_attr("NotBefore")?,
                            not_on_or_after: x.time_attr("NotOnOrAfter")?,
                            recipient: x.string("Recipient"),
                            in_response_to: x.string("InResponseTo"),
                            address: x.string("Address"),
                        });
                    }
                    c.skip(&x)?;
                }
                s.confirmations.push(sc);
            }
            _ => c.skip(&ch)?, // BaseID, EncryptedID: not supported
        }
    }
    let _ = e;
    Ok(s)
}

fn conditions(c: &mut Cursor<'_>, e: &Elem<'_>) -> Result<Conditions, Error> {
    let mut k = Conditions {
        not_before: e.time_attr("NotBefore")?,
        not_on_or_after: e.time_attr("NotOnOrAfter")?,
        ..Default::default()
    };
    while let Some(ch) = c.next_child("Conditions")? {
        match (ch.ns, ch.local) {
            (SAML_NS, "AudienceRestriction") => {
                let mut list = Vec::new();
                while let Some(x) = c.next_child("AudienceRestriction")? {
                    if x.is(SAML_NS, "Audience") {
                        list.push(c.collapsed()?);
                    } else {
                        c.skip(&x)?;
                    }
                }
                k.audience_restrictions.push(list);
            }
            (SAML_NS, "OneTimeUse") => {
                k.one_time_use = true;
                c.skip(&ch)?;
            }
            (SAML_NS, "ProxyRestriction") => {
                k.proxy_count = ch
                    .attr("Count")
                    .map(|v| {
                        xml_trim(v)
                            .parse()
                            .map_err(|_| ch.invalid(format!("Count={v:?} is not a number")))
                    })
                    .transpose()?;
                c.skip(&ch)?;
            }
            _ => {
                // SAML Core §2.5.1.1: an unknown condition makes the assertion indeterminate.
                return Err(ch
                    .invalid("unknown condition: the assertion is indeterminate")
                    .into());
            }
        }
    }
    Ok(k)
}

fn authn_statement(c: &mut Cursor<'_>, e: &Elem<'_>) -> Result<AuthnStatement, Error> {
    let mut s = AuthnStatement {
        authn_instant: e.required_time("AuthnInstant")?,
        session_index: e.string("SessionIndex"),
        session_not_on_or_after: e.time_attr("SessionNotOnOrAfter")?,
        class_ref: None,
        decl_ref: None,
        authenticating_authorities: Vec::new(),
    };
    while let Some(ch) = c.next_child("AuthnStatement")? {
        if ch.is(SAML_NS, "AuthnContext") {
            while let Some(x) = c.next_child("AuthnContext")? {
                match (x.ns, x.local) {
                    (SAML_NS, "AuthnContextClassRef") => s.class_ref = Some(c.collapsed()?),
                    (SAML_NS, "AuthnContextDeclRef") => s.decl_ref = Some(c.collapsed()?),
                    (SAML_NS, "AuthenticatingAuthority") => {
                        s.authenticating_authorities.push(c.collapsed()?)
                    }
                    _ => c.skip(&x)?,
                }
            }
        } else {
            c.skip(&ch)?; // SubjectLocality
        }
    }
    Ok(s)
}

fn attribute(c: &mut Cursor<'_>, e: &Elem<'_>) -> Result<Attribute, Error> {
    let mut a = Attribute {
        name: e.required("Name")?.to_owned(),
        name_format: e.string("NameFormat"),
        friendly_name: e.string("FriendlyName"),
        values: Vec::new(),
    };
    while let Some(ch) = c.next_child("Attribute")? {
        if ch.is(SAML_NS, "AttributeValue") {
            a.values.push(value_text(c, &ch)?);
        } else {
            c.skip(&ch)?;
        }
    }
    Ok(a)
}

/// The text of an AttributeValue, descendants included (eduPersonTargetedID carries a NameID),
/// as written: `xs:anyType` collapses no white space, so nothing is trimmed.
fn value_text(c: &mut Cursor<'_>, e: &Elem<'_>) -> Result<String, Error> {
    let mut out = String::new();
    let max = c.reader().limits().max_text_len;
    loop {
        match c.next_event()? {
            Some(Event::Text(t)) => {
                out.push_str(&t.value());
                // One value, however many pieces (dsig review L1).
                if out.len() > max {
                    return Err(Error::Limit {
                        offset: t.span.start,
                        limit: crate::error::LimitExceeded::TextLength(max),
                    });
                }
            }
            Some(Event::End(end)) if end.depth == e.depth => break,
            None => break,
            _ => {}
        }
    }
    Ok(out)
}

/// A standalone document of decrypted `plain` content: the namespace bindings in scope at the
/// EncryptedAssertion that its root does not declare itself are declared on it (exclusive c14n
/// does not depend on where a binding is declared, so a signature inside stays valid).
fn standalone(plain: &[u8], scope: &[NsDecl<'_>]) -> Result<Vec<u8>, Error> {
    let text = std::str::from_utf8(plain)
        .map_err(|_| ProtocolError::Decryption("the decrypted content is not UTF-8".into()))?;
    let body = text
        .trim_start_matches('\u{feff}')
        .trim_start_matches(is_xml_space);
    let body = match body.strip_prefix("<?xml") {
        Some(rest) => rest
            .split_once("?>")
            .map(|(_, b)| b.trim_start_matches(is_xml_space))
            .unwrap_or(body),
        None => body,
    };
    let tag_end = start_tag_end(body).ok_or(ProtocolError::Decryption(
        "the decrypted content is not an element".into(),
    ))?;
    let name_end = body
        .find(|ch: char| ch.is_ascii_whitespace() || ch == '>' || ch == '/')
        .unwrap_or(tag_end);
    let declared = attribute_names(&body[..tag_end]);
    let mut out = String::with_capacity(body.len() + 256);
    out.push_str(&body[..name_end]);
    for d in scope {
        let decl = if d.prefix.is_empty() {
            "xmlns".to_owned()
        } else {
            format!("xmlns:{}", d.prefix)
        };
        // Declared by the root itself (wherever in its start tag, after any XML white space,
        // with any spacing around `=`): its own binding wins, as it would in place.
        if declared.contains(&decl.as_str()) || (d.prefix.is_empty() && d.uri.is_empty()) {
            continue;
        }
        out.push_str(&format!(" {decl}=\"{}\"", escape_attr(d.uri)));
    }
    out.push_str(&body[name_end..]);
    Ok(out.into_bytes())
}

/// The attribute names written in the start tag `tag` (`<name attr = "v" ...>`): XML white
/// space (XML 1.0 §2.3 `S`) separates them and may surround `=`; values in either quote.
fn attribute_names(tag: &str) -> Vec<&str> {
    let b = tag.as_bytes();
    let ws = |c: u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n');
    let delim = |c: u8| ws(c) || matches!(c, b'=' | b'>' | b'/');
    let mut names = Vec::new();
    let mut i = 1;
    while b.get(i).is_some_and(|&c| !delim(c)) {
        i += 1;
    }
    loop {
        while b.get(i).is_some_and(|&c| ws(c)) {
            i += 1;
        }
        let start = i;
        while b.get(i).is_some_and(|&c| !delim(c)) {
            i += 1;
        }
        if i == start {
            break;
        }
        if let Some(name) = tag.get(start..i) {
            names.push(name);
        }
        while b.get(i).is_some_and(|&c| ws(c)) {
            i += 1;
        }
        if b.get(i) != Some(&b'=') {
            break;
        }
        i += 1;
        while b.get(i).is_some_and(|&c| ws(c)) {
            i += 1;
        }
        let Some(&q) = b.get(i).filter(|&&c| c == b'"' || c == b'\'') else {
            break;
        };
        match b
            .get(i + 1..)
            .and_then(|rest| rest.iter().position(|&c| c == q))
        {
            Some(p) => i += p + 2,
            None => break,
        }
    }
    names
}

/// Offset just past the first start tag's `>` (quotes respected).
fn start_tag_end(s: &str) -> Option<usize> {
    if !s.starts_with('<') {
        return None;
    }
    let mut quote: Option<char> = None;
    for (i, ch) in s.char_indices() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(ch),
            (None, '>') => return Some(i + 1),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod replay_cache_tests {
    use super::{
        Assertion, BEARER, Conditions, MemoryReplayCache, OutstandingRequests, ReplayCache,
        RequestTracker, SWEEP_MIN, Subject, SubjectConfirmation, SubjectConfirmationData,
        replay_until,
    };
    use std::time::{Duration, UNIX_EPOCH};

    /// Finding (SAML review F2): a consumed assertion was remembered until the latest
    /// NotOnOrAfter its IdP wrote (year 9999 accepted), although the IssueInstant check refuses
    /// it long before: every login at such an IdP stayed in `MemoryReplayCache` for good. The
    /// entry now lives as long as the assertion could still be accepted.
    #[test]
    fn a_far_not_on_or_after_does_not_keep_an_assertion_remembered() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let far = crate::time::parse_datetime("9999-12-31T23:59:59Z").unwrap();
        let a = Assertion {
            id: "_a".into(),
            issue_instant: t0,
            issuer: "https://idp.example.org".into(),
            subject: Subject {
                name_id: None,
                confirmations: vec![SubjectConfirmation {
                    method: BEARER.into(),
                    data: Some(SubjectConfirmationData {
                        not_on_or_after: Some(far),
                        ..Default::default()
                    }),
                }],
            },
            conditions: Some(Conditions {
                not_on_or_after: Some(far),
                ..Default::default()
            }),
            authn_statements: Vec::new(),
            attributes: Vec::new(),
        };
        let (skew, max_age) = (Duration::from_secs(180), Duration::from_secs(300));
        let until = replay_until(&a, t0, skew, max_age);
        assert!(until <= t0 + Duration::from_secs(3600) + skew, "{until:?}");
        assert!(until >= t0 + max_age + skew);
        // So the cache lets go of such logins once they could no longer be accepted (its
        // first sweep comes at SWEEP_MIN entries).
        let mut c = MemoryReplayCache::new();
        for i in 0..SWEEP_MIN - 1 {
            assert!(c.insert_if_absent("https://idp.example.org", &format!("_a{i}"), until, t0));
        }
        let later = t0 + Duration::from_secs(2 * 3600);
        for id in ["_b", "_c"] {
            assert!(c.insert_if_absent(
                "https://idp.example.org",
                id,
                later + max_age + skew,
                later
            ));
        }
        assert!(c.len() <= 2, "{} entries", c.len());
    }

    /// Recording a request scanned every request held, and nothing bounded how many: anyone
    /// starting logins at an SP (each records an AuthnRequest ID for minutes) made each new
    /// login cost a scan of all the others, and memory grow without end. Now expired requests
    /// go through an index by expiry and the store holds at most its maximum, the request
    /// expiring first giving way.
    #[test]
    fn outstanding_requests_are_bounded_and_cheap_to_record() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut r = OutstandingRequests::new();
        // 100,000 logins, one per 10 ms, each outstanding for an hour: a scan per insert
        // would be five billion steps here.
        for i in 0..100_000u64 {
            let now = t0 + Duration::from_millis(10 * i);
            r.insert(&i.to_string(), "idp", now + Duration::from_secs(3600), now);
        }
        assert_eq!(r.len(), 100_000);
        let end = t0 + Duration::from_secs(1000);
        assert!(r.is_outstanding("0", "idp", end) && r.is_outstanding("99999", "idp", end));
        // At the maximum the request expiring first gives way; the newest stay.
        r.insert("new", "idp", end + Duration::from_secs(3600), end);
        assert_eq!(r.len(), 100_000);
        assert!(!r.is_outstanding("0", "idp", end));
        assert!(r.is_outstanding("1", "idp", end) && r.is_outstanding("new", "idp", end));
        // Expired ones go as new ones come; completed ones go at once.
        let later = t0 + Duration::from_secs(10_000);
        r.insert("late", "idp", later + Duration::from_secs(60), later);
        assert_eq!(r.len(), 1);
        assert!(
            !r.consume("late", "other-idp", later),
            "sent to another IdP"
        );
        assert!(r.consume("late", "idp", later));
        assert!(r.is_empty());
        assert!(!r.consume("late", "idp", later), "consumed once");
        // A smaller maximum, and an ID recorded again keeps one entry with its new expiry.
        let mut small = OutstandingRequests::new().with_max(3);
        for (i, id) in ["a", "b", "c", "d", "b"].iter().enumerate() {
            let now = t0 + Duration::from_secs(i as u64);
            small.insert(id, "idp", now + Duration::from_secs(60), now);
        }
        assert_eq!(small.len(), 3);
        let now = t0 + Duration::from_secs(10);
        assert!(!small.is_outstanding("a", "idp", now));
        assert!(
            ["b", "c", "d"]
                .iter()
                .all(|id| small.is_outstanding(id, "idp", now))
        );
        small.insert("e", "idp", now + Duration::from_secs(60), now);
        assert!(!small.is_outstanding("c", "idp", now), "c expired first");
        assert!(small.is_outstanding("b", "idp", now));
    }

    /// Remembering swept every entry each time: a busy SP's ACS (every assertion valid for
    /// minutes, tens of thousands remembered at once) scanned them all per login. Sweeps now
    /// happen when the cache has doubled; expired entries still go and are never reported seen.
    #[test]
    fn remembering_is_amortized_and_expired_entries_go() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut c = MemoryReplayCache::new();
        // 100,000 assertions valid for an hour, one per 10 ms: a scan per insert would be
        // five billion steps here.
        for i in 0..100_000u64 {
            let now = t0 + Duration::from_millis(10 * i);
            assert!(c.insert_if_absent(
                "idp",
                &i.to_string(),
                now + Duration::from_secs(3600),
                now
            ));
        }
        assert_eq!(c.len(), 100_000);
        let end = t0 + Duration::from_secs(1000);
        assert!(c.seen("idp", "0", end) && c.seen("idp", "99999", end));
        // Later, one assertion valid for a second per second: the live set is one entry.
        // What is held never exceeds twice the live set at the last sweep (here the 100,000),
        // and once the expired ones are swept, the sweep floor.
        let later = t0 + Duration::from_secs(10_000);
        let n = 250_000u64;
        for i in 0..n {
            let now = later + Duration::from_secs(i);
            assert!(c.insert_if_absent("idp", &format!("b{i}"), now + Duration::from_secs(1), now));
            assert!(c.len() <= 200_001, "{}", c.len());
        }
        assert!(c.len() <= SWEEP_MIN + 1, "{}", c.len());
        let now = later + Duration::from_secs(n);
        assert!(!c.seen("idp", "b0", now));
        assert!(!c.seen("idp", "5", now));
    }
}
