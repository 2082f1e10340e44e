//! Composable entity filters (in the spirit of Shibboleth's EntityRoleFilter, EntityAttributes
//! and predicate filters, and pyFF's select expressions): by role, by entity attribute or
//! entity category, by registration authority, by entityID allow/deny list, by any predicate,
//! combined with `and`, `or` and `not`.
//!
//! What a group says applies to its entities: an entity attribute in an
//! `md:EntitiesDescriptor`'s `mdattr:EntityAttributes` is one of every entity the group holds,
//! nested groups included, and a group's `mdrpi:RegistrationInfo` names the registrar of every
//! entity in it that does not name its own (the nearest group's counts). OpenSAML's
//! `EntityAttributesPredicate` and `RegistrationAuthorityPredicate`, which Shibboleth's filters
//! and attribute release use, walk up to the groups the same way; an entity judged without
//! them passed `not(category X)` while its group declared X. [`crate::load::Aggregate::select`]
//! and [`crate::selection::write_selection`] give each entity its groups; a caller holding one
//! entity of an aggregate uses [`Filter::matches_in`] with
//! [`Aggregate::groups_of`](crate::load::Aggregate::groups_of).

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use crate::ext::Extensions;
use crate::model::{EntityDescriptor, Role};

/// `http://macedir.org/entity-category`
pub const ENTITY_CATEGORY: &str = "http://macedir.org/entity-category";
/// `http://macedir.org/entity-category-support`
pub const ENTITY_CATEGORY_SUPPORT: &str = "http://macedir.org/entity-category-support";
/// `urn:oasis:names:tc:SAML:attribute:assurance-certification` (e.g. Sirtfi)
pub const ASSURANCE_CERTIFICATION: &str =
    "urn:oasis:names:tc:SAML:attribute:assurance-certification";

/// A role to select on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleKind {
    /// IDPSSODescriptor.
    Idp,
    /// SPSSODescriptor.
    Sp,
    /// AttributeAuthorityDescriptor.
    AttributeAuthority,
    /// AuthnAuthorityDescriptor.
    AuthnAuthority,
    /// PDPDescriptor.
    Pdp,
}

/// A filter over entities. Build with the constructors and combine with [`Filter::and`],
/// [`Filter::or`] and [`Filter::not`].
#[derive(Clone)]
#[non_exhaustive]
pub enum Filter {
    /// Entities with this role.
    Role(RoleKind),
    /// Entities whose mdattr EntityAttributes, or those of a group around them, have
    /// attribute `name` with value `value`.
    EntityAttribute {
        /// Attribute name.
        name: String,
        /// Required value.
        value: String,
    },
    /// Entities registered by this authority (their mdrpi:RegistrationInfo, else the nearest
    /// group's).
    RegistrationAuthority(String),
    /// Entities whose entityID is in the set.
    Allow(HashSet<String>),
    /// Entities whose entityID is not in the set.
    Deny(HashSet<String>),
    /// Any predicate (it sees the entity only, not its groups).
    Predicate(Arc<dyn Fn(&EntityDescriptor) -> bool + Send + Sync>),
    /// All of these.
    All(Vec<Filter>),
    /// Any of these.
    Any(Vec<Filter>),
    /// Not this.
    Not(Box<Filter>),
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Role(r) => write!(f, "Role({r:?})"),
            Filter::EntityAttribute { name, value } => {
                write!(f, "EntityAttribute({name} = {value})")
            }
            Filter::RegistrationAuthority(a) => write!(f, "RegistrationAuthority({a})"),
            Filter::Allow(s) => write!(f, "Allow({} ids)", s.len()),
            Filter::Deny(s) => write!(f, "Deny({} ids)", s.len()),
            Filter::Predicate(_) => f.write_str("Predicate(..)"),
            Filter::All(v) => f.debug_tuple("All").field(v).finish(),
            Filter::Any(v) => f.debug_tuple("Any").field(v).finish(),
            Filter::Not(x) => f.debug_tuple("Not").field(x).finish(),
        }
    }
}

impl Filter {
    /// Entities with `role`.
    #[must_use]
    pub fn role(role: RoleKind) -> Self {
        Filter::Role(role)
    }

    /// Entities carrying entity category `uri` (`http://macedir.org/entity-category`).
    #[must_use]
    pub fn category(uri: &str) -> Self {
        Filter::EntityAttribute {
            name: ENTITY_CATEGORY.into(),
            value: uri.into(),
        }
    }

    /// Entities whose entity attribute `name` has `value`.
    #[must_use]
    pub fn entity_attribute(name: &str, value: &str) -> Self {
        Filter::EntityAttribute {
            name: name.into(),
            value: value.into(),
        }
    }

