#!/usr/bin/env bash
# The house gates of CI (issue 14), each cheap:
# - documentation builds without warnings (broken links, missing docs);
# - every library builds with --no-default-features (the sans-IO core alone);
# - the MSRV: no dependency in Cargo.lock declares a rust-version above the workspace's, and
#   clippy's incompatible_msrv lint (on in `cargo clippy -D warnings`) checks our own use of std
#   against it (this machine has only the stable toolchain, so 1.88 itself cannot be installed);
# - the libraries' own tests pass with no outside peer reachable: xmlsec1, gpg, gsasl, prosody
#   and Python are masked on PATH and the venv is pointed nowhere.
set -euo pipefail
cd "$(dirname "$0")/.."
LIBS=(saml-core saml-metadata sasl-saml20 mdq-client xep0027 dame-protocol dame-server)

echo "-- cargo doc (RUSTDOCFLAGS=-Dwarnings)"
RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps --all-features --locked --quiet

echo "-- each library with --no-default-features"
for c in "${LIBS[@]}"; do
    cargo check -p "$c" --no-default-features --locked --quiet
done

echo "-- MSRV of the dependencies"
cargo metadata --format-version 1 --locked | python3 scripts/msrv_deps.py

echo "-- library tests with no outside peer"
mask=$(mktemp -d)
trap 'rm -rf "$mask"' EXIT
for p in xmlsec1 gpg gpgconf gpg-agent gsasl prosody prosodyctl python python3 pyff pyffd; do
    printf '#!/bin/sh\necho "%s is masked: library tests must not need it" >&2\nexit 127\n' "$p" > "$mask/$p"
    chmod +x "$mask/$p"
done
args=()
for c in "${LIBS[@]}"; do args+=(-p "$c"); done
PATH="$mask:$PATH" FEDERATION_VENV=/nonexistent XMLSEC1=/nonexistent \
    cargo test "${args[@]}" --all-features --locked --quiet
