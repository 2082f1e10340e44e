//! SAML 2.0 protocol messages (SAML Core 2.0 §2-3) for the Web Browser SSO profile (SAML
//! Profiles §4.1): building and parsing `AuthnRequest`s, validating `Response`s and their
//! `Assertion`s as a service provider, and building signed (and encrypted) Responses as an
//! identity provider.
//!
//! In scope: [`authn_request`] (§3.4.1), [`response`] (SP-side validation of §3.2.2 Response and
//! §2.3.3 Assertion, with the profile's rules), [`idp`] (issue a Response for a request),
//! [`xmlenc`] (EncryptedAssertion: XML Encryption 1.1 with RSA-OAEP key transport and AES-GCM or
//! AES-CBC content), [`StatusCode`]s as typed values. The HTTP bindings are in
//! [`crate::bindings`].
//! Out of scope: Single Logout, artifact resolution, attribute queries, EncryptedID and
//! EncryptedAttribute, holder-of-key confirmation, SAML 1.x.
//!
//! Everything is sans-IO: the current time, random IDs, the store of outstanding request IDs and
//! the replay cache are all inputs, owned by the caller.
//!
//! ```text
//!   SP                                   user agent                           IdP
//!   AuthnRequest::new ... redirect::encode ──► GET ?SAMLRequest&SigAlg&Signature ──►
//!   requests.insert(id)                                             redirect::decode + verify
//!                                                                   AuthnRequest::parse
//!                                                                   idp::ResponseBuilder ... build
//!   ◄── POST SAMLResponse (post::form) ◄──────────────────────────────────────────────
//!   post::decode, ResponseValidator::validate(xml, now, &mut requests, &mut replay)
//!   └► ValidatedResponse { assertion: signed content only }
//! ```

pub mod authn_request;
pub mod idp;
mod read;
pub mod response;
pub mod xmlenc;

use std::fmt;

pub use authn_request::AuthnRequest;
pub use response::{
    Assertion, MemoryReplayCache, OutstandingRequests, ReplayCache, RequestTracker,
    ResponseValidator, ValidatedResponse,
};

/// `urn:oasis:names:tc:SAML:2.0:protocol`
pub const SAMLP_NS: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
/// `urn:oasis:names:tc:SAML:2.0:assertion`
pub const SAML_NS: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
/// `urn:oasis:names:tc:SAML:2.0:cm:bearer` (SAML Profiles §3.3)
pub const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
/// `urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST`
pub const BINDING_HTTP_POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";
/// `urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect`
pub const BINDING_HTTP_REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
/// `urn:oasis:names:tc:SAML:2.0:attrname-format:uri`
pub const ATTRNAME_FORMAT_URI: &str = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri";
/// `urn:oasis:names:tc:SAML:2.0:nameid-format:transient`
pub const NAMEID_TRANSIENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";
/// `urn:oasis:names:tc:SAML:2.0:nameid-format:persistent`
pub const NAMEID_PERSISTENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";
/// `urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport`
pub const AC_PASSWORD_PROTECTED_TRANSPORT: &str =
    "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport";

/// An `xs:ID` for a new message: `_` and 40 hex digits from 20 bytes of `random` (SAML Core
/// §1.3.4 wants 128 bits or more of randomness). Randomness is the caller's: pass
/// [`openssl_random`] in production, a fixed source in tests.
pub fn new_id(random: &mut dyn FnMut(&mut [u8])) -> String {
    let mut b = [0u8; 20];
    random(&mut b);
    let mut s = String::with_capacity(41);
    s.push('_');
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// OpenSSL's CSPRNG as a random source for [`new_id`] and the IdP's IDs and keys. Panics only if
/// OpenSSL cannot produce random bytes, which leaves no safe way to go on.
#[allow(clippy::expect_used)]
pub fn openssl_random(buf: &mut [u8]) {
    openssl::rand::rand_bytes(buf).expect("OpenSSL random generator failed");
}

/// A `saml:NameID` (SAML Core §2.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameId {
    /// The identifier.
    pub value: String,
    /// `Format`.
    pub format: Option<String>,
    /// `NameQualifier`.
    pub name_qualifier: Option<String>,
    /// `SPNameQualifier`.
    pub sp_name_qualifier: Option<String>,
}

impl NameId {
    /// A NameID with a format.
    pub fn new(value: &str, format: &str) -> Self {
        NameId {
            value: value.to_owned(),
            format: Some(format.to_owned()),
            name_qualifier: None,
            sp_name_qualifier: None,
        }
    }
}

