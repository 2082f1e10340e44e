//! The crate's error type, split by cause so that an application protocol can map it
//! ([`Error::xmpp_condition`] for XMPP, RFC 6120 §6.5).

/// Everything that can go wrong in a SAML20 exchange.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer's message breaks RFC 6595 / RFC 5801 (bad gs2 header, bad escape, not a domain,
    /// not the single byte `=`...).
    #[error("malformed SAML20 message: {0}")]
    Malformed(String),
    /// Refused by policy: unknown or untrusted IdP, a redirect that is not https, an authzid
    /// this server does not allow.
    #[error("refused by policy: {0}")]
    Policy(String),
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
    /// The server could not build an authentication request now (try again later).
    #[error("temporary failure: {0}")]
    Temporary(String),
    /// The exchange took longer than the session timeout.
    #[error("the SAML20 exchange timed out")]
    Timeout,
    /// The API was called out of order (a bug in the caller, not in the peer).
    #[error("misuse: {0}")]
    State(String),
}

impl Error {
    /// The XMPP SASL failure condition for this error (RFC 6120 §6.5): `malformed-request`,
    /// `not-authorized`, `invalid-authzid` or `temporary-auth-failure`.
    pub fn xmpp_condition(&self) -> &'static str {
        match self {
            Error::Malformed(_) => "malformed-request",
            Error::Policy(m) if m.contains("authzid") => "invalid-authzid",
            Error::OutOfScope { authzid: true, .. } => "invalid-authzid",
            Error::Policy(_) | Error::OutOfScope { .. } | Error::Saml(_) | Error::Timeout => {
                "not-authorized"
            }
            Error::Temporary(_) | Error::State(_) => "temporary-auth-failure",
        }
    }
}
