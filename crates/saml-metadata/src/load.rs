//! Loading metadata the way a relying party must: signature over the document root by a trusted
//! key, then the model built from the verified content only, then validity checks against a
//! given "now" (time is an input), then an index for O(1) lookups.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use saml_core::dsig::{TrustedKeys, VerifyOptions};
use saml_core::xml::{Limits, Reader};

use crate::error::Error;
use crate::ext::Extensions;
use crate::groups::earliest;
use crate::model::{EntitiesChild, EntitiesDescriptor, EntityDescriptor, Metadata};
use crate::nested_signatures::{self, RefusedEntity};
use crate::parallel_model;
use crate::parse::{Cursor, metadata};
use crate::time::format_datetime;

/// What a load accepts (modelled on Shibboleth's metadata filters: SignatureValidation with
/// `requireSignedRoot`, RequiredValidUntil with `maxValidityInterval`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Policy {
    /// The keys the federation signs with (several during a rollover).
    pub keys: TrustedKeys,
    /// The current time, as the caller sees it.
    pub now: SystemTime,
    /// Tolerated clock skew when comparing validUntil with `now`. Default 5 minutes.
    pub clock_skew: Duration,
    /// Refuse documents without a validUntil on the root. Default false.
    pub require_valid_until: bool,
    /// Refuse a root validUntil further ahead than this. Default none.
    pub max_validity: Option<Duration>,
    /// Signature verification options (default: root signature, strict profile).
    pub verify: VerifyOptions,
}

impl Policy {
    /// A policy trusting `keys` at time `now`, with the defaults above.
    #[must_use]
    pub fn new(keys: TrustedKeys, now: SystemTime) -> Self {
        Policy {
            keys,
            now,
            clock_skew: Duration::from_secs(300),
            require_valid_until: false,
            max_validity: None,
            verify: VerifyOptions::metadata(),
        }
    }
}

/// A loaded, verified metadata document with its entity index.
#[derive(Debug, Clone)]
pub struct Aggregate {
    metadata: Metadata,
    paths: Vec<Vec<u32>>,
    /// The validUntil that applies to each indexed entity (see [`Aggregate::valid_until`]).
    valid_until: Vec<Option<SystemTime>>,
    by_entity_id: HashMap<String, u32>,
    by_sha1: HashMap<[u8; 20], u32>,
    expired: Vec<String>,
    refused: Vec<RefusedEntity>,
    signer: usize,
}

impl Aggregate {
    /// The document as loaded: every entity as written, those left out of the index too
    /// ([`expired_entities`](Self::expired_entities),
    /// [`refused_entities`](Self::refused_entities)). Look entities up through the index
    /// ([`get`](Self::get), [`entities`](Self::entities)) for the ones to trust.
    #[must_use]
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Number of indexed (unexpired) entities.
    #[must_use]
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// Whether no entity is indexed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Index (in the policy's trusted keys) of the key that signed the document.
    #[must_use]
    pub fn signer_index(&self) -> usize {
        self.signer
    }

    /// entityIDs of entities left out because their own validUntil had passed.
    #[must_use]
    pub fn expired_entities(&self) -> &[String] {
        &self.expired
    }

    /// Entities left out because a signature of their own (on the entity, one of its roles or
    /// a group containing it) did not verify, with the reason (SAML Metadata §3; Shibboleth's
    /// Signature filter drops them the same way; see [`crate::nested_signatures`]), or because
    /// their model is invalid (`invalid_model`: not in [`metadata`](Self::metadata) at all).
    /// In document order.
    #[must_use]
    pub fn refused_entities(&self) -> &[RefusedEntity] {
        &self.refused
    }

    /// The validUntil that applies to the indexed entity `entity_id`: the earliest of its own,
    /// those of the groups containing it and the root's (SAML Metadata §2.3.1: a group's
    /// validUntil covers everything it contains). `None` when none of them has one, or when
    /// no such entity is indexed.
    #[must_use]
    pub fn valid_until(&self, entity_id: &str) -> Option<SystemTime> {
        let &i = self.by_entity_id.get(entity_id)?;
        self.valid_until.get(i as usize).copied().flatten()
    }

