//! # mdq-client
//!
//! A Metadata Query Protocol client (draft-young-md-query-21, draft-young-md-query-saml-21):
//! per-entity SAML metadata lookups that are verified (signature with the configured keys,
//! validUntil, the entityID asked for), cached with HTTP and metadata lifetimes, and robust
//! against real servers' quirks.
//!
//! In scope: [`url`] (base URL validation, path-segment encoding, `{sha1}`), [`response`]
//! (status codes, gzip, size limits, lenient Content-Type, verification through saml-metadata,
//! lifetimes from Cache-Control / cacheDuration / Expires / validUntil), [`client`] (the sans-IO
//! core: cache with clamping, early refresh, negative caching, serve-stale-on-error, LRU bounds,
//! coalesced lookups), and with feature `blocking` an adapter over ureq ([`io::blocking`]).
//! Not yet: the tokio adapter, the persistent cache directory, the fault-injecting server tests,
//! benches and the fuzz target (see the issue notes).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod client;
mod error;
pub mod io;
pub mod response;
pub mod url;

pub use client::{Client, Config, Lookup};
pub use error::Error;
pub use url::{BaseUrl, Identifier};
