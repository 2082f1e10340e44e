#!/usr/bin/env bash
# Fuzzes every cargo-fuzz target in fuzz/ (xml_reader, c14n, verify, metadata, redirect, response, sasl, mdq,
# mdq_cache, dame, dame_flow, xep0027_stanza, armor) for FUZZ_SECONDS seconds
# each (default 60), starting from the seed corpora in fuzz/seeds/<target>. Fails when any target
# finds a crash (a panic, an abort, a sanitizer report with FUZZ_SANITIZER=address), an input
# slower than FUZZ_INPUT_TIMEOUT seconds (default 10) or one needing more than FUZZ_RSS_MB MB
# (default 2048). Mutations use the XML/XML-DSig dictionary fuzz/xml.dict.
#
# cargo-fuzz needs nightly compiler flags (-Zsanitizer, -Cpasses=sancov-module); we only have
# stable toolchains, so every cargo-fuzz command runs with RUSTC_BOOTSTRAP=1. Builds use
# cargo-fuzz's default profile (optimized, with debug assertions and overflow checks) without a
# sanitizer: saml-core forbids unsafe code and the system OpenSSL is not instrumented either way,
# so AddressSanitizer found nothing more here and cost 3.5-4x the executions (xml_reader 38k vs
# 139k exec/s, verify 14k vs 56k on our 2-core machines). FUZZ_SANITIZER=address turns it on.
#
# Crash inputs land in fuzz/artifacts/<target>/; the libFuzzer log of each run in
# fuzz/artifacts/<target>.log. Reproduce a crash with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -s none <target> fuzz/artifacts/<target>/crash-<hash>
# from the repository root. Total time: the build plus about 4 x FUZZ_SECONDS.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
FUZZ_INPUT_TIMEOUT="${FUZZ_INPUT_TIMEOUT:-10}"
FUZZ_RSS_MB="${FUZZ_RSS_MB:-2048}"
FUZZ_SANITIZER="${FUZZ_SANITIZER:-none}"
targets=(xml_reader c14n verify metadata redirect response sasl mdq mdq_cache xep0027_stanza armor dame dame_flow)
export RUSTC_BOOTSTRAP=1

if ! [[ "$FUZZ_SECONDS" =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz: FUZZ_SECONDS must be a positive integer (got '$FUZZ_SECONDS')" >&2
  exit 2
fi

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

build_flags=(--sanitizer "$FUZZ_SANITIZER")
t0=$SECONDS
cargo fuzz build "${build_flags[@]}"
echo "fuzz: built ${targets[*]} in $((SECONDS - t0))s (sanitizer: $FUZZ_SANITIZER)"

failed=()
for t in "${targets[@]}"; do
  corpus="fuzz/corpus/$t"
  artifacts="fuzz/artifacts/$t"
  log="fuzz/artifacts/$t.log" # not inside $artifacts: cargo-fuzz reports the newest file there
  mkdir -p "$corpus" "$artifacts"
  cp -f "fuzz/seeds/$t"/* "$corpus/"
  before="$(ls -1 "$artifacts")"

  t1=$SECONDS
  rc=0
  # The outer timeout only guards against a wedged fuzzer; libFuzzer stops itself after
  # -max_total_time and reports slow inputs through -timeout.
  timeout -k 30 "$((FUZZ_SECONDS * 2 + 120))" \
    cargo fuzz run "${build_flags[@]}" "$t" "$corpus" -- \
      -max_total_time="$FUZZ_SECONDS" \
      -timeout="$FUZZ_INPUT_TIMEOUT" \
      -rss_limit_mb="$FUZZ_RSS_MB" \
      -dict=fuzz/xml.dict \
      -print_final_stats=1 \
      >"$log" 2>&1 || rc=$?
  took=$((SECONDS - t1))

  new="$(comm -13 <(printf '%s\n' "$before" | sort) <(ls -1 "$artifacts" | sort) |
    grep -E '^(crash|oom|timeout|leak|slow-unit)-' || true)"
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  # No match (an input that crashed before libFuzzer reported coverage) is not an error here:
  # with pipefail it ended the script before the failure was reported.
  cov="$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2 || true)"
  if ((rc == 0)) && [ -z "$new" ]; then
    echo "fuzz: $t ok (${took}s, ${runs:-?} runs, cov ${cov:-?}, corpus $(ls -1 "$corpus" | wc -l) files)"
    continue
  fi
  failed+=("$t")
  what="exit $rc"
  if ((rc == 124 || rc == 137)); then what="fuzzer did not stop in time"; fi
  # The input libFuzzer saved (it may already exist from an earlier run, same hash).
  written="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)"
  if [ -n "$written" ]; then
    what="${written#"$PWD/"}"
  elif [ -n "$new" ]; then
    what="$(printf '%s\n' "$new" | sed "s|^|$artifacts/|" | paste -sd' ')"
  fi
  panic="$(grep -m1 -A1 'panicked at' "$log" | sed 's/^thread .* panicked at/panicked at/' | paste -sd' ' | cut -c1-300 || true)"
  echo "fuzz: $t FAILED after ${took}s: $what${panic:+ -- $panic}"
  {
    echo "---- $t: end of $log ----"
    grep -v '^#[0-9]' "$log" | tail -n 60 | cut -c1-400
    echo "---- reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run -s $FUZZ_SANITIZER $t <artifact> ----"
  } >&2
done

if ((${#failed[@]})); then
  echo "fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets ok (${FUZZ_SECONDS}s each)"
