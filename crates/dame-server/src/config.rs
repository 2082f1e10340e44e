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
fn default_refresh_every_ms() -> u64 {
    60_000
}
fn default_refresh_retry_ms() -> u64 {
    600_000
}
fn default_max_body_bytes() -> usize {
    4 << 20
}

fn default_header_read_timeout_s() -> u64 {
    10
}
fn default_request_timeout_s() -> u64 {
    30
}
fn default_max_connections() -> u32 {
    512
}
fn default_max_connections_per_address() -> u32 {
    64
}

/// `[http]`: what a service's listener admits (both services, plain and TLS alike), so that
/// slow or idle clients cannot hold its connections (slowloris).
///
/// A client address is counted per IPv4 address, or per IPv6 /64 prefix. **Behind a reverse
/// proxy** every connection comes from the proxy's address: list it in `trusted_proxies`, and
/// the client address of each request (for the per-address rate limits, flow caps and
/// registration requesters, and in the logs) is taken from the `X-Forwarded-For` field the
/// proxy appends to, while the proxy's own connections count only against
/// `max_connections` (let the proxy limit its clients' connections).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HttpLimits {
    /// A request's header (the start line and every field) must arrive within this many
    /// seconds of the service starting to wait for it, else the connection is closed; this
    /// also closes a connection left idle between requests (default 10).
    #[serde(default = "default_header_read_timeout_s")]
    pub header_read_timeout_s: u64,
    /// A whole request, its body included, must be read and answered within this many
    /// seconds, else it is answered 408 and the connection closed (default 30). An answer
    /// the client stops reading closes the connection when no byte of it could be sent for
    /// this long.
    #[serde(default = "default_request_timeout_s")]
    pub request_timeout_s: u64,
    /// Connections open at once (TLS handshakes included); one beyond it is closed at once
    /// (default 512).
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Connections open at once from one client address (IPv4) or IPv6 /64; one beyond it is
    /// closed at once (default 64).
    #[serde(default = "default_max_connections_per_address")]
    pub max_connections_per_address: u32,
    /// Reverse proxies whose `X-Forwarded-For` is believed (addresses or CIDR prefixes, such
    /// as `["127.0.0.1", "10.1.0.0/16"]`; default none). For a connection from one of them,
    /// the client is the rightmost address of `X-Forwarded-For` that is not itself a trusted
    /// proxy (what nginx's `real_ip_recursive` and Apache's `mod_remoteip` do); everything to
    /// its left was written by the client and is ignored. A request from a trusted proxy
    /// without the field is the proxy's own. Connections from anywhere else: their address,
    /// whatever they send.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout_s: default_header_read_timeout_s(),
            request_timeout_s: default_request_timeout_s(),
            max_connections: default_max_connections(),
            max_connections_per_address: default_max_connections_per_address(),
            trusted_proxies: Vec::new(),
        }
    }
}

impl HttpLimits {
    /// Checks values that parse but cannot work.
    pub fn check(&self) -> Result<(), Error> {
        if self.header_read_timeout_s == 0 || self.request_timeout_s == 0 {
            return Err(Error::config(
                "http.header_read_timeout_s / http.request_timeout_s",
                "must be positive",
            ));
        }
        if self.max_connections == 0 || self.max_connections_per_address == 0 {
            return Err(Error::config(
                "http.max_connections / http.max_connections_per_address",
                "must be positive",
            ));
        }
        self.proxies()?;
        Ok(())
    }

