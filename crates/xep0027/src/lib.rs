//! # xep0027
//!
//! XEP-0027 (Current Jabber OpenPGP Usage) for XMPP: OpenPGP-signed presence and messages
//! (`jabber:x:signed`) and encrypted messages (`jabber:x:encrypted`), interoperable with GnuPG
//! and the clients that use it, through sequoia-openpgp with its OpenSSL backend. On top, what
//! inter-module messaging needs and XEP-0027 lacks: a signed envelope binding sender,
//! recipient, stanza id and time with a replay window ([`envelope`]), per-conversation
//! session keys ([`session`]) and moderator-distributed room keys ([`room`]).
//!
//! Modules, after the spec concepts: [`stanza`] (presence/message element trees that keep
//! every other child), [`armor`] (XEP-0027's stripped armor, read tolerantly), [`signed`]
//! (§3, §4), [`encrypted`] (§5, signed inside), [`openpgp`] (the byte-level operations),
//! [`keys`] (certificate lookup by key and by JID, keyrings, secret keys, one's identity),
//! [`policy`] (standard, or the explicit legacy SHA-1-era option), [`jid`], [`time`]
//! (XEP-0082), [`symmetric`] (AES-256-GCM and the randomness input), [`ns`] (every XML
//! namespace), [`error`].
//!
//! The modules depend on each other in one direction only (no cycles); each uses only those
//! on earlier lines:
//!
//! 1. [`error`], [`ns`]
//! 2. [`jid`], [`time`], [`armor`], [`policy`], [`symmetric`]
//! 3. [`stanza`] (uses `jid`, `armor`'s size limit)
//! 4. [`keys`], then [`openpgp`] (uses `keys::SecretKeyStore`), then the private `canonical`
//!    (signed records)
//! 5. [`signed`], [`encrypted`]
//! 6. [`envelope`] (recognises encrypted and sealed payloads through [`ns`] and
//!    [`encrypted::payload`])
//! 7. [`session`], [`room`] (seal with the envelope, check with [`envelope::ReplayWindow`])
//!
//! What is guaranteed against a hostile peer (each with its regression test): decrypting one
//! message costs at most [`openpgp::MAX_DECRYPTION_ATTEMPTS`] private-key operations, with
//! encryption-capable keys only, over at most [`openpgp::MAX_PKESKS`] PKESKs, and produces at
//! most [`openpgp::MAX_DECRYPTED_LEN`] bytes at every packet depth, streamed (a compression bomb
//! is refused in constant memory), with at most [`openpgp::MAX_SIGNATURES`] signatures inside
//! (each a hash pass over the plaintext); a detached signature block is at most
//! [`openpgp::MAX_SIGNATURES`] signatures and verification passes; a stanza is at most
//! [`stanza::Limits::max_nodes`] elements, attributes and text nodes; a peer holds at most
//! [`session::MAX_KEYS_PER_PEER`] session keys, each living at most
//! [`session::MAX_SESSION_KEY_LIFETIME`]; a key speaks for a JID only when pinned
//! ([`keys::Keyring::bind`]) or, by explicit choice, through a valid self-signed `xmpp:` User
//! ID; the replay window is shared fairly between senders and never goes back in time; a room
//! member refuses older epochs once a newer key is accepted, after a short grace, and takes
//! room messages only as the room reflected them.
//!
//! Errors: one [`Error`] enum; [`Error::kind`] sorts it into an [`ErrorKind`] (malformed
//! input, refused by policy or for security, misuse, backend failure), and the refusals a
//! caller branches on carry typed reasons ([`error::Freshness`]: replay, stale, future...;
//! [`error::Mismatch`]: which binding; [`error::UnknownSigner`]; [`error::NeedKey`]).
//!
//! Sans-IO: time (`now`) and, for the symmetric layer, randomness ([`symmetric::Random`]) are
//! inputs; nothing here reads the clock or does IO (except [`keys::Keyring::from_file`]).
//! OpenPGP's own randomness (session keys inside OpenPGP messages, key generation) comes from
//! sequoia's OpenSSL backend.
//!
//! Signed presence with an envelope, checked by the receiver:
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use xep0027::{Error, ErrorKind, error::Freshness};
//! use xep0027::{envelope, signed, jid::Jid, keys::{Identity, Keyring, Suite}, policy::Policy, stanza::Stanza};
//!
//! let now = SystemTime::now();
//! let policy = Policy::standard();
//! let alice = Identity::generate(&Jid::new("alice@example.org")?, Suite::Cv25519, now, None)?;
//! let mut known = Keyring::new();
//! known.insert_pinned(alice.jid(), alice.public_cert()); // this fingerprint is alice's
//!
//! let mut p = Stanza::parse("<presence id='p1'><status>Online</status></presence>")?;
//! signed::sign(&mut p, &alice, &policy, now)?;
//! envelope::seal(&mut p, &alice, &policy, now)?;
//!
//! // The server stamps 'from'; the receiver checks.
//! let got = Stanza::parse(&p.to_xml())?.with_attr("from", "alice@example.org/desk");
//! let mut window = envelope::ReplayWindow::new(Duration::from_secs(300), 10_000);
//! let checked = envelope::check(&got, &known, &policy, &mut window, now)?;
//! assert_eq!(checked.sender.bare(), "alice@example.org");
//! assert_eq!(signed::verify(&got, &known, &policy, now)?.signer, alice.fingerprint());
//! // The same stanza again is a replay.
//! let again = envelope::check(&got, &known, &policy, &mut window, now).unwrap_err();
//! assert_eq!(again.kind(), ErrorKind::Rejected);
//! assert!(matches!(again, Error::Replay(Freshness::Duplicate { .. })));
//! # Ok::<(), xep0027::Error>(())
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod armor;
mod canonical;
pub mod encrypted;
pub mod envelope;
pub mod error;
pub mod jid;
pub mod keys;
pub mod ns;
pub mod openpgp;
pub mod policy;
pub mod room;
pub mod session;
pub mod signed;
pub mod stanza;
pub mod symmetric;
pub mod time;

pub use error::{Error, ErrorKind, Result};
/// The sequoia-openpgp this crate is built on (certificates, fingerprints, policies).
pub use sequoia_openpgp;