    /// Entities registered by `authority`.
    #[must_use]
    pub fn registration_authority(authority: &str) -> Self {
        Filter::RegistrationAuthority(authority.into())
    }

    /// Only these entityIDs.
    pub fn allow<I: IntoIterator<Item = S>, S: Into<String>>(ids: I) -> Self {
        Filter::Allow(ids.into_iter().map(Into::into).collect())
    }

    /// All but these entityIDs.
    pub fn deny<I: IntoIterator<Item = S>, S: Into<String>>(ids: I) -> Self {
        Filter::Deny(ids.into_iter().map(Into::into).collect())
    }

    /// Entities for which `f` holds.
    pub fn predicate(f: impl Fn(&EntityDescriptor) -> bool + Send + Sync + 'static) -> Self {
        Filter::Predicate(Arc::new(f))
    }

    /// Both filters.
    #[must_use]
    pub fn and(self, other: Filter) -> Self {
        match self {
            Filter::All(mut v) => {
                v.push(other);
                Filter::All(v)
            }
            s => Filter::All(vec![s, other]),
        }
    }

    /// Either filter.
    #[must_use]
    pub fn or(self, other: Filter) -> Self {
        match self {
            Filter::Any(mut v) => {
                v.push(other);
                Filter::Any(v)
            }
            s => Filter::Any(vec![s, other]),
        }
    }

    /// The opposite.
    #[allow(clippy::should_implement_trait)]
    #[must_use]
    pub fn not(self) -> Self {
        Filter::Not(Box::new(self))
    }

    /// Whether the filter reads what an entity's groups declare (an entity attribute or a
    /// registrar, anywhere in it): callers skip modelling the groups' Extensions otherwise.
    #[must_use]
    pub fn uses_groups(&self) -> bool {
        match self {
            Filter::EntityAttribute { .. } | Filter::RegistrationAuthority(_) => true,
            Filter::All(v) | Filter::Any(v) => v.iter().any(Filter::uses_groups),
            Filter::Not(f) => f.uses_groups(),
            _ => false,
        }
    }

    /// Whether `e`, an entity on its own (no group around it), passes. For an entity of an
    /// aggregate use [`Filter::matches_in`]: what its groups declare counts.
    #[must_use]
    pub fn matches(&self, e: &EntityDescriptor) -> bool {
        self.matches_in(e, &[])
    }

    /// Whether `e` passes inside the groups whose `md:Extensions` are `groups`, innermost
    /// first ([`Aggregate::groups_of`](crate::load::Aggregate::groups_of) gives them): an
    /// entity attribute of any of them is one of `e`'s, and the nearest group's registrar is
    /// `e`'s when `e` names none (see the module docs).
    #[must_use]
    pub fn matches_in(&self, e: &EntityDescriptor, groups: &[&Extensions]) -> bool {
        match self {
            Filter::Role(kind) => e.roles.iter().any(|r| {
                matches!(
                    (kind, r),
                    (RoleKind::Idp, Role::Idp(_))
                        | (RoleKind::Sp, Role::Sp(_))
                        | (RoleKind::AttributeAuthority, Role::AttributeAuthority(_))
                        | (RoleKind::AuthnAuthority, Role::AuthnAuthority(_))
                        | (RoleKind::Pdp, Role::Pdp(_))
                )
            }),
            Filter::EntityAttribute { name, value } => std::iter::once(&e.extensions)
                .chain(groups.iter().copied())
                .any(|x| x.entity_attribute(name).any(|v| v == value)),
            Filter::RegistrationAuthority(a) => std::iter::once(&e.extensions)
                .chain(groups.iter().copied())
                .find_map(|x| x.registration.as_ref())
                .is_some_and(|r| &r.authority == a),
            Filter::Allow(ids) => ids.contains(&e.entity_id),
            Filter::Deny(ids) => !ids.contains(&e.entity_id),
            Filter::Predicate(f) => f(e),
            Filter::All(v) => v.iter().all(|f| f.matches_in(e, groups)),
            Filter::Any(v) => v.iter().any(|f| f.matches_in(e, groups)),
            Filter::Not(f) => !f.matches_in(e, groups),
        }
    }
}

impl crate::load::Aggregate {
    /// The indexed entities `filter` lets through (with what their groups declare), in
    /// document order.
    pub fn select<'s>(
        &'s self,
        filter: &'s Filter,
    ) -> impl Iterator<Item = &'s EntityDescriptor> + 's {
        self.entities_with_groups()
            .filter(move |(e, groups)| filter.matches_in(e, groups))
            .map(|(e, _)| e)
    }
}
