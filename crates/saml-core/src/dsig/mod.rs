//! Enveloped XML signatures for SAML (XML-DSig 1.1 under the strict profile of XMLDSIG.md).
//!
//! [`verify`] checks an enveloped signature on the document root (metadata) or on the element
//! with a given ID (protocol messages) and returns [`Verified`], the only way to reach the signed
//! content. [`sign`] creates one with exclusive c14n, RSA or ECDSA.
//!
//! ## Threads
//! [`verify`] runs on the calling thread for any document under
//! [`VerifyOptions::parallel_min_size`] (4 MiB by default: every protocol message and single
//! entity). From that size on it starts one scoped helper thread that canonicalizes and hashes
//! while the calling thread reads, and joins it before returning. Embedders that must not
//! spawn threads use [`VerifyOptions::single_threaded`]; the result is the same, byte for byte.

mod algorithms;
mod keys;
mod pipeline;
mod sign;
mod signature;
mod verify;
#[cfg(feature = "xmlsec")]
mod xmlsec_engine;

pub use algorithms::{DigestAlgorithm, ENVELOPED_SIGNATURE, SignatureAlgorithm};
pub use keys::{MAX_RSA_BITS, SigningKey, TrustedKey, TrustedKeys, check_key};
pub use sign::{SignOptions, StreamingSigner, sign};
pub use verify::{Verified, VerifyOptions, verify, verify_observed};
#[cfg(feature = "xmlsec")]
pub use xmlsec_engine::verify_with_xmlsec;

pub use crate::ns::DSIG_NS;
/// The SAML 2.0 assertion namespace (for `saml:Issuer`): [`crate::ns::SAML_NS`].
pub const SAML_ASSERTION_NS: &str = crate::ns::SAML_NS;

/// Which element carries the enveloped signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The document root (SAML metadata).
    Root,
    /// The element whose ID attribute has this value (SAML protocol messages and assertions).
    Id(String),
}

/// Where the `ds:Signature` must stand among the signed element's children (XMLDSIG.md rule 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// First element child (SAML metadata, SAML Metadata §3).
    FirstChild,
    /// Right after `saml:Issuer`, or first when there is no Issuer (SAML Core §5.3 schemas).
    AfterIssuer,
    /// Any child position (generic XML; still exactly one Signature child).
    Anywhere,
}