    /// The entity with this entityID.
    #[must_use]
    pub fn get(&self, entity_id: &str) -> Option<&EntityDescriptor> {
        self.by_entity_id.get(entity_id).and_then(|&i| self.at(i))
    }

    /// The entity whose `{sha1}` identifier (40 hex digits, any case, with or without the
    /// `{sha1}` prefix) this is.
    #[must_use]
    pub fn get_by_sha1(&self, id: &str) -> Option<&EntityDescriptor> {
        let key = crate::model::sha1_key(id)?;
        self.by_sha1.get(&key).and_then(|&i| self.at(i))
    }

    /// Every indexed entity, in document order.
    pub fn entities(&self) -> impl Iterator<Item = &EntityDescriptor> {
        (0..self.paths.len() as u32).filter_map(|i| self.at(i))
    }

    /// Entities with an IdP role.
    pub fn idps(&self) -> impl Iterator<Item = &EntityDescriptor> {
        self.entities().filter(|e| e.idp().is_some())
    }

    /// Entities with an SP role.
    pub fn sps(&self) -> impl Iterator<Item = &EntityDescriptor> {
        self.entities().filter(|e| e.sp().is_some())
    }

    /// The `md:Extensions` of the groups around the indexed entity `entity_id`, innermost
    /// first (the root `md:EntitiesDescriptor`'s last; groups without one left out): what
    /// [`Filter::matches_in`](crate::filter::Filter::matches_in) takes. Empty for an entity
    /// that is not indexed or is the document's root.
    #[must_use]
    pub fn groups_of(&self, entity_id: &str) -> Vec<&Extensions> {
        self.by_entity_id
            .get(entity_id)
            .and_then(|&i| self.at_with_groups(i))
            .map(|(_, groups)| groups)
            .unwrap_or_default()
    }

    /// Every indexed entity with [`Aggregate::groups_of`] it, in document order.
    pub(crate) fn entities_with_groups(
        &self,
    ) -> impl Iterator<Item = (&EntityDescriptor, Vec<&Extensions>)> {
        (0..self.paths.len() as u32).filter_map(|i| self.at_with_groups(i))
    }

    fn at(&self, i: u32) -> Option<&EntityDescriptor> {
        self.at_with_groups(i).map(|(e, _)| e)
    }

    fn at_with_groups(&self, i: u32) -> Option<(&EntityDescriptor, Vec<&Extensions>)> {
        let path = self.paths.get(i as usize)?;
        let mut group = match &self.metadata {
            Metadata::Entity(e) => return Some((e, Vec::new())),
            Metadata::Entities(g) => g,
        };
        let mut groups = Vec::new();
        let (last, inner) = path.split_last()?;
        for &p in inner {
            if group.extensions.present {
                groups.push(&group.extensions);
            }
            match group.children.get(p as usize)? {
                EntitiesChild::Group(g) => group = g,
                EntitiesChild::Entity(_) => return None,
            }
        }
        if group.extensions.present {
            groups.push(&group.extensions);
        }
        groups.reverse();
        match group.children.get(*last as usize)? {
            EntitiesChild::Entity(e) => Some((e, groups)),
            EntitiesChild::Group(_) => None,
        }
    }
}

/// Verifies `doc` (signature over the root by a key of the policy), builds the model from the
/// verified content, applies the validity policy and indexes the entities. Duplicate entityIDs
/// are refused; entities whose own validUntil has passed are left out of the index, roles
/// whose own validUntil has passed out of their entity. An entity of an aggregate whose model
/// is invalid (a missing or malformed attribute, a bad `index`, an unexpected element) is left
/// out and named in [`Aggregate::refused_entities`] (`invalid_model`), as one whose own
/// signature fails is; a root entity's, and one without an entityID, refuse the document.
///
/// Documents of at least `policy.verify.parallel_min_size` bytes (4 MiB by default; never with
/// [`VerifyOptions::single_threaded`]) have their entities modelled on up to four threads while
/// the signature is checked, the model used only once it is good (the same model; see
/// `parallel_model`).
pub fn load(doc: &[u8], policy: &Policy) -> Result<Aggregate, Error> {
    let threads = threads_for(doc.len(), policy);
    let (verified, refused, parallel) = if threads > 1 {
        parallel_model::verify_and_build(doc, policy, threads)?
    } else {
        let (verified, refused) = nested_signatures::verify(doc, policy, &mut |_| {})?;
        (verified, refused, None)
    };
    let mut refused = refused;
    let md = match parallel {
        Some(md) => md,
        None => metadata(&mut Cursor::verified(&verified)?, Some(&mut refused))?,
    };
    checked_and_indexed(md, policy, verified.key_index(), refused)
}

