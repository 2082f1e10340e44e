//! `samlp:StatusCode` (SAML Core §3.2.2.2) as a typed value: used by the protocol messages and
//! by [`crate::Error`]'s protocol variant, so it sits below both.

use std::fmt;

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
    #[must_use]
    pub fn from_uri(uri: &str) -> StatusCode {
        uri.strip_prefix(STATUS_PREFIX)
            .and_then(|n| STATUS_NAMES.iter().find(|(name, _)| *name == n))
            .map(|(_, c)| c.clone())
            .unwrap_or_else(|| StatusCode::Other(uri.to_owned()))
    }

    /// The status code URI.
    #[must_use]
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
