#!/usr/bin/env bash
# Issue 15, "Proof": `samlmd verify` against `xmlsec1 --verify` as whole processes, on aggregates
# built from the real-world metadata in /work/shared/vectors/metadata and signed by xmlsec1
# (benches/realworld_aggregate.py; nothing in the inputs comes from this workspace's code); the
# floor under verification on the same files (benches/floor.rs); and `samlmd split` against
# pyFF's load + map(sign, publish) on the 10,000-entity aggregate.
#
# Usage: benches/samlmd_verify.sh [RUNS]          (default 5)
# Environment:
#   SHAPES      shape:entities list (default "prefix:10000 default:10000 crlf:10000
#               longcert:10000 prefix:40000 prefix:50000"; shapes: see realworld_aggregate.py;
#               at about 6.3 KB per real-world entity, 50,000 entities make 301 MiB, above
#               saml-core's default 256 MiB document-size limit: every samlmd run here passes
#               `--max-size 1024`, as an operator of such an aggregate would)
#   SPLIT_N     entities of the split comparison, prefix shape (default 10000; 0 skips it)
#   SPLIT_RUNS  paired runs of the split comparison (default 3)
#   XMLSEC1     default /usr/bin/xmlsec1
#   VENV        the venv of scripts/setup.sh (default .venv): its python (lxml) runs the
#               generator, its pyff the split comparison; PYTHON and PYFF override each
#   VECTORS     default /work/shared/vectors/metadata
#   NOW         drop validUntil earlier than this (xs:dateTime, default: now)
#   OUT         default target/bench-data/issue15
#
# Per shape: RUNS rounds; each round runs `samlmd verify`, `xmlsec1 --verify` and `samlmd verify
# --single-threaded` once each, the order rotating from round to round, every run under
# `/usr/bin/time -v` (peak RSS: "Maximum resident set size"; wall time: clock around the
# process). Printed: median wall times, the median of the per-round ratios xmlsec1 / ours, the
# largest peak RSS of each. Both verifiers must accept every file before anything is measured.
# Fails loudly (exit 1) when xmlsec1, GNU time, the venv's python with lxml, pyff or openssl
# is missing.
set -euo pipefail

RUNS=${1:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/target/bench-data/issue15}
XMLSEC1=${XMLSEC1:-/usr/bin/xmlsec1}
VENV=${VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-$VENV/bin/python}
PYFF=${PYFF:-$VENV/bin/pyff}
VECTORS=${VECTORS:-/work/shared/vectors/metadata}
SHAPES=${SHAPES:-prefix:10000 default:10000 crlf:10000 longcert:10000 prefix:40000 prefix:50000}
SPLIT_N=${SPLIT_N:-10000}
SPLIT_RUNS=${SPLIT_RUNS:-3}
TIME=/usr/bin/time
AGG_NODE=urn:oasis:names:tc:SAML:2.0:metadata:EntitiesDescriptor
ENT_NODE=urn:oasis:names:tc:SAML:2.0:metadata:EntityDescriptor

die() { echo "samlmd_verify.sh: $*" >&2; exit 1; }

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive number, not '$RUNS'"
[ -x "$TIME" ] || die "GNU time not found at $TIME (apt-get install time, or bash scripts/setup.sh)"
[ -x "$XMLSEC1" ] || die "xmlsec1 not found at $XMLSEC1 (apt-get install xmlsec1, or set XMLSEC1)"
command -v openssl >/dev/null || die "the openssl CLI is needed to make the signing key"
[ -x "$PYTHON" ] || die "python not found at $PYTHON (bash scripts/setup.sh makes .venv; or set VENV/PYTHON)"
"$PYTHON" -c 'import lxml' 2>/dev/null || die "$PYTHON cannot import lxml (bash scripts/setup.sh)"
if [ "$SPLIT_N" != 0 ]; then
    [ -x "$PYFF" ] || die "pyFF not found at $PYFF (bash scripts/setup.sh installs it; or set VENV/PYFF; SPLIT_N=0 skips the split comparison)"
fi
[ -d "$VECTORS" ] || die "no real-world metadata at $VECTORS (set VECTORS)"

