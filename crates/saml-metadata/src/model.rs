//! The SAML 2.0 metadata model (SAML Metadata 2.0, OASIS saml-metadata-2.0-os §2), with the
//! extensions federations publish ([`crate::ext`]). Every type is plain data: `Debug, Clone,
//! PartialEq`; values are typed (URIs, instants, durations, enums) where the schema types them.

use std::time::{Duration, SystemTime};

use crate::ext::{Extensions, RawXml};

/// An absolute URI (`anyURI` used as an endpoint, entityID or identifier). Checked to carry a
/// scheme when read; kept as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Uri(pub(crate) String);

impl Uri {
    /// Checks that `s` is an absolute URI (scheme, then `:`) without white space.
    #[must_use]
    pub fn parse(s: &str) -> Option<Uri> {
        let (scheme, rest) = s.split_once(':')?;
        let mut it = scheme.bytes();
        let ok = matches!(it.next(), Some(b) if b.is_ascii_alphabetic())
            && it.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
            && !rest.is_empty()
            && !s
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control());
        ok.then(|| Uri(s.to_owned()))
    }

    /// The URI as written.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Uri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A string with its `xml:lang` (`localizedNameType` / `localizedURIType`, §2.2.4).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Localized<T> {
    /// The language tag.
    pub lang: String,
    /// The value.
    pub value: T,
}

/// SAML bindings (SAML Bindings 2.0 §3), other URIs kept as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum Binding {
    /// `urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect`
    HttpRedirect,
    /// `urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST`
    HttpPost,
    /// `urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact`
    HttpArtifact,
    /// `urn:oasis:names:tc:SAML:2.0:bindings:SOAP`
    Soap,
    /// `urn:oasis:names:tc:SAML:2.0:bindings:PAOS`
    Paos,
    /// `urn:oasis:names:tc:SAML:2.0:bindings:URI`
    Uri,
    /// Any other binding URI (SAML 1.x, holder-of-key, discovery...).
    Other(String),
}

impl Binding {
    /// Maps a binding URI.
    #[must_use]
    pub fn from_uri(s: &str) -> Binding {
        match s {
            "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" => Binding::HttpRedirect,
            "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" => Binding::HttpPost,
            "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact" => Binding::HttpArtifact,
            "urn:oasis:names:tc:SAML:2.0:bindings:SOAP" => Binding::Soap,
            "urn:oasis:names:tc:SAML:2.0:bindings:PAOS" => Binding::Paos,
            "urn:oasis:names:tc:SAML:2.0:bindings:URI" => Binding::Uri,
            other => Binding::Other(other.to_owned()),
        }
    }

    /// The binding URI.
    #[must_use]
    pub fn uri(&self) -> &str {
        match self {
            Binding::HttpRedirect => "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect",
            Binding::HttpPost => "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST",
            Binding::HttpArtifact => "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact",
            Binding::Soap => "urn:oasis:names:tc:SAML:2.0:bindings:SOAP",
            Binding::Paos => "urn:oasis:names:tc:SAML:2.0:bindings:PAOS",
            Binding::Uri => "urn:oasis:names:tc:SAML:2.0:bindings:URI",
            Binding::Other(s) => s,
        }
    }
}

/// `EndpointType` (§2.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Endpoint {
    /// The binding.
    pub binding: Binding,
    /// Where to send messages.
    pub location: Uri,
    /// Where responses go, when different.
    pub response_location: Option<Uri>,
}

/// `IndexedEndpointType` (§2.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct IndexedEndpoint {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Its index (`unsignedShort`).
    pub index: u16,
    /// `isDefault`, when present.
    pub is_default: Option<bool>,
}

/// What a key is for (`KeyTypes`, §2.4.1.1); absent means both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum KeyUse {
    /// `use="signing"`
    Signing,
    /// `use="encryption"`
    Encryption,
    /// No `use`: both.
    Both,
}

/// `KeyDescriptor` (§2.4.1.1): the keys are carried as X.509 certificates (DER).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct KeyDescriptor {
    /// Signing, encryption or both.
    pub key_use: KeyUse,
    /// `ds:X509Certificate` values, DER.
    pub certificates: Vec<Vec<u8>>,
    /// `ds:KeyName` values.
    pub key_names: Vec<String>,
    /// The other children of `ds:KeyInfo` (`ds:KeyValue`, `ds:RetrievalMethod`, ...), kept as
    /// written and written back: a key given only so was published as an empty
    /// `<ds:KeyInfo/>` (review W2).
    pub other_key_info: Vec<RawXml>,
    /// `md:EncryptionMethod`s.
    pub encryption_methods: Vec<EncryptionMethod>,
}

