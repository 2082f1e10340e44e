//! The crate's error type, split by cause ([`Error::kind`]).

/// Everything that can go wrong in an MDQ lookup.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The base URL or identifier cannot be used (draft-young-md-query §3).
    #[error("bad MDQ URL: {0}")]
    Url(String),
    /// The server answered something the protocol does not allow, or the body is unusable
    /// (content type, encoding, XML, a 304 for nothing cached, an aggregate without the entity).
    #[error("bad MDQ response: {0}")]
    Response(String),
    /// The server answered with an HTTP status that carries no metadata (406: it cannot send
    /// SAML metadata; 5xx after the adapter's retries; any other code but 200, 304 and 404).
    #[error("bad MDQ response: HTTP status {status}")]
    Status {
        /// The HTTP status code.
        status: u16,
    },
    /// The body is larger than [`crate::Config::max_body`] (before or after gzip decoding).
    #[error("bad MDQ response: body larger than {max} bytes")]
    TooLarge {
        /// The limit, in bytes.
        max: usize,
    },
    /// The metadata failed verification (signature, validity) or loading.
    #[error("metadata rejected: {0}")]
    Metadata(#[from] saml_metadata::Error),
    /// A validly signed document describes another entity than the one requested.
    #[error("the server answered for {found:?}, not the requested {requested}")]
    WrongEntity {
        /// What was asked for.
        requested: String,
        /// The entityID in the document.
        found: String,
    },
    /// The answer holds the requested entity, but it was left out of the verified document:
    /// expired, or a signature of its own did not verify. Not a "not found" (which is cached
    /// as such): the server has the entity and sent one that cannot be used.
    #[error("the answer's {entity_id} was left out: {reason}")]
    EntityLeftOut {
        /// The entity's entityID.
        entity_id: String,
        /// Why: expired, or its own signature's failure.
        reason: String,
    },
    /// Transport failure reported by the IO adapter (connect, timeout, TLS, truncated body).
    #[error("transport: {0}")]
    Transport(String),
    /// The server is not asked now: its last fetches failed in a row
    /// ([`crate::client::Lookup::Unavailable`]); `until` (RFC 3339) is when it is asked again.
    #[error("the MDQ server failed {failures} fetches in a row: not asked again before {until}")]
    Unavailable {
        /// Fetches failed in a row.
        failures: u32,
        /// When a lookup may fetch again (RFC 3339).
        until: String,
    },
    /// A persistent cache file is unusable (unreadable, malformed, out-of-range expiry); the
    /// entry is skipped.
    #[error("persistent cache: {0}")]
    Cache(String),
    /// The API was used out of order (an unknown fetch token), or an adapter's lock was
    /// poisoned by a panic in another thread.
    #[error("misuse: {0}")]
    State(String),
}

/// The cause of an [`Error`], for callers that branch on it (see [`Error::kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Malformed input: a bad URL or identifier, a response the protocol does not allow, an
    /// unusable persistent cache file.
    Malformed,
    /// Refused by policy or by a security check: metadata that does not verify, another
    /// entity than the one asked for, a body over the size limit.
    Rejected,
    /// The API was used out of order.
    Misuse,
    /// The transport or the server failed (connect, TLS, timeout, an error status).
    Transport,
}

impl Error {
    /// The cause of this error.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Url(_) | Error::Response(_) | Error::Cache(_) => ErrorKind::Malformed,
            Error::Metadata(_)
            | Error::WrongEntity { .. }
            | Error::TooLarge { .. }
            | Error::EntityLeftOut { .. } => ErrorKind::Rejected,
            Error::Status { .. } | Error::Transport(_) | Error::Unavailable { .. } => {
                ErrorKind::Transport
            }
            Error::State(_) => ErrorKind::Misuse,
        }
    }
}
