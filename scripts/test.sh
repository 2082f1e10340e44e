#!/usr/bin/env bash
# The whole test suite: unit, vector, attack-class, real-world metadata, xmlsec1 interop and the
# libxmlsec1 differential tests, plus doctests, with every feature on. Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# One build, run once: incremental caches would only add gigabytes to target/ (set
# CARGO_INCREMENTAL=1 when iterating).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo test --workspace --all-features --locked
