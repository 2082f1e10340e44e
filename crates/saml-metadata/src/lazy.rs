//! Lazy loading for large aggregates: one verification pass records where each entity stands
//! (entityID, byte range, inherited namespaces, validUntil, IdP/SP roles) through
//! `saml_core::dsig::verify_observed`; an entity's model is built on first lookup from those
//! same verified bytes (through `Verified::fragment`, which refuses anything outside the signed
//! content) and cached. Loading costs about one verification and keeps only the document plus a
//! small index in memory.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::SystemTime;

use saml_core::dsig::Verified;
use saml_core::xml::{Event, NsDecl, effective_scope};

use crate::error::Error;
use crate::ext::Extensions;
use crate::groups::{BadValidUntil, Groups, Member, earliest};
use crate::load::{Policy, check_validity};
use crate::model::{EntityDescriptor, Metadata};
use crate::nested_signatures::{self, RefusedEntity};
use crate::parse::{Cursor, MD_NS, entity, extensions, metadata, root};
use crate::split::Cut;
use crate::time::parse_datetime;

const IDP: u8 = 1;
const SP: u8 = 2;

#[derive(Debug)]
struct Entry<'a> {
    /// Borrowed from the document unless written with a reference: an owned copy per entity
    /// (and a second one as the lookup key) made the index of an aggregate of small entities
    /// several times the document (review C2).
    entity_id: Cow<'a, str>,
    range: Range<usize>,
    /// The group whose content it is (an index in `scopes`; `NO_SCOPE` for the root entity).
    scope: u32,
    roles: u8,
    /// The validUntil of the groups around it and its own (the root's is the aggregate's).
    valid_until: Option<SystemTime>,
}

/// The namespace declarations of the root (first) or of one group below it, and the group
/// around it: an entity's inherited scope is the chain of them, resolved when it is built.
/// Recording each group's own declarations keeps what the index holds, and the work per
/// entity while verification streams (before the signature is known good), independent of
/// the number of bindings in scope: a copy of the effective scope per entity made a document
/// of one-entity groups under hundreds of bindings cost about 90 times its size.
#[derive(Debug)]
struct ScopeNode<'a> {
    parent: u32,
    decls: Vec<NsDecl<'a>>,
    /// The byte range of the group's `md:Extensions`, if it has one: what it declares
    /// (entity attributes, registrar) applies to its entities ([`crate::filter`]).
    extensions: Option<Range<usize>>,
}

/// `Entry::scope` and `ScopeNode::parent` for "none".
const NO_SCOPE: u32 = u32::MAX;

/// The nested groups' `md:Extensions` models of the last entity
/// [`LazyAggregate::groups_of`] was asked about, kept for the next: entities of one group
/// come one after the other, and each modelled the group's Extensions again, so that a group
/// with large Extensions and many entities cost their product (review C1: 1 MB took 22 s in
/// `samlmd select --category`). One chain is kept, not every group's (review M1 of the tenth
/// round: a million one-entity groups kept a million models).
#[derive(Debug, Default)]
pub(crate) struct GroupMemo {
    /// (group index in `scopes`, its model), innermost first.
    chain: Vec<(u32, Rc<Extensions>)>,
}

/// One group's `md:Extensions` as [`LazyAggregate::groups_of`] gives it.
#[derive(Debug)]
pub(crate) enum GroupExtensions<'s> {
    /// The root's, kept by the aggregate.
    Root(&'s Extensions),
    /// A nested group's, shared with the memo.
    Group(Rc<Extensions>),
}

impl std::ops::Deref for GroupExtensions<'_> {
    type Target = Extensions;
    fn deref(&self) -> &Extensions {
        match self {
            GroupExtensions::Root(x) => x,
            GroupExtensions::Group(x) => x,
        }
    }
}

