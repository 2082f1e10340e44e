//! `dame-broker --config broker.toml`: the DAME broker (the trusted third party).

use std::path::PathBuf;
use std::process::ExitCode;

const HELP: &str = "\
dame-broker: the DAME broker (trusted third party) between IdPs and SPs

USAGE:
    dame-broker --config FILE
    dame-broker --help | --version

Routes: /ds (discovery), /ds/choose, /DAME (authenticate, status, rules), /acs (Response2),
/wait, /mdq/entities/<id> (MDQ), /metadata (the broker's own), /register and /register/verify
(self-service registration with proof of ownership), /admin/entities, /admin/policy (operator
token, or an entity's own token for its own entity), /admin/rules (operator), /health,
/metrics. State in an SQLite file, created and
migrated at start, or in PostgreSQL (database = \"postgres://...\"), which several instances
behind one load balancer share: a user's flow continues on any of them. Logs are JSON lines on stderr.

CONFIGURATION (TOML; unknown keys are refused; see crates/dame-server/broker.example.toml):
    entity_id            the broker's entityID (it is the SP of AuthnRequest2)
    public_url           its public base URL (https, no trailing /)
    listen               address to listen on, e.g. \"127.0.0.1:9443\"
    tls_certificate, tls_key
                         PEM: serve TLS here (default: plain HTTP behind a TLS proxy)
    agent_ca             PEM: extra trust anchors for the agents' TLS (default: the system's)
    key, certificate     PEM: the signing key and certificate (pinned by every agent)
    database             the SQLite file, or a postgres:// URL (several instances share it)
    admin_token_file     a file with the operator's bearer token (at least 32 characters)
    allow_loopback_http  admit http:// loopback endpoints (one-host tests; default false)
    allow_private_sync_locations
                         send triggers to agents at private addresses (default false: public
                         addresses only, loopback ones with allow_loopback_http)
    flow_lifetime_s      a user's flow lives this long (default 600)
    exchange_deadline_s  both confirmations within this time after Response2 (default 120)
    trigger_order        \"idp-first\" (default) or \"both\"
    trigger_timeout_ms   timeout of one trigger request (default 10000)
    max_flows            logins in progress at once, across every instance (default 10000)
    max_pending_flows    of those, not yet authenticated by an IdP (default 4/5 of max_flows);
                         when full, the address holding the most gives way
    max_pending_flows_per_address
                         unauthenticated flows per client address or IPv6 /64 (default 100)
    audit_retention_days audit events older than this are deleted (default 90)
    audit_max_rows       at most this many audit events are kept, oldest deleted first
                         (default 1000000)
    [registration]       self-service registration with proof of ownership: enabled (true),
                         allow_private (false), port (443), ca, hosts (tests only)
    [http]               the listener's limits: header_read_timeout_s (10), request_timeout_s
                         (30, the body included), max_connections (512),
                         max_connections_per_address (64; an IPv6 /64 counts as one address),
                         trusted_proxies (none: addresses or CIDR prefixes whose
                         X-Forwarded-For gives the client address; their connections count
                         against max_connections only)
    rate_per_source_per_minute
                         discovery/authenticate requests per client address and minute,
                         counted across every instance (default 120)
    max_authn_requests1_per_sp
                         AuthnRequest1 IDs one SP may have held for replay detection (default
                         10000; beyond it that SP gets 503, the other SPs go on)
    max_entities         entities registered at most (default 100000; a new one beyond it is
                         refused with 503, updates go on)
    max_entities_per_domain
                         entities under one registrable domain a self-registration may add
                         to (default 100; beyond it 403; operator imports are not refused)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match args.as_slice() {
        [h] if h == "--help" || h == "-h" => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        [v] if v == "--version" || v == "-V" => {
            println!("dame-broker {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        [c, path] if c == "--config" => PathBuf::from(path),
        _ => {
            eprintln!("usage: dame-broker --config FILE (dame-broker --help)");
            return ExitCode::from(2);
        }
    };
    let cfg = match dame_server::config::BrokerConfig::load(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dame-broker: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dame-broker: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        if cfg.is_postgres() {
            let store = dame_server::store::PgStore::connect(&cfg.database).await?;
            dame_server::broker::run(cfg, store, dame_server::shutdown_signal()).await
        } else {
            let path = std::path::PathBuf::from(&cfg.database);
            let store = dame_server::store::SqliteStore::open(&path).await?;
            dame_server::broker::run(cfg, store, dame_server::shutdown_signal()).await
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dame-broker: {e}");
            ExitCode::FAILURE
        }
    }
}
