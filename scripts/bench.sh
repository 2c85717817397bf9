#!/usr/bin/env bash
# Runs both benchmarks, then draws docs/bench.png. The verify bench prints
# criterion's per-case table, then its verdict on the targets from the interleaved
# pass (see benches/verify.rs). Arguments go to the verify bench: criterion's one
# filter, a regular expression, e.g. `scripts/bench.sh '^(floor|verify_uncached)$'`
# to run some cases only (the verdict then needs BENCH_INTERLEAVED_ROUNDS=150).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo bench --bench verify -- "$@"
cargo bench --bench reload
cargo run --release --example bench_chart
