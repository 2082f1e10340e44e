//! Metadata extensions federations use: mdui (SAML V2.0 Metadata Extensions for Login and
//! Discovery User Interface), mdrpi (Registration and Publication Info), mdattr (Entity
//! Attributes), shibmd:Scope, idpdisc:DiscoveryResponse, init:RequestInitiator, alg (Algorithm
//! Support), DAME's MetadataSyncLocation (both namespaces, see DAME.md). Anything else is kept
//! as [`RawXml`] and can be written back unchanged.

use std::time::SystemTime;

use crate::model::{Endpoint, IndexedEndpoint, Localized, SamlAttribute};

pub use crate::ns::{
    ALG_NS, DAME_NS, DAME_OLD_NS, IDPDISC_NS, INIT_NS, MDATTR_NS, MDRPI_NS, MDUI_NS, SHIBMD_NS,
};

/// An element kept as written, self-contained: its source text, with the namespace bindings it
/// inherited and uses declared on its own start tag, so that it means the same (and has the same
/// exclusive canonical form) wherever it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RawXml {
    /// `{namespace}local` of the element.
    pub name: (String, String),
    /// The element's text, self-contained.
    pub xml: String,
}

/// `mdui:Logo`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Logo {
    /// The URL (may be a `data:` URI).
    pub url: String,
    /// `height` in pixels.
    pub height: u32,
    /// `width` in pixels.
    pub width: u32,
    /// `xml:lang`, if any.
    pub lang: Option<String>,
}

/// `mdui:UIInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct UiInfo {
    /// `DisplayName`.
    pub display_names: Vec<Localized<String>>,
    /// `Description`.
    pub descriptions: Vec<Localized<String>>,
    /// `Keywords` (space-separated words per language).
    pub keywords: Vec<Localized<Vec<String>>>,
    /// `Logo`.
    pub logos: Vec<Logo>,
    /// `InformationURL`.
    pub information_urls: Vec<Localized<String>>,
    /// `PrivacyStatementURL`.
    pub privacy_urls: Vec<Localized<String>>,
}

/// `mdui:DiscoHints`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DiscoHints {
    /// `IPHint` (CIDR blocks).
    pub ip_hints: Vec<String>,
    /// `DomainHint` (DNS domains).
    pub domain_hints: Vec<String>,
    /// `GeolocationHint` (`geo:` URIs).
    pub geolocation_hints: Vec<String>,
}

/// `mdrpi:RegistrationInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RegistrationInfo {
    /// `registrationAuthority`.
    pub authority: String,
    /// `registrationInstant`.
    pub instant: Option<SystemTime>,
    /// `RegistrationPolicy`.
    pub policies: Vec<Localized<String>>,
}

/// `mdrpi:PublicationInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PublicationInfo {
    /// `publisher`.
    pub publisher: String,
    /// `creationInstant`.
    pub creation_instant: Option<SystemTime>,
    /// `publicationId`.
    pub publication_id: Option<String>,
    /// `UsagePolicy`.
    pub usage_policies: Vec<Localized<String>>,
}

/// `shibmd:Scope`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Scope {
    /// The scope (a domain, or a regular expression when `regexp`).
    pub value: String,
    /// `regexp`.
    pub regexp: bool,
}

/// `alg:DigestMethod` / `alg:SigningMethod`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct AlgorithmSupport {
    /// `Algorithm`.
    pub algorithm: String,
    /// `MinKeySize` (signing only).
    pub min_key_size: Option<u32>,
    /// `MaxKeySize` (signing only).
    pub max_key_size: Option<u32>,
}

/// The contents of an `md:Extensions` element, typed where we know the extension.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Extensions {
    /// Whether the `md:Extensions` element was present at all.
    pub present: bool,
    /// `mdui:UIInfo`.
    pub ui_info: Option<Box<UiInfo>>,
    /// `mdui:DiscoHints`.
    pub disco_hints: Option<Box<DiscoHints>>,
    /// `mdrpi:RegistrationInfo`.
    pub registration: Option<Box<RegistrationInfo>>,
    /// `mdrpi:PublicationInfo`.
    pub publication: Option<Box<PublicationInfo>>,
    /// `mdattr:EntityAttributes`.
    pub entity_attributes: Vec<SamlAttribute>,
    /// `shibmd:Scope`.
    pub scopes: Vec<Scope>,
    /// `idpdisc:DiscoveryResponse`.
    pub discovery_responses: Vec<IndexedEndpoint>,
    /// `init:RequestInitiator`.
    pub request_initiators: Vec<Endpoint>,
    /// `alg:DigestMethod`.
    pub digest_methods: Vec<AlgorithmSupport>,
    /// `alg:SigningMethod`.
    pub signing_methods: Vec<AlgorithmSupport>,
    /// DAME `MetadataSyncLocation` (`urn:geant:dame` DAMEInfo, or the -02
    /// `urn:geant:lrz.de` TTPMetadataSyncLocation).
    pub dame_sync_locations: Vec<String>,
    /// Every other extension element, as written, in order.
    pub unknown: Vec<RawXml>,
}

impl Extensions {
    /// Values of the entity attribute `name` (e.g. `http://macedir.org/entity-category`).
    pub fn entity_attribute(&self, name: &str) -> impl Iterator<Item = &str> {
        self.entity_attributes
            .iter()
            .filter(move |a| a.name == name)
            .flat_map(|a| a.values.iter().map(String::as_str))
    }
}
