#!/usr/bin/env bash
# Runs both benchmarks, then draws docs/bench.png.
#
# The comparison bench (this crate against the RSA floor and jwt-authorizer, the
# cache cases and the speed-ups) is the crate benches/compare/, built apart from
# the main crate so that `cargo build`, `cargo test` and the examples never build
# jwt-authorizer, criterion or plotters; its results and build go to
# benches/compare/target/. It prints criterion's per-case table, then its verdict
# on the targets from the interleaved pass, then each speed-up with and without
# (see benches/compare/benches/verify.rs). The reload bench is the main crate's.
#
# Arguments go to the verify bench: criterion's one filter, a regular expression,
# e.g. `scripts/bench.sh '^(floor|verify_uncached)$'` to run some cases only (the
# verdict then needs BENCH_INTERLEAVED_ROUNDS=150). Environment:
# BENCH_INTERLEAVED_ROUNDS, BENCH_INTERLEAVED_SLICE_MS, BENCH_SPEEDUPS=0,
# BENCH_CLOCK=cpu (see the bench's module docs).
#
# On 2 cores, with everything already built: about 4 minutes (the verify bench's
# setup 10 s, criterion about 2 minutes, the interleaved pass with the speed-ups
# 1.5, the reload bench under 1). The first release builds take about 4 more
# (benches/compare 2.5 minutes, the main crate's benches 2).
set -euo pipefail
cd "$(dirname "$0")/.."

(cd benches/compare && cargo bench --bench verify -- "$@")
cargo bench --bench reload
(cd benches/compare && cargo run --release --bin bench_chart)