/// A verified aggregate whose entities are parsed on demand. See the module docs.
#[derive(Debug)]
pub struct LazyAggregate<'a> {
    verified: Verified<'a>,
    scopes: Vec<ScopeNode<'a>>,
    /// The root's `md:Extensions`, modelled on first use and kept (one for the whole
    /// aggregate; a nested group's is kept by the caller's [`GroupMemo`] while its entities
    /// are visited, not here: a document of a million one-entity groups kept a million
    /// models: review M1 of the tenth round).
    root_extensions: OnceLock<Box<Extensions>>,
    entries: Vec<Entry<'a>>,
    /// Built entities, boxed: a slot costs a pointer until its entity is asked for (an
    /// unboxed `EntityDescriptor` is kilobytes, and every slot is written at load).
    cache: Vec<OnceLock<Box<EntityDescriptor>>>,
    /// The entries by entityID: indexes into `entries`, hashed by the entityID they hold (a
    /// map keyed by a copy of each entityID was a quarter of an index of small entities:
    /// review C2).
    by_entity_id: EntityIds,
    /// The `{sha1}` index, built on the first [`LazyAggregate::get_by_sha1`]: hashing every
    /// entityID at load was most of the work after verification (which runs on one core),
    /// for a lookup that only MDQ-style callers make.
    by_sha1: OnceLock<HashMap<[u8; 20], u32>>,
    expired: Vec<String>,
    /// Where the expired entities are, for [`LazyAggregate::invalid_models`] (`load` models
    /// them too, and names an invalid one).
    expired_entries: Vec<Entry<'a>>,
    refused: Vec<RefusedEntity>,
    /// The root `md:EntitiesDescriptor`'s validUntil.
    root_valid_until: Option<SystemTime>,
    /// The policy's time and clock skew: a role whose validUntil had passed then is left out
    /// of its entity's model when it is built ([`crate::load::drop_expired_roles`]).
    now: SystemTime,
    clock_skew: std::time::Duration,
}

struct Builder<'a> {
    /// Which EntityDescriptor elements are entities, and their groups' validUntil.
    groups: Groups,
    /// The root's declarations (first, once an element below it was seen) and each group's.
    scopes: Vec<ScopeNode<'a>>,
    /// The groups open: (depth, index in `scopes`).
    open_groups: Vec<(usize, u32)>,
    entries: Vec<Entry<'a>>,
    /// The entity being read and its depth (its range ends where it ends).
    open: Option<(usize, Entry<'a>)>,
    /// A group's `md:Extensions` being read: (depth, start offset, index in `scopes`).
    open_extensions: Option<(usize, usize, u32)>,
    error: Option<Error>,
    /// The policy's time and clock skew: an IdP or SP role expired then is not an entity's.
    now: SystemTime,
    clock_skew: std::time::Duration,
}

