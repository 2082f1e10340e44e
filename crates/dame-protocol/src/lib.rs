//! # dame-protocol
//!
//! DAME, Dynamic Automated Metadata Exchange (draft-poehn-dame-06, the GÉANT-TrustBroker
//! design): an IdP and an SP that do not know each other exchange metadata on demand through a
//! trusted third party (the broker), after the user has authenticated at the IdP. Sans-IO:
//! time and randomness are inputs, no sockets or files.
//!
//! ```text
//!  UA -> SP -> broker      discovery request          (discovery::DiscoveryRequest)
//!  broker -> SP            discovery answer, `return` checked against the SP's metadata
//!  SP -> broker            action=authenticate + AuthnRequest1 (authenticate::AuthenticateRequest)
//!  broker -> IdP -> broker AuthnRequest2 / Response2 (saml-core, the broker as SP)
//!  broker -> IdP, SP       signed MDI triggers         (trigger::Trigger, TriggerVerifier)
//!  IdP, SP -> broker       MDI responses, status reports (mdi::MdiResponse, StatusReport)
//!  broker -> IdP           AuthnRequest1 replayed as soon as both integrations are confirmed
//! ```
//!
//! In this crate now: every message of the draft that crosses the wire, parsed strictly and
//! written ([`discovery`], [`authenticate`], [`trigger`], [`mdi`]); the trigger and status
//! authentication the draft leaves open, defined here as a wire spec (a query signature over
//! the exact octets with `issueInstant`, `nonce` and the addressee, see [`trigger`] and
//! [`mdi`]); the entity side of triggers ([`trigger::TriggerVerifier`]) and the broker side of
//! status reports ([`mdi::StatusReports`]) with replay windows of bounded memory; policies
//! ([`policy`]: allow/deny lists by DNS domain, token-bucket rate limits); the entity side's
//! last step ([`integration`]: the fetched peer checked against the broker's keys and the
//! entityID asked for, then written in the GÉANT-TrustBroker / Shibboleth `LocalDynamic` layout,
//! `<sha1>.xml` + `<sha1>.xml.loc`, with feature `fs` for the directory); the broker's
//! metadata service core ([`mdq_service`]: MDQ requests by entityID or `{sha1}`, ETag and 304,
//! 404, 406); proof of ownership at registration ([`registration`]: a random file on the
//! entityID's host, fetched over https from global addresses only, no redirects, expiry and
//! bounded attempts).
//!
//! Not yet in this crate (issue 16, to come): the broker's per-user flow state machine, the
//! second mode for unmodified SPs, the provider extension's state machine (trigger -> MDQ fetch
//! -> integrate -> answer), registration's store and API, relationships and
//! attribute conversion rules.
//!
//! Errors: one [`Error`] with [`Error::kind`]; refusals are typed ([`Refusal`]).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(clippy::must_use_candidate, clippy::return_self_not_must_use)]

pub mod agent;
pub mod authenticate;
pub mod broker;
pub mod discovery;
mod error;
pub mod integration;
pub mod mdi;
pub mod mdq_service;
pub mod policy;
mod query;
pub mod registration;
pub mod registry;
pub mod relationships;
pub mod signed;
pub mod trigger;

pub use error::{Error, ErrorKind, Refusal};
pub use query::{MAX_PARAMS, MAX_QUERY_LEN};
