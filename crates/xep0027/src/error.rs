//! The crate's error type, split by what the caller can do about it.
//!
//! [`Error::kind`] sorts every error into an [`ErrorKind`]: malformed input, input refused by
//! policy or for security, misuse of the API, or a failure of the crypto backend or of IO. The
//! refusals a caller may branch on carry a typed reason: [`Freshness`] (replayed, too old, in
//! the future, superseded...), [`Mismatch`] (which signed binding did not match),
//! [`UnknownSigner`] (no certificate for the JID, or a key not among the sender's) and
//! [`NeedKey`] (no usable session or room key: offer or rotate one).

use std::fmt;
use std::time::Duration;

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
    #[error("{0}")]
    UnknownSigner(UnknownSigner),
    /// The signature does not verify: wrong key, tampered data, a key or algorithm the policy
    /// refuses, an expired or revoked key.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// The message could not be decrypted: no matching secret key, a wrong key, or tampered
    /// ciphertext. One error for every failure, so that it is no decryption oracle.
    #[error("decryption failed")]
    Decrypt,
    /// A signed timestamp outside the allowed skew, a stanza id seen before, a signature or a
    /// key used after its expiry, an older key: the stanza may be authentic but is refused
    /// now. The [`Freshness`] says which.
    #[error("replayed or stale: {0}")]
    Replay(Freshness),
    /// A signed binding does not match the stanza: the envelope names another sender or
    /// recipient, a key record is for another conversation or another member, a room key not
    /// from the room's moderator, a signature intended for other recipients. The [`Mismatch`]
    /// says which.
    #[error("binding mismatch: {0}")]
    Binding(Mismatch),
    /// A key or certificate this crate cannot use for the operation (no signing-capable or
    /// encryption-capable key under the policy, a secret key that is password-protected...).
    #[error("unusable key: {0}")]
    Key(String),
    /// No session or room key can seal or open this: none agreed yet, used up, expired, or
    /// not known for the id or epoch a peer names. The [`NeedKey`] says which.
    #[error("{0}")]
    NeedKey(NeedKey),
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

/// What kind of failure an [`Error`] is, for callers that only need to decide what to do:
/// drop the input, log a refusal, fix the program, or retry / alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input does not parse or lacks what the operation needs: XML, armor, OpenPGP
    /// packets, stanza structure, JIDs, times.
    Malformed,
    /// Well-formed input refused by policy or for security: a bad or unknown signature, a
    /// binding mismatch, a replay, a stale or future stamp, an undecryptable message, a key the
    /// policy refuses, a key id or epoch this side does not have.
    Rejected,
    /// The API was used in the wrong order or with a bad configuration (sealing before a key
    /// is agreed, a seal limit reached, an identity that is not the store's owner...).
    Misuse,
    /// The crypto backend or IO failed (OpenSSL, reading a keyring file).
    Backend,
}

impl Error {
    /// What kind of failure this is (see [`ErrorKind`]).
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Xml(_) | Error::Armor(_) | Error::OpenPgp(_) | Error::Stanza(_) => {
                ErrorKind::Malformed
            }
            Error::UnknownSigner(_)
            | Error::BadSignature(_)
            | Error::Decrypt
            | Error::Replay(_)
            | Error::Binding(_)
            | Error::Key(_) => ErrorKind::Rejected,
            Error::NeedKey(n) => n.kind(),
            Error::State(_) => ErrorKind::Misuse,
            Error::Io(_) | Error::OpenSsl(_) => ErrorKind::Backend,
        }
    }
}

/// Which certificate was missing (in [`Error::UnknownSigner`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnknownSigner {
    /// No certificate is bound to this JID (bare or full, as the stanza gave it).
    Jid(String),
    /// The signature was made by this key (its hex id or fingerprint), which is not among the
    /// certificates bound to the sender.
    Key(String),
}

impl fmt::Display for UnknownSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnknownSigner::Jid(j) => write!(f, "no certificate for {j}"),
            UnknownSigner::Key(k) => {
                write!(
                    f,
                    "no certificate for key {k} (not among the sender's certificates)"
                )
            }
        }
    }
}