impl<'a> Builder<'a> {
    fn observe(&mut self, ev: &Event<'_, 'a>) {
        if self.error.is_some() {
            return;
        }
        // The root's declarations, from the first element below it (its start tag comes
        // before the signature, so it is not observed).
        if let Event::Start(s) = ev
            && self.scopes.is_empty()
            && s.depth == 2
        {
            let own = s.namespace_decls.len();
            self.scopes.push(ScopeNode {
                parent: NO_SCOPE,
                decls: s
                    .scope
                    .get(..s.scope.len() - own)
                    .unwrap_or_default()
                    .to_vec(),
                extensions: None,
            });
        }
        let member = match ev {
            Event::Start(s) => match self.groups.start(s) {
                Ok(m) => m,
                Err(BadValidUntil(offset)) => {
                    self.error = Some(Error::Invalid {
                        element: "EntitiesDescriptor".into(),
                        offset,
                        message: "validUntil is not an xs:dateTime".into(),
                    });
                    return;
                }
            },
            Event::End(e) => {
                self.groups.end(e);
                self.open_groups.pop_if(|g| g.0 == e.depth);
                if let Some((_, start, group)) = self.open_extensions.take_if(|o| o.0 == e.depth)
                    && let Some(node) = self.scopes.get_mut(group as usize)
                {
                    node.extensions = Some(start..e.span.end);
                }
                Member::Other
            }
            _ => Member::Other,
        };
        if let (Event::Start(s), Member::GroupExtensions) = (ev, member) {
            // The root's (depth 2) or the innermost open group's: one each (review A2, as
            // `load` refuses a second).
            let group = self.open_groups.last().map_or(0, |g| g.1);
            if self
                .scopes
                .get(group as usize)
                .is_some_and(|n| n.extensions.is_some())
            {
                // The root's parent element may be an md:EntityDescriptor (a single-entity
                // document): named by what both have.
                self.error = Some(Error::Invalid {
                    element: "Extensions".into(),
                    offset: s.span.start,
                    message: "a second Extensions in one element".into(),
                });
                return;
            }
            self.open_extensions = Some((s.depth, s.span.start, group));
        }
        if let (Event::Start(s), Member::Group) = (ev, member) {
            let parent = self.open_groups.last().map_or(0, |g| g.1);
            self.open_groups.push((s.depth, self.scopes.len() as u32));
            self.scopes.push(ScopeNode {
                parent,
                decls: s.namespace_decls.to_vec(),
                extensions: None,
            });
        }
        match ev {
            Event::Start(s) if self.open.is_none() && matches!(member, Member::Entity(_)) => {
                let Member::Entity(around) = member else {
                    return;
                };
                let invalid = |message: &str| Error::Invalid {
                    element: "EntityDescriptor".into(),
                    offset: s.span.start,
                    message: message.into(),
                };
                let Some(id) = s.attribute("entityID").map(|a| a.value()) else {
                    self.error = Some(invalid("missing required attribute entityID"));
                    return;
                };
                let valid_until = match s
                    .attribute("validUntil")
                    .map(|a| parse_datetime(&a.value()))
                {
                    Some(None) => {
                        self.error = Some(invalid("validUntil is not an xs:dateTime"));
                        return;
                    }
                    Some(t) => t,
                    None => None,
                };
                let valid_until = earliest(valid_until, around);
                let scope = self.open_groups.last().map_or(0, |g| g.1);
                self.open = Some((
                    s.depth,
                    Entry {
                        entity_id: id,
                        range: s.span.start..s.span.start,
                        scope,
                        roles: 0,
                        valid_until,
                    },
                ));
            }
            Event::Start(s) => {
                if let Some((depth, open)) = self.open.as_mut()
                    && s.depth == *depth + 1
                {
                    let role = if s.is(MD_NS, "IDPSSODescriptor") {
                        IDP
                    } else if s.is(MD_NS, "SPSSODescriptor") {
                        SP
                    } else {
                        0
                    };
                    // An expired role is left out of the model (review A5): not listed either.
                    // One whose validUntil is not a dateTime is refused when modelled.
                    let expired = role != 0
                        && s.attribute("validUntil")
                            .and_then(|a| parse_datetime(&a.value()))
                            .is_some_and(|vu| {
                                crate::load::expired_at(vu, self.now, self.clock_skew)
                            });
                    if !expired {
                        open.roles |= role;
                    }
                }
            }
            Event::End(e) => {
                if let Some((_, mut entry)) = self.open.take_if(|o| o.0 == e.depth) {
                    entry.range.end = e.span.end;
                    self.entries.push(entry);
                }
            }
            _ => {}
        }
    }
}

