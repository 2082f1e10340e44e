//! The crate's error type, split by what the caller can do about it.

/// Everything that can go wrong reading, checking, signing or encrypting a stanza.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The stanza is not well-formed XML, or breaks the XMPP restrictions on XML (RFC 6120
    /// §11.1: no DTD, comments, processing instructions or entity references beyond the five
    /// predefined ones), or exceeds a size or depth limit.
    #[error("malformed stanza: {0}")]
    Xml(String),
    /// The element text of `jabber:x:signed` / `jabber:x:encrypted` (or one of this crate's
    /// extension elements) is not OpenPGP armor or base64 this crate accepts.
    #[error("malformed armor: {0}")]
    Armor(String),
    /// An OpenPGP packet sequence that does not parse, or has the wrong structure (a message
    /// where a detached signature is expected, several literal data packets...).
    #[error("malformed OpenPGP data: {0}")]
    OpenPgp(String),
    /// The stanza lacks what the operation needs (no `from`, no `id`, no signature element...)
    /// or has something ambiguous (several `<status/>` elements, several signatures...).
    #[error("invalid stanza: {0}")]
    Stanza(String),
    /// No certificate is known for the signer (or for the sender's JID), so nothing can be
    /// verified.
    #[error("no certificate for {0}")]
    UnknownSigner(String),
    /// The signature does not verify: wrong key, tampered data, a key or algorithm the policy
    /// refuses, an expired or revoked key.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// The message could not be decrypted: no matching secret key, a wrong key, or tampered
    /// ciphertext. One error for every failure, so that it is no decryption oracle.
    #[error("decryption failed")]
    Decrypt,
    /// A signed timestamp outside the allowed skew, a stanza id seen before, a signature or a
    /// key used after its expiry: the stanza may be authentic but is refused now.
    #[error("replayed or stale: {0}")]
    Replay(String),
    /// A signed binding does not match the stanza: the envelope names another sender or
    /// recipient, a key record is for another conversation or another member, a room key not
    /// from the room's moderator, an older key epoch.
    #[error("binding mismatch: {0}")]
    Binding(String),
    /// A key or certificate this crate cannot use for the operation (no signing-capable or
    /// encryption-capable key under the policy, a secret key that is password-protected...).
    #[error("unusable key: {0}")]
    Key(String),
    /// An input/output error reading a keyring file.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// OpenSSL failed (randomness, AES-GCM).
    #[error("OpenSSL: {0}")]
    OpenSsl(#[from] openssl::error::ErrorStack),
    /// The API was used in a way that cannot work (a bug in the caller, not in the peer).
    #[error("misuse: {0}")]
    State(String),
}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// A short, single-line description of a sequoia error with its whole chain.
pub(crate) fn pgp_msg(e: &sequoia_openpgp::anyhow::Error) -> String {
    format!("{e:#}")
}
