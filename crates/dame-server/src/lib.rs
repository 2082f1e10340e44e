//! # dame-server
//!
//! The DAME services an operator deploys, IO only: every protocol decision is made by
//! [`dame_protocol`]'s sans-IO state machines; this crate carries HTTP, files and time.
//!
//! - `dame-agent` ([`agent`]): the provider extension as a sidecar beside an IdP or an SP. It
//!   serves the entity's `MetadataSyncLocation`, authenticates the broker's triggers
//!   (pinned key, freshness, nonce, addressee), pulls the peer from the broker's MDQ service,
//!   writes it where the SAML software reads it (Shibboleth SP's `LocalDynamic`
//!   `sourceDirectory`: `<sha1>.xml` + `<sha1>.xml.loc`), answers the trigger, or answers
//!   `accepted-pending` and sends a signed status report when the fetch takes longer, rolls back
//!   on request, and re-initialises from the `.xml.loc` files at start.
//!
//! Configuration: one TOML file per service ([`config`]), every key checked at start.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod agent;
pub mod config;
mod error;

pub use error::Error;