cd "$ROOT"
cargo build --release --quiet -p samlmd
cargo build --release --quiet -p saml-benches --example floor
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
SAMLMD=$TARGET/release/samlmd
FLOOR=$TARGET/release/examples/floor

mkdir -p "$OUT"
KEY=$OUT/signer.key.pem
CERT=$OUT/signer.cert.pem
if [ ! -s "$KEY" ] || [ ! -s "$CERT" ]; then
    openssl req -x509 -newkey rsa:2048 -sha256 -nodes -days 3650 \
        -subj "/CN=samlmd_verify.sh aggregate signer" -keyout "$KEY" -out "$CERT" 2>/dev/null
    rm -f "$OUT"/rw-*.xml # signed with an older key
fi

NOW_ARGS=()
[ -n "${NOW:-}" ] && NOW_ARGS=(--now "$NOW")

# gen SHAPE N: the signed aggregate's path (made once; kept between runs).
gen() {
    local f=$OUT/rw-$1-$2.xml
    if [ ! -s "$f" ]; then
        "$PYTHON" "$ROOT/benches/realworld_aggregate.py" "$2" "$1" "$f" "$KEY" "$CERT" \
            --vectors "$VECTORS" --xmlsec1 "$XMLSEC1" "${NOW_ARGS[@]}" >&2 \
            || die "realworld_aggregate.py $2 $1 failed"
    fi
    echo "$f"
}