    /// `trusted_proxies`, parsed (an address is its own /32 or /128).
    pub fn proxies(&self) -> Result<Vec<ipnet::IpNet>, Error> {
        self.trusted_proxies
            .iter()
            .map(|p| {
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map(|n| n.trunc())
                    .map_err(|_| {
                        Error::config(
                            "http.trusted_proxies",
                            format!("{p:?} is neither an IP address nor a CIDR prefix"),
                        )
                    })
            })
            .collect()
    }
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
    /// How often, in ms, the agent looks for integrated entities whose copies have passed half
    /// of their validity, to fetch them again (default 60000; conversion review M6).
    #[serde(default = "default_refresh_every_ms")]
    pub refresh_every_ms: u64,
    /// An integrated entity is fetched again at most once per this many ms (a failed refresh
    /// is retried after it; default 600000).
    #[serde(default = "default_refresh_retry_ms")]
    pub refresh_retry_ms: u64,
    /// Accept `http://` broker URLs (loopback tests only; default false).
    #[serde(default)]
    pub allow_http: bool,
    /// PEM: the certificate (chain) of a TLS listener (with `tls_key`; default: plain HTTP
    /// behind a TLS-terminating proxy).
    #[serde(default)]
    pub tls_certificate: Option<PathBuf>,
    /// PEM: the TLS listener's private key.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// PEM: extra trust anchors for the broker's TLS certificate (default: the system's).
    #[serde(default)]
    pub broker_ca: Option<PathBuf>,
    /// `[rules]` (an IdP's agent only): after integrating an SP, ask the broker for the
    /// conversion rules that make the attributes the SP requests from those this IdP has, and
    /// write them for the operator (`<directory>/rules/<sha1>.json` and the product's form).
    #[serde(default)]
    pub rules: Option<RulesConfig>,
    /// `[http]`: timeouts and connection caps of the listener.
    #[serde(default)]
    pub http: HttpLimits,
}

/// `[rules]` of an IdP's agent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RulesConfig {
    /// The SAML names (`urn:oid:...`) of the attributes this IdP can release.
    pub have: Vec<String>,
    /// What to write besides the JSON: `simplesamlphp` (an `authproc` array body, file
    /// `<sha1>.authproc.php`), `shibboleth` (attribute-resolver elements,
    /// `<sha1>.resolver.xml`) or `json` (the JSON only).
    pub format: String,
    /// SAML name -> the IdP's local attribute name (SimpleSAMLphp) or resolver id
    /// (Shibboleth).
    #[serde(default)]
    pub names: std::collections::BTreeMap<String, String>,
    /// The scopes this IdP asserts (its `shibmd:Scope`s): the only ones a rule may add, and a
    /// rule making eduPersonPrincipalName or another scoped attribute must end by adding one
    /// of them (conversion review H2: the broker's rules are shared by every IdP). Default
    /// none: such rules are written as JSON only.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The first `authproc` priority used (SimpleSAMLphp; default 40, before the stock
    /// configuration's `core:AttributeLimit` at 50, so that what a filter makes is released
    /// only to SPs that may have it: conversion review M4).
    #[serde(default = "default_first_priority")]
    pub first_priority: u32,
    /// The last `authproc` priority a file may use (default `first_priority` + 9): a rule
    /// set needing more filters is written as JSON only, rather than numbered into the
    /// operator's own filters.
    #[serde(default)]
    pub last_priority: Option<u32>,
}

impl RulesConfig {
    /// The `authproc` priorities a file may use.
    #[must_use]
    pub fn priorities(&self) -> std::ops::RangeInclusive<u32> {
        let last = self
            .last_priority
            .unwrap_or_else(|| self.first_priority.saturating_add(9));
        self.first_priority..=last
    }
}

fn default_first_priority() -> u32 {
    40
}

/// The TLS listener's files, when configured: both or neither.
pub(crate) fn tls_pair<'a>(
    cert: Option<&'a Path>,
    key: Option<&'a Path>,
) -> Result<Option<(&'a Path, &'a Path)>, Error> {
    match (cert, key) {
        (Some(c), Some(k)) => Ok(Some((c, k))),
        (None, None) => Ok(None),
        _ => Err(Error::config(
            "tls_certificate / tls_key",
            "give both or neither",
        )),
    }
}

fn read(key: &str, p: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(p).map_err(|e| Error::config(key, format!("{}: {e}", p.display())))
}

/// Reads a secret (a private key, a token) after checking that no user outside its owner and
/// group can read or change it, and its group cannot change it (mode 0600 or 0640; broker
/// review L7): a key others can read is refused at start, not used.
pub(crate) fn read_secret(key: &str, p: &Path) -> Result<Vec<u8>, Error> {
    private(key, p)?;
    read(key, p)
}