/// The root's validity checked against the policy, then the index built.
fn checked_and_indexed(
    md: Metadata,
    policy: &Policy,
    signer: usize,
    refused: Vec<RefusedEntity>,
) -> Result<Aggregate, Error> {
    let valid_until = match &md {
        Metadata::Entity(e) => e.valid_until,
        Metadata::Entities(g) => g.valid_until,
    };
    check_validity(valid_until, policy)?;
    index(md, policy, signer, refused)
}

/// [`load`] for a document the caller hands over: the same checks, the same model and the
/// same errors, in less memory. The document's memory is given back while the model is built
/// (from the last entity to the first, the document cut behind each batch), so the document and
/// the model of all its entities are never both whole in memory: for an aggregate of 10,000
/// entities the peak is about the model's size instead of the document's plus the model's
/// (BENCHMARKS.md, issue 15). The model is built after the signature is checked, not while it
/// is, which costs some time on a large document. An aggregate whose root children are not
/// separated by white space only (a comment between entities) is modelled as by `load`,
/// without the saving.
///
/// Whether memory given back is returned to the system is the allocator's choice: glibc's
/// (Linux) returns it at once.
pub fn load_owned(mut doc: Vec<u8>, policy: &Policy) -> Result<Aggregate, Error> {
    let threads = threads_for(doc.len(), policy);
    let (signer, refused, md) =
        parallel_model::verify_then_build_releasing(&mut doc, policy, threads)?;
    drop(doc);
    checked_and_indexed(md, policy, signer, refused)
}

/// Threads for modelling a document of `len` bytes: up to four at or above
/// `parallel_min_size`, else one.
fn threads_for(len: usize, policy: &Policy) -> usize {
    if policy.verify.parallel_min_size.is_some_and(|m| len >= m) {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
    } else {
        1
    }
}

/// Whether `valid_until` lies before `now` by more than the clock skew. Saturating: a skew (or a
/// `validUntil`) so large that the sum does not fit a `SystemTime` means "not expired", never a
/// panic.
pub(crate) fn is_expired(valid_until: SystemTime, policy: &Policy) -> bool {
    expired_at(valid_until, policy.now, policy.clock_skew)
}

/// [`is_expired`] at `now` with `skew`.
pub(crate) fn expired_at(valid_until: SystemTime, now: SystemTime, skew: Duration) -> bool {
    valid_until
        .checked_add(skew)
        .is_some_and(|latest| latest < now)
}

pub(crate) fn check_validity(
    valid_until: Option<SystemTime>,
    policy: &Policy,
) -> Result<(), Error> {
    let Some(vu) = valid_until else {
        return if policy.require_valid_until {
            Err(Error::NoValidUntil)
        } else {
            Ok(())
        };
    };
    if is_expired(vu, policy) {
        return Err(Error::Expired {
            valid_until: format_datetime(vu),
            now: format_datetime(policy.now),
        });
    }
    if let Some(max) = policy.max_validity
        && policy.now.checked_add(max).is_some_and(|limit| vu > limit)
    {
        return Err(Error::ValidityTooLong {
            valid_until: format_datetime(vu),
            max_days: max.as_secs() / 86400,
        });
    }
    Ok(())
}

