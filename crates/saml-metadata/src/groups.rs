//! Which `md:EntityDescriptor` elements of a streamed document are its entities, and which
//! validUntil applies to each (SAML Metadata §2.3.1).
//!
//! An `md:EntitiesDescriptor` contains `md:EntityDescriptor` and `md:EntitiesDescriptor`
//! elements; an entity of the document is its root `md:EntityDescriptor`, or a child of an
//! `md:EntitiesDescriptor` that is the root or itself such a child. One written anywhere else
//! (inside an `md:Extensions`, say, where any element may go) is extension content of the
//! element around it, as the model ([`crate::parse`]) reads it: an entity owner who writes
//! another entityID there does not register it. The `validUntil` of a group applies to
//! everything it contains, so an entity is valid until the earliest of its own and those of
//! the groups around it.

use std::time::SystemTime;

use saml_core::xml::{EndElement, StartElement};

use crate::ns::MD_NS;
use crate::time::parse_datetime;

/// Follows the chain of `md:EntitiesDescriptor` elements from the root down, one event at a
/// time (see the module docs). Memory: one entry per nesting level of the chain.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    /// For each group of the chain, outermost first (the one at depth `i + 1` at index `i`):
    /// the earliest validUntil of it and the groups around it.
    chain: Vec<Option<SystemTime>>,
}

/// What a start tag is, for [`Groups::start`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Member {
    /// An entity of the document, with the earliest validUntil of the groups around it.
    Entity(Option<SystemTime>),
    /// A group of the chain (an `md:EntitiesDescriptor` below the root whose entities are the
    /// document's).
    Group,
    /// An `md:Extensions` at a group child's depth: the root `md:EntitiesDescriptor`'s or a
    /// group's of the chain, whose declarations apply to the group's entities
    /// ([`crate::filter`]); for events that begin inside a root `md:EntityDescriptor`
    /// ([`Groups::inside_root_group`] over a single entity), the entity's own.
    GroupExtensions,
    /// Anything else.
    Other,
}

/// A group's `validUntil` that is not an `xs:dateTime` (the offset of its start tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadValidUntil(pub(crate) usize);

impl Groups {
    /// For events from the root's start tag on.
    pub(crate) fn new() -> Self {
        Groups::default()
    }

    /// For the events inside a root `md:EntitiesDescriptor` whose start tag is not among them
    /// (what `saml_core::dsig::verify_observed` reports: the content after its `ds:Signature`);
    /// its own validUntil is checked by the caller.
    pub(crate) fn inside_root_group() -> Self {
        Groups { chain: vec![None] }
    }

    /// Feeds a start tag (in document order, with [`Groups::end`] for every end tag).
    pub(crate) fn start(&mut self, s: &StartElement<'_, '_>) -> Result<Member, BadValidUntil> {
        if s.depth != self.chain.len() + 1 {
            return Ok(Member::Other);
        }
        let around = self.chain.last().copied().flatten();
        if s.is(MD_NS, "EntityDescriptor") {
            Ok(Member::Entity(around))
        } else if s.is(MD_NS, "Extensions") {
            Ok(Member::GroupExtensions)
        } else if s.is(MD_NS, "EntitiesDescriptor") {
            let own = match s.attribute("validUntil") {
                Some(a) => Some(parse_datetime(&a.value()).ok_or(BadValidUntil(s.span.start))?),
                None => None,
            };
            self.chain.push(earliest(around, own));
            Ok(if s.depth == 1 {
                Member::Other
            } else {
                Member::Group
            })
        } else {
            Ok(Member::Other)
        }
    }

    /// Feeds an end tag.
    pub(crate) fn end(&mut self, e: &EndElement<'_>) {
        if e.depth == self.chain.len() {
            self.chain.pop();
        }
    }
}

/// The earlier of two validUntil values, either absent.
pub(crate) fn earliest(a: Option<SystemTime>, b: Option<SystemTime>) -> Option<SystemTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