/// Verifies `doc` under `policy` and indexes its entities without building their models; see
/// [`LazyAggregate`]. A single-entity document is parsed at once.
pub fn load_lazy<'a>(doc: &'a [u8], policy: &Policy) -> Result<LazyAggregate<'a>, Error> {
    let mut b = Builder {
        groups: Groups::inside_root_group(),
        scopes: Vec::new(),
        open_groups: Vec::new(),
        entries: Vec::new(),
        open: None,
        open_extensions: None,
        error: None,
        now: policy.now,
        clock_skew: policy.clock_skew,
    };
    let (verified, refused) = nested_signatures::verify(doc, policy, &mut |ev| b.observe(ev))?;
    if let Some(e) = b.error {
        return Err(e);
    }
    // The root's own attributes (validity) and, for a single entity, the whole model.
    let mut cursor = Cursor::verified(&verified)?;
    let root = root(&mut cursor)?;
    let mut agg = LazyAggregate {
        verified: verified.clone(),
        root_extensions: OnceLock::new(),
        scopes: b.scopes,
        entries: Vec::new(),
        cache: Vec::new(),
        by_entity_id: EntityIds::default(),
        by_sha1: OnceLock::new(),
        expired: Vec::new(),
        expired_entries: Vec::new(),
        refused,
        root_valid_until: None,
        now: policy.now,
        clock_skew: policy.clock_skew,
    };
    let refused: std::collections::HashSet<String> =
        agg.refused.iter().map(|r| r.entity_id.clone()).collect();
    let mut single = None;
    match (root.ns, root.local) {
        (MD_NS, "EntitiesDescriptor") => {
            let vu = root.time_attr("validUntil")?;
            check_validity(vu, policy)?;
            agg.root_valid_until = vu;
        }
        (MD_NS, "EntityDescriptor") => {
            let mut e = entity(&mut cursor, &root)?;
            crate::load::drop_expired_roles(&mut e, policy.now, policy.clock_skew);
            check_validity(e.valid_until, policy)?;
            // The document's one entity is its root: an EntityDescriptor inside it is content
            // of it (crate::groups), not another entity.
            b.entries.clear();
            b.entries.push(Entry {
                entity_id: Cow::Owned(e.entity_id.clone()),
                range: verified.signed_range(),
                scope: NO_SCOPE,
                roles: u8::from(e.idp().is_some()) | (u8::from(e.sp().is_some()) << 1),
                valid_until: None,
            });
            single = Some(e);
        }
        _ => {
            return Err(root
                .invalid("the root is neither md:EntitiesDescriptor nor md:EntityDescriptor")
                .into());
        }
    }
    let n = b.entries.len();
    let mut seen = std::collections::HashSet::with_capacity(n);
    if let Some(dup) = b.entries.iter().find(|e| !seen.insert(&*e.entity_id)) {
        return Err(Error::DuplicateEntityId(dup.entity_id.clone().into_owned()));
    }
    drop(seen);
    // The builder's list becomes the index, the refused and expired entries taken out of it
    // in place: a second list of every entry was the index's largest part (review C2).
    let mut entries = b.entries;
    entries.retain(|e| !refused.contains(&*e.entity_id));
    agg.expired_entries = entries
        .extract_if(.., |e| {
            e.valid_until
                .is_some_and(|vu| crate::load::is_expired(vu, policy))
        })
        .collect();
    agg.expired = agg
        .expired_entries
        .iter()
        .map(|e| e.entity_id.to_string())
        .collect();
    entries.shrink_to_fit();
    agg.by_entity_id = EntityIds::of(&entries);
    agg.cache = std::iter::repeat_with(OnceLock::new)
        .take(entries.len())
        .collect();
    agg.entries = entries;
    if let (Some(e), Some(cell)) = (single, agg.cache.first()) {
        let _ = cell.set(Box::new(e));
    }
    Ok(agg)
}

/// Indexes into a list of entries, found by the entityID the entry holds (SipHash with a
/// random key, as `HashMap`'s: the entityIDs are the document's).
#[derive(Debug, Default)]
struct EntityIds {
    table: hashbrown::HashTable<u32>,
    hasher: std::hash::RandomState,
}

impl EntityIds {
    /// The index of `entries`, which hold distinct entityIDs.
    fn of(entries: &[Entry<'_>]) -> Self {
        use std::hash::BuildHasher as _;
        let mut ids = EntityIds {
            table: hashbrown::HashTable::with_capacity(entries.len()),
            hasher: std::hash::RandomState::new(),
        };
        let id = |i: u32| entries.get(i as usize).map_or("", |e| &*e.entity_id);
        for i in 0..entries.len() as u32 {
            let hasher = &ids.hasher;
            ids.table
                .insert_unique(hasher.hash_one(id(i)), i, |&j| hasher.hash_one(id(j)));
        }
        ids
    }

    /// The index of the entry of `entries` holding `entity_id`.
    fn get(&self, entries: &[Entry<'_>], entity_id: &str) -> Option<u32> {
        use std::hash::BuildHasher as _;
        self.table
            .find(self.hasher.hash_one(entity_id), |&i| {
                entries
                    .get(i as usize)
                    .is_some_and(|e| *e.entity_id == *entity_id)
            })
            .copied()
    }
}

impl<'a> LazyAggregate<'a> {
    /// Number of indexed (unexpired) entities.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entity is indexed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The verification result (signer, signed range).
    #[must_use]
    pub fn verified(&self) -> &Verified<'a> {
        &self.verified
    }

    /// Entities left out because a signature of their own did not verify; see
    /// [`crate::load::Aggregate::refused_entities`].
    #[must_use]
    pub fn refused_entities(&self) -> &[RefusedEntity] {
        &self.refused
    }

    /// entityIDs of entities left out because their own validUntil had passed.
    #[must_use]
    pub fn expired_entities(&self) -> &[String] {
        &self.expired
    }

    /// entityIDs, in document order.
    pub fn entity_ids(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| &*e.entity_id)
    }