fn index(
    mut md: Metadata,
    policy: &Policy,
    signer: usize,
    refused: Vec<RefusedEntity>,
) -> Result<Aggregate, Error> {
    match &mut md {
        Metadata::Entity(e) => drop_expired_roles(e, policy.now, policy.clock_skew),
        Metadata::Entities(g) => drop_expired_roles_below(g, policy),
    }
    let mut agg = Aggregate {
        metadata: md,
        paths: Vec::new(),
        valid_until: Vec::new(),
        by_entity_id: HashMap::new(),
        by_sha1: HashMap::new(),
        expired: Vec::new(),
        refused,
        signer,
    };
    // In document order, whichever the reason.
    agg.refused.sort_by_key(|r| r.offset);
    let refused: std::collections::HashSet<&str> =
        agg.refused.iter().map(|r| r.entity_id.as_str()).collect();
    // An entity left out for its invalid model is still one of its entityID: a second one
    // makes the aggregate ambiguous, as two good ones do.
    let mut unmodelled = std::collections::HashSet::new();
    for r in agg.refused.iter().filter(|r| r.invalid_model) {
        if !unmodelled.insert(r.entity_id.as_str()) {
            return Err(Error::DuplicateEntityId(r.entity_id.clone()));
        }
    }
    let mut found: Vec<(Vec<u32>, String, Option<SystemTime>)> = Vec::new();
    match &agg.metadata {
        Metadata::Entity(e) => found.push((Vec::new(), e.entity_id.clone(), e.valid_until)),
        Metadata::Entities(g) => collect(g, None, &mut Vec::new(), &mut found),
    }
    let mut seen: HashMap<String, ()> = HashMap::with_capacity(found.len());
    for (path, id, vu) in found {
        if seen.insert(id.clone(), ()).is_some() || unmodelled.contains(id.as_str()) {
            return Err(Error::DuplicateEntityId(id));
        }
        if refused.contains(id.as_str()) {
            continue;
        }
        if vu.is_some_and(|vu| is_expired(vu, policy)) {
            agg.expired.push(id);
            continue;
        }
        let i = agg.paths.len() as u32;
        let digest = openssl::sha::sha1(id.as_bytes());
        agg.by_sha1.insert(digest, i);
        agg.by_entity_id.insert(id, i);
        agg.paths.push(path);
        agg.valid_until.push(vu);
    }
    Ok(agg)
}

fn drop_expired_roles_below(g: &mut EntitiesDescriptor, policy: &Policy) {
    for c in &mut g.children {
        match c {
            EntitiesChild::Entity(e) => drop_expired_roles(e, policy.now, policy.clock_skew),
            EntitiesChild::Group(inner) => drop_expired_roles_below(inner, policy),
        }
    }
}

/// Leaves out of `e` the roles whose own `validUntil` had passed at `now` (more than `skew`
/// before): their keys and endpoints are no longer the entity's (SAML Metadata §2.4.1), as an
/// expired entity is left out of the index. Review A5: the `sso` helpers took an expired
/// IdP role's keys and endpoints.
pub(crate) fn drop_expired_roles(e: &mut EntityDescriptor, now: SystemTime, skew: Duration) {
    e.roles
        .retain(|r| !r.valid_until().is_some_and(|vu| expired_at(vu, now, skew)));
}

/// Every entity below `g` with its path and the validUntil that applies to it: the earliest
/// of its own, `g`'s and those of the groups between (SAML Metadata §2.3.1: a group's
/// validUntil covers everything it contains).
fn collect(
    g: &EntitiesDescriptor,
    around: Option<SystemTime>,
    path: &mut Vec<u32>,
    out: &mut Vec<(Vec<u32>, String, Option<SystemTime>)>,
) {
    let around = earliest(around, g.valid_until);
    for (i, c) in g.children.iter().enumerate() {
        path.push(i as u32);
        match c {
            EntitiesChild::Entity(e) => out.push((
                path.clone(),
                e.entity_id.clone(),
                earliest(e.valid_until, around),
            )),
            EntitiesChild::Group(inner) => collect(inner, around, path, out),
        }
        path.pop();
    }
}

/// Parses metadata WITHOUT checking any signature: for tools that inspect documents, never for
/// trust decisions. Any `ds:Signature` is skipped, not checked.
pub fn parse_unverified(doc: &[u8]) -> Result<Metadata, Error> {
    let mut cursor = Cursor::unverified(Reader::new(doc, Limits::default())?);
    metadata(&mut cursor, None)
}
