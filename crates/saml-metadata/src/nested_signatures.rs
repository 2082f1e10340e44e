//! Signatures on elements inside a signed document (SAML Metadata §3: `EntitiesDescriptor`,
//! `EntityDescriptor`, role and affiliation descriptors may each be signed, and "any signature
//! on a nested element MUST be valid" for a relying party that checks it).
//!
//! The document's root signature is verified first (it covers every byte below, the nested
//! signatures included). Then every element below the root that carries its own `ds:Signature`
//! child is verified with the same trusted keys and the same rules (a nested signature must
//! reference its element as `#ID`). This is what Shibboleth SP's `Signature` metadata filter
//! does: an entity whose own signature, or the signature of one of its roles or of a group
//! containing it, fails is dropped with the reason, the rest of the aggregate loads
//! ([`RefusedEntity`]). A single-entity document with a failing nested signature is refused. A
//! failing signature that no entity falls under (say, on the root's `md:Extensions`) refuses
//! the document.
//!
//! Bounds: while the root verification streams, before the document is known to be genuine,
//! only offsets are recorded (one pair per open element, one range per signed element, at most
//! one signed element per [`MIN_SIGNATURE_BYTES`] of the document: more refuses the document);
//! namespace scopes are read, and the nested signatures verified, in one more reading after the
//! root signature is good; the bytes they digest may add up to at most [`MAX_NESTED_WORK`]
//! times the signed document (an entity, its roles and one enclosing group each signed is 3x),
//! beyond which the document is refused.

use std::ops::Range;

use saml_core::LimitExceeded;
use saml_core::dsig::{DSIG_NS, Placement, Verified};
use saml_core::xml::Event;

use crate::error::Error;
use crate::groups::{Groups, Member};
use crate::load::Policy;
use crate::ns::MD_NS;

/// How many times the signed document's size the nested signatures may digest in all.
pub const MAX_NESTED_WORK: usize = 4;

/// An entity left out because a signature on it, on one of its roles or on a group containing
/// it did not verify (SAML Metadata §3), or, on [`load`](crate::load::load) and
/// [`load_owned`](crate::load::load_owned), because its model is invalid (a missing or
/// malformed attribute, a bad `index`, an unexpected element).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefusedEntity {
    /// Its entityID.
    pub entity_id: String,
    /// Byte offset of the element whose signature failed, or of the entity whose model is
    /// invalid.
    pub offset: usize,
    /// Why the signature failed, or what is invalid.
    pub reason: String,
    /// Whether the entity was left out for an invalid model (not modelled at all), rather
    /// than for a signature.
    pub invalid_model: bool,
}

impl RefusedEntity {
    /// An entity left out for an invalid model (or, by a caller, because it could not be
    /// used: `samlmd split` names so an entity it cannot sign).
    ///
    /// The reason is kept to [`MAX_REFUSAL_REASON`] bytes (cut at a character boundary, `…`
    /// added): it echoes attacker values (a `use` attribute of 64 KiB, escaped to several
    /// times that), for the life of a lazy aggregate (review G3). The entityID is kept whole:
    /// callers name and find the entity by it (review H1: cut, it made `samlmd split` fail and
    /// two long entityIDs read as one); it is charged where it is kept.
    #[must_use]
    pub fn invalid_model(entity_id: String, offset: usize, reason: String) -> Self {
        RefusedEntity {
            entity_id,
            offset,
            reason: if reason.len() > MAX_REFUSAL_REASON {
                saml_core::xml::cursor::shortened(&reason, MAX_REFUSAL_REASON).into_owned()
            } else {
                reason
            },
            invalid_model: true,
        }
    }
}

/// Most bytes of a [`RefusedEntity`]'s reason kept (then `…`).
pub const MAX_REFUSAL_REASON: usize = 512;

/// Verifies the root signature of `doc` under `policy` (calling `observer` with the events
/// after it, as `saml_core::dsig::verify_observed` does), then every nested signature; returns
/// the verified handle and the entities refused for a failing nested signature. What
/// `load`, `load_lazy` and `split` share.
pub(crate) fn verify<'a>(
    doc: &'a [u8],
    policy: &Policy,
    observer: &mut dyn FnMut(&Event<'_, 'a>),
) -> Result<(Verified<'a>, Vec<RefusedEntity>), Error> {
    // A metadata signature is the first child of its element (SAML Metadata §3, the schema's
    // order): nested signatures are found after the root's, and cuts leave them out in order.
    if !matches!(policy.verify.placement, Placement::FirstChild) {
        return Err(saml_core::Error::Usage(
            "metadata is verified with the signature as first child (VerifyOptions::metadata)"
                .into(),
        )
        .into());
    }
    let mut nested = NestedSignatures::new(doc.len());
    let verified =
        saml_core::dsig::verify_observed(doc, &policy.keys, &policy.verify, &mut |ev| {
            observer(ev);
            nested.observe(ev);
        })?;
    let refused = nested.check(&verified, policy)?;
    Ok((verified, refused))
}

