//! The crate's error type.

/// Everything that can go wrong in an MDQ lookup.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The base URL or identifier cannot be used (draft-young-md-query §3).
    #[error("bad MDQ URL: {0}")]
    Url(String),
    /// The server answered something the protocol does not allow, or the body is unusable
    /// (status, content type, encoding, size, XML).
    #[error("bad MDQ response: {0}")]
    Response(String),
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
    /// Transport failure reported by the IO adapter (connect, timeout, TLS, truncated body).
    #[error("transport: {0}")]
    Transport(String),
    /// A persistent cache file is unusable (unreadable, malformed, out-of-range expiry); the
    /// entry is skipped.
    #[error("persistent cache: {0}")]
    Cache(String),
    /// The API was used out of order (an unknown fetch token).
    #[error("misuse: {0}")]
    State(String),
}
