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
# As in scripts/test.sh, whose test binaries the last gate reuses.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

echo "-- cargo doc (RUSTDOCFLAGS=-Dwarnings)"
RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps --all-features --locked --quiet

echo "-- each library with --no-default-features"
for c in "${LIBS[@]}"; do
    cargo check -p "$c" --no-default-features --locked --quiet
done

echo "-- MSRV of the dependencies"
cargo metadata --format-version 1 --locked | python3 scripts/msrv_deps.py

echo "-- library tests with no outside peer"
# The test binaries are the ones the README's test command built (same flags, so cargo builds
# nothing here): selecting the libraries with -p would resolve features differently and build
# every test binary a second time (gigabytes of target/). Each runs as cargo runs it, from its
# package's directory.
mask=$(mktemp -d)
list=$(mktemp)
trap 'rm -rf "$mask" "$list"' EXIT
libs=$(IFS=,; echo "${LIBS[*]}")
cargo test --workspace --all-features --locked --no-run --quiet --message-format=json |
    LIBS="$libs" python3 -c '
import json, os, sys
libs = set(os.environ["LIBS"].split(","))
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    if not m["profile"]["test"]:
        continue
    d = os.path.dirname(m["manifest_path"])
    if os.path.basename(d) in libs:
        print(d + "\t" + m["executable"])
' > "$list"
for c in "${LIBS[@]}"; do
    if ! grep -q "/crates/$c"$'\t' "$list"; then
        echo "no test binary found for $c" >&2
        exit 1
    fi
done
for p in xmlsec1 gpg gpgconf gpg-agent gsasl prosody prosodyctl python python3 pyff pyffd; do
    printf '#!/bin/sh\necho "%s is masked: library tests must not need it" >&2\nexit 127\n' "$p" > "$mask/$p"
    chmod +x "$mask/$p"
done
while IFS=$'\t' read -r dir exe; do
    echo "   $(basename "$dir"): $(basename "$exe")"
    (cd "$dir" && PATH="$mask:$PATH" FEDERATION_VENV=/nonexistent XMLSEC1=/nonexistent \
        CARGO_MANIFEST_DIR="$dir" CARGO_PKG_NAME="$(basename "$dir")" "$exe" -q) > "$mask/out" 2>&1 || {
        cat "$mask/out"
        echo "library tests failed with no outside peer: $exe" >&2
        exit 1
    }
done < "$list"
echo "-- library doctests with no outside peer"
PATH="$mask:$PATH" FEDERATION_VENV=/nonexistent XMLSEC1=/nonexistent \
    cargo test --workspace --all-features --locked --doc --quiet
