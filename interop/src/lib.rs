//! The interop suite of the workspace: `tests/` holds one file per outside peer, each driving
//! the real program installed by `scripts/setup.sh`:
//!
//! | file | peer | what |
//! | --- | --- | --- |
//! | `xmlsec1.rs` | xmlsec1 CLI | signatures both ways, the metadata writer, `samlmd` output |
//! | `pysaml2.rs` | pysaml2 | Web SSO both ways, metadata both ways |
//! | `pyff.rs` | pyFF | MDQ server for mdq-client, aggregation and re-publishing |
//! | `gsasl.rs` | GNU SASL (`gsasl`, libgsasl) | RFC 6595 SAML20 client and server |
//! | `gnupg.rs` | GnuPG | XEP-0027 signatures and messages, the `xep0027` tool |
//! | `prosody.rs` | Prosody | XEP-0027 stanzas through a real XMPP server |
//!
//! Run with `cargo test -p interop`; the libraries' own tests (`cargo test -p <library>`) need
//! none of these programs.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
