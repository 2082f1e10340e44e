//! The broker's register of providers: each registered entity's metadata (validated when it was
//! registered), the document the broker publishes for it (re-signed with the broker's key, so
//! that an entity pulling its peer trusts one key: the broker's), and the entity's DAME policy.
//!
//! Entities come in through [`crate::registration`] (proof of ownership) or an operator's bulk
//! import ([`Registry::insert`]); the broker flow reads them ([`crate::broker`]) and the
//! metadata service serves them ([`crate::mdq_service`], through [`DocumentSource`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use saml_core::dsig::{SignOptions, SigningKey, TrustedKeys};
use saml_metadata::ext::{Extensions, MDATTR_NS, MDRPI_NS, SHIBMD_NS};
use saml_metadata::model::{Endpoint, EntityDescriptor, Role, RoleCommon, sha1_hex};

use crate::error::{Error, Refusal};
use crate::mdq_service::{DocumentSource, SignedDocument};
use crate::policy::PeerPolicy;

/// Most entities one registry holds by default ([`Registry::max_entities`]; bounded memory:
/// registration beyond it is refused).
pub const MAX_ENTITIES: usize = 100_000;

/// Most entities registered under one registrable domain before a self-registration of another
/// one there is refused, by default ([`Registry::max_per_domain`]). Proof of ownership costs a
/// registrant with wildcard DNS nothing per host: without this, one domain could fill the
/// registry ([`MAX_ENTITIES`]) and lock every other organisation out of registering.
pub const MAX_PER_DOMAIN: usize = 100;

/// Most bytes of metadata all self-registered entities together may hold by default
/// ([`Registry::max_self_registered_bytes`]; 512 MiB). Review K2: the registry was bounded in
/// entities, not in bytes, and a private suffix of the Public Suffix List (`github.io`) gives
/// every user a registrable domain of its own, so the per-domain bound did not stop one actor.
pub const MAX_SELF_REGISTERED_BYTES: usize = 512 << 20;

/// `cacheDuration` the broker gives each published document by default
/// ([`Registry::cache_duration`]): 10 minutes, `PT10M`.
pub const CACHE_DURATION: Duration = Duration::from_secs(600);

/// The registrable domain of `entity_id`'s host (the public suffix plus one label, from the
/// Public Suffix List compiled into the `psl` crate: `sp.cs.uni.ac.uk` -> `uni.ac.uk`,
/// `a.b.attacker.example` -> `attacker.example`); the host itself for an IP address or a host
/// that is a public suffix. `None` for an entityID without a DNS host.
#[must_use]
pub fn registrable_domain(entity_id: &str) -> Option<String> {
    let host = crate::policy::entity_host(entity_id)?;
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Some(host);
    }
    Some(psl::domain_str(&host).map_or_else(|| host.clone(), str::to_owned))
}

/// What a provider chose, or its operator configured, for DAME.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
#[non_exhaustive]
pub struct EntityPolicy {
    /// Peers this provider accepts (allow and deny lists by DNS domain).
    pub peers: PeerPolicy,
    /// Accept an unsigned AuthnRequest1 from this SP (default false; the draft says SHOULD be
    /// signed, and an unsigned one proves nothing about who asked).
    pub allow_unsigned_authn_request: bool,
    /// The second mode, for an SP that only speaks the IdP Discovery Profile (a stock
    /// Shibboleth SP or SimpleSAMLphp): when its discovery request names an IdP it has not
    /// exchanged with, the broker authenticates the user at the IdP, runs the exchange, then
    /// answers the discovery request. Default false: see [`crate::broker`] for what this mode
    /// does not prove.
    pub unmodified_sp: bool,
}

impl EntityPolicy {
    /// The default policy with `peers`.
    #[must_use]
    pub fn with_peers(mut self, peers: PeerPolicy) -> Self {
        self.peers = peers;
        self
    }

    /// The policy with the unmodified-SP mode on or off.
    #[must_use]
    pub fn with_unmodified_sp(mut self, on: bool) -> Self {
        self.unmodified_sp = on;
        self
    }

    /// The policy admitting unsigned AuthnRequest1 or not.
    #[must_use]
    pub fn with_unsigned_authn_request(mut self, on: bool) -> Self {
        self.allow_unsigned_authn_request = on;
        self
    }
}

/// How long [`Registry::refresh_documents`] waits before it tries again to re-sign a document
/// whose signing failed.
pub const RESIGN_RETRY: Duration = Duration::from_secs(600);

/// One registered provider.
#[derive(Debug, Clone)]
pub struct Registered {
    /// Its metadata as registered.
    pub entity: Arc<EntityDescriptor>,
    /// The document the broker publishes: the entity re-signed with the broker's key.
    pub document: SignedDocument,
    /// Its policy.
    pub policy: EntityPolicy,
    /// When it was registered or last updated.
    pub updated: SystemTime,
    /// The `validUntil` of [`Registered::document`]: when relying parties drop it unless
    /// [`Registry::refresh_documents`] re-signed it before (review M6).
    pub valid_until: SystemTime,
}

impl Registered {
    /// The entity's DAME `MetadataSyncLocation` (entity-level extensions first, then its
    /// roles'; draft-poehn-dame-06 §3 does not say which holds it).
    #[must_use]
    pub fn sync_location(&self) -> Option<&str> {
        sync_location(&self.entity)
    }

    /// The entity's signing keys over all its SSO roles (for its status reports).
    pub fn signing_keys(&self) -> Result<TrustedKeys, Error> {
        signing_keys(&self.entity)
    }
}

