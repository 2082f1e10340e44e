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
pub mod response;
pub mod scoped;
pub mod xmlenc;

pub use authn_request::AuthnRequest;
pub use response::{
    Assertion, MAX_NAME_ID, MemoryReplayCache, OutstandingRequests, ReplayCache, RequestTracker,
    ResponseValidator, ValidatedResponse,
};

/// Longest message `ID` accepted (an AuthnRequest's: SPs send 33-43 characters, review B1; a
/// Response's and an Assertion's, which a replay cache keeps for an hour or more: review S3
/// of session 28).
pub const MAX_ID_LEN: usize = 256;

/// The `ID` attribute of the message or assertion `e`, bounded and written plainly: at most
/// [`MAX_ID_LEN`] bytes, no white space or `&` (review B1: a 63,000-byte ID compressed into an
/// 846-byte Redirect query, and every receiver that remembers IDs kept it).
pub(crate) fn message_id(e: &crate::xml::cursor::Elem<'_>) -> Result<String, crate::Error> {
    let id = e.required("ID")?;
    if id.is_empty()
        || id.len() > MAX_ID_LEN
        || id
            .bytes()
            .any(|b| matches!(b, b'&' | b' ' | b'\t' | b'\n' | b'\r'))
    {
        return Err(e
            .invalid(format!(
                "ID is empty, longer than {MAX_ID_LEN} bytes or holds white space or '&'"
            ))
            .into());
    }
    Ok(id.to_owned())
}

pub use crate::error::ProtocolError;
pub use crate::ns::{SAML_NS, SAMLP_NS};
pub use crate::status::StatusCode;
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
/// `urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified`: any format (SAML Core §8.3.1)
pub const NAMEID_UNSPECIFIED: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified";
/// `urn:oasis:names:tc:SAML:2.0:nameid-format:encrypted`: asked for in a NameIDPolicy, the
/// NameID must be an `EncryptedID` (SAML Core §3.4.1.1, §8.3.9)
pub const NAMEID_ENCRYPTED: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:encrypted";
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
    #[must_use]
    pub fn new(value: &str, format: &str) -> Self {
        NameId {
            value: value.to_owned(),
            format: Some(format.to_owned()),
            name_qualifier: None,
            sp_name_qualifier: None,
        }
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
    #[must_use]
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

/// `Version` must be `2.0` (SAML Core §3.2.1, §2.3.3).
pub(crate) fn check_version(e: &crate::xml::cursor::Elem<'_>) -> Result<(), crate::Error> {
    match e.required("Version")? {
        "2.0" => Ok(()),
        v => Err(ProtocolError::Version(v.to_owned()).into()),
    }
}
