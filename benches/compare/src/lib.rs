//! The comparison benchmark's shared code: the list of cases, the README's
//! performance targets and the tables, read back from criterion's results by the
//! `verify` bench (`benches/verify.rs`) and the `bench_chart` binary.
//!
//! ```text
//! cargo bench --bench verify            # every case, then the interleaved pass
//! cargo run --release --bin bench_chart # docs/bench.png from criterion's results
//! ```
//!
//! Not part of the main crate's workspace, so that jwt-authorizer, criterion and
//! plotters are built only here (see `scripts/bench.sh` at the top).

pub mod report;
