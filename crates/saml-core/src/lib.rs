//! # saml-core
//!
//! The security core of the federation workspace: a hardened XML reader over quick-xml,
//! Exclusive XML Canonicalization 1.0, and enveloped XML signatures (verify and sign) with
//! OpenSSL, under the rules of XMLDSIG.md that resist the known attack classes (signature
//! wrapping, comment injection, parser differentials, key confusion, fail-open).
//!
//! In scope: [`xml`] (one parse that c14n and model builders share), [`c14n`] (exclusive c14n of
//! a subtree, with or without comments, PrefixList, enveloped-signature omission), [`dsig`]
//! (verify against configured keys only, sign with RSA/ECDSA), [`protocol`] (AuthnRequest,
//! Response and Assertion validation for SPs, Responses for IdPs, XML Encryption of assertions),
//! [`bindings`] (HTTP-Redirect with query signatures, HTTP-POST), [`time`] (xs:dateTime).
//! Out of scope here: the SAML metadata model (`saml-metadata`), inclusive c14n, XPath/XSLT transforms, detached or enveloping
//! signatures, `ds:Object`/`ds:Manifest`, retrieval of remote references.
//!
//! Threads: nothing here spawns a thread except [`dsig::verify`] on documents of 4 MiB or more
//! (one scoped helper, joined before it returns); [`dsig::VerifyOptions::single_threaded`]
//! turns that off. Errors: one [`Error`] with [`Error::kind`] (malformed, rejected, misuse,
//! crypto); namespaces in [`ns`]; the model cursor in [`xml::cursor`].
//!
//! The result of verification is the only way to the signed content:
//!
//! ```
//! use saml_core::dsig::{self, SigningKey, SignOptions, TrustedKeys, VerifyOptions};
//! use openssl::{ec::{EcGroup, EcKey}, nid::Nid, pkey::PKey};
//!
//! let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
//! let ec = EcKey::generate(&group)?;
//! let key = SigningKey::new(PKey::from_ec_key(ec)?, None)?;
//! let doc = br#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://sp.example.org" ID="_e1"><md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"/></md:EntityDescriptor>"#;
//!
//! let signed = dsig::sign(doc, &key, &SignOptions::default())?;
//! let mut trusted = TrustedKeys::new();
//! trusted.add_public_key(key.public_key()?, "test key")?;
//! let verified = dsig::verify(&signed, &trusted, &VerifyOptions::metadata())?;
//! assert_eq!(verified.key_index(), 0);
//!
//! // Reading the content goes through the verified result (Signature left out).
//! let mut events = verified.events()?;
//! let mut names = Vec::new();
//! while let Some(ev) = events.next()? {
//!     if let saml_core::xml::Event::Start(s) = ev { names.push(s.name.local.to_owned()); }
//! }
//! assert_eq!(names, ["EntityDescriptor", "SPSSODescriptor"]);
//!
//! // A modified document fails.
//! let tampered = String::from_utf8(signed)?.replace("https://sp.example.org", "https://evil.example");
//! assert!(dsig::verify(tampered.as_bytes(), &trusted, &VerifyOptions::metadata()).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Every decision and lookup a caller could drop by mistake is #[must_use] (issue 14).
#![warn(clippy::must_use_candidate, clippy::return_self_not_must_use)]

pub mod bindings;
pub mod c14n;
pub mod dsig;
mod error;
pub mod ns;
pub mod protocol;
mod status;
pub mod time;
pub mod xml;

pub use error::{Error, ErrorKind, LimitExceeded, SignatureError, XmlError};
