//! The crate's error type.

pub use saml_core::ErrorKind;
use saml_core::xml::cursor::{CursorError, Malformed};

/// Everything that can go wrong reading or checking metadata.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// XML or signature error from saml-core (malformed XML, signature rejected...).
    #[error(transparent)]
    Core(#[from] saml_core::Error),
    /// A metadata element breaks the schema: missing or malformed attribute, wrong child.
    #[error("invalid <{element}> at byte {offset}: {message}")]
    Invalid {
        /// Local name of the element.
        element: String,
        /// Byte offset of its start tag.
        offset: usize,
        /// What is wrong.
        message: String,
    },
    /// A model value that cannot be written as valid metadata (the parser would refuse it).
    #[error("cannot write <{element}>: {message}")]
    Unwritable {
        /// Local name of the element.
        element: String,
        /// What is missing or wrong.
        message: String,
    },
    /// Two entities with the same entityID in one aggregate.
    #[error("duplicate entityID {0:?}")]
    DuplicateEntityId(String),
    /// The metadata is expired (validUntil in the past, allowing the configured skew).
    #[error("metadata expired: validUntil {valid_until} is before now {now}")]
    Expired {
        /// The validUntil, RFC 3339.
        valid_until: String,
        /// The time given as now, RFC 3339.
        now: String,
    },
    /// The metadata has no validUntil although the policy requires one.
    #[error("metadata has no validUntil, which the policy requires")]
    NoValidUntil,
    /// validUntil lies further in the future than the policy allows.
    #[error("validUntil {valid_until} is more than {max_days} days ahead")]
    ValidityTooLong {
        /// The validUntil, RFC 3339.
        valid_until: String,
        /// The configured maximum, in days.
        max_days: u64,
    },
    /// Writing the output failed ([`crate::selection`]).
    #[error("writing the output: {0}")]
    Output(#[source] std::io::Error),
}

impl From<Malformed> for Error {
    fn from(m: Malformed) -> Self {
        Error::Invalid {
            element: m.element,
            offset: m.offset,
            message: m.message,
        }
    }
}

impl From<CursorError> for Error {
    fn from(e: CursorError) -> Self {
        match e {
            CursorError::Malformed(m) => m.into(),
            CursorError::Xml(e) => Error::Core(e),
        }
    }
}

impl Error {
    /// What kind of failure this is (saml-core's [`ErrorKind`]): a schema violation is
    /// malformed input, an expired or duplicate-carrying document is rejected by policy, a model
    /// that cannot be written is misuse.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Core(e) => e.kind(),
            Error::Invalid { .. } => ErrorKind::Malformed,
            Error::Unwritable { .. } => ErrorKind::Misuse,
            Error::DuplicateEntityId(_)
            | Error::Expired { .. }
            | Error::NoValidUntil
            | Error::ValidityTooLong { .. } => ErrorKind::Rejected,
            Error::Output(_) => ErrorKind::Io,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_the_cause() {
        let invalid = Error::Invalid {
            element: "EntityDescriptor".into(),
            offset: 0,
            message: "no entityID".into(),
        };
        assert_eq!(invalid.kind(), ErrorKind::Malformed);
        assert_eq!(Error::NoValidUntil.kind(), ErrorKind::Rejected);
        assert_eq!(
            Error::Core(saml_core::Error::Usage("no keys".into())).kind(),
            ErrorKind::Misuse
        );
    }
}
