//! `xep0027` (crate `xep0027-tool`): XEP-0027 stanzas from the command line, for users and interop testers (stable
//! contract). Stanzas are read from stdin and written to stdout; keys are OpenPGP files (binary
//! or armored), e.g. from `gpg --export` and `gpg --export-secret-keys`. The tool asks for no
//! passphrase: a passphrase-protected secret key is refused with a reason saying so; remove
//! the passphrase (`gpg --passwd`) or export an unprotected copy first.
//!
//! ```text
//! xep0027 keygen --jid JID [--suite cv25519|p256|rsa3k] SECRET_OUT PUBLIC_OUT
//!     a new key with the User ID xmpp:JID (armored transferable secret key, public key)
//! xep0027 sign --key SECRET --jid JID [--text] [--envelope]
//!     add jabber:x:signed over the status/body (and a signed envelope: needs 'id')
//! xep0027 verify --keyring FILE (--pin JID=FPR ... | --trust-user-ids) [--from JID] [--legacy]
//!         [--now DATETIME] [--skew SECONDS] [--require-envelope]
//!     check the envelope (when present) and jabber:x:signed; `OK <fingerprint> <time>`
//! xep0027 encrypt --key SECRET --jid JID --to CERT [--to CERT ...] [--unsigned] [--envelope]
//!     encrypt the body to every --to and to oneself, signed inside unless --unsigned;
//!     a stanza already carrying jabber:x:signed (or an XHTML-IM body) is refused, as it
//!     would leave the plaintext checkable: encrypt first, or rely on the signature inside
//! xep0027 decrypt --key SECRET --jid JID --keyring FILE (--pin JID=FPR ... | --trust-user-ids)
//!         [--from JID] [--legacy] [--now DATETIME] [--skew SECONDS] [--allow-unsigned]
//!         [--require-envelope]
//!     check the envelope (when present), print the body; `signed-by <fingerprint>` on
//!     stderr. An unsigned message (anyone can encrypt to a public key) is refused (exit 1)
//!     unless --allow-unsigned, which prints it with `unsigned (allowed)` on stderr
//! ```
//! Which key speaks for which JID: `--pin JID=FINGERPRINT` (repeatable) binds a certificate
//! of the keyring to a JID; `--trust-user-ids` binds each certificate to the JIDs of its
//! valid, self-signed `xmpp:` User IDs (for a keyring file you already trust). Without
//! either, no key speaks for anyone and every signature is refused.
//! `--require-envelope` refuses a stanza without a signed envelope (without it, an old signed
//! stanza with its envelope removed still verifies). Each run checks alone: the CLI keeps no
//! record of stanzas seen, so a replay within the skew is not detected (the library's
//! `ReplayWindow` does that for a long-running receiver).
//! `--from` stamps the sender as the receiving server would. `--now` takes an XEP-0082
//! DateTime (default: the system clock). Exit 0 on success, 1 with a one-line reason on
//! stderr when the stanza is refused, 2 on usage errors; `--help` and `--version` exit 0.
//!
//! ## Examples
//! ```text
//! xep0027 keygen --jid module@cloud.example module.sec module.pub
//! echo '<presence><status>ready</status></presence>' \
//!   | xep0027 sign --key module.sec --jid module@cloud.example --envelope
//! xep0027 verify --keyring peers.pgp --pin module@cloud.example=0A1B... --from module@cloud.example/r < stanza.xml
//! gpg --export-secret-keys --armor me@example.org > me.sec   # a key without a passphrase
//! ```
//!
//! The same commands run in process through [`run`] (which is what the binary calls).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod cli;
mod exit;

pub use cli::run;