/// The DAME `MetadataSyncLocation` of `entity`: the entity's extensions, else the first role's
/// that has one.
#[must_use]
pub fn sync_location(entity: &EntityDescriptor) -> Option<&str> {
    entity
        .extensions
        .dame_sync_locations
        .first()
        .or_else(|| {
            entity
                .idp()
                .and_then(|r| r.common.extensions.dame_sync_locations.first())
        })
        .or_else(|| {
            entity
                .sp()
                .and_then(|r| r.common.extensions.dame_sync_locations.first())
        })
        .map(String::as_str)
}

/// The signing keys of `entity`: its IdP role's, else its SP role's.
pub fn signing_keys(entity: &EntityDescriptor) -> Result<TrustedKeys, Error> {
    if entity.idp().is_some() {
        Ok(saml_metadata::sso::idp_signing_keys(entity)?)
    } else {
        Ok(saml_metadata::sso::sp_signing_keys(entity)?)
    }
}

/// Checks what DAME needs of a provider's metadata before it is registered: an https entityID,
/// exactly one of an IdP or an SP SSO role, a signing certificate that parses, every endpoint
/// and the DAME sync location over https.
pub fn validate(entity: &EntityDescriptor) -> Result<(), Error> {
    validate_with(entity, false)
}

/// Whether `url` is `http://` to exactly `127.0.0.1`, `localhost` or `[::1]` (any port).
#[must_use]
pub fn is_loopback_http(url: &str) -> bool {
    url.strip_prefix("http://").is_some_and(|rest| {
        let authority = rest.split('/').next().unwrap_or_default();
        let host = match authority.rsplit_once(':') {
            Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => authority,
        };
        matches!(host, "127.0.0.1" | "localhost" | "[::1]")
    })
}

/// The most RequestedAttributes a registered SP may list, over all its
/// AttributeConsumingServices (real SPs ask for a few dozen at most).
pub const MAX_REQUESTED_ATTRIBUTES: usize = 512;

/// Most distinct signing certificates (`use="signing"` or no use: those tried on each
/// signed message) a self-registered role may carry: a key, its successor during a rollover
/// and a back-channel key (review K1).
pub const MAX_SELF_REGISTERED_CERTIFICATES: usize = 4;

/// Most distinct certificates of any use a self-registered role may carry (a Shibboleth IdP
/// rolling its signing and encryption keys together lists five: review of the twelfth round,
/// F7).
pub const MAX_SELF_REGISTERED_CERTIFICATES_ALL: usize = 8;

/// The keys of a self-registered role: certificates only (a `ds:KeyValue`, a
/// `dsig11:DEREncodedKeyValue` or a `ds:RetrievalMethod` is a key the broker would sign
/// unchecked, which relying parties try on each message: review of the twelfth round, F2),
/// each parsing and within saml-core's key bounds, encryption ones too (a relying party
/// encrypts to them), at most [`MAX_SELF_REGISTERED_CERTIFICATES`] signing ones and
/// [`MAX_SELF_REGISTERED_CERTIFICATES_ALL`] in all, distinct. Every configured key is tried on
/// each signed message: a certificate repeated 190 times made each AuthnRequest1 cost seconds
/// under the broker's lock (review K1).
fn check_self_registered_keys(keys: &[saml_metadata::model::KeyDescriptor]) -> Result<(), Error> {
    use saml_metadata::model::KeyUse;
    const WHAT: &str = "registered metadata";
    if let Some(raw) = keys.iter().find_map(|k| k.other_key_info.first()) {
        return Err(Error::malformed(
            WHAT,
            format!(
                "a KeyInfo child other than a certificate or a key name ({{{}}}{}): a \
                 self-registration carries its keys as X509Certificate",
                raw.name.0, raw.name.1
            ),
        ));
    }
    let distinct = |signing: bool| {
        let mut certs: Vec<&[u8]> = keys
            .iter()
            .filter(|k| !signing || k.key_use != KeyUse::Encryption)
            .flat_map(|k| k.certificates.iter().map(Vec::as_slice))
            .collect();
        certs.sort_unstable();
        certs.dedup();
        certs
    };
    let (signing, all) = (distinct(true), distinct(false));
    if signing.len() > MAX_SELF_REGISTERED_CERTIFICATES
        || all.len() > MAX_SELF_REGISTERED_CERTIFICATES_ALL
    {
        return Err(Error::malformed(
            WHAT,
            format!(
                "{} signing and {} certificates in all in a role (a self-registration has at \
                 most {MAX_SELF_REGISTERED_CERTIFICATES} and {MAX_SELF_REGISTERED_CERTIFICATES_ALL})",
                signing.len(),
                all.len()
            ),
        ));
    }
    for der in all {
        let key = openssl::x509::X509::from_der(der)
            .and_then(|c| c.public_key())
            .map_err(|e| Error::malformed(WHAT, format!("a certificate does not parse: {e}")))?;
        saml_core::dsig::check_key(&key)
            .map_err(|e| Error::malformed(WHAT, format!("a certificate's key: {e}")))?;
    }
    Ok(())
}

