//! # dame-server
//!
//! The DAME services an operator deploys, IO only: every protocol decision is made by
//! [`dame_protocol`]'s sans-IO state machines; this crate carries HTTP, files and time.
//!
//! - `dame-broker` ([`broker`]): the trusted third party. Discovery page, `/DAME`
//!   (authenticate, status reports, conversion-rule queries), the ACS for Response2, the waiting
//!   page, the MDQ service, its own metadata, an operator API (Bearer token) to import entities
//!   and set conversion rules, health and Prometheus metrics, JSON log lines. Its state (entities,
//!   policies, relationships, flows, rules, audit log) lives in a [`store::Store`]: SQLite by
//!   default, created and migrated at start, so a flow survives a restart.
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
pub mod broker;
pub mod config;
mod error;
pub mod store;
mod tls;

pub use error::Error;

/// One structured log line (a JSON object of string fields) on stderr.
pub(crate) fn log(fields: &[(&str, String)]) {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| {
            format!(
                "\"{k}\":\"{}\"",
                v.replace('\\', "\\\\").replace('"', "\\\"")
            )
        })
        .collect();
    eprintln!("{{{}}}", body.join(","));
}

/// Resolves on Ctrl-C or SIGTERM: the services' graceful-shutdown signal.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
