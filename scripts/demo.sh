#!/usr/bin/env bash
# The main job: the end-to-end demo (key pair, signed metadata, verification, xmlsec1 cross-check,
# attacks rejected; a 2,000-entity aggregate loaded, filtered, republished; Web SSO; SAML20 SASL
# between XMPP servers; MDQ lookups; XEP-0027 between cloud modules: signed presence checked by
# GnuPG, an encrypted message, a refused replay, a session key, an encrypted room with rotation).
# Installs what it needs. Output files go to target/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo run --release --locked -q -p saml-examples --example demo -- "${1:-target/demo}"
