//! Builders for writing metadata by hand: an entity with its roles, endpoints, keys, UI
//! information, registration, entity categories and contacts, and aggregates combined from
//! entities ([`EntitiesDescriptor::combine`]).
//!
//! Builder methods never fail; a bad value (a location that is not an absolute URI, a missing
//! role) is reported by `build()`, naming the element, so that a chain reads top to bottom.
//!
//! ```
//! use saml_metadata::builder::RoleBuilder as _;
//! use saml_metadata::model::{Binding, ContactType, EntityDescriptor, SpSso};
//!
//! let sp = EntityDescriptor::builder("https://sp.example.org/shibboleth")
//!     .entity_category("http://refeds.org/category/research-and-scholarship")
//!     .sp(SpSso::builder()
//!         .acs(Binding::HttpPost, "https://sp.example.org/Shibboleth.sso/SAML2/POST")
//!         .display_name("en", "Example SP")
//!         .requested_attribute("en", "Example SP", "urn:oid:0.9.2342.19200300.100.1.3", Some("mail"), true))
//!     .contact(ContactType::Technical, "mailto:ops@example.org")
//!     .build()?;
//! let xml = sp.to_xml()?;
//! assert!(xml.contains("<md:AssertionConsumerService"));
//! # Ok::<(), saml_metadata::Error>(())
//! ```

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use crate::error::Error;
use crate::ext::{DiscoHints, Logo, RegistrationInfo, Scope, UiInfo};
use crate::filter::ENTITY_CATEGORY;
use crate::model::*;
use crate::time::format_datetime_exact;

/// `urn:oasis:names:tc:SAML:2.0:protocol`, the protocol every SAML 2.0 role supports.
pub const SAML2_PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";

/// `http://refeds.org/metadata/contactType/security` (REFEDS security contact).
pub const REFEDS_SECURITY: &str = "http://refeds.org/metadata/contactType/security";

fn unwritable(element: &str, message: impl Into<String>) -> Error {
    Error::Unwritable {
        element: element.to_owned(),
        message: message.into(),
    }
}

fn uri(element: &str, s: &str) -> Result<Uri, Error> {
    Uri::parse(s).ok_or_else(|| unwritable(element, format!("{s:?} is not an absolute URI")))
}

fn localized(lang: &str, value: &str) -> Localized<String> {
    Localized {
        lang: lang.to_owned(),
        value: value.to_owned(),
    }
}

/// An endpoint whose location is checked when the role is built.
#[derive(Debug, Clone)]
struct PendingEndpoint {
    element: &'static str,
    binding: Binding,
    location: String,
}

impl PendingEndpoint {
    fn build(&self) -> Result<Endpoint, Error> {
        Ok(Endpoint {
            binding: self.binding.clone(),
            location: uri(self.element, &self.location)?,
            response_location: None,
        })
    }
}

/// What the IdP and SP builders share: the role's common parts, UI information, and the
/// endpoints still to check.
#[derive(Debug, Clone, Default)]
pub struct RoleParts {
    common: RoleCommon,
    ui: UiInfo,
    slo: Vec<PendingEndpoint>,
}