# One measured run: prints "wall_seconds max_rss_kb cpu_seconds"; fails if the command fails.
measure() {
    local log=$OUT/time.log out=$OUT/cmd.out t0 t1
    t0=$(date +%s%N)
    if ! "$TIME" -v -o "$log" "$@" >"$out" 2>&1; then
        t1=$(date +%s%N)
        tail -20 "$out" >&2
        die "command failed: $*"
    fi
    t1=$(date +%s%N)
    awk -F': ' -v ns=$((t1 - t0)) '
        /Maximum resident set size/ { rss = $2 }
        /User time \(seconds\)/ { cpu += $2 }
        /System time \(seconds\)/ { cpu += $2 }
        END { printf "%.4f %d %.2f\n", ns / 1e9, rss, cpu }' "$log"
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
max() { sort -g | tail -1; }

ours() { "$SAMLMD" verify --max-size 1024 --cert "$CERT" "$1"; }
xmlsec() { "$XMLSEC1" --verify --pubkey-cert-pem "$CERT" --id-attr:ID "$AGG_NODE" "$1"; }

echo "# samlmd_verify.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, runs: $RUNS"
echo "# $($XMLSEC1 --version | head -1); samlmd $("$SAMLMD" --version 2>&1 | head -1)"
echo "# load at start: $(uptime)"

SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
for spec in $SHAPES; do
    shape=${spec%%:*}
    n=${spec##*:}
    file=$(gen "$shape" "$n")
    size=$(stat -c %s "$file")
    # Both must accept the file before anything is measured.
    # A file above saml-core's document-size limit (Limits::max_document_size, 256 MiB) is
    # refused by design: then only xmlsec1 and the floor are measured, and the row says so.
    refused=""
    if ok=$(ours "$file" 2>&1); then
        [ "$(tail -1 <<<"$ok")" = "OK $n entities" ] || die "samlmd verify on $file: '$ok' (expected OK $n entities)"
    elif grep -q 'document larger than' <<<"$ok"; then
        refused=$ok
        echo "NOTE: samlmd verify refuses $file by its document-size limit: $ok" >&2
    else
        die "samlmd verify rejects $file: $ok"
    fi
    xs=$(xmlsec "$file" 2>&1) || die "xmlsec1 rejects $file: $(tail -3 <<<"$xs")"
    grep -q '^OK' <<<"$xs" || die "xmlsec1 on $file: $xs"

    echo
    echo "## $shape, $n entities: $file, $size bytes ($(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1048576 }') MiB); load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    "$FLOOR" "$file" "$RUNS"
    echo
    rows=$OUT/rows-$shape-$n.txt
    : >"$rows"
    for r in $(seq "$RUNS"); do
        # Rotate the order: ours, xmlsec1, ours-st / xmlsec1, ours-st, ours / ours-st, ours, xmlsec1.
        declare -A res=()
        order=(o x s)
        rot=$(((r - 1) % 3))
        order=("${order[@]:rot}" "${order[@]:0:rot}")
        for who in "${order[@]}"; do
            if [ -n "$refused" ] && [ "$who" != x ]; then
                res[$who]="nan 0 nan"
                continue
            fi
            case $who in
                o) res[o]=$(measure "$SAMLMD" verify --max-size 1024 --cert "$CERT" "$file") ;;
                x) res[x]=$(measure "$XMLSEC1" --verify --pubkey-cert-pem "$CERT" --id-attr:ID "$AGG_NODE" "$file") ;;
                s) res[s]=$(measure "$SAMLMD" verify --max-size 1024 --single-threaded --cert "$CERT" "$file") ;;
            esac
        done
        echo "${res[o]} ${res[x]} ${res[s]}" >>"$rows"
        unset res
    done
    # rows: ow orss ocpu xw xrss xcpu sw srss scpu
    ow=$(awk '{ print $1 }' "$rows" | median)
    xw=$(awk '{ print $4 }' "$rows" | median)
    sw=$(awk '{ print $7 }' "$rows" | median)
    ratio=$(awk '{ print ($1 > 0 ? $4 / $1 : "nan") }' "$rows" | median)
    ratio_st=$(awk '{ print ($7 > 0 ? $4 / $7 : "nan") }' "$rows" | median)
    orss=$(awk '{ print $2 }' "$rows" | max)
    xrss=$(awk '{ print $5 }' "$rows" | max)
    srss=$(awk '{ print $8 }' "$rows" | max)
    ocpu=$(awk '{ print $3 }' "$rows" | median)
    xcpu=$(awk '{ print $6 }' "$rows" | median)
    scpu=$(awk '{ print $9 }' "$rows" | median)
    echo "per-round wall (s), peak RSS (KiB), CPU (s): ours | xmlsec1 | ours --single-threaded"
    awk '{ printf "  round %d: %s %s %s | %s %s %s | %s %s %s\n", NR, $1, $2, $3, $4, $5, $6, $7, $8, $9 }' "$rows"
    echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
    if [ -n "$refused" ]; then
        echo "samlmd: refused, $refused"
        awk -v shape="$shape" -v n="$n" -v size="$size" -v xw="$xw" -v xrss="$xrss" -v xcpu="$xcpu" \
            -v load="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN {
            printf "| %s | %d | %.1f | refused (document > 256 MiB limit) | refused | %.3f | - | - | - | - | - | %.1f | - / - / %.2f | %s |\n",
                shape, n, size / 1048576, xw, xrss / 1024, xcpu, load
        }' >>"$SUMMARY"
        continue
    fi
    awk -v shape="$shape" -v n="$n" -v size="$size" -v ow="$ow" -v xw="$xw" -v sw="$sw" \
        -v ratio="$ratio" -v rst="$ratio_st" -v orss="$orss" -v xrss="$xrss" -v srss="$srss" \
        -v ocpu="$ocpu" -v xcpu="$xcpu" -v scpu="$scpu" -v load="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN {
        printf "| %s | %d | %.1f | %.3f | %.3f | %.3f | %.2fx | %.2fx | %.1f | %.2fx | %.1f | %.1f | %.2f / %.2f / %.2f | %s |\n",
            shape, n, size / 1048576, ow, sw, xw, ratio, rst, orss / 1024, orss * 1024 / size,
            srss / 1024, xrss / 1024, ocpu, scpu, xcpu, load
    }' >>"$SUMMARY"
done

echo
echo "## Summary: samlmd verify against xmlsec1 --verify (medians of $RUNS rounds; peak RSS: largest)"
echo
echo "| shape | entities | file MiB | ours wall (s) | ours --single-threaded (s) | xmlsec1 wall (s) | xmlsec1 / ours (median of rounds) | xmlsec1 / ours-st | ours peak RSS MiB | ours RSS / file | ours-st RSS MiB | xmlsec1 peak RSS MiB | CPU s ours / st / xmlsec1 | load |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
cat "$SUMMARY"