/// Refuses a file others may read or write (see [`read_secret`]).
fn private(key: &str, p: &Path) -> Result<(), Error> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(p)
            .map_err(|e| Error::config(key, format!("{}: {e}", p.display())))?
            .permissions()
            .mode();
        if mode & 0o027 != 0 {
            return Err(Error::config(
                key,
                format!(
                    "{} holds a secret but its mode is {:04o}: other users can read or change \
                     it; make it readable by its owner only (chmod 600), or also by its group \
                     (chmod 640)",
                    p.display(),
                    mode & 0o7777
                ),
            ));
        }
    }
    Ok(())
}

/// Whether a database URL carries a password (`user:password@` or `password=`).
fn has_password(database: &str) -> bool {
    let userinfo = database
        .split_once("://")
        .and_then(|(_, rest)| rest.split(['/', '?']).next())
        .and_then(|authority| authority.rsplit_once('@'))
        .map(|(userinfo, _)| userinfo);
    userinfo.is_some_and(|u| u.contains(':')) || database.contains("password=")
}

/// A TOML error without the value it quotes (which may be a password): the line number, the
/// key written on that line, the message.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let Some(span) = e.span() else {
        return e.message().to_owned();
    };
    let start = text
        .get(..span.start)
        .map_or(text.len(), |before| before.len());
    let line = text[..start].matches('\n').count() + 1;
    let key = text
        .lines()
        .nth(line - 1)
        .and_then(|l| l.split_once('='))
        .map(|(k, _)| k.trim())
        .filter(|k| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        });
    match key {
        Some(key) => format!("line {line}, {key}: {}", e.message()),
        None => format!("line {line}: {}", e.message()),
    }
}

impl AgentConfig {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::config("--config", format!("{}: {e}", path.display())))?;
        let cfg: AgentConfig = toml::from_str(&text)
            .map_err(|e| Error::config(&path.display().to_string(), toml_error(&text, &e)))?;
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
        if self.refresh_every_ms == 0 || self.refresh_retry_ms == 0 {
            return Err(Error::config(
                "refresh_every_ms / refresh_retry_ms",
                "must be positive",
            ));
        }
        if self.answer_within_ms >= self.http.request_timeout_s.saturating_mul(1000) {
            return Err(Error::config(
                "answer_within_ms",
                "must be below http.request_timeout_s (the broker's trigger would be cut off)",
            ));
        }
        tls_pair(self.tls_certificate.as_deref(), self.tls_key.as_deref())?;
        self.http.check()?;
        if let Some(r) = &self.rules {
            if self.side != SideName::Idp {
                return Err(Error::config(
                    "rules",
                    "only an IdP's agent retrieves rules",
                ));
            }
            if r.have.is_empty() {
                return Err(Error::config(
                    "rules.have",
                    "name the attributes this IdP has",
                ));
            }
            if !matches!(r.format.as_str(), "simplesamlphp" | "shibboleth" | "json") {
                return Err(Error::config(
                    "rules.format",
                    "simplesamlphp, shibboleth or json",
                ));
            }
            if r.priorities().is_empty() {
                return Err(Error::config(
                    "rules.last_priority",
                    "at least rules.first_priority",
                ));
            }
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
            &read_secret("key", &self.key)?,
            Some(&read("certificate", &self.certificate)?),
        )
        .map_err(|e| Error::config("key", e.to_string()))?;
        Ok((broker, key))
    }
}

fn default_flow_lifetime_s() -> u64 {
    600
}
fn default_exchange_deadline_s() -> u64 {
    120
}
fn default_trigger_timeout_ms() -> u64 {
    10_000
}
fn default_rate_per_source_per_minute() -> u32 {
    120
}
fn default_trigger_order() -> String {
    "idp-first".into()
}

