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
    eprintln!("{}", log_line(fields));
}

/// The JSON object [`log`] writes: every value escaped as JSON requires (quotes, backslashes
/// and control characters, line ends included), so that text from outside (an agent's answer,
/// an entityID, a refused upload's reason) cannot end a line or forge fields of its own.
fn log_line(fields: &[(&str, String)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::Value::Object(map).to_string()
}

#[cfg(test)]
mod tests {
    /// Audit of 2026-12-05: values were escaped for `\\` and `"` only, so a registered agent's
    /// answer (logged as received) could put a line end and a forged log line into the log.
    #[test]
    fn log_values_cannot_break_the_line_or_forge_fields() {
        let hostile = "ok\n{\"event\":\"forged\"}\r\u{0}\u{1b}[2J\t\"\\ \u{2028}";
        let line = super::log_line(&[("event", "trigger-answer".into()), ("body", hostile.into())]);
        assert!(!line.contains(['\n', '\r', '\u{0}', '\u{1b}']), "{line:?}");
        let v: serde_json::Value = serde_json::from_str(&line).expect("one JSON object");
        assert_eq!(v["body"], hostile);
        assert_eq!(v["event"], "trigger-answer");
        assert_eq!(v.as_object().map(serde_json::Map::len), Some(2));
    }
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
