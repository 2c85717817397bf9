//! The integration tests, one binary: one module per area, run by `cargo test`.
//!
//! `cargo test --test it <module>::` runs one area (for example
//! `cargo test --test it verify::`). Shared helpers are in `common` (keys, configs,
//! requests, captured logs) and `cases` (the one table of refusals that the verify,
//! layer, RSA-budget and log tests all iterate, and the expected answer of every
//! refusal, written by hand from the README). The reference model of the token
//! rules lives in `tests/support/model.rs`, shared with the fuzz target.
//!
//! Everything runs in one process with the default parallel harness, so nothing here
//! sets process-wide state per test: logs are captured with a scoped subscriber on
//! the test's thread, and the crate's reload threads (which no scoped subscriber
//! reaches) write to one global capture installed once (`common::reload_log`).

mod cases;
mod common;
#[path = "../support/model.rs"]
mod model;

mod adversarial;
#[cfg(feature = "cli")]
mod cli;
mod config;
mod example_server;
mod grpc;
mod keys;
mod kubernetes;
mod layer;
mod logs;
#[cfg(feature = "metrics")]
mod metrics;
mod panic;
mod properties;
mod reload;
mod rsa_budget;
#[cfg(feature = "cli")]
mod sidecar;
mod thread_cache;
mod tower_http_stack;
mod tracing;
mod verify;