/// [`validate`], admitting `http://` endpoints on loopback addresses when `loopback_http`
/// (an operator's choice for a test deployment on one host; never the default).
pub fn validate_with(entity: &EntityDescriptor, loopback_http: bool) -> Result<(), Error> {
    const WHAT: &str = "registered metadata";
    if !entity.entity_id.starts_with("https://") {
        return Err(Error::malformed(WHAT, "the entityID must be an https URL"));
    }
    match (entity.idp().is_some(), entity.sp().is_some()) {
        (true, false) | (false, true) => {}
        _ => {
            return Err(Error::malformed(
                WHAT,
                "exactly one of IDPSSODescriptor and SPSSODescriptor",
            ));
        }
    }
    signing_keys(entity)?;
    let mut urls: Vec<&str> = Vec::new();
    if let Some(idp) = entity.idp() {
        urls.extend(idp.single_sign_on.iter().map(|e| e.location.as_str()));
        if idp.single_sign_on.is_empty() {
            return Err(Error::malformed(WHAT, "the IdP has no SingleSignOnService"));
        }
    }
    if let Some(sp) = entity.sp() {
        urls.extend(
            sp.assertion_consumer
                .iter()
                .map(|e| e.endpoint.location.as_str()),
        );
        urls.extend(
            sp.common
                .extensions
                .discovery_responses
                .iter()
                .map(|e| e.endpoint.location.as_str()),
        );
        if sp.assertion_consumer.is_empty() {
            return Err(Error::malformed(
                WHAT,
                "the SP has no AssertionConsumerService",
            ));
        }
        // Each is looked up in every rules query about the SP: a bound on that work
        // (broker review M4).
        let requested: usize = sp
            .attribute_consuming
            .iter()
            .map(|a| a.requested.len())
            .sum();
        if requested > MAX_REQUESTED_ATTRIBUTES {
            return Err(Error::malformed(
                WHAT,
                format!("more than {MAX_REQUESTED_ATTRIBUTES} RequestedAttributes"),
            ));
        }
    }
    match sync_location(entity) {
        Some(s) => urls.push(s),
        None => {
            return Err(Error::malformed(
                WHAT,
                "no DAME MetadataSyncLocation (urn:geant:dame DAMEInfo)",
            ));
        }
    }
    if let Some(bad) = urls
        .iter()
        .find(|u| !(u.starts_with("https://") || (loopback_http && is_loopback_http(u))))
    {
        return Err(Error::malformed(
            WHAT,
            format!("endpoint {bad:?} is not https"),
        ));
    }
    Ok(())
}

