//! # saml-metadata
//!
//! SAML 2.0 metadata (OASIS SAML Metadata 2.0 and the extensions federations use): a typed
//! model, loading of signed aggregates and single entities with a Shibboleth-like policy (trusted
//! keys only, signature over the document root required, validUntil checked against a given
//! "now"), and an index with O(1) lookup by entityID or `{sha1}` identifier.
//!
//! In scope: [`model`] (EntitiesDescriptor, EntityDescriptor, IdP/SP/AA/AuthnAuthority/PDP
//! roles, endpoints, keys, organization, contacts, affiliations), [`ext`] (mdui, mdrpi, mdattr,
//! shibmd:Scope, idpdisc, init, alg, DAME; unknown extensions kept as written), [`load`]
//! (verified loading and the [`load::Aggregate`] index), [`lazy`] (one verification pass,
//! entities built on first lookup), [`filter`] (composable entity filters), [`split`]
//! (per-entity documents cut from the verified bytes), [`selection`] (a filtered selection
//! written and signed as it streams out), [`write`](mod@write) (XML output with
//! `parse(write(x)) == x`, signing on write), [`builder`] (entities by hand, aggregates combined
//! from entities), [`time`]; feature `serde` for the model.
//! Out of scope: fetching (see mdq-client), XML Schema validation beyond what the model needs,
//! `saml:Assertion`s inside EntityAttributes (skipped, not interpreted).
//!
//! The model is only built from verified content: [`load::load`] verifies with saml-core and
//! parses `Verified::events()`. Reading unverified metadata needs the deliberately named
//! [`load::parse_unverified`]. A caller that reads the document only to load it can hand it
//! over to [`load::load_owned`], which gives the document's memory back while it builds the
//! model (the same model, in about the memory of the model alone).
//!
//! ```
//! use saml_core::dsig::{self, SigningKey, SignOptions, TrustedKeys};
//! use saml_metadata::load::{self, Policy};
//! use std::time::{Duration, UNIX_EPOCH};
//! use openssl::{ec::{EcGroup, EcKey}, nid::Nid, pkey::PKey};
//!
//! let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
//! let key = SigningKey::new(PKey::from_ec_key(EcKey::generate(&group)?)?, None)?;
//! let doc = br#"<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" ID="_a" validUntil="2030-01-01T00:00:00Z"><md:EntityDescriptor entityID="https://sp.example.org"><md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp.example.org/acs" index="0"/></md:SPSSODescriptor></md:EntityDescriptor></md:EntitiesDescriptor>"#;
//! let signed = dsig::sign(doc, &key, &SignOptions::default())?;
//! let mut keys = TrustedKeys::new();
//! keys.add_public_key(key.public_key()?, "federation")?;
//!
//! let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000); // 2027-01-15
//! let agg = load::load(&signed, &Policy::new(keys, now))?;
//! let sp = agg.get("https://sp.example.org").and_then(|e| e.sp()).expect("an SP");
//! assert_eq!(sp.default_acs().map(|a| a.endpoint.location.as_str()), Some("https://sp.example.org/acs"));
//! assert!(agg.get_by_sha1(&saml_metadata::model::sha1_hex("https://sp.example.org")).is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Every decision and lookup a caller could drop by mistake is #[must_use] (issue 14).
#![warn(clippy::must_use_candidate, clippy::return_self_not_must_use)]

pub mod builder;
mod compact;
mod error;
pub mod ext;
pub mod filter;
mod groups;
pub mod lazy;
pub mod load;
pub mod model;
pub mod nested_signatures;
pub mod ns;
mod parallel_model;
mod parse;
pub mod selection;
pub mod split;
pub mod sso;
pub use saml_core::time;
pub mod write;

pub use error::{Error, ErrorKind};
pub use parse::{MD_NS, REMD_NS, SAML_NS};