/// `md:EncryptionMethod` (§2.4.1.1, XML Encryption's `EncryptionMethodType`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct EncryptionMethod {
    /// The `Algorithm` URI.
    pub algorithm: String,
    /// Its children (`ds:DigestMethod`, `xenc11:MGF`, `xenc:OAEPparams`, `xenc:KeySize`), kept
    /// as written and written back: an RSA-OAEP method published without its digest and mask
    /// function made peers use OAEP's SHA-1 defaults (review W2).
    pub content: Vec<RawXml>,
}

impl EncryptionMethod {
    /// A method named by its algorithm alone.
    #[must_use]
    pub fn new(algorithm: &str) -> Self {
        EncryptionMethod {
            algorithm: algorithm.to_owned(),
            content: Vec::new(),
        }
    }
}

/// `Organization` (§2.3.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Organization {
    /// `OrganizationName`.
    pub names: Vec<Localized<String>>,
    /// `OrganizationDisplayName`.
    pub display_names: Vec<Localized<String>>,
    /// `OrganizationURL`.
    pub urls: Vec<Localized<String>>,
    /// `Extensions` (kept as read and written back; boxed: rare, and 230 bytes inline).
    pub extensions: Option<Box<Extensions>>,
}

/// `contactType` (§2.3.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ContactType {
    /// technical
    Technical,
    /// support
    Support,
    /// administrative
    Administrative,
    /// billing
    Billing,
    /// other (REFEDS security contacts use this with `remd:contactType`)
    Other,
}

/// `ContactPerson` (§2.3.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ContactPerson {
    /// The contact type.
    pub contact_type: ContactType,
    /// `remd:contactType` (REFEDS, e.g. `http://refeds.org/metadata/contactType/security`).
    pub refeds_type: Option<String>,
    /// `Company`.
    pub company: Option<String>,
    /// `GivenName`.
    pub given_name: Option<String>,
    /// `SurName`.
    pub sur_name: Option<String>,
    /// `EmailAddress` values (usually `mailto:` URIs).
    pub emails: Vec<String>,
    /// `TelephoneNumber` values.
    pub phones: Vec<String>,
    /// `Extensions` (kept as read and written back; boxed: rare, and 230 bytes inline in
    /// every contact).
    pub extensions: Option<Box<Extensions>>,
}

/// A `saml:Attribute` as used in metadata (IdP's supported attributes, entity attributes).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SamlAttribute {
    /// `Name`.
    pub name: String,
    /// `NameFormat`.
    pub name_format: Option<String>,
    /// `FriendlyName`.
    pub friendly_name: Option<String>,
    /// `AttributeValue` texts.
    pub values: Vec<String>,
}

/// `RequestedAttribute` (§2.4.4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RequestedAttribute {
    /// The attribute.
    pub attribute: SamlAttribute,
    /// `isRequired`.
    pub is_required: bool,
}

/// `AttributeConsumingService` (§2.4.4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct AttributeConsumingService {
    /// `index`.
    pub index: u16,
    /// `isDefault`.
    pub is_default: Option<bool>,
    /// `ServiceName`.
    pub names: Vec<Localized<String>>,
    /// `ServiceDescription`.
    pub descriptions: Vec<Localized<String>>,
    /// `RequestedAttribute`.
    pub requested: Vec<RequestedAttribute>,
}

/// What every role has (`RoleDescriptorType`, §2.4.1) and SSO roles add (`SSODescriptorType`,
/// §2.4.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RoleCommon {
    /// `ID`.
    pub id: Option<String>,
    /// `validUntil`.
    pub valid_until: Option<SystemTime>,
    /// `cacheDuration`.
    pub cache_duration: Option<Duration>,
    /// `protocolSupportEnumeration` (URIs).
    pub protocols: Vec<String>,
    /// `errorURL`.
    pub error_url: Option<Uri>,
    /// `Extensions`.
    pub extensions: Extensions,
    /// `KeyDescriptor`s.
    pub keys: Vec<KeyDescriptor>,
    /// `Organization` (boxed: rare on a role, and 300 bytes inline in every role).
    pub organization: Option<Box<Organization>>,
    /// `ContactPerson`s.
    pub contacts: Vec<ContactPerson>,
    /// SSO roles: `ArtifactResolutionService`.
    pub artifact_resolution: Vec<IndexedEndpoint>,
    /// SSO roles: `SingleLogoutService`.
    pub single_logout: Vec<Endpoint>,
    /// SSO roles: `ManageNameIDService`.
    pub manage_name_id: Vec<Endpoint>,
    /// SSO roles, AA, AuthnAuthority, PDP: `NameIDFormat`.
    pub name_id_formats: Vec<String>,
}