/// What proof of ownership backs, checked on metadata a registrant vouches for itself (a
/// registration or update through [`crate::registration`], or an upload with the entity's own
/// token), on top of [`validate_with`]. The broker re-signs what it registers with its own key,
/// and relying parties read the claims below from that document as the federation's word: the
/// proof covers only control of the entityID's host, so nothing beyond it is accepted.
///
/// Refused, everywhere in the entity (its own `md:Extensions` and every role's):
/// - a `shibmd:Scope` with `regexp="true"` (Shibboleth metadata profile, shibmd:Scope: a
///   pattern can match any organisation's scope);
/// - a `shibmd:Scope` that is neither the entityID's host nor its parent domain (one label up)
///   with at least two labels (`idp.attacker.example` may claim `attacker.example`, never
///   `example` nor `victim.example`; `idp.cs.uni.example` may claim `cs.uni.example`, not
///   `uni.example`): a relying party's scope check (Shibboleth SP's ScopeMatchesShibMDScope)
///   otherwise accepts `alice@victim.example` from the registrant's IdP;
/// - any other element of the shibmd namespace (e.g. `shibmd:KeyAuthority`, a trust anchor);
/// - `mdattr:EntityAttributes` (SAML V2.0 Metadata Extension for Entity Attributes: entity
///   categories such as R&S, SIRTFI, assurance certifications are an operator's statement);
/// - `mdrpi:RegistrationInfo` and `mdrpi:PublicationInfo` (SAML V2.0 Metadata Extensions for
///   Registration and Publication Information: they name a federation that registered or
///   published the entity);
/// - an extension element this implementation keeps as written without interpreting it: every
///   element the model does not read, in any namespace (the modelled ones are `mdui:UIInfo`,
///   `mdui:DiscoHints`, `idpdisc:DiscoveryResponse`, `init:RequestInitiator`,
///   `alg:DigestMethod`, `alg:SigningMethod`, DAME's sync location, and those of the three
///   above): the broker cannot judge what a relying party's product makes of it;
/// - the above in every `md:Extensions` of the entity: its own, its roles', its affiliation's,
///   and those of its and its roles' `md:Organization` and `md:ContactPerson`;
/// - an `md:AdditionalMetadataLocation` (more metadata about the entity elsewhere, which the
///   broker has not seen);
/// - a role this implementation keeps as written without interpreting it (it could carry any
///   of the above);
/// - any role but `IDPSSODescriptor` and `SPSSODescriptor`: `AttributeAuthorityDescriptor`,
///   `AuthnAuthorityDescriptor`, `PDPDescriptor` are back-channel services (conversion review
///   M9);
/// - an endpoint (`Location` or `ResponseLocation`) of any role or extension that is not
///   `https://` within the entityID's registrable domain ([`registrable_domain`], the rule
///   the SP's DiscoveryResponse was already held to): SingleSignOnService,
///   AssertionConsumerService, ArtifactResolutionService, SingleLogoutService (any binding),
///   ManageNameIDService, NameIDMappingService, AssertionIDRequestService,
///   `idpdisc:DiscoveryResponse`, `init:RequestInitiator` (conversion review M9: a relying
///   party makes SOAP back-channel requests to some of them, so an unchecked one made it a
///   blind SSRF client towards `http://127.0.0.1/...` or `https://169.254.169.254/...`).
///   This names hosts only: a registrant that controls its domain's DNS can still point a
///   name within it at an internal address; a relying party's outbound filtering covers that.
///
/// A scope is never a public suffix (the Public Suffix List, compiled into the `psl` crate:
/// `idp.x.co.uk` may not claim `co.uk`, `idp.x.github.io` not `x.github.io`'s parent). Known
/// gap: control of a host directly under a domain allows claiming that domain
/// (`www.uni.example` may claim `uni.example`). An operator wanting more imports such entities
/// itself (`/admin/entities` with the operator token).
pub fn validate_self_registered(entity: &EntityDescriptor) -> Result<(), Error> {
    let unvouched = |claim: String| Err(Error::Unvouched { claim });
    let Some(host) = crate::policy::entity_host(&entity.entity_id) else {
        return unvouched("an entityID without a DNS host".into());
    };
    let mut all = vec![&entity.extensions];
    // The md:Extensions of md:Organization and md:ContactPerson too, the entity's and each
    // role's (second review of the eighth round, F1: they were kept as written).
    fn parts<'e>(
        org: Option<&'e saml_metadata::model::Organization>,
        contacts: &'e [saml_metadata::model::ContactPerson],
    ) -> Vec<&'e Extensions> {
        org.and_then(|o| o.extensions.as_deref())
            .into_iter()
            .chain(contacts.iter().filter_map(|c| c.extensions.as_deref()))
            .collect()
    }
    all.extend(parts(entity.organization.as_ref(), &entity.contacts));
    if let Some(a) = entity.additional_locations.first() {
        return unvouched(format!(
            "an AdditionalMetadataLocation ({:?})",
            a.location.as_str()
        ));
    }
    for role in &entity.roles {
        let common = match role {
            Role::Idp(r) => Some(&r.common),
            Role::Sp(r) => Some(&r.common),
            _ => None,
        };
        if let Some(c) = common {
            all.extend(parts(c.organization.as_deref(), &c.contacts));
            check_self_registered_keys(&c.keys)?;
        }
        match role {
            Role::Idp(r) => all.push(&r.common.extensions),
            Role::Sp(r) => all.push(&r.common.extensions),
            // Back-channel services only an operator vouches for (conversion review M9: an
            // AttributeService is queried by the relying party's own host).
            Role::AttributeAuthority(_) => {
                return unvouched("an AttributeAuthorityDescriptor".into());
            }
            Role::AuthnAuthority(_) => return unvouched("an AuthnAuthorityDescriptor".into()),
            Role::Pdp(_) => return unvouched("a PDPDescriptor".into()),
            Role::Other(raw) => {
                return unvouched(format!(
                    "a role kept uninterpreted ({{{}}}{})",
                    raw.name.0, raw.name.1
                ));
            }
            _ => return unvouched("a role of an unknown kind".into()),
        }
    }
    if let Some(a) = &entity.affiliation {
        all.push(&a.extensions);
    }
    // Every endpoint https within the proven entityID's registrable domain. The broker
    // redirects users to an SP's DiscoveryResponse from its own origin (else an open
    // redirector: broker review L5); a relying party that integrates the document sends SOAP
    // requests from its own host to ArtifactResolution, SingleLogout and the like (else a
    // blind SSRF client: conversion review M9).
    let domain = registrable_domain(&entity.entity_id);
    for (element, loc) in endpoints(entity, &all) {
        if !loc.starts_with("https://") || registrable_domain(loc) != domain {
            return unvouched(format!(
                "a {element} at {loc:?}, not https within the entityID's domain"
            ));
        }
    }
    for x in all {
        for scope in &x.scopes {
            if scope.regexp {
                return unvouched(format!(
                    "shibmd:Scope {:?} with regexp=\"true\"",
                    scope.value
                ));
            }
            if !scope_within_host(&scope.value, &host) {
                return unvouched(format!(
                    "shibmd:Scope {:?}, which is not {host:?} nor its parent domain \
                     (with at least two labels)",
                    scope.value
                ));
            }
        }
        // Discovery hints steer users to this IdP: a domain is held to the proven host as a
        // scope is, and a network or a place is nothing owning a host proves (review K5:
        // sasl-saml20's resolver takes a DomainHint as it takes a Scope, so a registrant
        // could make a victim's domain ambiguous, or send its users to its own login page).
        if let Some(h) = &x.disco_hints {
            if let Some(d) = h.domain_hints.iter().find(|d| !scope_within_host(d, &host)) {
                return unvouched(format!(
                    "mdui:DomainHint {d:?}, which is not {host:?} nor its parent domain"
                ));
            }
            if let Some(ip) = h.ip_hints.first() {
                return unvouched(format!("mdui:IPHint {ip:?}"));
            }
            if let Some(g) = h.geolocation_hints.first() {
                return unvouched(format!("mdui:GeolocationHint {g:?}"));
            }
        }
        if !x.entity_attributes.is_empty() {
            return unvouched("mdattr:EntityAttributes".into());
        }
        if let Some(r) = &x.registration {
            return unvouched(format!(
                "mdrpi:RegistrationInfo (registrationAuthority {:?})",
                r.authority
            ));
        }
        if let Some(p) = &x.publication {
            return unvouched(format!(
                "mdrpi:PublicationInfo (publisher {:?})",
                p.publisher
            ));
        }
        // Any extension element this implementation does not interpret (the three namespaces
        // above in a form not modelled, and every other namespace): relying parties' products
        // act on extensions the broker cannot judge (a vendor's trust or attribute-release
        // hints), and the broker would sign them as the federation's word (conversion review,
        // still open after the seventh round).
        if let Some(raw) = x.unknown.first() {
            let known = [SHIBMD_NS, MDATTR_NS, MDRPI_NS].contains(&raw.name.0.as_str());
            return unvouched(format!(
                "the extension {{{}}}{}{}",
                raw.name.0,
                raw.name.1,
                if known {
                    ""
                } else {
                    ", which the broker does not interpret"
                }
            ));
        }
    }
    Ok(())
}