impl RoleParts {
    #[must_use]
    fn new() -> Self {
        RoleParts {
            common: RoleCommon {
                protocols: vec![SAML2_PROTOCOL.to_owned()],
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn finish(mut self) -> Result<RoleCommon, Error> {
        for e in &self.slo {
            self.common.single_logout.push(e.build()?);
        }
        if self.ui != UiInfo::default() {
            self.common.extensions.ui_info = Some(Box::new(self.ui));
        }
        self.common.extensions.present = !self.common.extensions.is_empty();
        Ok(self.common)
    }
}

/// Methods every role builder has (keys, mdui UIInfo, logout, NameID formats).
pub trait RoleBuilder: Sized {
    /// The shared parts.
    fn parts(&mut self) -> &mut RoleParts;

    /// A `KeyDescriptor`.
    #[must_use]
    fn key(mut self, k: KeyDescriptor) -> Self {
        self.parts().common.keys.push(k);
        self
    }

    /// A signing key as an X.509 certificate (DER).
    #[must_use]
    fn signing_certificate(self, der: Vec<u8>) -> Self {
        self.key(KeyDescriptor {
            key_use: KeyUse::Signing,
            certificates: vec![der],
            key_names: Vec::new(),
            other_key_info: Vec::new(),
            encryption_methods: Vec::new(),
        })
    }

    /// An encryption key as an X.509 certificate (DER).
    #[must_use]
    fn encryption_certificate(self, der: Vec<u8>) -> Self {
        self.key(KeyDescriptor {
            key_use: KeyUse::Encryption,
            certificates: vec![der],
            key_names: Vec::new(),
            other_key_info: Vec::new(),
            encryption_methods: Vec::new(),
        })
    }

    /// `mdui:DisplayName`.
    #[must_use]
    fn display_name(mut self, lang: &str, name: &str) -> Self {
        self.parts().ui.display_names.push(localized(lang, name));
        self
    }

    /// `mdui:Description`.
    #[must_use]
    fn description(mut self, lang: &str, text: &str) -> Self {
        self.parts().ui.descriptions.push(localized(lang, text));
        self
    }

    /// `mdui:InformationURL`.
    #[must_use]
    fn information_url(mut self, lang: &str, url: &str) -> Self {
        self.parts().ui.information_urls.push(localized(lang, url));
        self
    }

    /// `mdui:PrivacyStatementURL`.
    #[must_use]
    fn privacy_statement_url(mut self, lang: &str, url: &str) -> Self {
        self.parts().ui.privacy_urls.push(localized(lang, url));
        self
    }

    /// `mdui:Logo` (no language).
    #[must_use]
    fn logo(mut self, url: &str, height: u32, width: u32) -> Self {
        self.parts().ui.logos.push(Logo {
            url: url.to_owned(),
            height,
            width,
            lang: None,
        });
        self
    }

    /// A `SingleLogoutService`.
    #[must_use]
    fn slo(mut self, binding: Binding, location: &str) -> Self {
        self.parts().slo.push(PendingEndpoint {
            element: "SingleLogoutService",
            binding,
            location: location.to_owned(),
        });
        self
    }

    /// A `NameIDFormat`.
    #[must_use]
    fn name_id_format(mut self, format: &str) -> Self {
        self.parts().common.name_id_formats.push(format.to_owned());
        self
    }

    /// The `protocolSupportEnumeration` (default: SAML 2.0 only).
    #[must_use]
    fn protocols(mut self, uris: &[&str]) -> Self {
        self.parts().common.protocols = uris.iter().map(|s| (*s).to_owned()).collect();
        self
    }
}

/// Builds an [`IdpSso`]; see [`IdpSso::builder`].
#[derive(Debug, Clone)]
pub struct IdpBuilder {
    parts: RoleParts,
    sso: Vec<PendingEndpoint>,
    scopes: Vec<Scope>,
    hints: DiscoHints,
    want_signed: Option<bool>,
}

impl IdpSso {
    /// A builder for an IdP role supporting SAML 2.0.
    #[must_use]
    pub fn builder() -> IdpBuilder {
        IdpBuilder {
            parts: RoleParts::new(),
            sso: Vec::new(),
            scopes: Vec::new(),
            hints: DiscoHints::default(),
            want_signed: None,
        }
    }
}

impl RoleBuilder for IdpBuilder {
    fn parts(&mut self) -> &mut RoleParts {
        &mut self.parts
    }
}

impl IdpBuilder {
    /// A `SingleSignOnService`.
    #[must_use]
    pub fn sso(mut self, binding: Binding, location: &str) -> Self {
        self.sso.push(PendingEndpoint {
            element: "SingleSignOnService",
            binding,
            location: location.to_owned(),
        });
        self
    }

    /// A `shibmd:Scope` (a domain, or a regular expression when `regexp`).
    #[must_use]
    pub fn scope(mut self, value: &str, regexp: bool) -> Self {
        self.scopes.push(Scope {
            value: value.to_owned(),
            regexp,
        });
        self
    }

    /// An `mdui:DomainHint`.
    #[must_use]
    pub fn domain_hint(mut self, domain: &str) -> Self {
        self.hints.domain_hints.push(domain.to_owned());
        self
    }

    /// An `mdui:IPHint` (CIDR block).
    #[must_use]
    pub fn ip_hint(mut self, cidr: &str) -> Self {
        self.hints.ip_hints.push(cidr.to_owned());
        self
    }

    /// `WantAuthnRequestsSigned`.
    #[must_use]
    pub fn want_authn_requests_signed(mut self, yes: bool) -> Self {
        self.want_signed = Some(yes);
        self
    }

    /// The role; fails on a bad location.
    pub fn build(self) -> Result<IdpSso, Error> {
        let mut common = self.parts.finish()?;
        common.extensions.scopes = self.scopes;
        if self.hints != DiscoHints::default() {
            common.extensions.disco_hints = Some(Box::new(self.hints));
        }
        common.extensions.present = !common.extensions.is_empty();
        Ok(IdpSso {
            common,
            want_authn_requests_signed: self.want_signed,
            single_sign_on: self
                .sso
                .iter()
                .map(PendingEndpoint::build)
                .collect::<Result<_, _>>()?,
            ..Default::default()
        })
    }
}

/// Builds an [`SpSso`]; see [`SpSso::builder`].
#[derive(Debug, Clone)]
pub struct SpBuilder {
    parts: RoleParts,
    acs: Vec<PendingEndpoint>,
    service: Option<AttributeConsumingService>,
    discovery: Vec<PendingEndpoint>,
    authn_requests_signed: Option<bool>,
    want_assertions_signed: Option<bool>,
}

impl SpSso {
    /// A builder for an SP role supporting SAML 2.0.
    #[must_use]
    pub fn builder() -> SpBuilder {
        SpBuilder {
            parts: RoleParts::new(),
            acs: Vec::new(),
            service: None,
            discovery: Vec::new(),
            authn_requests_signed: None,
            want_assertions_signed: None,
        }
    }
}

impl RoleBuilder for SpBuilder {
    fn parts(&mut self) -> &mut RoleParts {
        &mut self.parts
    }
}

impl SpBuilder {
    /// An `AssertionConsumerService`, indexed from 0 in the order added (the first is the
    /// default).
    #[must_use]
    pub fn acs(mut self, binding: Binding, location: &str) -> Self {
        self.acs.push(PendingEndpoint {
            element: "AssertionConsumerService",
            binding,
            location: location.to_owned(),
        });
        self
    }

    /// An `idpdisc:DiscoveryResponse` (HTTP redirect back from a discovery service).
    #[must_use]
    pub fn discovery_response(mut self, location: &str) -> Self {
        self.discovery.push(PendingEndpoint {
            element: "DiscoveryResponse",
            binding: Binding::Other(
                "urn:oasis:names:tc:SAML:profiles:SSO:idp-discovery-protocol".into(),
            ),
            location: location.to_owned(),
        });
        self
    }

    /// A `RequestedAttribute` in the role's `AttributeConsumingService` (index 0, named
    /// `service_name` in `lang` when first created).
    #[must_use]
    pub fn requested_attribute(
        mut self,
        lang: &str,
        service_name: &str,
        name: &str,
        friendly_name: Option<&str>,
        required: bool,
    ) -> Self {
        let s = self
            .service
            .get_or_insert_with(|| AttributeConsumingService {
                index: 0,
                is_default: None,
                names: vec![localized(lang, service_name)],
                descriptions: Vec::new(),
                requested: Vec::new(),
            });
        s.requested.push(RequestedAttribute {
            attribute: SamlAttribute {
                name: name.to_owned(),
                name_format: Some("urn:oasis:names:tc:SAML:2.0:attrname-format:uri".into()),
                friendly_name: friendly_name.map(str::to_owned),
                values: Vec::new(),
            },
            is_required: required,
        });
        self
    }

    /// `AuthnRequestsSigned`.
    #[must_use]
    pub fn authn_requests_signed(mut self, yes: bool) -> Self {
        self.authn_requests_signed = Some(yes);
        self
    }

    /// `WantAssertionsSigned`.
    #[must_use]
    pub fn want_assertions_signed(mut self, yes: bool) -> Self {
        self.want_assertions_signed = Some(yes);
        self
    }

    /// The role; fails on a bad location or when there is no ACS (SAML Metadata §2.4.4).
    pub fn build(self) -> Result<SpSso, Error> {
        if self.acs.is_empty() {
            return Err(unwritable(
                "SPSSODescriptor",
                "an SP needs at least one AssertionConsumerService",
            ));
        }
        let mut common = self.parts.finish()?;
        for (i, d) in self.discovery.iter().enumerate() {
            common.extensions.discovery_responses.push(IndexedEndpoint {
                endpoint: d.build()?,
                index: index(i)?,
                is_default: None,
            });
        }
        common.extensions.present = !common.extensions.is_empty();
        let mut assertion_consumer = Vec::new();
        for (i, a) in self.acs.iter().enumerate() {
            assertion_consumer.push(IndexedEndpoint {
                endpoint: a.build()?,
                index: index(i)?,
                is_default: (i == 0 && self.acs.len() > 1).then_some(true),
            });
        }
        Ok(SpSso {
            common,
            authn_requests_signed: self.authn_requests_signed,
            want_assertions_signed: self.want_assertions_signed,
            assertion_consumer,
            attribute_consuming: self.service.into_iter().collect(),
        })
    }
}

fn index(i: usize) -> Result<u16, Error> {
    u16::try_from(i)
        .map_err(|_| unwritable("AssertionConsumerService", "more than 65536 endpoints"))
}

/// A role given to [`EntityBuilder`], built (and checked) with the entity.
#[derive(Debug, Clone)]
enum PendingRole {
    Idp(Box<IdpBuilder>),
    Sp(Box<SpBuilder>),
    Done(Box<Role>),
}

/// Builds an [`EntityDescriptor`]; see [`EntityDescriptor::builder`].
#[derive(Debug, Clone)]
pub struct EntityBuilder {
    entity: EntityDescriptor,
    roles: Vec<PendingRole>,
}

impl EntityDescriptor {
    /// A builder for the entity `entity_id`.
    #[must_use]
    pub fn builder(entity_id: &str) -> EntityBuilder {
        EntityBuilder {
            entity: EntityDescriptor {
                entity_id: entity_id.to_owned(),
                id: None,
                valid_until: None,
                cache_duration: None,
                extensions: Default::default(),
                roles: Vec::new(),
                affiliation: None,
                organization: None,
                contacts: Vec::new(),
                additional_locations: Vec::new(),
            },
            roles: Vec::new(),
        }
    }
}

impl EntityBuilder {
    /// `ID`.
    #[must_use]
    pub fn id(mut self, id: &str) -> Self {
        self.entity.id = Some(id.to_owned());
        self
    }

    /// `validUntil`.
    #[must_use]
    pub fn valid_until(mut self, t: SystemTime) -> Self {
        self.entity.valid_until = Some(t);
        self
    }

    /// `cacheDuration`.
    #[must_use]
    pub fn cache_duration(mut self, d: Duration) -> Self {
        self.entity.cache_duration = Some(d);
        self
    }

    /// `mdrpi:RegistrationInfo`.
    #[must_use]
    pub fn registration(mut self, authority: &str, instant: Option<SystemTime>) -> Self {
        self.entity.extensions.registration = Some(Box::new(RegistrationInfo {
            authority: authority.to_owned(),
            instant,
            policies: Vec::new(),
        }));
        self
    }

    /// An `mdattr:EntityAttributes` value (several values of one name share one Attribute).
    #[must_use]
    pub fn entity_attribute(mut self, name: &str, value: &str) -> Self {
        let attrs = &mut self.entity.extensions.entity_attributes;
        match attrs.iter_mut().find(|a| a.name == name) {
            Some(a) => a.values.push(value.to_owned()),
            None => attrs.push(SamlAttribute {
                name: name.to_owned(),
                name_format: Some("urn:oasis:names:tc:SAML:2.0:attrname-format:uri".into()),
                friendly_name: None,
                values: vec![value.to_owned()],
            }),
        }
        self
    }

    /// An entity category (`http://macedir.org/entity-category`).
    #[must_use]
    pub fn entity_category(self, uri: &str) -> Self {
        self.entity_attribute(ENTITY_CATEGORY, uri)
    }

    /// A DAME `MetadataSyncLocation` (draft-poehn-dame).
    #[must_use]
    pub fn dame_sync_location(mut self, url: &str) -> Self {
        self.entity
            .extensions
            .dame_sync_locations
            .push(url.to_owned());
        self
    }

    /// An IdP role.
    #[must_use]
    pub fn idp(mut self, idp: IdpBuilder) -> Self {
        self.roles.push(PendingRole::Idp(Box::new(idp)));
        self
    }

    /// An SP role.
    #[must_use]
    pub fn sp(mut self, sp: SpBuilder) -> Self {
        self.roles.push(PendingRole::Sp(Box::new(sp)));
        self
    }

    /// Any role, already built.
    #[must_use]
    pub fn role(mut self, role: Role) -> Self {
        self.roles.push(PendingRole::Done(Box::new(role)));
        self
    }

    /// `Organization` with one name (also the display name) and URL in `lang`.
    #[must_use]
    pub fn organization(mut self, lang: &str, name: &str, url: &str) -> Self {
        let o = self
            .entity
            .organization
            .get_or_insert_with(Organization::default);
        o.names.push(localized(lang, name));
        o.display_names.push(localized(lang, name));
        o.urls.push(localized(lang, url));
        self
    }

    /// A `ContactPerson` with an email address (`mailto:` URI).
    #[must_use]
    pub fn contact(mut self, contact_type: ContactType, email: &str) -> Self {
        self.entity.contacts.push(ContactPerson {
            contact_type,
            refeds_type: None,
            company: None,
            given_name: None,
            sur_name: None,
            emails: vec![email.to_owned()],
            phones: Vec::new(),
            extensions: Default::default(),
        });
        self
    }

    /// A REFEDS security contact (`contactType="other"`, `remd:contactType` security).
    #[must_use]
    pub fn security_contact(mut self, email: &str) -> Self {
        self = self.contact(ContactType::Other, email);
        if let Some(c) = self.entity.contacts.last_mut() {
            c.refeds_type = Some(REFEDS_SECURITY.to_owned());
        }
        self
    }

    /// The entity; fails on a bad value, naming the element, or when it has no role.
    pub fn build(mut self) -> Result<EntityDescriptor, Error> {
        for r in self.roles {
            self.entity.roles.push(match r {
                PendingRole::Idp(b) => Role::Idp(b.build()?),
                PendingRole::Sp(b) => Role::Sp(b.build()?),
                PendingRole::Done(r) => *r,
            });
        }
        let mut e = self.entity;
        e.extensions.present = !e.extensions.is_empty();
        if e.entity_id.is_empty() || e.entity_id.len() > 1024 {
            return Err(unwritable(
                "EntityDescriptor",
                "entityID must have 1 to 1024 characters (SAML Metadata §2.3.2)",
            ));
        }
        if e.roles.is_empty() && e.affiliation.is_none() {
            return Err(unwritable(
                "EntityDescriptor",
                format!("{}: an entity needs a role or an affiliation", e.entity_id),
            ));
        }
        Ok(e)
    }
}

impl EntitiesDescriptor {
    /// A new aggregate named `name` holding `entities` in order, valid until `valid_until`.
    /// Duplicate entityIDs are refused. The `ID` is derived from the name, the validity and the
    /// entityIDs, so a re-publication of the same content gets the same ID. The entities' own
    /// `ID`s are left out: the model carries no signature they could name, and one entity
    /// repeating another's ID, or the aggregate's, made the signed aggregate unverifiable
    /// (review W3: a DAME registrant could so break every virtual federation it is part of).
    /// Sign it with [`EntitiesDescriptor::sign`].
    pub fn combine(
        name: &str,
        entities: impl IntoIterator<Item = EntityDescriptor>,
        valid_until: Option<SystemTime>,
    ) -> Result<EntitiesDescriptor, Error> {
        let mut seen = HashSet::new();
        let mut children = Vec::new();
        for mut e in entities {
            if !seen.insert(e.entity_id.clone()) {
                return Err(Error::DuplicateEntityId(e.entity_id));
            }
            e.id = None;
            children.push(EntitiesChild::Entity(Box::new(e)));
        }
        let id = combined_id(
            name,
            valid_until,
            children.iter().filter_map(|c| match c {
                EntitiesChild::Entity(e) => Some(e.entity_id.as_str()),
                EntitiesChild::Group(_) => None,
            }),
        );
        Ok(EntitiesDescriptor {
            name: Some(name.to_owned()),
            id: Some(id),
            valid_until,
            children,
            ..Default::default()
        })
    }
}

/// The ID of a combined aggregate: `_` and the SHA-1 of its name, validUntil and entityIDs, so
/// the same selection gets the same ID ([`EntitiesDescriptor::combine`],
/// [`crate::selection`]).
pub(crate) fn combined_id<'e>(
    name: &str,
    valid_until: Option<SystemTime>,
    entity_ids: impl IntoIterator<Item = &'e str>,
) -> String {
    salted_id(name, valid_until, entity_ids, 0)
}

/// [`combined_id`], with `salt` (when not 0) in the seed: another ID for the same selection,
/// when one of its entities holds the first.
pub(crate) fn salted_id<'e>(
    name: &str,
    valid_until: Option<SystemTime>,
    entity_ids: impl IntoIterator<Item = &'e str>,
    salt: u32,
) -> String {
    let mut seed = format!(
        "{name}\n{}",
        valid_until.map(format_datetime_exact).unwrap_or_default()
    );
    for id in entity_ids {
        seed.push('\n');
        seed.push_str(id);
    }
    if salt > 0 {
        seed.push_str(&format!("\n#{salt}"));
    }
    format!("_{}", sha1_hex(&seed))
}
