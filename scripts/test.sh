#!/usr/bin/env bash
# The whole test suite: unit, vector, attack-class, real-world metadata, xmlsec1 interop and the
# libxmlsec1 differential tests, plus doctests, with every feature on. Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --workspace --all-features --locked
