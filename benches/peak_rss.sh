#!/usr/bin/env bash
# Peak RSS and wall time of signature verification of a signed eduGAIN-shaped aggregate:
# saml-core (examples/verify_file.rs: read the file, dsig::verify with
# VerifyOptions::metadata()) against `xmlsec1 --verify`, both under `/usr/bin/time -v`; then of
# metadata loading: saml-metadata (examples/load_file.rs, lazy, eager and eager from an owned
# document) against pyFF's
# load with signature check (the venv from scripts/setup.sh; PYFF overrides its path); then of
# selecting the identity providers and re-signing them into a new aggregate: `samlmd select
# --role idp` against pyFF's load, select (XPath), finalize, sign and publish, and of splitting
# it into one re-signed file per entity (`samlmd split --key`).
#
# Usage: benches/peak_rss.sh [ENTITIES] [RUNS]     (defaults: 10000 entities, 3 runs each)
# Environment: XMLSEC1 (default /usr/bin/xmlsec1), OUT (default target/bench-data/rss).
#
# Builds gen_aggregate and verify_file in release, makes an RSA-2048 key and self-signed
# certificate with the openssl CLI (once), generates and signs the aggregate with
# `gen_aggregate N FILE --sign KEY CERT`, checks that both verifiers accept it, then runs each
# verifier RUNS times and prints the best wall time and the largest peak RSS.
set -euo pipefail

N=${1:-10000}
RUNS=${2:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/target/bench-data/rss}
XMLSEC1=${XMLSEC1:-/usr/bin/xmlsec1}
TIME=/usr/bin/time
NODE=urn:oasis:names:tc:SAML:2.0:metadata:EntitiesDescriptor

die() { echo "peak_rss.sh: $*" >&2; exit 1; }

if [ ! -x "$TIME" ]; then
    echo "peak_rss.sh: $TIME missing, installing the Debian 'time' package" >&2
    apt-get install -y time >/dev/null || die "could not install 'time' (apt-get install time)"
fi
[ -x "$XMLSEC1" ] || die "xmlsec1 not found at $XMLSEC1 (apt-get install xmlsec1, or set XMLSEC1)"
command -v openssl >/dev/null || die "the openssl CLI is needed to make the signing key"

cd "$ROOT"
cargo build --release --quiet -p saml-benches --example gen_aggregate
cargo build --release --quiet -p saml-examples --example verify_file --example load_file
cargo build --release --quiet -p samlmd
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples
SAMLMD=${CARGO_TARGET_DIR:-$ROOT/target}/release/samlmd

mkdir -p "$OUT"
KEY=$OUT/signer.key.pem
CERT=$OUT/signer.cert.pem
if [ ! -s "$KEY" ] || [ ! -s "$CERT" ]; then
    openssl req -x509 -newkey rsa:2048 -sha256 -nodes -days 3650 \
        -subj "/CN=peak_rss.sh aggregate signer" -keyout "$KEY" -out "$CERT" 2>/dev/null
fi
FILE=$OUT/aggregate-$N.signed.xml
"$BIN/gen_aggregate" "$N" "$FILE" --sign "$KEY" "$CERT" 2>&1
SIZE=$(stat -c %s "$FILE")

# One measured run: prints "wall_seconds max_rss_kb"; fails if the command fails.
measure() {
    local log=$OUT/time.log out=$OUT/cmd.out
    if ! "$TIME" -v -o "$log" "$@" >"$out" 2>&1; then
        cat "$out" >&2
        die "command failed: $*"
    fi
    local wall rss
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {
        n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$log")
    rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$log")
    echo "$wall $rss"
}

# Both must accept the document before anything is measured.
"$BIN/verify_file" "$CERT" "$FILE" | grep '^OK ' >/dev/null || die "saml-core verify_file rejects $FILE"
"$XMLSEC1" --verify --id-attr:ID "$NODE" --pubkey-cert-pem "$CERT" "$FILE" >/dev/null 2>&1 \
    || die "xmlsec1 rejects $FILE"

run_many() {
    local best_wall="" max_rss=0 w r
    for _ in $(seq "$RUNS"); do
        read -r w r < <(measure "$@")
        if [ -z "$best_wall" ] || awk -v a="$w" -v b="$best_wall" 'BEGIN { exit !(a < b) }'; then
            best_wall=$w
        fi
        [ "$r" -gt "$max_rss" ] && max_rss=$r
    done
    echo "$best_wall $max_rss"
}

read -r OUR_WALL OUR_RSS < <(run_many "$BIN/verify_file" "$CERT" "$FILE")
read -r XS_WALL XS_RSS < <(run_many "$XMLSEC1" --verify --id-attr:ID "$NODE" --pubkey-cert-pem "$CERT" "$FILE")

echo
echo "file: $FILE"
echo "entities: $N, size: $SIZE bytes ($(awk -v s="$SIZE" 'BEGIN { printf "%.1f", s / 1048576 }') MiB), runs: $RUNS (best wall time, largest peak RSS)"
echo
awk -v size="$SIZE" -v ow="$OUR_WALL" -v or="$OUR_RSS" -v xw="$XS_WALL" -v xr="$XS_RSS" 'BEGIN {
    printf "| %-34s | %10s | %14s | %14s |\n", "verifier", "wall (s)", "peak RSS (MiB)", "RSS / file size"
    printf "|%s|%s|%s|%s|\n", "------------------------------------", "------------", "----------------", "-----------------"
    printf "| %-34s | %10.2f | %14.1f | %14.2fx |\n", "saml-core verify_file", ow, or / 1024, or * 1024 / size
    printf "| %-34s | %10.2f | %14.1f | %14.2fx |\n", "xmlsec1 --verify", xw, xr / 1024, xr * 1024 / size
    printf "\nxmlsec1 / saml-core: wall time %.2fx, peak RSS %.2fx\n", xw / ow, xr / or
}'