/// `IDPSSODescriptor` (§2.4.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct IdpSso {
    /// Common parts.
    pub common: RoleCommon,
    /// `WantAuthnRequestsSigned`.
    pub want_authn_requests_signed: Option<bool>,
    /// `SingleSignOnService`.
    pub single_sign_on: Vec<Endpoint>,
    /// `NameIDMappingService`.
    pub name_id_mapping: Vec<Endpoint>,
    /// `AssertionIDRequestService`.
    pub assertion_id_request: Vec<Endpoint>,
    /// `AttributeProfile`.
    pub attribute_profiles: Vec<String>,
    /// `saml:Attribute`.
    pub attributes: Vec<SamlAttribute>,
}

/// `SPSSODescriptor` (§2.4.4).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SpSso {
    /// Common parts.
    pub common: RoleCommon,
    /// `AuthnRequestsSigned`.
    pub authn_requests_signed: Option<bool>,
    /// `WantAssertionsSigned`.
    pub want_assertions_signed: Option<bool>,
    /// `AssertionConsumerService`.
    pub assertion_consumer: Vec<IndexedEndpoint>,
    /// `AttributeConsumingService`.
    pub attribute_consuming: Vec<AttributeConsumingService>,
}

impl SpSso {
    /// The default AssertionConsumerService (§2.2.3: the one with `isDefault="true"`, else the
    /// first without `isDefault="false"`, else the first).
    #[must_use]
    pub fn default_acs(&self) -> Option<&IndexedEndpoint> {
        let acs = &self.assertion_consumer;
        acs.iter()
            .find(|e| e.is_default == Some(true))
            .or_else(|| acs.iter().find(|e| e.is_default.is_none()))
            .or_else(|| acs.first())
    }
}

/// `AttributeAuthorityDescriptor` (§2.4.7), `AuthnAuthorityDescriptor` (§2.4.5) and
/// `PDPDescriptor` (§2.4.6): service endpoints plus `AssertionIDRequestService`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct AuthorityRole {
    /// Common parts.
    pub common: RoleCommon,
    /// `AttributeService` / `AuthnQueryService` / `AuthzService`.
    pub services: Vec<Endpoint>,
    /// `AssertionIDRequestService`.
    pub assertion_id_request: Vec<Endpoint>,
    /// AA: `AttributeProfile`.
    pub attribute_profiles: Vec<String>,
    /// AA: `saml:Attribute`.
    pub attributes: Vec<SamlAttribute>,
}

/// One role of an entity.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum Role {
    /// `IDPSSODescriptor`.
    Idp(IdpSso),
    /// `SPSSODescriptor`.
    Sp(SpSso),
    /// `AttributeAuthorityDescriptor`.
    AttributeAuthority(AuthorityRole),
    /// `AuthnAuthorityDescriptor`.
    AuthnAuthority(AuthorityRole),
    /// `PDPDescriptor`.
    Pdp(AuthorityRole),
    /// A `RoleDescriptor` with an `xsi:type` (e.g. WS-Federation's), or a role element from
    /// another namespace: kept as written.
    Other(crate::ext::RawXml),
}

impl Role {
    /// The role's own `validUntil` (SAML Metadata §2.4.1: the role is not valid after it;
    /// `None` for a role kept as written).
    #[must_use]
    pub fn valid_until(&self) -> Option<SystemTime> {
        match self {
            Role::Idp(i) => i.common.valid_until,
            Role::Sp(s) => s.common.valid_until,
            Role::AttributeAuthority(a) | Role::AuthnAuthority(a) | Role::Pdp(a) => {
                a.common.valid_until
            }
            Role::Other(_) => None,
        }
    }

    /// The role's own `cacheDuration` (SAML Metadata §2.4.1; `None` for a role kept as
    /// written).
    #[must_use]
    pub fn cache_duration(&self) -> Option<Duration> {
        match self {
            Role::Idp(i) => i.common.cache_duration,
            Role::Sp(s) => s.common.cache_duration,
            Role::AttributeAuthority(a) | Role::AuthnAuthority(a) | Role::Pdp(a) => {
                a.common.cache_duration
            }
            Role::Other(_) => None,
        }
    }
}

/// `AffiliationDescriptor` (§2.3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Affiliation {
    /// `affiliationOwnerID`.
    pub owner: String,
    /// `AffiliateMember` entityIDs.
    pub members: Vec<String>,
    /// `KeyDescriptor`s.
    pub keys: Vec<KeyDescriptor>,
    /// `Extensions` (kept as read and written back).
    pub extensions: Extensions,
}

