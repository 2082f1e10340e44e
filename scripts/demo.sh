#!/usr/bin/env bash
# The main job: the end-to-end demo (key pair, signed metadata, verification, xmlsec1 cross-check,
# attacks rejected; a 2,000-entity aggregate loaded, filtered, republished; Web SSO; SAML20 SASL
# between XMPP servers; MDQ lookups; XEP-0027 between cloud modules: signed presence checked by
# GnuPG, an encrypted message, a refused replay, a session key, an encrypted room with rotation;
# DAME in memory), then the DAME services as real processes on loopback (dame-broker and two
# dame-agents: a first use and a second use, each step timed).
# Installs what it needs. Output files go to target/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo run --release --locked -q -p saml-examples --example demo -- "${1:-target/demo}"
echo
echo "-- step 13: the DAME services as processes (crates/dame-server/examples/dame_services.rs)"
cargo build --release --locked -q -p dame-server --bins --examples
"${CARGO_TARGET_DIR:-target}/release/examples/dame_services" walk