/// `dame-broker`'s configuration (see `crates/dame-server/broker.example.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BrokerConfig {
    /// The broker's entityID as the SP of AuthnRequest2.
    pub entity_id: String,
    /// The broker's public base URL: the ACS is `<public_url>/acs`, the DAME endpoint
    /// `<public_url>/DAME`, the MDQ service `<public_url>/mdq/`, discovery `<public_url>/ds`.
    pub public_url: String,
    /// Address to listen on (TLS: a proxy in front).
    pub listen: SocketAddr,
    /// PEM: the broker's signing key (AuthnRequest2, triggers, published metadata).
    pub key: PathBuf,
    /// PEM: its certificate (in the broker's metadata; pinned by every agent).
    pub certificate: PathBuf,
    /// The store: an SQLite file (created and migrated at start; one instance), or a
    /// `postgres://` URL (migrated at start; several instances share it).
    pub database: String,
    /// A file holding the operator's bearer token for `/admin/*` (at least 32 characters).
    pub admin_token_file: PathBuf,
    /// Admit `http://` loopback endpoints in registered metadata (one-host tests only).
    #[serde(default)]
    pub allow_loopback_http: bool,
    /// Send triggers to agents at private, link-local or unique-local addresses (agents on an
    /// internal network; default false). Otherwise a trigger goes only to a public address, or
    /// to a loopback one with `allow_loopback_http`: a registrant's `MetadataSyncLocation`
    /// cannot make the broker probe its network.
    #[serde(default)]
    pub allow_private_sync_locations: bool,
    /// How long a user's flow may live, seconds (default 600).
    #[serde(default = "default_flow_lifetime_s")]
    pub flow_lifetime_s: u64,
    /// How long both confirmations may take after Response2, seconds (default 120).
    #[serde(default = "default_exchange_deadline_s")]
    pub exchange_deadline_s: u64,
    /// `idp-first` (default) or `both`.
    #[serde(default = "default_trigger_order")]
    pub trigger_order: String,
    /// Timeout of one trigger request, ms (default 10000). The answer is read up to 4 KiB: a
    /// larger one fails the flow as soon as it passes that, not at this timeout.
    #[serde(default = "default_trigger_timeout_ms")]
    pub trigger_timeout_ms: u64,
    /// Discovery, authenticate, registration and entity-token (`/admin/policy`,
    /// `/admin/entities` without the operator's token) requests one client address (IPv4, or
    /// IPv6 /64) may make
    /// per minute (default 120): counted in the store per minute, so across every instance
    /// sharing it, and by each instance as a token bucket (this many per minute, bursts of
    /// this many).
    #[serde(default = "default_rate_per_source_per_minute")]
    pub rate_per_source_per_minute: u32,
    /// AuthnRequest1 IDs one SP may have held for replay detection at once, by each instance
    /// (default 10000; an ID is held 7 minutes, so about 24 new logins a second per SP): an SP
    /// beyond it is refused with 503 while the other SPs go on, so one registered SP cannot
    /// have every login refused. All SPs together: 20 times this.
    #[serde(default = "default_max_authn_requests1_per_sp")]
    pub max_authn_requests1_per_sp: u32,
    /// Most entities registered (default 100000, the registry's bound): an import or
    /// registration of a new entity beyond it is refused with 503 and not stored; updates of
    /// registered entities go on.
    #[serde(default = "default_max_entities")]
    pub max_entities: u32,
    /// Most entities under one registrable domain (Public Suffix List) a self-registration may
    /// add to (default 100): beyond it a registration is refused with 403. Operator imports
    /// count, and are not refused by it.
    #[serde(default = "default_max_entities_per_domain")]
    pub max_entities_per_domain: u32,
    /// Most bytes of metadata the entities not imported by the operator (self-registered, or
    /// updated by their owner) may hold together (default 536870912, 512 MiB): a registration
    /// or an owner's update beyond it is refused with 503. Operator imports do not count.
    /// Review K2: the registry was bounded in entities, not in bytes.
    #[serde(default = "default_max_self_registered_bytes")]
    pub max_self_registered_bytes: u64,
    /// How long each document the MDQ service publishes is valid (its `validUntil`), in
    /// hours (default 168, 7 days; 2 to 8760). The broker re-signs a document once half of it
    /// has passed and the agents fetch it again then, so relying parties drop an entity
    /// whose broker is gone, or that was rolled back without the rollback reaching them, at
    /// most this long after (`Registry::validity`). It must leave time to re-sign every
    /// document (10 a second) within a quarter of it: at least `max_entities` x 4 / 36,000
    /// hours (12 for the default 100,000 entities).
    #[serde(default = "default_document_validity_hours")]
    pub document_validity_hours: u32,
    /// The `cacheDuration` of each published document, in seconds (default 600; 60 to 86400,
    /// and less than the validity): how soon a relying party that reads it (a Shibboleth SP's
    /// dynamic provider, SimpleSAMLphp's `mdq` source) looks again, so that a rollback reaches
    /// it within this time (`Registry::cache_duration`; a shorter one in the registered
    /// metadata is kept).
    #[serde(default = "default_document_cache_duration_s")]
    pub document_cache_duration_s: u32,
    /// PEM: the certificate (chain) of a TLS listener (with `tls_key`; default: plain HTTP
    /// behind a TLS-terminating proxy).
    #[serde(default)]
    pub tls_certificate: Option<PathBuf>,
    /// PEM: the TLS listener's private key.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// PEM: extra trust anchors for the agents' TLS certificates, where triggers go (default:
    /// the system's).
    #[serde(default)]
    pub agent_ca: Option<PathBuf>,
    /// Most flows held at once in the store, across every instance (default 10000): a new
    /// flow beyond it is refused with 503.
    #[serde(default = "default_max_flows")]
    pub max_flows: u32,
    /// Most unauthenticated flows held at once, across every instance (default: four fifths
    /// of `max_flows`): flows from a discovery request or an AuthnRequest1 whose user has not
    /// yet been authenticated by the IdP (Response2). Anyone can start one, so they get only
    /// this share of `max_flows`; when it is full, the oldest unauthenticated flow of the
    /// client address holding the most gives way to a new one from an address holding fewer
    /// (so many addresses, not a few, are needed to crowd out a user), and a new flow from an
    /// address already holding the most is refused with 503.
    #[serde(default)]
    pub max_pending_flows: Option<u32>,
    /// Most unauthenticated flows one client address (IPv4, or IPv6 /64) holds at once
    /// (default 100): a new one beyond it replaces the address's oldest. Behind a reverse
    /// proxy, see [`HttpLimits`].
    #[serde(default = "default_max_pending_flows_per_address")]
    pub max_pending_flows_per_address: u32,
    /// Audit events older than this many days are deleted (default 90; checked every
    /// minute).
    #[serde(default = "default_audit_retention_days")]
    pub audit_retention_days: u32,
    /// At most this many audit events are kept, the oldest deleted first (default 1,000,000;
    /// checked every minute): anyone can start flows, so the retention alone does not bound
    /// the table.
    #[serde(default = "default_audit_max_rows")]
    pub audit_max_rows: u32,
    /// Self-service registration with proof of ownership (`/register`).
    #[serde(default)]
    pub registration: RegistrationConfig,
    /// `[http]`: timeouts and connection caps of the listener.
    #[serde(default)]
    pub http: HttpLimits,
}