/// A `samlp:StatusCode` value (SAML Core §3.2.2.2), typed where the standard names it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StatusCode {
    /// `Success`
    Success,
    /// `Requester`: the request could not be performed because of an error on the requester's side.
    Requester,
    /// `Responder`: an error on the responder's side.
    Responder,
    /// `VersionMismatch`
    VersionMismatch,
    /// `AuthnFailed`: the IdP could not authenticate the principal.
    AuthnFailed,
    /// `InvalidAttrNameOrValue`
    InvalidAttrNameOrValue,
    /// `InvalidNameIDPolicy`
    InvalidNameIdPolicy,
    /// `NoAuthnContext`: the requested authentication context cannot be met.
    NoAuthnContext,
    /// `NoAvailableIDP`
    NoAvailableIdp,
    /// `NoPassive`: passive authentication was requested and is not possible.
    NoPassive,
    /// `NoSupportedIDP`
    NoSupportedIdp,
    /// `PartialLogout`
    PartialLogout,
    /// `ProxyCountExceeded`
    ProxyCountExceeded,
    /// `RequestDenied`
    RequestDenied,
    /// `RequestUnsupported`
    RequestUnsupported,
    /// `RequestVersionDeprecated`
    RequestVersionDeprecated,
    /// `RequestVersionTooHigh`
    RequestVersionTooHigh,
    /// `RequestVersionTooLow`
    RequestVersionTooLow,
    /// `ResourceNotRecognized`
    ResourceNotRecognized,
    /// `TooManyResponses`
    TooManyResponses,
    /// `UnknownAttrProfile`
    UnknownAttrProfile,
    /// `UnknownPrincipal`
    UnknownPrincipal,
    /// `UnsupportedBinding`
    UnsupportedBinding,
    /// Any other URI, as written.
    Other(String),
}

const STATUS_PREFIX: &str = "urn:oasis:names:tc:SAML:2.0:status:";

const STATUS_NAMES: [(&str, StatusCode); 23] = [
    ("Success", StatusCode::Success),
    ("Requester", StatusCode::Requester),
    ("Responder", StatusCode::Responder),
    ("VersionMismatch", StatusCode::VersionMismatch),
    ("AuthnFailed", StatusCode::AuthnFailed),
    ("InvalidAttrNameOrValue", StatusCode::InvalidAttrNameOrValue),
    ("InvalidNameIDPolicy", StatusCode::InvalidNameIdPolicy),
    ("NoAuthnContext", StatusCode::NoAuthnContext),
    ("NoAvailableIDP", StatusCode::NoAvailableIdp),
    ("NoPassive", StatusCode::NoPassive),
    ("NoSupportedIDP", StatusCode::NoSupportedIdp),
    ("PartialLogout", StatusCode::PartialLogout),
    ("ProxyCountExceeded", StatusCode::ProxyCountExceeded),
    ("RequestDenied", StatusCode::RequestDenied),
    ("RequestUnsupported", StatusCode::RequestUnsupported),
    (
        "RequestVersionDeprecated",
        StatusCode::RequestVersionDeprecated,
    ),
    ("RequestVersionTooHigh", StatusCode::RequestVersionTooHigh),
    ("RequestVersionTooLow", StatusCode::RequestVersionTooLow),
    ("ResourceNotRecognized", StatusCode::ResourceNotRecognized),
    ("TooManyResponses", StatusCode::TooManyResponses),
    ("UnknownAttrProfile", StatusCode::UnknownAttrProfile),
    ("UnknownPrincipal", StatusCode::UnknownPrincipal),
    ("UnsupportedBinding", StatusCode::UnsupportedBinding),
];

impl StatusCode {
    /// Maps a status code URI.
    pub fn from_uri(uri: &str) -> StatusCode {
        uri.strip_prefix(STATUS_PREFIX)
            .and_then(|n| STATUS_NAMES.iter().find(|(name, _)| *name == n))
            .map(|(_, c)| c.clone())
            .unwrap_or_else(|| StatusCode::Other(uri.to_owned()))
    }

    /// The status code URI.
    pub fn uri(&self) -> String {
        match self {
            StatusCode::Other(s) => s.clone(),
            known => STATUS_NAMES
                .iter()
                .find(|(_, c)| c == known)
                .map(|(n, _)| format!("{STATUS_PREFIX}{n}"))
                .unwrap_or_default(),
        }
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

/// A `samlp:Status`: the top-level code, an optional second-level code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Top-level `StatusCode`.
    pub code: StatusCode,
    /// Nested `StatusCode`, if any.
    pub second: Option<StatusCode>,
    /// `StatusMessage`, if any.
    pub message: Option<String>,
}

impl Status {
    /// `Success` with nothing else.
    pub fn success() -> Self {
        Status {
            code: StatusCode::Success,
            second: None,
            message: None,
        }
    }
}

/// A `saml:Attribute` with its values as text (SAML Core §2.7.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// `Name`.
    pub name: String,
    /// `NameFormat`.
    pub name_format: Option<String>,
    /// `FriendlyName`.
    pub friendly_name: Option<String>,
    /// `AttributeValue` texts, in order.
    pub values: Vec<String>,
}

