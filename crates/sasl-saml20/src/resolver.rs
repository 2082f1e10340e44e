//! From the client's IdP identifier (a domain) to an IdP the server trusts (RFC 6595 §3.1 leaves
//! the mapping to the server). [`MetadataResolver`] derives it from verified SAML metadata:
//! `shibmd:Scope` (literal scopes) and `mdui:DomainHint` of IdPs that publish an HTTP-Redirect
//! SingleSignOnService and a signing certificate.
//!
//! Matching is exact by default, a domain that two IdPs claim resolves to neither, and a
//! DomainHint never reaches above the IdP's own Scopes; [`MetadataResolver`] documents the order.

use std::collections::HashMap;

use saml_core::dsig::TrustedKeys;
use saml_metadata::model::{Binding, EntityDescriptor};
use saml_metadata::sso;

/// An IdP the server will send users to.
#[derive(Debug, Clone)]
pub struct ResolvedIdp {
    /// Its entityID (the expected Issuer).
    pub entity_id: String,
    /// Its HTTP-Redirect SingleSignOnService URL.
    pub sso_url: String,
    /// Its signing keys.
    pub keys: TrustedKeys,
    /// The domains this IdP is authoritative for: the scoped names (`user@domain`) it may assert
    /// under the default [`crate::server::IdentityPolicy::Scoped`]. Normalized domains (A-labels,
    /// lower case), matched exactly (a scope does not cover its subdomains, as with Shibboleth's
    /// literal `shibmd:Scope`). [`MetadataResolver`] fills it from the IdP's literal
    /// `shibmd:Scope`s (never from `mdui:DomainHint`, which is a discovery hint, not a claim of
    /// authority); [`StaticResolver::insert`] adds the domain the entry is inserted under.
    pub scopes: Vec<String>,
    /// Whether the IdP wants signed AuthnRequests (its metadata's `WantAuthnRequestsSigned`,
    /// SAML Metadata §2.4.3): the server then refuses to send it an unsigned one
    /// ([`crate::Error::SigningKeyNeeded`]) instead of sending the user to an IdP that will
    /// refuse it. [`MetadataResolver`] fills it.
    pub wants_signed_requests: bool,
}

impl ResolvedIdp {
    /// Whether `domain` (normalized) is one of this IdP's scopes.
    pub fn has_scope(&self, domain: &str) -> bool {
        self.scopes.iter().any(|s| s.eq_ignore_ascii_case(domain))
    }
}

/// Maps a normalized IdP identifier (A-labels, lower case) to a trusted IdP.
pub trait IdpResolver: Send + Sync {
    /// The IdP for `domain`, if any is trusted for it.
    fn resolve(&self, domain: &str) -> Option<ResolvedIdp>;
}

/// A fixed table.
#[derive(Debug, Clone, Default)]
pub struct StaticResolver {
    map: HashMap<String, ResolvedIdp>,
}

impl StaticResolver {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps `domain` (normalized here) to `idp`. The table entry is the operator's statement
    /// that `idp` speaks for `domain`: the domain is added to `idp.scopes` (whose other entries
    /// are normalized here too; one that is not a domain name is an error).
    pub fn insert(&mut self, domain: &str, mut idp: ResolvedIdp) -> Result<(), crate::Error> {
        let d = crate::gs2::idp_identifier(domain)?;
        let mut scopes = Vec::with_capacity(idp.scopes.len() + 1);
        let mut seen = std::collections::HashSet::new();
        for s in idp.scopes.iter().chain(std::iter::once(&d)) {
            let s = crate::gs2::idp_identifier(s)?;
            if seen.insert(s.clone()) {
                scopes.push(s);
            }
        }
        idp.scopes = scopes;
        self.map.insert(d, idp);
        Ok(())
    }
}

impl IdpResolver for StaticResolver {
    fn resolve(&self, domain: &str) -> Option<ResolvedIdp> {
        self.map.get(domain).cloned()
    }
}

/// How [`MetadataResolver`] matches a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ResolverOptions {
    /// Also resolve a subdomain of an IdP's literal `shibmd:Scope` (step 2 of the order in
    /// [`MetadataResolver`]). Default false: exact matches only.
    pub subdomains: bool,
}

impl ResolverOptions {
    /// Exact matches only (the default).
    pub fn exact() -> Self {
        Self::default()
    }

    /// Exact matches, then subdomains of literal scopes.
    pub fn with_subdomains() -> Self {
        ResolverOptions { subdomains: true }
    }
}