/// Every endpoint location of `entity` (`Location`, and `ResponseLocation` when present) with
/// its element's name: those of its IdP and SP roles, and those in `extensions` (the entity's,
/// its roles' and its affiliation's `md:Extensions`). Other roles are not looked at (a
/// self-registration refuses them before).
fn endpoints<'a>(
    entity: &'a EntityDescriptor,
    extensions: &[&'a Extensions],
) -> Vec<(&'static str, &'a str)> {
    fn add<'a>(out: &mut Vec<(&'static str, &'a str)>, element: &'static str, e: &'a Endpoint) {
        out.push((element, e.location.as_str()));
        if let Some(r) = &e.response_location {
            out.push((element, r.as_str()));
        }
    }
    fn common<'a>(out: &mut Vec<(&'static str, &'a str)>, c: &'a RoleCommon) {
        for e in &c.artifact_resolution {
            add(out, "ArtifactResolutionService", &e.endpoint);
        }
        for e in &c.single_logout {
            add(out, "SingleLogoutService", e);
        }
        for e in &c.manage_name_id {
            add(out, "ManageNameIDService", e);
        }
    }
    let mut out = Vec::new();
    for role in &entity.roles {
        match role {
            Role::Idp(r) => {
                common(&mut out, &r.common);
                for e in &r.single_sign_on {
                    add(&mut out, "SingleSignOnService", e);
                }
                for e in &r.name_id_mapping {
                    add(&mut out, "NameIDMappingService", e);
                }
                for e in &r.assertion_id_request {
                    add(&mut out, "AssertionIDRequestService", e);
                }
            }
            Role::Sp(r) => {
                common(&mut out, &r.common);
                for e in &r.assertion_consumer {
                    add(&mut out, "AssertionConsumerService", &e.endpoint);
                }
            }
            _ => {}
        }
    }
    for x in extensions {
        for e in &x.discovery_responses {
            add(&mut out, "DiscoveryResponse", &e.endpoint);
        }
        for e in &x.request_initiators {
            add(&mut out, "RequestInitiator", e);
        }
    }
    out
}

/// Whether `scope` (a `shibmd:Scope` value) is `host` or its parent domain (one label up) with
/// at least two labels, and not a public suffix (ASCII case ignored, a trailing dot ignored).
fn scope_within_host(scope: &str, host: &str) -> bool {
    let scope = scope.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = scope.split('.').collect();
    let dns = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        && psl::domain_str(&scope).is_some();
    // The host itself, or the domain one label up (`idp.uni.example` -> `uni.example`).
    dns && (host == scope
        || host
            .strip_suffix(scope.as_str())
            .and_then(|rest| rest.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty() && !label.contains('.')))
}

/// The registered providers, by entityID.
#[derive(Debug, Clone)]
pub struct Registry {
    key: SigningKey,
    /// Validity given to each published document (default 7 days; re-signed on update and by
    /// [`Registry::refresh_documents`] once half of it has passed).
    pub validity: Duration,
    /// `cacheDuration` given to each published document (default [`CACHE_DURATION`], 10
    /// minutes; a shorter one in the registered metadata is kept). Conversion review M7: with
    /// `validUntil` only, a Shibboleth SP's dynamic provider (`LocalDynamic`) kept an entity up
    /// to its `maxCacheDuration` (8 h by default) after a rollback deleted the agent's file;
    /// with it, the SP looks again after max(this, its `minCacheDuration`). Looking again is
    /// not letting go: Shibboleth SP 3 keeps the copy it holds when the file is gone, until its
    /// cleanup task drops it (`cleanupInterval`, `cleanupTimeout` on the provider: README,
    /// "Running the DAME services").
    pub cache_duration: Duration,
    /// Admit `http://` endpoints on loopback addresses (tests on one host; default false).
    pub loopback_http: bool,
    /// Most entities held (default [`MAX_ENTITIES`]): a new one beyond it is refused
    /// ([`Refusal::Capacity`]); updates of registered ones go on.
    pub max_entities: usize,
    /// Most entities under one registrable domain ([`registrable_domain`]) a self-registration
    /// may add to (default [`MAX_PER_DOMAIN`]; [`Registry::admits_self_registered`]). Entities
    /// the operator imports count, but are not refused by it.
    pub max_per_domain: usize,
    /// Most bytes of metadata the entities counted as self-registered may hold together
    /// (default [`MAX_SELF_REGISTERED_BYTES`]; [`Registry::admits_self_registered`],
    /// [`Registry::set_self_registered`]). Entities the operator imports do not count.
    pub max_self_registered_bytes: usize,
    entities: HashMap<String, Registered>,
    /// The bytes counted for each self-registered entity ([`Registry::set_self_registered`]).
    self_registered: HashMap<String, usize>,
    /// Their sum.
    self_registered_bytes: usize,
    per_domain: HashMap<String, usize>,
    revision: u64,
    /// [`Registry::entities_revision`].
    entities_revision: u64,
    by_sha1: HashMap<String, String>,
    /// Entities whose re-signing failed, with when [`Registry::refresh_documents`] tries
    /// again (not before: the soonest to expire come first, so a document that cannot be
    /// signed held a slot of every call).
    resign_after: HashMap<String, SystemTime>,
    /// Why the last re-signing that failed did ([`Registry::last_resign_error`]).
    last_resign_error: Option<String>,
}

impl Registry {
    /// An empty registry publishing with the broker's `key`.
    #[must_use]
    pub fn new(key: SigningKey) -> Self {
        Registry {
            key,
            validity: Duration::from_secs(7 * 86400),
            cache_duration: CACHE_DURATION,
            loopback_http: false,
            max_entities: MAX_ENTITIES,
            max_per_domain: MAX_PER_DOMAIN,
            max_self_registered_bytes: MAX_SELF_REGISTERED_BYTES,
            entities: HashMap::new(),
            self_registered: HashMap::new(),
            self_registered_bytes: 0,
            per_domain: HashMap::new(),
            revision: 0,
            entities_revision: 0,
            by_sha1: HashMap::new(),
            resign_after: HashMap::new(),
            last_resign_error: None,
        }
    }