/// Records, while the root signature streams (before it is known to be good), where the
/// elements with a `ds:Signature` child stand: two offsets each, at most one per
/// [`MIN_SIGNATURE_BYTES`] of the document. Their namespace scopes are read only after the
/// root verified, so what an unsigned document can make this hold is small and bounded.
#[derive(Debug)]
struct NestedSignatures {
    /// Open elements: (depth, start offset, whether a signature on it is a metadata one).
    open: Vec<(usize, usize, bool)>,
    /// Signed elements still open: (depth, start offset).
    signed_open: Vec<(usize, usize)>,
    /// Signed elements' byte ranges.
    found: Vec<Range<usize>>,
    /// Most signed elements recorded for this document.
    max: usize,
    /// More signed elements than `max`: refused once the root is verified.
    overflow: bool,
}

/// Whether a `ds:Signature` child of `s` is a metadata signature (SAML Metadata §3: on an
/// `EntitiesDescriptor`, an `EntityDescriptor`, a role or an `AffiliationDescriptor`, the
/// elements Shibboleth's Signature filter checks). A signature on anything else, such as a
/// `saml:Assertion` an attribute authority signed inside `mdattr:EntityAttributes` (which MDAttr
/// allows), is its issuer's, for whoever interprets that content: verified with the
/// federation's keys it refused the entity, or the whole aggregate at the root (review A6).
fn is_signable(s: &saml_core::xml::StartElement<'_, '_>) -> bool {
    s.namespace == MD_NS
        && matches!(
            s.name.local,
            "EntitiesDescriptor"
                | "EntityDescriptor"
                | "RoleDescriptor"
                | "IDPSSODescriptor"
                | "SPSSODescriptor"
                | "AuthnAuthorityDescriptor"
                | "AttributeAuthorityDescriptor"
                | "PDPDescriptor"
                | "AffiliationDescriptor"
        )
}

/// The smallest genuine `ds:Signature` (SignedInfo with its algorithms, a Reference with two
/// transforms and a digest, a SignatureValue) is well over this many bytes: a document has at
/// most one nested signature per this many bytes.
pub const MIN_SIGNATURE_BYTES: usize = 512;

impl NestedSignatures {
    fn new(doc_len: usize) -> Self {
        NestedSignatures {
            open: Vec::new(),
            signed_open: Vec::new(),
            found: Vec::new(),
            max: doc_len / MIN_SIGNATURE_BYTES,
            overflow: false,
        }
    }

    /// Feeds one event of the signed element's content (as `verify_observed` reports them).
    fn observe(&mut self, ev: &Event<'_, '_>) {
        match ev {
            Event::Start(s) => {
                if s.is(DSIG_NS, "Signature")
                    && let Some(&(depth, start, true)) = self.open.last()
                    && depth + 1 == s.depth
                    && self.signed_open.last().is_none_or(|o| o.1 != start)
                {
                    if self.found.len() + self.signed_open.len() < self.max {
                        self.signed_open.push((depth, start));
                    } else {
                        self.overflow = true;
                    }
                }
                if !s.empty {
                    self.open.push((s.depth, s.span.start, is_signable(s)));
                }
            }
            Event::End(e) => {
                if let Some((depth, start, _)) = self.open.pop_if(|o| o.0 == e.depth)
                    && self
                        .signed_open
                        .pop_if(|o| o.0 == depth && o.1 == start)
                        .is_some()
                {
                    self.found.push(start..e.span.end);
                }
            }
            _ => {}
        }
    }