/// Why a possibly authentic stanza or key is refused now (in [`Error::Replay`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Freshness {
    /// This `(sender, id)` pair was already accepted: a replay.
    Duplicate {
        /// The sender (bare JID).
        sender: String,
        /// The stanza id.
        id: String,
    },
    /// The stamp is older than `now` by more than the allowed skew.
    Stale {
        /// How far in the past.
        behind: Duration,
        /// The allowed skew.
        skew: Duration,
    },
    /// The stamp is ahead of `now` by more than the allowed skew.
    Future {
        /// How far in the future.
        ahead: Duration,
        /// The allowed skew.
        skew: Duration,
    },
    /// The stamp is not newer than an entry the full replay window had to forget (of this
    /// sender, or of everyone when `sender` is `None`), or than what a window resumed after
    /// a restart may have accepted before it ([`crate::envelope::ReplayWindow::resume`]):
    /// refused, since it can no longer be told from a replay.
    Forgotten {
        /// The sender whose floor it is, or `None` for the window-wide floor.
        sender: Option<String>,
    },
    /// The OpenPGP signature time and the signed stamp disagree.
    ClockMismatch,
    /// The session key or room epoch has expired (at the message's stamp or at `now`).
    KeyExpired {
        /// The session key id, or the room epoch in decimal.
        key: String,
    },
    /// A session key offer with an id seen before.
    OfferSeen {
        /// The key id.
        id: String,
    },
    /// A session key offer created in the future (beyond the clock skew).
    OfferFromFuture {
        /// The key id.
        id: String,
    },
    /// A session key offer not newer than the newest one accepted from this peer.
    OfferNotNewer {
        /// The key id.
        id: String,
        /// The peer (bare JID).
        peer: String,
    },
    /// A session key offer older than every one of the most keys kept with this peer
    /// ([`crate::session::MAX_KEYS_PER_PEER`], both directions): it would be dropped as soon
    /// as stored.
    OfferSuperseded {
        /// The key id.
        id: String,
        /// The peer (bare JID).
        peer: String,
    },
    /// A session key offer whose expiry is more than the longest lifetime allowed after its
    /// creation (or not after it).
    OfferLifetime {
        /// The key id.
        id: String,
        /// The longest lifetime allowed.
        max: Duration,
    },
    /// A room key whose epoch is not newer than the member's current one.
    EpochNotNewer {
        /// The epoch offered.
        epoch: u64,
        /// The member's current epoch.
        current: u64,
    },
    /// A room message sealed with an epoch superseded by a newer key for longer than the
    /// grace period.
    EpochSuperseded {
        /// The epoch it was sealed with.
        epoch: u64,
        /// The newer epoch.
        newer: u64,
    },
    /// A room key that would live longer than allowed, not at all, or was created in the
    /// future.
    RoomKeyLifetime {
        /// Its epoch.
        epoch: u64,
        /// The longest lifetime allowed.
        max: Duration,
    },
}

impl fmt::Display for Freshness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Freshness::Duplicate { sender, id } => {
                write!(f, "stanza id {id:?} from {sender} was already accepted")
            }
            Freshness::Stale { behind, skew } => write!(
                f,
                "stamp is {}s in the past (allowed skew {}s)",
                behind.as_secs(),
                skew.as_secs()
            ),
            Freshness::Future { ahead, skew } => write!(
                f,
                "stamp is {}s in the future (allowed skew {}s)",
                ahead.as_secs(),
                skew.as_secs()
            ),
            Freshness::Forgotten { sender: Some(s) } => write!(
                f,
                "stamp older than what the replay window still remembers of {s}"
            ),
            Freshness::Forgotten { sender: None } => write!(
                f,
                "stamp older than what the full replay window still remembers"
            ),
            Freshness::ClockMismatch => {
                write!(f, "the signature time and the signed stamp disagree")
            }
            Freshness::KeyExpired { key } => write!(f, "key {key} has expired"),
            Freshness::OfferSeen { id } => write!(f, "session key {id} was already offered"),
            Freshness::OfferFromFuture { id } => {
                write!(f, "session key {id} is created in the future")
            }
            Freshness::OfferNotNewer { id, peer } => write!(
                f,
                "session key {id} is not newer than the newest one accepted from {peer}"
            ),
            Freshness::OfferSuperseded { id, peer } => write!(
                f,
                "session key {id} is older than every key held with {peer}"
            ),
            Freshness::OfferLifetime { id, max } => write!(
                f,
                "session key {id} would live longer than the {}s allowed, or not at all",
                max.as_secs()
            ),
            Freshness::RoomKeyLifetime { epoch, max } => write!(
                f,
                "room key epoch {epoch} would live longer than the {}s allowed, not at all, \
                 or was created in the future",
                max.as_secs()
            ),
            Freshness::EpochNotNewer { epoch, current } => {
                write!(f, "room key epoch {epoch} is not newer than {current}")
            }
            Freshness::EpochSuperseded { epoch, newer } => write!(
                f,
                "sealed with room key epoch {epoch}, superseded by epoch {newer}"
            ),
        }
    }
}