impl Attribute {
    /// A URI-named attribute with values.
    pub fn uri(name: &str, friendly_name: Option<&str>, values: &[&str]) -> Self {
        Attribute {
            name: name.to_owned(),
            name_format: Some(ATTRNAME_FORMAT_URI.to_owned()),
            friendly_name: friendly_name.map(str::to_owned),
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        }
    }
}

/// Errors of the protocol layer: what was wrong with a message, or which rule rejected it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A required element or attribute is missing or malformed.
    #[error("invalid <{element}> at byte {offset}: {message}")]
    Malformed {
        /// Local name of the element.
        element: String,
        /// Byte offset of its start tag.
        offset: usize,
        /// What is wrong.
        message: String,
    },
    /// The IdP answered with a non-success status.
    #[error("the IdP returned status {code}{}{}", .second.as_ref().map(|s| format!(" / {s}")).unwrap_or_default(), .message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    Status {
        /// Top-level code.
        code: StatusCode,
        /// Second-level code.
        second: Option<StatusCode>,
        /// StatusMessage.
        message: Option<String>,
    },
    /// Neither the Response nor the Assertion is signed, or the policy wants the Assertion
    /// signed and it is not.
    #[error("{0}")]
    Unsigned(String),
    /// A Response must hold exactly one Assertion or EncryptedAssertion.
    #[error("expected exactly one assertion in the Response, found {0}")]
    AssertionCount(usize),
    /// The signed assertion is not the Response's assertion child (signature wrapping).
    #[error("the signed assertion is not the assertion the Response carries (signature wrapping)")]
    Wrapped,
    /// Issuer other than the expected IdP.
    #[error("issuer {found:?} is not the expected {expected:?}")]
    IssuerMismatch {
        /// Expected entityID.
        expected: String,
        /// What the message says.
        found: String,
    },
    /// Destination other than this SP's ACS.
    #[error("Destination {found:?} is not one of this SP's ACS URLs")]
    DestinationMismatch {
        /// What the message says.
        found: String,
    },
    /// `InResponseTo` names no request this SP has outstanding.
    #[error("InResponseTo {0:?} is not an outstanding request of this SP")]
    UnknownRequest(String),
    /// No `InResponseTo` and unsolicited responses are not allowed.
    #[error("unsolicited Response (no InResponseTo) and unsolicited responses are not allowed")]
    Unsolicited,
    /// A time condition is not met yet.
    #[error("{what} is not valid before {at} (now {now})")]
    NotYetValid {
        /// Which element.
        what: &'static str,
        /// Its NotBefore, RFC 3339.
        at: String,
        /// Now.
        now: String,
    },
    /// A time condition has passed.
    #[error("{what} expired at {at} (now {now})")]
    Expired {
        /// Which element.
        what: &'static str,
        /// Its NotOnOrAfter, RFC 3339.
        at: String,
        /// Now.
        now: String,
    },
    /// The assertion has no `AudienceRestriction` (SAML Profiles §4.1.4.2 requires one naming
    /// the SP).
    #[error("the assertion has no AudienceRestriction (SAML Profiles §4.1.4.2 requires one)")]
    NoAudienceRestriction,
    /// This SP is not in an AudienceRestriction.
    #[error("this SP ({sp}) is not in the audience {audiences:?}")]
    AudienceMismatch {
        /// This SP's entityID.
        sp: String,
        /// The audiences of the failing restriction.
        audiences: Vec<String>,
    },
    /// No bearer SubjectConfirmation passes the profile's checks.
    #[error("no usable bearer SubjectConfirmation: {0}")]
    NoBearerConfirmation(String),
    /// The assertion ID was already used (replay).
    #[error("assertion {0:?} was already used (replay)")]
    Replayed(String),
    /// `Version` is not 2.0.
    #[error("unsupported SAML version {0:?}")]
    Version(String),
    /// XML Encryption: the assertion could not be decrypted or uses a refused algorithm.
    #[error("cannot decrypt: {0}")]
    Decryption(String),
    /// A binding-level problem (base64, DEFLATE, size limit, parameters, URL).
    #[error("binding: {0}")]
    Binding(String),
}
