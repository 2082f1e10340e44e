#!/bin/bash
# Alternating A/B of two builds of one command, whole processes (issue 15; BENCHMARKS.md).
# usage: benches/ab_pairs.sh N BIN_A BIN_B ARGS...
# Runs BIN_A ARGS and BIN_B ARGS alternately N times each and prints, per build, the median,
# the least and the quartiles of the wall time. On a host whose speed drifts, only such
# alternating pairs compare two builds.
set -euo pipefail
N=$1; A=$2; B=$3; shift 3
for _ in $(seq "$N"); do
  for b in A B; do
    bin=${!b}
    s=$(date +%s%N); "$bin" "$@" >/dev/null 2>&1; e=$(date +%s%N)
    echo "$b $(( (e - s) / 1000 ))"
  done
done | python3 -c '
import sys, statistics
d = {}
for line in sys.stdin:
    k, v = line.split()
    d.setdefault(k, []).append(int(v) / 1000)
for k in sorted(d):
    v = sorted(d[k]); n = len(v)
    print(f"{k}: median {statistics.median(v):.1f} ms, least {v[0]:.1f}, p25 {v[n // 4]:.1f}, p75 {v[3 * n // 4]:.1f} (n={n})")
'
