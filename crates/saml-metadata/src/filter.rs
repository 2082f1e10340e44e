//! Composable entity filters (in the spirit of Shibboleth's EntityRoleFilter, EntityAttributes
//! and predicate filters, and pyFF's select expressions): by role, by entity attribute or
//! entity category, by registration authority, by entityID allow/deny list, by any predicate,
//! combined with `and`, `or` and `not`.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

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
    /// Entities whose mdattr EntityAttributes have attribute `name` with value `value`.
    EntityAttribute {
        /// Attribute name.
        name: String,
        /// Required value.
        value: String,
    },
    /// Entities registered by this authority (mdrpi:RegistrationInfo).
    RegistrationAuthority(String),
    /// Entities whose entityID is in the set.
    Allow(HashSet<String>),
    /// Entities whose entityID is not in the set.
    Deny(HashSet<String>),
    /// Any predicate.
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

    /// Whether `e` passes.
    #[must_use]
    pub fn matches(&self, e: &EntityDescriptor) -> bool {
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
            Filter::EntityAttribute { name, value } => {
                e.extensions.entity_attribute(name).any(|v| v == value)
            }
            Filter::RegistrationAuthority(a) => e
                .extensions
                .registration
                .as_ref()
                .is_some_and(|r| &r.authority == a),
            Filter::Allow(ids) => ids.contains(&e.entity_id),
            Filter::Deny(ids) => !ids.contains(&e.entity_id),
            Filter::Predicate(f) => f(e),
            Filter::All(v) => v.iter().all(|f| f.matches(e)),
            Filter::Any(v) => v.iter().any(|f| f.matches(e)),
            Filter::Not(f) => !f.matches(e),
        }
    }
}

impl crate::load::Aggregate {
    /// The indexed entities `filter` lets through, in document order.
    pub fn select<'s>(
        &'s self,
        filter: &'s Filter,
    ) -> impl Iterator<Item = &'s EntityDescriptor> + 's {
        self.entities().filter(move |e| filter.matches(e))
    }
}
