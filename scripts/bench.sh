#!/usr/bin/env bash
# Runs both benchmarks, then draws docs/bench.png and prints the verify results
# with the targets' PASS/FAIL. Arguments go to the verify bench (criterion), e.g.
# `scripts/bench.sh floor verify_uncached` to run some cases only.
# Run it on a quiet machine: the ratios compare cases measured minutes apart.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo bench --bench verify -- "$@"
cargo bench --bench reload
cargo run --release --example bench_chart