    /// The broker's publishing key.
    #[must_use]
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// Number of registered entities.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entities.len()
    }

    /// Whether none is registered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entities.is_empty()
    }

    /// The registered entity `entity_id`.
    #[must_use]
    pub fn get(&self, entity_id: &str) -> Option<&Registered> {
        self.entities.get(entity_id)
    }

    /// A counter that changes whenever an entity is registered, replaced or removed or its
    /// policy changes: what a caller derived from the registry (a discovery page's list of
    /// IdPs) is current while the revision it was derived at is.
    #[must_use]
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// A counter that changes whenever an entity is registered, replaced or removed, and not
    /// when only a policy changes ([`Registry::set_policy`]): what is derived from the
    /// entities' metadata alone (a discovery page's list of IdPs) is current while the
    /// revision it was derived at is. Review K3: the discovery list followed
    /// [`Registry::revision`], so every policy change (one an entity's own token may make)
    /// rebuilt it over every registered IdP.
    #[must_use]
    pub fn entities_revision(&self) -> u64 {
        self.entities_revision
    }

    /// Every registered entityID (unordered).
    pub fn entity_ids(&self) -> impl Iterator<Item = &str> {
        self.entities.keys().map(String::as_str)
    }

    /// Registers (or, with `replace`, updates) `entity` with `policy` at `now` after
    /// [`validate`]; the published document is signed here (`validUntil` now +
    /// [`Registry::validity`], `cacheDuration` at most [`Registry::cache_duration`]). A second
    /// registration of the same entityID without `replace` is refused ([`Refusal::Duplicate`]),
    /// so is one beyond [`Registry::max_entities`]. Nothing changes on error.
    pub fn insert(
        &mut self,
        entity: EntityDescriptor,
        policy: EntityPolicy,
        now: SystemTime,
        replace: bool,
    ) -> Result<&Registered, Error> {
        validate_with(&entity, self.loopback_http)?;
        self.admits(&entity.entity_id, replace)?;
        let (document, valid_until) = self.publish(&entity, now)?;
        let id = entity.entity_id.clone();
        self.by_sha1.insert(sha1_hex(&id), id.clone());
        self.resign_after.remove(&id);
        self.revision += 1;
        self.entities_revision += 1;
        if !self.entities.contains_key(&id)
            && let Some(d) = registrable_domain(&id)
        {
            *self.per_domain.entry(d).or_default() += 1;
        }
        self.entities.insert(
            id.clone(),
            Registered {
                entity: Arc::new(entity),
                document,
                policy,
                updated: now,
                valid_until,
            },
        );
        self.entities
            .get(&id)
            .ok_or_else(|| Error::malformed("registry", "entry vanished"))
    }

    /// The document published for `entity` at `now`: the entity with `validUntil` = `now` +
    /// [`Registry::validity`] and `cacheDuration` at most [`Registry::cache_duration`], signed
    /// with the broker's key, and that `validUntil`.
    fn publish(
        &self,
        entity: &EntityDescriptor,
        now: SystemTime,
    ) -> Result<(SignedDocument, SystemTime), Error> {
        let valid_until = now + self.validity;
        let mut published = entity.clone();
        published.valid_until = Some(valid_until);
        // Conversion review M7: how long a relying party may keep the document before it
        // looks again, so that a rollback reaches it within minutes, not hours.
        published.cache_duration = Some(
            entity
                .cache_duration
                .map_or(self.cache_duration, |d| d.min(self.cache_duration)),
        );
        published.id = Some(format!("_{}", sha1_hex(&entity.entity_id)));
        let xml = published.sign(&self.key, &SignOptions::default())?;
        let etag = etag_of(&xml);
        Ok((
            SignedDocument {
                xml: xml.into(),
                etag,
            },
            valid_until,
        ))
    }

    /// Re-signs, at `now`, the published documents with less than half of
    /// [`Registry::validity`] left (or expired), the soonest to expire first, at most `limit` of
    /// them; returns how many were re-signed. Each gets `validUntil` = `now` + `validity` and a
    /// new entity tag (the tag is a digest of the document, so the MDQ service's `ETag` and
    /// `If-None-Match` answers follow: a client revalidating the old copy gets the new one, a
    /// 304 only for the current one).
    ///
    /// Review M6: a document was signed only at registration, update and broker start, so
    /// every integrated copy expired 7 days after the broker last started, and agents
    /// re-fetching it got the expired one back. The broker calls this on a timer; `limit`
    /// bounds the signatures made in one call (each is an RSA signature made under the
    /// caller's lock; documents all signed at one start come due together). Nothing else
    /// changes: the entity, its policy, [`Registered::updated`] and [`Registry::revision`]
    /// stay (what was derived from the registry is still current).
    ///
    /// A document whose signing fails keeps its old document and is not tried again before
    /// [`RESIGN_RETRY`] has passed: the soonest to expire come first, so one that cannot be
    /// signed took a slot of every call for good, and `limit` of them stopped every other
    /// document's renewal (still open after the seventh round). [`Registry::resign_failures`]
    /// says how many wait.
    pub fn refresh_documents(&mut self, now: SystemTime, limit: usize) -> usize {
        if limit == 0 {
            return 0;
        }
        let threshold = now + self.validity / 2;
        let retry = &self.resign_after;
        let mut due: Vec<(SystemTime, &str)> = self
            .entities
            .iter()
            .filter(|(id, r)| {
                r.valid_until < threshold && retry.get(id.as_str()).is_none_or(|t| *t <= now)
            })
            .map(|(id, r)| (r.valid_until, id.as_str()))
            .collect();
        // Called often with a small `limit` while many are due: the `limit` soonest, without
        // sorting them all.
        if due.len() > limit {
            due.select_nth_unstable(limit - 1);
            due.truncate(limit);
        }
        let due: Vec<String> = due.into_iter().map(|(_, id)| id.to_owned()).collect();
        let mut n = 0;
        for id in due {
            let Some(r) = self.entities.get(&id) else {
                continue;
            };
            // The entity was validated and signed before with this key: signing again fails
            // only if the key does, and then the old document stays until a later try.
            let (document, valid_until) = match self.publish(&r.entity, now) {
                Ok(d) => d,
                Err(e) => {
                    self.last_resign_error = Some(format!("{id}: {e}"));
                    self.resign_after.insert(id, now + RESIGN_RETRY);
                    continue;
                }
            };
            self.resign_after.remove(&id);
            if let Some(r) = self.entities.get_mut(&id) {
                r.document = document;
                r.valid_until = valid_until;
                n += 1;
            }
        }
        n
    }

    /// How many published documents [`Registry::refresh_documents`] could not re-sign and
    /// waits [`RESIGN_RETRY`] to try again (for a broker's metrics and logs).
    #[must_use]
    pub fn resign_failures(&self) -> usize {
        self.resign_after.len()
    }

    /// The entityID and error of the last re-signing that failed, while any waits
    /// ([`Registry::resign_failures`]).
    #[must_use]
    pub fn last_resign_error(&self) -> Option<&str> {
        if self.resign_after.is_empty() {
            return None;
        }
        self.last_resign_error.as_deref()
    }

    /// Whether [`Registry::insert`] has room for `entity_id` (with `replace`, an update of a
    /// registered one): [`Refusal::Duplicate`] or [`Refusal::Capacity`] if not. What a caller
    /// that must store an entity elsewhere first asks before it does.
    pub fn admits(&self, entity_id: &str, replace: bool) -> Result<(), Error> {
        let exists = self.entities.contains_key(entity_id);
        if exists && !replace {
            return Err(Refusal::Duplicate.into());
        }
        if !exists && self.entities.len() >= self.max_entities {
            return Err(Refusal::Capacity.into());
        }
        Ok(())
    }

    /// [`Registry::admits`] for an entity registering itself (proof of ownership only), or
    /// its owner updating it, with metadata of `bytes`: refused ([`Refusal::Capacity`]) when
    /// the self-registered entities would hold more than
    /// [`Registry::max_self_registered_bytes`] together (this entity counted with `bytes`
    /// instead of what it holds now; review K2); a new one is also refused
    /// ([`Refusal::DomainFull`]) when its registrable domain already holds
    /// [`Registry::max_per_domain`] entities.
    pub fn admits_self_registered(
        &self,
        entity_id: &str,
        replace: bool,
        bytes: usize,
    ) -> Result<(), Error> {
        self.admits(entity_id, replace)?;
        let now = self.self_registered.get(entity_id).copied().unwrap_or(0);
        let after = (self.self_registered_bytes - now).saturating_add(bytes);
        if after > self.max_self_registered_bytes {
            return Err(Refusal::Capacity.into());
        }
        if self.entities.contains_key(entity_id) {
            return Ok(());
        }
        let Some(domain) = registrable_domain(entity_id) else {
            return Err(Error::Unvouched {
                claim: "an entityID without a DNS host".into(),
            });
        };
        if self.per_domain(&domain) >= self.max_per_domain {
            return Err(Refusal::DomainFull.into());
        }
        Ok(())
    }

    /// Counts the registered `entity_id` as self-registered with metadata of `bytes` (`Some`),
    /// or as the operator's (`None`: not counted) against
    /// [`Registry::max_self_registered_bytes`]. [`Registry::insert`] leaves the count as it
    /// was; whoever inserts says what the entity is (a completed self-registration does,
    /// [`crate::registration::Registrations::complete`]). Nothing for an unregistered one.
    pub fn set_self_registered(&mut self, entity_id: &str, bytes: Option<usize>) {
        if !self.entities.contains_key(entity_id) {
            return;
        }
        if let Some(was) = self.self_registered.remove(entity_id) {
            self.self_registered_bytes -= was;
        }
        if let Some(n) = bytes {
            self.self_registered.insert(entity_id.to_owned(), n);
            self.self_registered_bytes += n;
        }
    }

    /// Bytes of metadata the self-registered entities hold together
    /// ([`Registry::set_self_registered`]).
    #[must_use]
    pub fn self_registered_bytes(&self) -> usize {
        self.self_registered_bytes
    }

    /// How many registered entities' entityIDs are under the registrable `domain`.
    #[must_use]
    pub fn per_domain(&self, domain: &str) -> usize {
        self.per_domain.get(domain).copied().unwrap_or(0)
    }

    /// Changes the policy of a registered entity (the document stays): [`Registry::revision`]
    /// moves, [`Registry::entities_revision`] does not.
    pub fn set_policy(&mut self, entity_id: &str, policy: EntityPolicy) -> Result<(), Error> {
        match self.entities.get_mut(entity_id) {
            Some(r) => {
                r.policy = policy;
                self.revision += 1;
                Ok(())
            }
            None => Err(Refusal::UnknownEntity.into()),
        }
    }

    /// Removes `entity_id`; whether it was there.
    pub fn remove(&mut self, entity_id: &str) -> bool {
        self.by_sha1.remove(&sha1_hex(entity_id));
        self.resign_after.remove(entity_id);
        let removed = self.entities.remove(entity_id).is_some();
        if let Some(was) = self.self_registered.remove(entity_id) {
            self.self_registered_bytes -= was;
        }
        self.revision += u64::from(removed);
        self.entities_revision += u64::from(removed);
        if removed
            && let Some(d) = registrable_domain(entity_id)
            && let Some(n) = self.per_domain.get_mut(&d)
        {
            *n -= 1;
            if *n == 0 {
                self.per_domain.remove(&d);
            }
        }
        removed
    }
}