PYFF=${PYFF:-$ROOT/.venv/bin/pyff}
[ -x "$PYFF" ] || die "pyFF not found at $PYFF (bash scripts/setup.sh installs it, or set PYFF)"
PIPE=$OUT/pyff-load.yaml
printf -- '- load:\n  - %s verify %s\n- select\n' "$FILE" "$CERT" >"$PIPE"
read -r LZ_WALL LZ_RSS < <(run_many "$BIN/load_file" --lazy "$CERT" "$FILE")
read -r EG_WALL EG_RSS < <(run_many "$BIN/load_file" "$CERT" "$FILE")
read -r OW_WALL OW_RSS < <(run_many "$BIN/load_file" --owned "$CERT" "$FILE")
read -r PF_WALL PF_RSS < <(run_many "$PYFF" --loglevel=ERROR "$PIPE")
echo
awk -v size="$SIZE" -v lw="$LZ_WALL" -v lr="$LZ_RSS" -v ew="$EG_WALL" -v er="$EG_RSS" -v owl="$OW_WALL" -v owr="$OW_RSS" -v pw="$PF_WALL" -v pr="$PF_RSS" 'BEGIN {
    printf "| %-34s | %10s | %14s | %14s |\n", "loader", "wall (s)", "peak RSS (MiB)", "RSS / file size"
    printf "|%s|%s|%s|%s|\n", "------------------------------------", "------------", "----------------", "-----------------"
    printf "| %-34s | %10.2f | %14.1f | %14.2fx |\n", "saml-metadata load_file --lazy", lw, lr / 1024, lr * 1024 / size
    printf "| %-34s | %10.2f | %14.1f | %14.2fx |\n", "saml-metadata load_file (eager)", ew, er / 1024, er * 1024 / size
    printf "| %-34s | %10.2f | %14.1f | %14.2fx |\n", "saml-metadata load_file --owned", owl, owr / 1024, owr * 1024 / size
    printf "| %-34s | %10.2f | %14.1f | %14.2fx |\n", "pyFF load + select (verify)", pw, pr / 1024, pr * 1024 / size
    printf "\npyFF / saml-metadata lazy: wall time %.1fx, peak RSS %.1fx\n", pw / lw, pr / lr
}'

# Selecting the IdPs (half of the generated entities) and re-signing them with the same key.
SEL_OURS=$OUT/select-idps.samlmd.xml
SEL_PYFF=$OUT/select-idps.pyff.xml
SEL_PIPE=$OUT/pyff-select.yaml
printf -- '- load:\n  - %s verify %s\n- select: "!//md:EntityDescriptor[md:IDPSSODescriptor]"\n- finalize:\n    Name: urn:samlmd:selection\n    validUntil: P7D\n- sign:\n    key: %s\n    cert: %s\n- publish: %s\n' \
    "$FILE" "$CERT" "$KEY" "$CERT" "$SEL_PYFF" >"$SEL_PIPE"
read -r SO_WALL SO_RSS < <(run_many "$SAMLMD" select --cert "$CERT" --role idp --key "$KEY" \
    --sign-cert "$CERT" "$FILE" "$SEL_OURS")
read -r SP_WALL SP_RSS < <(run_many "$PYFF" --loglevel=ERROR "$SEL_PIPE")
# Splitting into one re-signed file per entity (what an MDQ server does at start).
SPLIT_DIR=$OUT/split
rm -rf "$SPLIT_DIR"
read -r SS_WALL SS_RSS < <(run_many "$SAMLMD" split --cert "$CERT" --key "$KEY" --sign-cert "$CERT" \
    "$FILE" "$SPLIT_DIR")
[ "$(find "$SPLIT_DIR" -name '*.xml' | wc -l)" -eq "$N" ] || die "split did not write $N files"
# Both selections verify and hold the same entities.
for f in "$SEL_OURS" "$SEL_PYFF"; do
    "$XMLSEC1" --verify --id-attr:ID "$NODE" --pubkey-cert-pem "$CERT" "$f" >/dev/null 2>&1 \
        || die "xmlsec1 rejects $f"
done
[ "$("$SAMLMD" verify --cert "$CERT" "$SEL_OURS" | tail -1)" = \
  "$("$SAMLMD" verify --cert "$CERT" "$SEL_PYFF" | tail -1)" ] || die "the selections differ in size"
echo
awk -v size="$SIZE" -v ow="$SO_WALL" -v or="$SO_RSS" -v pw="$SP_WALL" -v pr="$SP_RSS" -v sw="$SS_WALL" -v sr="$SS_RSS" 'BEGIN {
    printf "| %-34s | %10s | %14s | %14s |\n", "select IdPs / split, re-signed", "wall (s)", "peak RSS (MiB)", "RSS / file size"
    printf "|%s|%s|%s|%s|\n", "------------------------------------", "------------", "----------------", "-----------------"
    printf "| %-34s | %10.2f | %14.1f | %14.2fx |\n", "samlmd select --role idp", ow, or / 1024, or * 1024 / size
    printf "| %-34s | %10.2f | %14.1f | %14.2fx |\n", "pyFF load, select, sign, publish", pw, pr / 1024, pr * 1024 / size
    printf "| %-34s | %10.2f | %14.1f | %14.2fx |\n", "samlmd split --key (every entity)", sw, sr / 1024, sr * 1024 / size
    printf "\npyFF / samlmd select: wall time %.1fx, peak RSS %.1fx\n", pw / ow, pr / or
}'