/// Which signed binding did not match (in [`Error::Binding`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mismatch {
    /// The stanza's sender is not the signed one.
    Sender {
        /// The stanza's sender (bare JID).
        stanza: String,
        /// The signed sender.
        signed: String,
    },
    /// The stanza's recipient is not the signed one (empty: none).
    Recipient {
        /// The stanza's recipient (bare JID, empty when it has none).
        stanza: String,
        /// The signed recipient (empty when it names none).
        signed: String,
    },
    /// Another room: a groupchat reflected by another room than the envelope names, a room
    /// key or sealed message for another room.
    Room {
        /// The room this side expected.
        expected: String,
        /// The room named.
        got: String,
    },
    /// A room key addressed to another member.
    Member {
        /// This member.
        expected: String,
        /// The member named in the signed record.
        got: String,
    },
    /// A session key record for another conversation.
    Conversation {
        /// The signed `from -> to`.
        signed: String,
        /// The stanza's `from -> to`.
        stanza: String,
    },
    /// An attribute of the stanza differs from the signed record it repeats.
    Attribute(&'static str),
    /// A room key not from (or not signed by) the room's pinned moderator.
    NotModerator {
        /// Who sent it (bare JID).
        from: String,
    },
    /// A signature inside an encrypted message names intended recipients, and not the reader.
    IntendedRecipient {
        /// The signer's fingerprint.
        signer: String,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Sender { stanza, signed } => {
                write!(f, "stanza from {stanza} but signed for sender {signed}")
            }
            Mismatch::Recipient { stanza, signed } => {
                write!(f, "stanza to {stanza:?} but signed for {signed:?}")
            }
            Mismatch::Room { expected, got } => write!(f, "for room {got:?}, not {expected}"),
            Mismatch::Member { expected, got } => {
                write!(f, "room key addressed to {got}, not {expected}")
            }
            Mismatch::Conversation { signed, stanza } => {
                write!(f, "the key record is for {signed}, the stanza is {stanza}")
            }
            Mismatch::Attribute(what) => {
                write!(f, "the {what} attribute differs from what is signed")
            }
            Mismatch::NotModerator { from } => {
                write!(f, "room key from {from} is not from the room's moderator")
            }
            Mismatch::IntendedRecipient { signer } => write!(
                f,
                "the signature by {signer} is intended for other recipients"
            ),
        }
    }
}

/// Which session or room key is missing or used up (in [`Error::NeedKey`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NeedKey {
    /// No unexpired session key with this peer: offer one.
    NoSessionKey {
        /// The peer (bare JID).
        peer: String,
    },
    /// This side sealed the session key's limit of messages: offer a new one.
    SessionSealLimit {
        /// The key id.
        key: String,
        /// The limit.
        limit: u64,
    },
    /// This member has no room key yet.
    NoRoomKey,
    /// This member sealed its limit of messages with the room key: the moderator must rotate.
    RoomSealLimit {
        /// The epoch.
        epoch: u64,
        /// The limit.
        limit: u64,
    },
    /// The newest room key has expired: the moderator must rotate.
    RoomKeyExpired {
        /// The epoch.
        epoch: u64,
    },
    /// A sealed message names a session key id not agreed with its sender.
    UnknownSessionKey {
        /// The peer (bare JID).
        peer: String,
        /// The key id named.
        key: String,
    },
    /// A sealed room message names an epoch this member has no key for.
    UnknownEpoch {
        /// The epoch named.
        epoch: u64,
    },
}

impl NeedKey {
    /// Sealing-side needs are the caller's to fix ([`ErrorKind::Misuse`]); a peer naming a key
    /// this side lacks is refused input ([`ErrorKind::Rejected`]).
    fn kind(&self) -> ErrorKind {
        match self {
            NeedKey::UnknownSessionKey { .. } | NeedKey::UnknownEpoch { .. } => ErrorKind::Rejected,
            _ => ErrorKind::Misuse,
        }
    }
}

impl fmt::Display for NeedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NeedKey::NoSessionKey { peer } => {
                write!(f, "no unexpired session key with {peer}: offer one")
            }
            NeedKey::SessionSealLimit { key, limit } => write!(
                f,
                "session key {key} has sealed {limit} messages: offer a new one"
            ),
            NeedKey::NoRoomKey => write!(f, "no room key yet"),
            NeedKey::RoomSealLimit { epoch, limit } => write!(
                f,
                "this member sealed {limit} messages with room key epoch {epoch}: the moderator must rotate"
            ),
            NeedKey::RoomKeyExpired { epoch } => write!(
                f,
                "room key epoch {epoch} has expired: the moderator must rotate"
            ),
            NeedKey::UnknownSessionKey { peer, key } => {
                write!(f, "no session key {key} with {peer}")
            }
            NeedKey::UnknownEpoch { epoch } => write!(f, "no room key for epoch {epoch}"),
        }
    }
}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// A short, single-line description of a sequoia error with its whole chain.
pub(crate) fn pgp_msg(e: &sequoia_openpgp::anyhow::Error) -> String {
    format!("{e:#}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(Error::Xml("x".into()).kind(), ErrorKind::Malformed);
        assert_eq!(Error::Decrypt.kind(), ErrorKind::Rejected);
        assert_eq!(
            Error::Binding(Mismatch::Attribute("id")).kind(),
            ErrorKind::Rejected
        );
        assert_eq!(Error::State("x".into()).kind(), ErrorKind::Misuse);
        assert_eq!(Error::NeedKey(NeedKey::NoRoomKey).kind(), ErrorKind::Misuse);
        assert_eq!(
            Error::NeedKey(NeedKey::UnknownEpoch { epoch: 3 }).kind(),
            ErrorKind::Rejected
        );
        let io = std::io::Error::other("disk");
        assert_eq!(Error::from(io).kind(), ErrorKind::Backend);
        assert_eq!(
            Error::Replay(Freshness::Duplicate {
                sender: "a@x".into(),
                id: "1".into()
            })
            .to_string(),
            "replayed or stale: stanza id \"1\" from a@x was already accepted"
        );
    }
}