    /// entityIDs of entities with an IdP role.
    pub fn idp_ids(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .filter(|e| e.roles & IDP != 0)
            .map(|e| &*e.entity_id)
    }

    /// entityIDs of entities with an SP role.
    pub fn sp_ids(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .filter(|e| e.roles & SP != 0)
            .map(|e| &*e.entity_id)
    }

    /// Whether an entity with this entityID is indexed (no parsing).
    #[must_use]
    pub fn contains(&self, entity_id: &str) -> bool {
        self.index_of(entity_id).is_some()
    }

    /// The entity with this entityID, parsed on first access from the verified bytes.
    pub fn get(&self, entity_id: &str) -> Result<Option<&EntityDescriptor>, Error> {
        match self.index_of(entity_id) {
            Some(i) => self.at(i).map(Some),
            None => Ok(None),
        }
    }

    /// The entity with this `{sha1}` identifier (40 hex digits, optional `{sha1}` prefix).
    /// The first call hashes every indexed entityID (about 2 ms for 10,000 entities).
    pub fn get_by_sha1(&self, id: &str) -> Result<Option<&EntityDescriptor>, Error> {
        let Some(key) = crate::model::sha1_key(id) else {
            return Ok(None);
        };
        let by_sha1 = self.by_sha1.get_or_init(|| {
            let mut m = HashMap::with_capacity(self.entries.len());
            for (i, e) in self.entries.iter().enumerate() {
                m.insert(openssl::sha::sha1(e.entity_id.as_bytes()), i as u32);
            }
            m
        });
        match by_sha1.get(&key) {
            Some(&i) => self.at(i).map(Some),
            None => Ok(None),
        }
    }

    fn at(&self, i: u32) -> Result<&EntityDescriptor, Error> {
        let cell = self.cache.get(i as usize).ok_or_else(out_of_range)?;
        if let Some(e) = cell.get() {
            return Ok(&**e);
        }
        let _ = cell.set(Box::new(self.build(i)?));
        cell.get().map(|e| &**e).ok_or(Error::Invalid {
            element: "(index)".into(),
            offset: 0,
            message: "cache".into(),
        })
    }

    /// The entity with this entityID as a standalone document cut from the verified bytes, as
    /// [`crate::split`] cuts it (the namespace declarations it inherited on its root, every
    /// `ds:Signature` in it left out, to be signed by the caller): what an MDQ server serves,
    /// made on request without a model. `None` when no such entity is indexed.
    pub fn entity_document(
        &self,
        entity_id: &str,
    ) -> Result<Option<crate::split::EntityDocument>, Error> {
        self.entity_document_until(entity_id, None)
    }

    /// [`LazyAggregate::entity_document`], with the validUntil written onto the cut no later
    /// than `not_after`: for a caller that signs the cut with a key of its own, and so asserts
    /// it for as long as it says (`samlmd split --key` caps it at `--valid-days`, as `select`
    /// does its aggregate). The source's validUntil still applies when it is earlier.
    pub fn entity_document_until(
        &self,
        entity_id: &str,
        not_after: Option<std::time::SystemTime>,
    ) -> Result<Option<crate::split::EntityDocument>, Error> {
        let Some(i) = self.index_of(entity_id) else {
            return Ok(None);
        };
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let entity_id = self.standalone(i, &mut xml, not_after)?.to_owned();
        xml.push('\n');
        Ok(Some(crate::split::EntityDocument { entity_id, xml }))
    }

