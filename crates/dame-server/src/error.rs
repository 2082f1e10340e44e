//! The crate's one error type.

/// Everything that can go wrong in the services.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is wrong: `key` names the setting.
    #[error("configuration: {key}: {message}")]
    Config {
        /// The setting (TOML key), or the file.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// From the protocol library.
    #[error(transparent)]
    Protocol(#[from] dame_protocol::Error),
    /// The store failed (database).
    #[error("store: {0}")]
    Store(String),
    /// A one-time value (an AuthnRequest1 ID, a status report's nonce) was already used,
    /// on this or another broker instance; nothing of the call was written.
    #[error("replayed: {0}")]
    Replayed(String),
    /// An HTTP client could not be built.
    #[error("http client: {0}")]
    Http(String),
}

impl Error {
    pub(crate) fn config(key: &str, message: impl Into<String>) -> Self {
        Error::Config {
            key: key.to_owned(),
            message: message.into(),
        }
    }
}