/// IdPs from metadata. Regular-expression scopes are not used (they cannot name a domain to
/// send users to). The order, for a normalized domain `d`:
///
/// 1. Exact: the IdPs with `d` as a literal `shibmd:Scope` or as an `mdui:DomainHint`. Exactly
///    one: that IdP. Several: `d` is ambiguous and resolves to none — a Scope of one IdP does
///    not beat a DomainHint of another, since both are claims published in the same metadata.
/// 2. Only with [`ResolverOptions::subdomains`], when step 1 found nothing: the nearest parent of
///    `d` (of at least two labels) that is some IdP's literal Scope; exactly one IdP with that
///    Scope: that IdP, several: none. DomainHints are never matched by suffix, so an IdP is
///    never reached above its own Scopes (a hint for `ac.example` does not capture
///    `cs.uni-a.ac.example`).
#[derive(Debug, Clone, Default)]
pub struct MetadataResolver {
    scopes: HashMap<String, Vec<usize>>,
    hints: HashMap<String, Vec<usize>>,
    idps: Vec<ResolvedIdp>,
    options: ResolverOptions,
}

impl MetadataResolver {
    /// Indexes the usable IdPs among `entities` (e.g. `Aggregate::idps()` of verified metadata),
    /// matching exactly.
    pub fn new<'a>(entities: impl IntoIterator<Item = &'a EntityDescriptor>) -> Self {
        Self::with_options(entities, ResolverOptions::default())
    }

    /// Like [`MetadataResolver::new`], with `options`.
    pub fn with_options<'a>(
        entities: impl IntoIterator<Item = &'a EntityDescriptor>,
        options: ResolverOptions,
    ) -> Self {
        let mut r = MetadataResolver {
            options,
            ..Default::default()
        };
        for e in entities {
            let (Some(role), Ok(sso_url), Ok(keys)) = (
                e.idp(),
                sso::sso_location(e, &Binding::HttpRedirect),
                sso::idp_signing_keys(e),
            ) else {
                continue;
            };
            let i = r.idps.len();
            let mut scopes = Vec::new();
            // Review C4: a list search per scope was quadratic in an IdP's scopes (100,000 in
            // one entity's metadata: billions of comparisons at each resolver build).
            let mut seen = std::collections::HashSet::new();
            let exts = [&e.extensions, &role.common.extensions];
            for x in exts {
                for s in x.scopes.iter().filter(|s| !s.regexp) {
                    if let Ok(d) = crate::gs2::idp_identifier(&s.value) {
                        r.scopes.entry(d.clone()).or_default().push(i);
                        if seen.insert(d.clone()) {
                            scopes.push(d);
                        }
                    }
                }
                for h in x.disco_hints.iter().flat_map(|d| &d.domain_hints) {
                    if let Ok(d) = crate::gs2::idp_identifier(h) {
                        r.hints.entry(d).or_default().push(i);
                    }
                }
            }
            r.idps.push(ResolvedIdp {
                entity_id: e.entity_id.clone(),
                sso_url,
                keys,
                scopes,
                wants_signed_requests: role.want_authn_requests_signed == Some(true),
            });
        }
        for v in r.scopes.values_mut().chain(r.hints.values_mut()) {
            v.sort_unstable();
            v.dedup();
        }
        r
    }

    /// Number of usable IdPs indexed.
    pub fn len(&self) -> usize {
        self.idps.len()
    }

    /// Whether none was usable.
    pub fn is_empty(&self) -> bool {
        self.idps.is_empty()
    }

    /// The one IdP among `v`, if there is exactly one.
    fn one(&self, v: &[usize]) -> Option<ResolvedIdp> {
        match v {
            [i] => self.idps.get(*i).cloned(),
            _ => None,
        }
    }
}

impl IdpResolver for MetadataResolver {
    fn resolve(&self, domain: &str) -> Option<ResolvedIdp> {
        // 1. Exact, scopes and hints together; distinct IdPs claiming it make it ambiguous.
        let mut exact: Vec<usize> = self
            .scopes
            .get(domain)
            .into_iter()
            .chain(self.hints.get(domain))
            .flatten()
            .copied()
            .collect();
        if !exact.is_empty() {
            exact.sort_unstable();
            exact.dedup();
            return self.one(&exact);
        }
        if !self.options.subdomains {
            return None;
        }
        // 2. The nearest parent that is a literal Scope.
        let mut d = domain;
        while let Some((_, parent)) = d.split_once('.') {
            if !parent.contains('.') {
                break;
            }
            if let Some(v) = self.scopes.get(parent) {
                return self.one(v);
            }
            d = parent;
        }
        None
    }
}