    /// Verifies every recorded signature against the root's verified content and returns the
    /// entities that fall under a failing one. Fails when the work bound is exceeded, when the
    /// document is a single entity with a failing nested signature, or when a failing
    /// signature covers no entity.
    fn check(self, verified: &Verified<'_>, policy: &Policy) -> Result<Vec<RefusedEntity>, Error> {
        let limit = |offset| -> Error {
            saml_core::Error::Limit {
                offset,
                limit: LimitExceeded::NestedSignatureWork(MAX_NESTED_WORK),
            }
            .into()
        };
        if self.overflow {
            return Err(limit(verified.signed_range().start));
        }
        let mut found = self.found;
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let budget = verified
            .signed_range()
            .len()
            .saturating_mul(MAX_NESTED_WORK);
        let work: usize = found.iter().map(Range::len).sum();
        if work > budget {
            return Err(limit(found[0].start));
        }
        // One reading of the verified content gives each signed element its parent's scope,
        // and it is verified there.
        found.sort_by_key(|r| r.start);
        let mut failed: Vec<(Range<usize>, String)> = Vec::new();
        let mut next = found.iter().peekable();
        let mut events = verified.events()?;
        while let Some(range) = next.peek() {
            let Some(ev) = events.next()? else { break };
            if let Event::Start(s) = ev
                && s.span.start == range.start
            {
                let inherited = &s.scope[..s.scope.len() - s.namespace_decls.len()];
                if let Err(e) =
                    verified.verify_inner((*range).clone(), inherited, &policy.keys, &policy.verify)
                {
                    failed.push(((*range).clone(), e.to_string()));
                }
                next.next();
            }
        }
        if next.peek().is_some() {
            return Err(saml_core::Error::Usage(
                "a recorded nested signature was not found again".into(),
            )
            .into());
        }
        if failed.is_empty() {
            return Ok(Vec::new());
        }
        failed.sort_by_key(|f| f.0.start);
        refused_entities(verified, &failed)
    }
}

/// The entities overlapping a failed signed element (one reading of the verified content;
/// it only runs when a nested signature failed).
fn refused_entities(
    verified: &Verified<'_>,
    failed: &[(Range<usize>, String)],
) -> Result<Vec<RefusedEntity>, Error> {
    if let Some((r, why)) = failed.first()
        && let Some(root_entity) = root_entity(verified)?
    {
        return Err(Error::Invalid {
            element: "EntityDescriptor".into(),
            offset: r.start,
            message: format!(
                "a signature inside the entity {root_entity:?} does not verify: {why}"
            ),
        });
    }
    let mut entities: Vec<(String, Range<usize>)> = Vec::new();
    let mut events = verified.events()?;
    let mut open: Option<(String, usize, usize)> = None; // (entityID, start, depth)
    // Only the document's entities count (crate::groups); their validUntil is not read here.
    let mut groups = Groups::new();
    while let Some(ev) = events.next()? {
        let entity = match &ev {
            Event::Start(s) => matches!(groups.start(s), Ok(Member::Entity(_))),
            Event::End(e) => {
                groups.end(e);
                false
            }
            _ => false,
        };
        match ev {
            Event::Start(s) if open.is_none() && entity => {
                let id = s
                    .attribute("entityID")
                    .map(|a| a.value().into_owned())
                    .unwrap_or_default();
                open = Some((id, s.span.start, s.depth));
            }
            Event::End(e) => {
                if let Some((id, start, _)) = open.take_if(|o| o.2 == e.depth) {
                    entities.push((id, start..e.span.end.max(start)));
                }
            }
            _ => {}
        }
    }
    // Each failed signature (in document order) marks the entities it overlaps, found by
    // binary search: entities are disjoint and in document order, so they form one run. The
    // work is the overlaps, not the entities times the failed signatures (thousands of each
    // made a scan of millions). An entity is reported with the first that covers it.
    let mut covered = vec![false; failed.len()];
    let mut first: Vec<Option<usize>> = vec![None; entities.len()];
    for (i, (r, _)) in failed.iter().enumerate() {
        let lo = entities.partition_point(|(_, e)| e.end <= r.start);
        for (k, (_, e)) in entities.iter().enumerate().skip(lo) {
            if e.start >= r.end {
                break;
            }
            covered[i] = true;
            first[k].get_or_insert(i);
        }
    }
    let out: Vec<RefusedEntity> = entities
        .into_iter()
        .zip(first)
        .filter_map(|((entity_id, _), f)| {
            let (r, why) = failed.get(f?)?;
            Some(RefusedEntity {
                entity_id,
                offset: r.start,
                reason: why.clone(),
                invalid_model: false,
            })
        })
        .collect();
    if let Some(i) = covered.iter().position(|c| !c) {
        let (r, why) = &failed[i];
        return Err(Error::Invalid {
            element: "Signature".into(),
            offset: r.start,
            message: format!("a nested signature covering no entity does not verify: {why}"),
        });
    }
    Ok(out)
}

/// The entityID of the document's root when the root is an EntityDescriptor.
fn root_entity(verified: &Verified<'_>) -> Result<Option<String>, Error> {
    let mut events = verified.events()?;
    while let Some(ev) = events.next()? {
        if let Event::Start(s) = ev {
            return Ok(s.is(MD_NS, "EntityDescriptor").then(|| {
                s.attribute("entityID")
                    .map(|a| a.value().into_owned())
                    .unwrap_or_default()
            }));
        }
    }
    Ok(None)
}
