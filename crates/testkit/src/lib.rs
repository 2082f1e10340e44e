//! Test support for the workspace, used only as a dev-dependency (by the libraries' tests, the
//! interop suite, the benches and the demo): nothing here is written twice elsewhere.
//!
//! - [`aggregate`]: the generator of eduGAIN-shaped aggregates (the one `samlmd gen` uses);
//!   [`signer`]: throw-away RSA and EC keys with self-signed certificates;
//!   [`metadata`]: small and real-world metadata documents with pinned signers;
//!   [`bench`](mod@bench): signed aggregates cached on disk for benches and the reference verifiers' runs.
//! - Peers: [`peers`] finds the outside programs (xmlsec1, the Python venv with pysaml2 and
//!   pyFF, gsasl, gpg, prosody) and fails loudly when one is missing; [`gnupg`] drives GnuPG;
//!   [`xmpp_client`] is a minimal XMPP client and the Prosody launcher.
//! - Servers on loopback: [`mdq_server`] (an MDQ responder), [`http`] (a fault-injecting HTTP
//!   server: slow, truncated, scripted answers), [`postgres`] (a private PostgreSQL server).
//! - Harnesses: [`xmpp_s2s`] (RFC 6595 between XMPP servers, with an IdP and a user agent, on
//!   loopback).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub use samlmd::aggregate;

pub mod bench;
pub mod gnupg;
pub mod http;
pub mod mdq_server;
pub mod metadata;
pub mod peers;
pub mod postgres;
pub mod signer;
pub mod xmpp_client;
pub mod xmpp_s2s;