fn default_max_flows() -> u32 {
    10_000
}

fn default_max_authn_requests1_per_sp() -> u32 {
    10_000
}

fn default_max_entities() -> u32 {
    dame_protocol::registry::MAX_ENTITIES as u32
}

fn default_max_entities_per_domain() -> u32 {
    dame_protocol::registry::MAX_PER_DOMAIN as u32
}

fn default_max_self_registered_bytes() -> u64 {
    dame_protocol::registry::MAX_SELF_REGISTERED_BYTES as u64
}

fn default_document_validity_hours() -> u32 {
    168
}

fn default_document_cache_duration_s() -> u32 {
    600
}

fn default_max_pending_flows_per_address() -> u32 {
    100
}

fn default_audit_retention_days() -> u32 {
    90
}

fn default_audit_max_rows() -> u32 {
    1_000_000
}

fn default_registration_port() -> u16 {
    443
}

/// `[registration]`: how the broker fetches a registrant's proof of ownership
/// (`https://<entityID host>/.well-known/dame-ownership/<name>`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RegistrationConfig {
    /// Accept registrations at all (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Fetch from private, loopback and other non-global addresses (test networks only;
    /// default false: registration cannot be used to probe the broker's network).
    #[serde(default)]
    pub allow_private: bool,
    /// The port fetched (default 443; tests only).
    #[serde(default = "default_registration_port")]
    pub port: u16,
    /// A PEM file of extra trust anchors for the fetch (default: the system's only).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Fixed addresses for host names instead of DNS (split-horizon DNS, tests):
    /// `hosts = { "sp.example.org" = "192.0.2.7" }`. Checked like resolved ones.
    #[serde(default)]
    pub hosts: std::collections::BTreeMap<String, std::net::IpAddr>,
    /// Largest metadata a self-registration or an owner's update may upload, in bytes
    /// (default 65536, 64 KiB; 1024 to 262144): beyond it `/register` answers 400 naming the
    /// limit. The operator's imports (`POST /admin/entities`) keep the 256 KiB body limit.
    /// Review K2: the registry is bounded in entities, not in bytes.
    #[serde(default = "default_max_upload_bytes")]
    pub max_upload_bytes: u32,
}

