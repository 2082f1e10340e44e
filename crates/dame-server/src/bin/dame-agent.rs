//! `dame-agent --config agent.toml`: the DAME provider extension beside an IdP or an SP.

use std::path::PathBuf;
use std::process::ExitCode;

const HELP: &str = "\
dame-agent: the DAME provider extension, a sidecar beside a SAML IdP or SP

USAGE:
    dame-agent --config FILE
    dame-agent --help | --version

It serves the entity's MetadataSyncLocation, accepts only triggers signed by the broker's pinned
key (fresh, once, addressed to this entity), pulls the peer from the broker's MDQ service,
verifies it with the same key and writes it for the SAML software: <sha1>.xml and <sha1>.xml.loc
in `directory` (Shibboleth SP: <MetadataProvider type=\"LocalDynamic\" sourceDirectory=\"...\"
maxCacheDuration=\"600\" cleanupInterval=\"60\" cleanupTimeout=\"0\"/>: without the cleanup
settings Shibboleth keeps using a rolled-back peer's copy 30 to 60 minutes longer).
At start it fetches every entity of the directory again. Logs are JSON lines on stderr.

CONFIGURATION (TOML; unknown keys are refused; see crates/dame-server/agent.example.toml):
    entity_id           this entity's entityID, as registered at the broker
    side                \"idp\" or \"sp\"
    listen              address to listen on, e.g. \"127.0.0.1:8443\"
    tls_certificate, tls_key
                        PEM: serve TLS here (default: plain HTTP behind a TLS proxy)
    broker_ca           PEM: extra trust anchors for the broker's TLS (default: the system's)
    sync_path           path of the MetadataSyncLocation (default \"/dame\")
    broker_mdq          the broker's MDQ base URL (https)
    broker_endpoint     the broker's DAME endpoint, for status reports (https)
    broker_certificate  PEM: the broker's metadata signing certificate(s), the trust anchor
    key, certificate    PEM: this entity's signing key and certificate (status reports)
    directory           where integrated metadata is written (created when missing)
    answer_within_ms    answer a trigger within this time, else accepted-pending (default 5000)
    fetch_timeout_ms    give up a fetch from the broker after this time (default 10000)
    max_body_bytes      largest metadata document accepted (default 4194304)
    allow_http          accept http:// broker URLs, for loopback tests (default false)
    [rules]             an IdP's agent: conversion rules for each SP it integrates, written
                        under <directory>/rules/ (have, format, names, first_priority)
    [http]              the listener's limits: header_read_timeout_s (10), request_timeout_s
                        (30, the body included), max_connections (512),
                        max_connections_per_address (64; an IPv6 /64 counts as one address),
                        trusted_proxies (none: addresses or CIDR prefixes whose
                        X-Forwarded-For gives the client address; their connections count
                        against max_connections only)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match args.as_slice() {
        [h] if h == "--help" || h == "-h" => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        [v] if v == "--version" || v == "-V" => {
            println!("dame-agent {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        [c, path] if c == "--config" => PathBuf::from(path),
        _ => {
            eprintln!("usage: dame-agent --config FILE (dame-agent --help)");
            return ExitCode::from(2);
        }
    };
    let cfg = match dame_server::config::AgentConfig::load(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dame-agent: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dame-agent: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(dame_server::agent::run(cfg, dame_server::shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dame-agent: {e}");
            ExitCode::FAILURE
        }
    }
}