/// A short, stable entity tag of a document: the first 16 hex digits of its SHA-256.
fn etag_of(xml: &[u8]) -> String {
    openssl::sha::sha256(xml)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl DocumentSource for Registry {
    fn by_sha1(&self, sha1_hex: &str) -> Option<SignedDocument> {
        let id = self.by_sha1.get(sha1_hex)?;
        self.entities.get(id).map(|r| r.document.clone())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use saml_metadata::builder::RoleBuilder as _;
    use saml_metadata::model::{Binding, EntityDescriptor, IdpSso};
    use testkit::signer::TestKey;

    use super::{EntityPolicy, Registry, registrable_domain, scope_within_host};

    /// A document that cannot be re-signed does not stop the others' renewal: it kept the
    /// first of every call's slots (the soonest to expire), so `limit` of them starved every
    /// other document until all expired. It is tried again after `RESIGN_RETRY`.
    #[test]
    fn a_document_that_cannot_be_re_signed_does_not_hold_the_others() {
        let key = TestKey::rsa("broker");
        let mut reg = Registry::new(key.signing());
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ids: Vec<String> = (0..3)
            .map(|i| format!("https://idp{i}.uni{i}.example/idp"))
            .collect();
        for (i, id) in ids.iter().enumerate() {
            let host = format!("idp{i}.uni{i}.example");
            let e = EntityDescriptor::builder(id)
                .idp(
                    IdpSso::builder()
                        .signing_certificate(key.cert_der())
                        .sso(Binding::HttpRedirect, &format!("https://{host}/sso")),
                )
                .dame_sync_location(&format!("https://{host}/dame"))
                .build()
                .unwrap();
            // The first registered signs first: its document expires first.
            let at = t0 + Duration::from_secs(i as u64);
            reg.insert(e, EntityPolicy::default(), at, false).unwrap();
        }
        // The soonest to expire can no longer be written (an entity with no role).
        let broken = &ids[0];
        let mut e = (*reg.get(broken).unwrap().entity).clone();
        e.roles.clear();
        reg.entities.get_mut(broken).unwrap().entity = Arc::new(e);
        let later = t0 + reg.validity;
        let until = |reg: &Registry, id: &str| reg.get(id).unwrap().valid_until;
        let before: Vec<SystemTime> = ids.iter().map(|id| until(&reg, id)).collect();
        // One slot per call: the broken one is tried once, the others get their turns.
        for _ in 0..3 {
            reg.refresh_documents(later, 1);
        }
        assert_eq!(until(&reg, broken), before[0], "not re-signed, kept");
        for (id, b) in ids.iter().zip(&before).skip(1) {
            assert!(until(&reg, id) > *b, "{id} re-signed");
        }
        assert_eq!(reg.resign_failures(), 1);
        let why = reg.last_resign_error().unwrap();
        assert!(why.starts_with(broken.as_str()), "{why}");
        // Not tried again before the retry interval, then tried again.
        assert_eq!(reg.refresh_documents(later, 10), 0);
        assert_eq!(reg.resign_failures(), 1);
        let e = (*reg.get(&ids[1]).unwrap().entity).clone();
        let mut fixed = e.clone();
        fixed.entity_id.clone_from(broken);
        reg.entities.get_mut(broken).unwrap().entity = Arc::new(fixed);
        let retry = later + super::RESIGN_RETRY;
        assert_eq!(reg.refresh_documents(retry, 10), 1);
        assert!(until(&reg, broken) > before[0]);
        assert_eq!(reg.resign_failures(), 0);
        assert_eq!(reg.last_resign_error(), None);
    }

    /// Registrable domains follow the Public Suffix List, so that two universities under
    /// `ac.uk` are two domains and every host of one wildcard zone is one.
    #[test]
    fn registrable_domains_follow_the_public_suffix_list() {
        for (id, domain) in [
            ("https://sp.cs.uni.ac.uk/shibboleth", Some("uni.ac.uk")),
            ("https://idp.ox.ac.uk/idp", Some("ox.ac.uk")),
            ("https://a.b.attacker.example/x", Some("attacker.example")),
            ("https://Attacker.Example:8443/x", Some("attacker.example")),
            ("https://x.github.io/", Some("x.github.io")),
            ("https://192.0.2.1/x", Some("192.0.2.1")),
            ("urn:mace:example", None),
        ] {
            assert_eq!(registrable_domain(id).as_deref(), domain, "{id}");
        }
    }

    /// A self-registered scope is the proven host or the domain one label up: a department
    /// host under a university cannot claim the university's scope.
    #[test]
    fn a_scope_is_the_host_or_its_parent_domain() {
        for (scope, host, ok) in [
            ("idp.uni.example", "idp.uni.example", true),
            ("uni.example", "idp.uni.example", true),
            ("Uni.Example.", "idp.uni.example", true),
            ("uni.example", "idp.cs.uni.example", false),
            ("cs.uni.example", "idp.cs.uni.example", true),
            ("example", "uni.example", false),
            ("ni.example", "idp.uni.example", false),
            ("victim.example", "idp.uni.example", false),
            ("", "idp.uni.example", false),
            (".uni.example", "idp.uni.example", false),
            // Public suffixes (the Public Suffix List) are nobody's scope.
            ("co.uk", "idp.x.co.uk", false),
            ("x.co.uk", "idp.x.co.uk", true),
            ("ac.uk", "idp.ox.ac.uk", false),
            ("github.io", "x.github.io", false),
            ("x.github.io", "x.github.io", true),
        ] {
            assert_eq!(scope_within_host(scope, host), ok, "{scope} for {host}");
        }
    }
}