    /// Builds the model of every entity of the document, the expired ones too, on up to
    /// `threads` threads, keeping none, and returns those whose model is invalid (a bad
    /// `index`, a role without an endpoint's Location, ...) as
    /// [`RefusedEntity::invalid_model`], in document order: the entities [`crate::load::load`]
    /// names as left out of the same document. An error `load` would refuse the whole
    /// document for (a limit, say) is returned as such (review of the twelfth round, F9).
    /// About as long as the eager model's building, which `load_lazy` itself skips.
    pub fn invalid_models(&self, threads: usize) -> Result<Vec<RefusedEntity>, Error> {
        // The root entity (a document of one entity) was modelled at load, and its errors are
        // the document's: it is never left out.
        let all: Vec<&Entry<'_>> = self
            .entries
            .iter()
            .chain(&self.expired_entries)
            .filter(|e| e.scope != NO_SCOPE)
            .collect();
        let n = all.len();
        let threads = threads.clamp(1, n.max(1));
        let check = |i: usize| -> Option<Result<RefusedEntity, Error>> {
            let entry = all.get(i)?;
            match self.build_entry(entry) {
                Ok(_) => None,
                Err(e @ Error::Invalid { .. }) => Some(Ok(RefusedEntity::invalid_model(
                    entry.entity_id.to_string(),
                    entry.range.start,
                    e.to_string(),
                ))),
                Err(e) => Some(Err(e)),
            }
        };
        let found: Vec<Result<RefusedEntity, Error>> = if threads == 1 {
            (0..n).filter_map(check).collect()
        } else {
            std::thread::scope(|s| {
                let workers: Vec<_> = (0..threads)
                    .map(|t| {
                        let check = &check;
                        s.spawn(move || {
                            (t..n)
                                .step_by(threads)
                                .filter_map(check)
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .collect()
            })
        };
        let mut out = found.into_iter().collect::<Result<Vec<_>, Error>>()?;
        out.sort_by_key(|r| r.offset);
        Ok(out)
    }

    /// The entityID of the `i`th indexed entity.
    pub(crate) fn entity_id_at(&self, i: u32) -> Option<&str> {
        self.entries.get(i as usize).map(|e| &*e.entity_id)
    }

    /// The byte offset of the indexed entity `entity_id`'s start tag in the document.
    #[must_use]
    pub fn offset_of(&self, entity_id: &str) -> Option<usize> {
        self.index_of(entity_id).and_then(|i| self.offset_at(i))
    }

    /// The index of the indexed entity `entity_id`.
    fn index_of(&self, entity_id: &str) -> Option<u32> {
        self.by_entity_id.get(&self.entries, entity_id)
    }

    /// The byte offset of the `i`th indexed entity in the document.
    pub(crate) fn offset_at(&self, i: u32) -> Option<usize> {
        self.entries.get(i as usize).map(|e| e.range.start)
    }

    /// The model of the `i`th indexed entity: the cached one, else built and not kept.
    pub(crate) fn model(&self, i: u32) -> Result<Cow<'_, EntityDescriptor>, Error> {
        match self.cache.get(i as usize).and_then(OnceLock::get) {
            Some(e) => Ok(Cow::Borrowed(&**e)),
            None => self.build(i).map(Cow::Owned),
        }
    }

    fn build(&self, i: u32) -> Result<EntityDescriptor, Error> {
        let entry = self.entries.get(i as usize).ok_or_else(out_of_range)?;
        self.build_entry(entry)
    }

    fn build_entry(&self, entry: &Entry<'_>) -> Result<EntityDescriptor, Error> {
        let mut cursor =
            Cursor::verified_fragment(&self.verified, entry.range.clone(), &self.scope(entry))?;
        match metadata(&mut cursor, None)? {
            Metadata::Entity(mut e) => {
                crate::load::drop_expired_roles(&mut e, self.now, self.clock_skew);
                Ok(*e)
            }
            Metadata::Entities(_) => Err(Error::Invalid {
                element: "EntityDescriptor".into(),
                offset: entry.range.start,
                message: "not an entity".into(),
            }),
        }
    }

    /// The `md:Extensions` of the groups around the `i`th indexed entity, innermost first,
    /// each modelled from the verified bytes on first use: the root's is kept for the
    /// aggregate's life, a nested group's for as long as `memo` holds the chain it is in
    /// (see [`GroupMemo`]; [`crate::filter::Filter::matches_in`] reads them).
    pub(crate) fn groups_of(
        &self,
        i: u32,
        memo: &mut GroupMemo,
    ) -> Result<Vec<GroupExtensions<'_>>, Error> {
        let entry = self.entries.get(i as usize).ok_or_else(out_of_range)?;
        let mut out = Vec::new();
        let mut chain = Vec::new();
        let mut s = entry.scope;
        while let Some(node) = self.scopes.get(s as usize) {
            if let Some(range) = &node.extensions {
                let model = || -> Result<Extensions, Error> {
                    let mut cursor = Cursor::verified_fragment(
                        &self.verified,
                        range.clone(),
                        &self.scope_at(s),
                    )?;
                    let el = root(&mut cursor)?;
                    extensions(&mut cursor, &el)
                };
                if s == 0 {
                    out.push(GroupExtensions::Root(&**match self.root_extensions.get() {
                        Some(x) => x,
                        None => {
                            let x = model()?;
                            self.root_extensions.get_or_init(|| Box::new(x))
                        }
                    }));
                } else {
                    // Kept when the previous entity was in this group too (entities of one
                    // group come one after the other).
                    let kept = memo
                        .chain
                        .iter()
                        .find(|(at, _)| *at == s)
                        .map(|(_, x)| Rc::clone(x));
                    let x = match kept {
                        Some(x) => x,
                        None => Rc::new(model()?),
                    };
                    chain.push((s, Rc::clone(&x)));
                    out.push(GroupExtensions::Group(x));
                }
            }
            // Parents come before their groups: the walk ends.
            if node.parent >= s {
                break;
            }
            s = node.parent;
        }
        memo.chain = chain;
        Ok(out)
    }

    /// The namespace scope `entry` inherited: the declarations of the root and of the groups
    /// around it, outermost first, resolved.
    fn scope(&self, entry: &Entry<'_>) -> Vec<NsDecl<'a>> {
        self.scope_at(entry.scope)
    }

    /// The namespace scope inside the group `scope` (an index in `scopes`), resolved.
    fn scope_at(&self, scope: u32) -> Vec<NsDecl<'a>> {
        let mut chain = Vec::new();
        let mut i = scope;
        while let Some(node) = self.scopes.get(i as usize) {
            chain.push(node);
            // Parents come before their groups: the walk ends.
            if node.parent >= i {
                break;
            }
            i = node.parent;
        }
        let all: Vec<NsDecl<'a>> = chain
            .iter()
            .rev()
            .flat_map(|n| n.decls.iter().copied())
            .collect();
        effective_scope(&all)
    }

    /// The `i`th indexed entity as a standalone element cut from the verified bytes (see
    /// [`crate::split`]), appended to `out`; returns its entityID.
    pub(crate) fn standalone(
        &self,
        i: u32,
        out: &mut String,
        not_after: Option<std::time::SystemTime>,
    ) -> Result<&str, Error> {
        let entry = self.entries.get(i as usize).ok_or_else(out_of_range)?;
        // A single-entity document: the entity is the signed root, read without its signature
        // (which the cut leaves out of the bytes too).
        let mut events = if entry.range == self.verified.signed_range() {
            self.verified.events()?
        } else {
            self.verified
                .fragment(entry.range.clone(), &self.scope(entry))?
        };
        let mut cut = None;
        while let Some(ev) = events.next()? {
            match cut.as_mut() {
                None => {
                    if let Event::Start(s) = &ev {
                        let vu = crate::groups::earliest(
                            crate::groups::earliest(entry.valid_until, self.root_valid_until),
                            not_after,
                        );
                        cut = Some(Cut::start(s, &self.verified, vu)?);
                    }
                }
                Some(c) => {
                    if c.event(&ev)
                        && let Some(c) = cut.take()
                    {
                        c.finish(&self.verified, out)?;
                        return Ok(&entry.entity_id);
                    }
                }
            }
        }
        Err(Error::Invalid {
            element: "EntityDescriptor".into(),
            offset: entry.range.start,
            message: "the entity does not end in its range".into(),
        })
    }
}

fn out_of_range() -> Error {
    Error::Invalid {
        element: "(index)".into(),
        offset: 0,
        message: "index out of range".into(),
    }
}
