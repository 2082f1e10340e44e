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
//!   default, created and migrated at start, so a flow survives a restart. Flows not yet
//!   authenticated by an IdP are capped per client address and in all, below the flow cap, so
//!   that anonymous discovery requests cannot crowd out real logins; the audit log is pruned
//!   after a configured retention.
//! - `dame-agent` ([`agent`]): the provider extension as a sidecar beside an IdP or an SP. It
//!   serves the entity's `MetadataSyncLocation`, authenticates the broker's triggers
//!   (pinned key, freshness, nonce, addressee), pulls the peer from the broker's MDQ service,
//!   writes it where the SAML software reads it (Shibboleth SP's `LocalDynamic`
//!   `sourceDirectory`: `<sha1>.xml` + `<sha1>.xml.loc`), answers the trigger, or answers
//!   `accepted-pending` and sends a signed status report when the fetch takes longer, rolls back
//!   on request, and re-initialises from the `.xml.loc` files at start.
//!
//! Both listen with the same code: plain HTTP/1.1 behind a TLS-terminating proxy, or TLS
//! terminated here, within the `[http]` limits of their configuration
//! ([`config::HttpLimits`]): a header read timeout that also closes idle connections, a
//! timeout over each whole request (its body included), and caps on open connections in all
//! and per client address (an IPv6 /64 counts as one), beyond which a connection is closed at
//! once. A slow or idle client holds at most its share of connections, for a bounded time.
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

/// The key a client address is counted under (connection caps, rate limits, flow caps): an
/// IPv4 address (also one mapped into IPv6) as it is, an IPv6 address by its /64 prefix (one
/// subscriber usually holds a whole /64, so counting single addresses would count one client
/// as many).
pub(crate) fn source_key(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                let prefix = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("{prefix}/64")
            }
        },
    }
}

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

    #[test]
    fn source_keys() {
        let k = |s: &str| {
            super::source_key(s.parse().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into()))
        };
        assert_eq!(k("192.0.2.7"), "192.0.2.7");
        assert_eq!(k("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(k("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_eq!(k("2001:db8:1:2::ffff"), k("2001:db8:1:2:aaaa::1"));
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
    }
}