fn default_max_upload_bytes() -> u32 {
    dame_protocol::registration::DEFAULT_MAX_UPLOAD as u32
}

fn yes() -> bool {
    true
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        RegistrationConfig {
            enabled: true,
            allow_private: false,
            port: default_registration_port(),
            ca: None,
            hosts: std::collections::BTreeMap::new(),
            max_upload_bytes: default_max_upload_bytes(),
        }
    }
}

impl BrokerConfig {
    /// The cap on unauthenticated flows: `max_pending_flows`, else four fifths of
    /// `max_flows` (at least one).
    #[must_use]
    pub fn pending_flow_cap(&self) -> u32 {
        self.max_pending_flows
            .unwrap_or_else(|| (self.max_flows / 5 * 4).max(1))
    }

    /// Whether `database` names a PostgreSQL server rather than an SQLite file.
    #[must_use]
    pub fn is_postgres(&self) -> bool {
        self.database.starts_with("postgres://") || self.database.starts_with("postgresql://")
    }
}

impl BrokerConfig {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::config("--config", format!("{}: {e}", path.display())))?;
        let cfg: BrokerConfig = toml::from_str(&text)
            .map_err(|e| Error::config(&path.display().to_string(), toml_error(&text, &e)))?;
        // A database password in the configuration makes the file a secret.
        if has_password(&cfg.database) {
            private("database", path)?;
        }
        cfg.check()?;
        Ok(cfg)
    }

    /// Checks values that parse but cannot work.
    pub fn check(&self) -> Result<(), Error> {
        if !self.entity_id.starts_with("https://") && !self.allow_loopback_http {
            return Err(Error::config("entity_id", "must be an https URL"));
        }
        let ok = self.public_url.starts_with("https://")
            || (self.allow_loopback_http
                && dame_protocol::registry::is_loopback_http(&self.public_url));
        if !ok || self.public_url.ends_with('/') {
            return Err(Error::config(
                "public_url",
                "an https base URL without a trailing / (http only on loopback with allow_loopback_http)",
            ));
        }
        tls_pair(self.tls_certificate.as_deref(), self.tls_key.as_deref())?;
        self.http.check()?;
        if self.max_flows == 0
            || self.max_pending_flows == Some(0)
            || self.max_pending_flows_per_address == 0
            || self.audit_retention_days == 0
            || self.audit_max_rows == 0
        {
            return Err(Error::config(
                "max_flows / max_pending_flows / max_pending_flows_per_address / \
                 audit_retention_days / audit_max_rows",
                "must be positive",
            ));
        }
        if self.max_pending_flows.is_some_and(|n| n > self.max_flows) {
            return Err(Error::config(
                "max_pending_flows",
                "at most max_flows (unauthenticated flows are a share of them)",
            ));
        }
        if self.database.is_empty() {
            return Err(Error::config("database", "empty"));
        }
        if self.rate_per_source_per_minute == 0 {
            return Err(Error::config(
                "rate_per_source_per_minute",
                "must be positive",
            ));
        }
        if self.max_authn_requests1_per_sp == 0 {
            return Err(Error::config(
                "max_authn_requests1_per_sp",
                "must be positive",
            ));
        }
        if self.max_entities == 0 {
            return Err(Error::config("max_entities", "must be positive"));
        }
        if self.max_entities_per_domain == 0 {
            return Err(Error::config("max_entities_per_domain", "must be positive"));
        }
        if self.max_self_registered_bytes == 0 {
            return Err(Error::config(
                "max_self_registered_bytes",
                "must be positive",
            ));
        }
        let most = dame_protocol::registration::MAX_UPLOAD as u32;
        if !(1024..=most).contains(&self.registration.max_upload_bytes) {
            return Err(Error::config(
                "registration.max_upload_bytes",
                format!("1024 to {most} (the request body limit)"),
            ));
        }
        if !(2..=8760).contains(&self.document_validity_hours) {
            return Err(Error::config(
                "document_validity_hours",
                "2 to 8760 (a year)",
            ));
        }
        // Every document re-signed within a quarter of its validity at RESIGN_BATCH a second
        // (they are due at half of it; second review of the eighth round, F5: two hours for
        // 100,000 entities let documents expire before their turn).
        let per_quarter =
            crate::broker::RESIGN_BATCH as u64 * 3600 * u64::from(self.document_validity_hours) / 4;
        if u64::from(self.max_entities) > per_quarter {
            let hours = (u64::from(self.max_entities) * 4)
                .div_ceil(crate::broker::RESIGN_BATCH as u64 * 3600);
            return Err(Error::config(
                "document_validity_hours",
                format!(
                    "at least {hours} for max_entities = {} (documents are re-signed at {} a second, \
                     each within a quarter of its validity)",
                    self.max_entities,
                    crate::broker::RESIGN_BATCH
                ),
            ));
        }
        if !(60..=86_400).contains(&self.document_cache_duration_s)
            || u64::from(self.document_cache_duration_s)
                >= u64::from(self.document_validity_hours) * 3600
        {
            return Err(Error::config(
                "document_cache_duration_s",
                "60 to 86400, and less than document_validity_hours",
            ));
        }
        if !matches!(self.trigger_order.as_str(), "idp-first" | "both") {
            return Err(Error::config("trigger_order", "idp-first or both"));
        }
        if self.flow_lifetime_s == 0
            || self.exchange_deadline_s == 0
            || self.trigger_timeout_ms == 0
        {
            return Err(Error::config(
                "flow_lifetime_s / exchange_deadline_s / trigger_timeout_ms",
                "must be positive",
            ));
        }
        // Bounded at start, not by a panic at the first request (broker review L7).
        if self.flow_lifetime_s > 86_400
            || self.exchange_deadline_s > 86_400
            || self.trigger_timeout_ms > 600_000
        {
            return Err(Error::config(
                "flow_lifetime_s / exchange_deadline_s / trigger_timeout_ms",
                "at most a day (86400 s) / a day / 10 minutes (600000 ms)",
            ));
        }
        Ok(())
    }

    /// The signing key and the admin token.
    pub fn secrets(&self) -> Result<(saml_core::dsig::SigningKey, Vec<u8>, String), Error> {
        let cert = read("certificate", &self.certificate)?;
        let key =
            saml_core::dsig::SigningKey::from_pem(&read_secret("key", &self.key)?, Some(&cert))
                .map_err(|e| Error::config("key", e.to_string()))?;
        let token = String::from_utf8(read_secret("admin_token_file", &self.admin_token_file)?)
            .map_err(|_| Error::config("admin_token_file", "not UTF-8"))?
            .trim()
            .to_owned();
        if token.len() < 32 {
            return Err(Error::config("admin_token_file", "at least 32 characters"));
        }
        Ok((key, cert, token))
    }
}
