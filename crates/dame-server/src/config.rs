//! Configuration files, checked at start: unknown keys are refused, every error names its key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::Error;

/// Which provider the agent stands beside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SideName {
    /// An IdP (it integrates SPs).
    Idp,
    /// An SP (it integrates IdPs).
    Sp,
}

fn default_sync_path() -> String {
    "/dame".into()
}
fn default_answer_within_ms() -> u64 {
    5_000
}
fn default_fetch_timeout_ms() -> u64 {
    10_000
}
fn default_max_body_bytes() -> usize {
    4 << 20
}

/// `dame-agent`'s configuration (see `crates/dame-server/agent.example.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AgentConfig {
    /// The entity this agent stands beside (its entityID, as registered at the broker).
    pub entity_id: String,
    /// `idp` or `sp`.
    pub side: SideName,
    /// Address to listen on (`127.0.0.1:8443`; put a TLS-terminating proxy in front).
    pub listen: SocketAddr,
    /// The path of the entity's `MetadataSyncLocation` (default `/dame`).
    #[serde(default = "default_sync_path")]
    pub sync_path: String,
    /// The broker's MDQ base URL (`https://broker.example.org/mdq/`).
    pub broker_mdq: String,
    /// The broker's DAME endpoint, where status reports go.
    pub broker_endpoint: String,
    /// PEM file with the broker's metadata signing certificate(s): the only trust anchor.
    pub broker_certificate: PathBuf,
    /// PEM file with the entity's signing key (signs status reports).
    pub key: PathBuf,
    /// PEM file with the entity's signing certificate (as in its registered metadata).
    pub certificate: PathBuf,
    /// Where integrated metadata goes: Shibboleth SP's `LocalDynamic` `sourceDirectory`.
    pub directory: PathBuf,
    /// Answer a trigger within this many ms; a fetch still running then is answered
    /// `accepted-pending` and followed by a status report (default 5000).
    #[serde(default = "default_answer_within_ms")]
    pub answer_within_ms: u64,
    /// Give up a fetch from the broker after this many ms (default 10000).
    #[serde(default = "default_fetch_timeout_ms")]
    pub fetch_timeout_ms: u64,
    /// Largest metadata document accepted from the broker (default 4 MiB).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Accept `http://` broker URLs (loopback tests only; default false).
    #[serde(default)]
    pub allow_http: bool,
}

fn read(key: &str, p: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(p).map_err(|e| Error::config(key, format!("{}: {e}", p.display())))
}

impl AgentConfig {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::config("--config", format!("{}: {e}", path.display())))?;
        let cfg: AgentConfig = toml::from_str(&text)
            .map_err(|e| Error::config(&path.display().to_string(), e.to_string()))?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Checks values that parse but cannot work.
    pub fn check(&self) -> Result<(), Error> {
        if self.entity_id.is_empty() {
            return Err(Error::config("entity_id", "empty"));
        }
        if !self.sync_path.starts_with('/') {
            return Err(Error::config("sync_path", "must start with /"));
        }
        for (key, url) in [
            ("broker_mdq", &self.broker_mdq),
            ("broker_endpoint", &self.broker_endpoint),
        ] {
            let ok = url.starts_with("https://") || (self.allow_http && url.starts_with("http://"));
            if !ok {
                return Err(Error::config(
                    key,
                    format!("{url:?} is not an https URL (allow_http = true for loopback tests)"),
                ));
            }
        }
        if self.answer_within_ms == 0 || self.fetch_timeout_ms == 0 {
            return Err(Error::config(
                "answer_within_ms / fetch_timeout_ms",
                "must be positive",
            ));
        }
        if self.max_body_bytes < 1024 {
            return Err(Error::config("max_body_bytes", "at least 1024"));
        }
        Ok(())
    }

    /// The broker's trusted keys, the entity's signing key.
    pub fn keys(
        &self,
    ) -> Result<(saml_core::dsig::TrustedKeys, saml_core::dsig::SigningKey), Error> {
        let broker = saml_core::dsig::TrustedKeys::from_pem(&read(
            "broker_certificate",
            &self.broker_certificate,
        )?)
        .map_err(|e| Error::config("broker_certificate", e.to_string()))?;
        let key = saml_core::dsig::SigningKey::from_pem(
            &read("key", &self.key)?,
            Some(&read("certificate", &self.certificate)?),
        )
        .map_err(|e| Error::config("key", e.to_string()))?;
        Ok((broker, key))
    }
}
