//! The crate's one error type, split by cause.

/// What kind of failure an [`Error`] is: what a caller branches on (the same kinds as
/// saml-core's, plus transport failures from fetching).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Malformed input.
    Malformed,
    /// Refused by a security check or a policy.
    Rejected,
    /// The API was used wrongly (a key that cannot sign, a call out of order).
    Misuse,
    /// A cryptographic operation failed.
    Crypto,
    /// A fetch failed (the broker or a peer could not be reached, or answered an error).
    Transport,
}

impl From<saml_core::ErrorKind> for ErrorKind {
    fn from(k: saml_core::ErrorKind) -> Self {
        match k {
            saml_core::ErrorKind::Malformed => ErrorKind::Malformed,
            saml_core::ErrorKind::Rejected => ErrorKind::Rejected,
            saml_core::ErrorKind::Crypto => ErrorKind::Crypto,
            _ => ErrorKind::Misuse,
        }
    }
}

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
    /// live entries, or the broker runs its maximum of flows): refused rather than forgetting
    /// one.
    Capacity,
    /// The entityID is already registered.
    Duplicate,
    /// The entityID's registrable domain holds the most self-registered entities the
    /// registry admits per domain ([`crate::registry::Registry::max_per_domain`]).
    DomainFull,
    /// No flow of that identifier is running (never was, finished, or expired).
    UnknownFlow,
    /// The message is not expected in the flow's current state (the flow is unchanged).
    WrongState,
    /// The message names another SP or IdP than the flow it was sent into.
    WrongFlow,
    /// The entity has no DAME `MetadataSyncLocation`: it cannot take part in an exchange.
    NotDameCapable,
    /// The metadata fetched is not of the role expected (an SP's agent integrates IdPs only,
    /// an IdP's agent SPs only).
    WrongRole,
    /// The peer's `<sha1>.xml` is in the integration directory without the `.xml.loc` DAME
    /// writes first: the operator configured it by hand, and DAME neither replaces nor removes
    /// it (agent review M4).
    StaticallyConfigured,
    /// A rollback for the peer was accepted while its metadata was being fetched, and no
    /// fetch trigger issued after that rollback joined the fetch: what was fetched is not
    /// integrated (agent review M1).
    RolledBack,
    /// A trigger about the peer issued after this one was already accepted: the broker's
    /// later decision stands, whatever order the two arrived in (agent review M1).
    Superseded,
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
            Refusal::Duplicate => "the entityID is already registered",
            Refusal::DomainFull => "the entityID's domain holds its maximum of registered entities",
            Refusal::UnknownFlow => "no such flow (never started, finished or expired)",
            Refusal::WrongState => "not expected in the flow's current state",
            Refusal::WrongFlow => "the message names another SP or IdP than the flow",
            Refusal::NotDameCapable => "the entity has no DAME MetadataSyncLocation",
            Refusal::WrongRole => "the metadata is not of the role expected",
            Refusal::StaticallyConfigured => {
                "the peer's metadata is statically configured (not written by DAME)"
            }
            Refusal::RolledBack => "rolled back while fetching",
            Refusal::Superseded => "a later trigger about the peer was already accepted",
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
    /// A valid request this implementation cannot carry out faithfully (a conversion rule a
    /// product's configuration cannot express).
    #[error("unsupported by {what}: {reason}")]
    Unsupported {
        /// Which generator or feature.
        what: &'static str,
        /// What is not supported.
        reason: String,
    },
    /// From mdq-client (the provider's fetch of its peer from the broker).
    #[error(transparent)]
    Mdq(#[from] mdq_client::Error),
    /// Self-registered metadata carries a claim that proof of ownership of the entityID's host
    /// does not back (a shibmd:Scope outside that host's domain, a regexp scope, entity
    /// attributes, registration info): only an operator's import may carry it
    /// ([`crate::registry::validate_self_registered`]).
    #[error("refused in self-registered metadata: {claim} (only an operator import may carry it)")]
    Unvouched {
        /// The claim refused, as the registrant should read it.
        claim: String,
    },
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
            Error::Unsupported { .. } => ErrorKind::Misuse,
            Error::Unvouched { .. } => ErrorKind::Rejected,
            Error::Saml(e) => e.kind().into(),
            Error::Metadata(e) => e.kind().into(),
            Error::Mdq(e) => match e.kind() {
                mdq_client::ErrorKind::Malformed => ErrorKind::Malformed,
                mdq_client::ErrorKind::Rejected => ErrorKind::Rejected,
                mdq_client::ErrorKind::Transport => ErrorKind::Transport,
                _ => ErrorKind::Misuse,
            },
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