[ "$SPLIT_N" = 0 ] && exit 0

# Split: samlmd split (verify, one signed file per entity named by the SHA-1 of its entityID)
# against pyFF: load with the signature check, select, then map (pyFF's per-entity loop) of sign
# and publish to a directory (urlencoded entityID file names plus the SHA-1 symlinks MDQ uses).
file=$(gen prefix "$SPLIT_N")
size=$(stat -c %s "$file")
OURS_DIR=$OUT/split-samlmd
PYFF_DIR=$OUT/split-pyff
PIPE=$OUT/pyff-split.yaml
cat >"$PIPE" <<EOF
- load:
  - $file verify $CERT
- select
- map:
  - sign:
      key: $KEY
      cert: $CERT
  - publish:
      output: $PYFF_DIR
      urlencode_filenames: true
      hash_link: true
      update_store: false
EOF
rows=$OUT/rows-split.txt
: >"$rows"
for r in $(seq "$SPLIT_RUNS"); do
    rm -rf "$OURS_DIR" "$PYFF_DIR"
    mkdir -p "$PYFF_DIR"
    if [ $((r % 2)) = 1 ]; then
        o=$(measure "$SAMLMD" split --cert "$CERT" --key "$KEY" --sign-cert "$CERT" "$file" "$OURS_DIR")
        p=$(measure "$PYFF" --loglevel=ERROR "$PIPE")
    else
        p=$(measure "$PYFF" --loglevel=ERROR "$PIPE")
        o=$(measure "$SAMLMD" split --cert "$CERT" --key "$KEY" --sign-cert "$CERT" "$file" "$OURS_DIR")
    fi
    echo "$o $p" >>"$rows"
done
ours_files=$(find "$OURS_DIR" -name '*.xml' -type f | wc -l)
pyff_files=$(find "$PYFF_DIR" -name '*.xml' -type l | wc -l)
# Spot check: the first 20 outputs of each verify with xmlsec1 (entity-level ID reference).
bad=0
for f in $(find "$OURS_DIR" -name '*.xml' -type f | sort | head -20) $(find "$PYFF_DIR" -name '*.xml' -type l | sort | head -20); do
    "$XMLSEC1" --verify --pubkey-cert-pem "$CERT" --id-attr:ID "$ENT_NODE" "$f" >/dev/null 2>&1 || { echo "xmlsec1 rejects $f" >&2; bad=$((bad + 1)); }
done
[ "$bad" = 0 ] || die "$bad split outputs do not verify with xmlsec1"
echo
echo "## Split: $file ($SPLIT_N entities, $(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1048576 }') MiB), $SPLIT_RUNS alternating pairs; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "files written: samlmd $ours_files, pyFF $pyff_files (pyFF's load drops schema-invalid entities); 20 of each verified with xmlsec1"
echo
echo "| tool | median wall (s) | median CPU user+sys (s) | peak RSS MiB (largest) |"
echo "|---|---:|---:|---:|"
awk -v ow="$(awk '{ print $1 }' "$rows" | median)" -v ocpu="$(awk '{ print $3 }' "$rows" | median)" \
    -v orss="$(awk '{ print $2 }' "$rows" | max)" -v pw="$(awk '{ print $4 }' "$rows" | median)" \
    -v pcpu="$(awk '{ print $6 }' "$rows" | median)" -v prss="$(awk '{ print $5 }' "$rows" | max)" \
    -v ratio="$(awk '{ print $4 / $1 }' "$rows" | median)" 'BEGIN {
    printf "| samlmd split --key (verify, split, sign each) | %.2f | %.2f | %.1f |\n", ow, ocpu, orss / 1024
    printf "| pyFF load verify + select + map(sign, publish) | %.2f | %.2f | %.1f |\n", pw, pcpu, prss / 1024
    printf "\npyFF / samlmd: wall %.1fx (median of pair ratios)\n", ratio
}'
