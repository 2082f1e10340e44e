//! # mdq-client
//!
//! A Metadata Query Protocol client (draft-young-md-query-21, draft-young-md-query-saml-21):
//! per-entity SAML metadata lookups that are verified (signature with the configured keys,
//! validUntil, the entityID asked for), cached with HTTP and metadata lifetimes, and robust
//! against real servers' quirks.
//!
//! In scope: [`url`] (base URL validation, path-segment encoding, `{sha1}`), [`response`]
//! (status codes, gzip, size limits, lenient Content-Type, verification through saml-metadata,
//! lifetimes from Cache-Control / cacheDuration / Expires / validUntil, "all entities"
//! answers), [`client`] (the sans-IO core: cache with clamping, early refresh, negative caching,
//! serve-stale-on-error, LRU bounds, coalesced lookups, snapshots for a persistent cache), and
//! the IO adapters in [`io`]: the cache directory `io::persist` (feature `persist`), feature
//! `blocking` (ureq) and feature `tokio` (reqwest), both with OpenSSL TLS.
//!
//! Features: `persist` (default) is the cache directory; `blocking` and `tokio` enable it, since
//! their `Options::cache_dir` uses it. With `--no-default-features` the crate is the sans-IO
//! core alone (URL rules, response handling, the cache state machine, [`client::Snapshot`]s):
//! no filesystem, network, clock or thread code. Out of scope: serving MDQ (see pyFF, or the demo's loopback
//! responder in the workspace test kit, `testkit::mdq_server`), the JSON (discojson) profile.
//!
//! Guarantees: no entity is served at or after the effective validUntil of the signed document
//! it came from (fresh, after a 304, stale, or restored); a "not found" never displaces a
//! verified entry before it expires and is remembered for at most `negative_ttl`; a persistent
//! cache is verified again, its lifetimes clamped like fresh ones, and bad files are skipped and
//! reported, never a panic; the entityIDs `.` and `..` cannot leave `entities/`. Details in
//! [`client`], `io::persist` and [`url`].
//!
//! ```
//! use std::time::SystemTime;
//! use mdq_client::{client::Lookup, BaseUrl, Client, Config, Identifier};
//! # let keys = saml_core::dsig::TrustedKeys::new();
//! let mut core = Client::new(Config::new(BaseUrl::parse("https://mdq.example.org/")?, keys));
//! let id = Identifier::entity_id("https://idp.example.org/idp/shibboleth")?;
//! match core.lookup(&id, SystemTime::now()) {
//!     Lookup::Fetch(req) => assert_eq!(req.url, "https://mdq.example.org/entities/https:%2F%2Fidp.example.org%2Fidp%2Fshibboleth"),
//!     other => unreachable!("{other:?}"),
//! }
//! # Ok::<(), mdq_client::Error>(())
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod client;
mod error;
pub mod io;
pub mod response;
pub mod url;

pub use client::{Client, Config, FetchNow, Lookup};
pub use error::{Error, ErrorKind};
pub use url::{BaseUrl, Identifier};
