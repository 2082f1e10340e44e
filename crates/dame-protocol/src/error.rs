//! The crate's one error type, split by cause.

pub use saml_core::ErrorKind;

/// Why a DAME message or request was refused: what a caller branches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// A message that must be signed carries no `SigAlg`/`Signature`.
    Unsigned,
    /// The signature does not verify with any key trusted for its sender.
    BadSignature,
    /// Issued longer ago than the receiver accepts.
    Stale,
    /// Issued in the future beyond the allowed clock skew.
    FromFuture,
    /// A nonce that was already accepted (replay).
    Replayed,
    /// Addressed to another entity.
    NotForUs,
    /// The sender, or the entity named, is not registered with the receiver.
    UnknownEntity,
    /// The discovery `return` URL is not a `DiscoveryResponse` endpoint of the SP's metadata
    /// (IdP Discovery Profile §2.4.1: no open redirect).
    ReturnNotRegistered,
    /// The AuthnRequest's Issuer is not the SP that sent it.
    IssuerMismatch,
    /// A policy (allow or deny list, pair policy) forbids it.
    NotPermitted,
    /// A rate limit was hit.
    RateLimited,
    /// Too many entries would have to be remembered (a replay or rate-limit table is full of
    /// live entries): refused rather than forgetting one.
    Capacity,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Unsigned => "the message is not signed",
            Refusal::BadSignature => "the signature does not verify with the sender's keys",
            Refusal::Stale => "the message is too old",
            Refusal::FromFuture => "the message is dated in the future",
            Refusal::Replayed => "the message was already received (replay)",
            Refusal::NotForUs => "the message is addressed to another entity",
            Refusal::UnknownEntity => "the entity is not registered",
            Refusal::ReturnNotRegistered => {
                "the return URL is not a DiscoveryResponse endpoint of the SP"
            }
            Refusal::IssuerMismatch => "the AuthnRequest's Issuer is not the requesting SP",
            Refusal::NotPermitted => "a policy forbids it",
            Refusal::RateLimited => "rate limit exceeded",
            Refusal::Capacity => "too many live entries to remember another",
        })
    }
}

/// Everything that can go wrong in `dame-protocol`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A message or query string is malformed: a parameter missing, repeated, badly encoded or
    /// out of bounds.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which message or parameter.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Well-formed, refused by a security or policy rule.
    #[error("refused: {0}")]
    Refused(Refusal),
    /// From saml-core (a binding, an AuthnRequest, a signature primitive).
    #[error(transparent)]
    Saml(#[from] saml_core::Error),
    /// From saml-metadata (keys or endpoints of an entity).
    #[error(transparent)]
    Metadata(#[from] saml_metadata::Error),
}

impl Error {
    pub(crate) fn malformed(what: &'static str, reason: impl Into<String>) -> Self {
        Error::Malformed {
            what,
            reason: reason.into(),
        }
    }

    /// What kind of failure this is.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Malformed { .. } => ErrorKind::Malformed,
            Error::Refused(_) => ErrorKind::Rejected,
            Error::Saml(e) => e.kind(),
            Error::Metadata(e) => e.kind(),
        }
    }

    /// The refusal, if this is one.
    #[must_use]
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            Error::Refused(r) => Some(*r),
            _ => None,
        }
    }
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        Error::Refused(r)
    }
}
