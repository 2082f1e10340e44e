//! The crate's error type, split by cause so that an application protocol can map it
//! ([`Error::xmpp_condition`] for XMPP, RFC 6120 §6.5) and a caller can branch on it
//! ([`Error::kind`]). Every mapping is decided by variant, never by the message text.

use crate::server::Identity;

/// Everything that can go wrong in a SAML20 exchange.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer's message breaks RFC 6595 / RFC 5801 (bad gs2 header, bad escape, not a domain,
    /// not the single byte `=`...).
    #[error("malformed SAML20 message: {0}")]
    Malformed(String),
    /// The client named an IdP domain this server has no trusted IdP for (or one that two IdPs
    /// claim: the resolver refuses ambiguity).
    #[error("refused by policy: no trusted IdP for {domain:?}")]
    UnknownIdp {
        /// The IdP identifier (normalized domain) from the initial response.
        domain: String,
    },
    /// The server's redirect URI uses a scheme the client's
    /// [`crate::client::RedirectPolicy`] refuses (anything but `https` by default).
    #[error("refused by policy: redirect URI scheme {scheme:?} refused (https required)")]
    InsecureRedirect {
        /// The refused scheme.
        scheme: String,
    },
    /// The server's redirect goes where the client's [`crate::client::RedirectPolicy`] does
    /// not allow: to a host not among its IdP hosts, or with an AuthnRequest issued by another
    /// relying party than the server's expected entityID.
    #[error("refused by policy: {0}")]
    RedirectRefused(String),
    /// The validated assertion names no subject (no NameID), so there is no identity.
    #[error("refused by policy: the assertion has no NameID")]
    NoNameId,
    /// The authenticated subject may not act as the requested authzid (the server's
    /// [`crate::server::ServerConfig::authorize`] policy, or by default an authzid other than
    /// the subject's NameID value).
    #[error("refused by policy: {subject} may not act as authzid {authzid:?}")]
    AuthzidRefused {
        /// The authenticated subject.
        subject: Identity,
        /// The requested authzid.
        authzid: String,
    },
    /// The asserting IdP may not assert this name under the server's
    /// [`crate::server::IdentityPolicy`] (a scoped name outside the IdP's `shibmd:Scope`s).
    #[error("{idp} may not assert {}{name:?}: {reason}", if *authzid { "the authzid " } else { "" })]
    OutOfScope {
        /// The asserting IdP's entityID.
        idp: String,
        /// The refused name (the NameID value, or the authzid).
        name: String,
        /// Whether the refused name is the requested authzid (else the subject's NameID).
        authzid: bool,
        /// Why.
        reason: String,
    },
    /// The SAML Response did not validate (signature, issuer, audience, time, replay...).
    #[error("SAML validation failed: {0}")]
    Saml(#[from] saml_core::Error),
    /// The server could not build an authentication request now (the request could not be
    /// encoded or signed; try again later).
    #[error("temporary failure: {0}")]
    Temporary(String),
    /// The exchange took longer than the session timeout.
    #[error("the SAML20 exchange timed out")]
    Timeout,
    /// The SAML Response is byte for byte (by SHA-256) one this session already refused while
    /// it waited: refused again without being parsed or verified again (sasl review I4: a
    /// repeat taught the session nothing, yet cost a full validation each time). It counts
    /// towards [`crate::server::MAX_REFUSED_RESPONSES`] like any refused Response; until then
    /// the session still waits. Only [`crate::server::Server::handle_saml_response`] returns it.
    #[error("refused again: this SAML Response is identical to one the session already refused")]
    RepeatedResponse,
    /// The IdP wants signed AuthnRequests (`WantAuthnRequestsSigned`) and the server has no
    /// signing key ([`crate::server::ServerConfig::signing_key`]): the request is not sent
    /// (the IdP would refuse it after the user was sent there). A configuration to fix.
    #[error("{idp} wants signed AuthnRequests and this server has no signing key")]
    SigningKeyNeeded {
        /// The IdP's entityID.
        idp: String,
    },
    /// The API was misused: called out of order, or with an unusable argument (an empty
    /// authzid, an IdP identifier that is not a domain). A bug in the caller, not in the peer.
    #[error("misuse: {0}")]
    State(String),
}

/// The cause of an [`Error`], for callers that branch on it (see [`Error::kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The peer's message is malformed ([`Error::Malformed`]).
    Malformed,
    /// Refused by policy or by a security check: an unknown IdP, an insecure redirect, a
    /// refused authzid or name, a SAML Response that does not validate, a timeout.
    Rejected,
    /// The API was called out of order or with a bad argument ([`Error::State`]).
    Misuse,
    /// A cryptographic or encoding operation of our own failed ([`Error::Temporary`]).
    Crypto,
}

impl Error {
    /// The cause of this error.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Malformed(_) => ErrorKind::Malformed,
            Error::UnknownIdp { .. }
            | Error::InsecureRedirect { .. }
            | Error::RedirectRefused(_)
            | Error::NoNameId
            | Error::AuthzidRefused { .. }
            | Error::OutOfScope { .. }
            | Error::Saml(_)
            | Error::Timeout
            | Error::RepeatedResponse => ErrorKind::Rejected,
            Error::Temporary(_) => ErrorKind::Crypto,
            Error::State(_) | Error::SigningKeyNeeded { .. } => ErrorKind::Misuse,
        }
    }

    /// The XMPP SASL failure condition for this error (RFC 6120 §6.5): `malformed-request`,
    /// `not-authorized`, `invalid-authzid` or `temporary-auth-failure`. Decided by variant
    /// only: `invalid-authzid` for [`Error::AuthzidRefused`] and an [`Error::OutOfScope`]
    /// authzid.
    #[must_use]
    pub fn xmpp_condition(&self) -> &'static str {
        match self {
            Error::Malformed(_) => "malformed-request",
            Error::AuthzidRefused { .. } | Error::OutOfScope { authzid: true, .. } => {
                "invalid-authzid"
            }
            Error::UnknownIdp { .. }
            | Error::InsecureRedirect { .. }
            | Error::RedirectRefused(_)
            | Error::NoNameId
            | Error::OutOfScope { .. }
            | Error::Saml(_)
            | Error::Timeout
            | Error::RepeatedResponse => "not-authorized",
            Error::Temporary(_) | Error::State(_) | Error::SigningKeyNeeded { .. } => {
                "temporary-auth-failure"
            }
        }
    }
}