/// `AdditionalMetadataLocation` (§2.3.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct AdditionalMetadataLocation {
    /// `namespace`.
    pub namespace: String,
    /// The location.
    pub location: Uri,
}

/// `EntityDescriptor` (§2.3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct EntityDescriptor {
    /// `entityID`.
    pub entity_id: String,
    /// `ID`.
    pub id: Option<String>,
    /// `validUntil`.
    pub valid_until: Option<SystemTime>,
    /// `cacheDuration`.
    pub cache_duration: Option<Duration>,
    /// `Extensions`.
    pub extensions: Extensions,
    /// The roles, in document order.
    pub roles: Vec<Role>,
    /// `AffiliationDescriptor` (instead of roles; boxed: rare, and 300 bytes inline in every
    /// entity).
    pub affiliation: Option<Box<Affiliation>>,
    /// `Organization`.
    pub organization: Option<Organization>,
    /// `ContactPerson`s.
    pub contacts: Vec<ContactPerson>,
    /// `AdditionalMetadataLocation`s.
    pub additional_locations: Vec<AdditionalMetadataLocation>,
}

impl EntityDescriptor {
    /// The first IdP role.
    #[must_use]
    pub fn idp(&self) -> Option<&IdpSso> {
        self.roles.iter().find_map(|r| match r {
            Role::Idp(i) => Some(i),
            _ => None,
        })
    }

    /// The first SP role.
    #[must_use]
    pub fn sp(&self) -> Option<&SpSso> {
        self.roles.iter().find_map(|r| match r {
            Role::Sp(s) => Some(s),
            _ => None,
        })
    }

    /// `{sha1}` identifier of the entityID (lower-case hex of SHA-1 over the UTF-8 bytes), as
    /// MDQ and the aggregate index use it.
    #[must_use]
    pub fn sha1_id(&self) -> String {
        sha1_hex(&self.entity_id)
    }
}

/// Lower-case hex SHA-1 of `s` (the MDQ `{sha1}` transform).
#[must_use]
pub fn sha1_hex(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // The one-shot function cannot fail (the EVP one could, and gave "" then: every split
    // file would have been ".xml"; metadata review I3).
    let d = openssl::sha::sha1(s.as_bytes());
    let mut out = String::with_capacity(40);
    for b in d.iter() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

/// The 20-byte key of a `{sha1}` identifier: 40 hex digits of either case, with or without the
/// `{sha1}` prefix (the transformed identifier of draft-young-md-query-saml). Anything else is
/// `None`: a sign, which `u8::from_str_radix` would take (`+a` for `0a`), gives no second
/// spelling of an identifier.
pub(crate) fn sha1_key(id: &str) -> Option<[u8; 20]> {
    let hex = id.strip_prefix("{sha1}").unwrap_or(id).as_bytes();
    if hex.len() != 40 {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    let mut key = [0u8; 20];
    for (k, pair) in key.iter_mut().zip(hex.chunks_exact(2)) {
        *k = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(key)
}

/// A child of an `EntitiesDescriptor`, in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum EntitiesChild {
    /// An entity.
    Entity(Box<EntityDescriptor>),
    /// A nested group.
    Group(Box<EntitiesDescriptor>),
}

/// `EntitiesDescriptor` (§2.3.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct EntitiesDescriptor {
    /// `Name`.
    pub name: Option<String>,
    /// `ID`.
    pub id: Option<String>,
    /// `validUntil`.
    pub valid_until: Option<SystemTime>,
    /// `cacheDuration`.
    pub cache_duration: Option<Duration>,
    /// `Extensions`.
    pub extensions: Extensions,
    /// Entities and nested groups, in document order.
    pub children: Vec<EntitiesChild>,
}

impl EntitiesDescriptor {
    /// Every entity, nested groups included, in document order.
    #[must_use]
    pub fn entities(&self) -> Vec<&EntityDescriptor> {
        let mut out = Vec::new();
        fn walk<'a>(g: &'a EntitiesDescriptor, out: &mut Vec<&'a EntityDescriptor>) {
            for c in &g.children {
                match c {
                    EntitiesChild::Entity(e) => out.push(e),
                    EntitiesChild::Group(g) => walk(g, out),
                }
            }
        }
        walk(self, &mut out);
        out
    }
}

/// A metadata document: one entity (e.g. from MDQ) or an aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Metadata {
    /// An `EntityDescriptor` root.
    Entity(Box<EntityDescriptor>),
    /// An `EntitiesDescriptor` root.
    Entities(Box<EntitiesDescriptor>),
}
