//! Reads criterion's results for the `verify` bench cases and checks the targets.
//!
//! Shared by `benches/verify.rs` (which prints this after its run) and
//! `src/bin/bench_chart.rs` (which also draws the chart). Criterion keeps the
//! last run of each case in `<criterion dir>/<case>/new/estimates.json`; the mean's
//! point estimate there is the time per operation in nanoseconds.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    time::SystemTime,
};

/// What a case is, for the chart's colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The RSA operation alone.
    Floor,
    /// This crate.
    Ours,
    /// This crate refusing a token before any RSA.
    Refusal,
    /// The bare Router, no authentication.
    Baseline,
    /// jwt-authorizer, for comparison.
    Other,
}

/// One case of `benches/verify.rs`.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// The criterion benchmark id (also its folder name).
    pub name: &'static str,
    /// How many threads ran it at once; its time is wall time / (threads × N).
    pub threads: u32,
    pub kind: Kind,
    /// What it measures, in a few words.
    pub what: &'static str,
}

const fn case(name: &'static str, threads: u32, kind: Kind, what: &'static str) -> Case {
    Case {
        name,
        threads,
        kind,
        what,
    }
}

/// Every case, in the order of the bench, the table and the chart.
pub const CASES: &[Case] = &[
    case(
        "floor",
        1,
        Kind::Floor,
        "aws-lc-rs verify_sig, key parsed once",
    ),
    case(
        "verify_uncached",
        1,
        Kind::Ours,
        "SystemAuth::verify, cache off",
    ),
    case(
        "verify_cached",
        1,
        Kind::Ours,
        "SystemAuth::verify, cache on, same token",
    ),
    case(
        "layer_uncached",
        1,
        Kind::Ours,
        "layer around the Router, oneshot, cache off",
    ),
    case(
        "layer_cached",
        1,
        Kind::Ours,
        "layer around the Router, oneshot, cache on",
    ),
    case(
        "router_no_layer",
        1,
        Kind::Baseline,
        "the same Router, no auth layer",
    ),
    case(
        "jwt_authorizer_layer",
        1,
        Kind::Other,
        "jwt-authorizer 0.15 around an axum 0.7 Router",
    ),
    case(
        "layer_uncached_per_route",
        1,
        Kind::Ours,
        "layer on the routes (Router::layer), cache off",
    ),
    case(
        "layer_cached_per_route",
        1,
        Kind::Ours,
        "layer on the routes (Router::layer), cache on",
    ),
    case(
        "router_noop_layer_per_route",
        1,
        Kind::Baseline,
        "the Router with a do-nothing layer on the routes",
    ),
    case(
        "validate_request_cached_per_route",
        1,
        Kind::Ours,
        "tower-http's ValidateRequestHeaderLayer::custom(auth) on the routes, cache on",
    ),
    case(
        "refuse_malformed",
        1,
        Kind::Refusal,
        "verify(\"abc.def\"), cache off",
    ),
    case(
        "refuse_wrong_aud",
        1,
        Kind::Refusal,
        "signed token, wrong aud, cache off",
    ),
    case(
        "refuse_expired",
        1,
        Kind::Refusal,
        "signed token, expired, cache off",
    ),
    case(
        "refuse_unknown_user",
        1,
        Kind::Refusal,
        "signed token, unknown iss/sub, cache off",
    ),
    case(
        "verify_uncached_1_user",
        1,
        Kind::Ours,
        "verify, cache off, 1 configured user",
    ),
    case(
        "verify_uncached_10000_users",
        1,
        Kind::Ours,
        "verify, cache off, 10,000 users",
    ),
    case(
        "verify_uncached_full_cache",
        1,
        Kind::Ours,
        "verify, cache on and full (10,000 tokens, staggered exp), a new token",
    ),
    case(
        "verify_uncached_empty_cache",
        1,
        Kind::Ours,
        "verify, cache on, under 1,000 tokens in it, a new token",
    ),
    case(
        "floor_1_thread",
        1,
        Kind::Floor,
        "floor, 1 thread (thread harness)",
    ),
    case(
        "floor_2_threads",
        2,
        Kind::Floor,
        "floor, 2 threads at once",
    ),
    case(
        "verify_uncached_1_thread",
        1,
        Kind::Ours,
        "verify uncached, 1 thread (thread harness)",
    ),
    case(
        "verify_uncached_2_threads",
        2,
        Kind::Ours,
        "verify uncached, 2 threads at once",
    ),
    case(
        "layer_cached_1_thread",
        1,
        Kind::Ours,
        "layer cached, 1 thread, its own service",
    ),
    case(
        "layer_cached_2_threads",
        2,
        Kind::Ours,
        "layer cached, 2 threads at once, a service each",
    ),
];

/// Where criterion writes: `$CRITERION_HOME`, else `$CARGO_TARGET_DIR/criterion`,
/// else this package's `target/criterion` (criterion's own order, without asking
/// `cargo metadata`).
pub fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/criterion")
}

/// The file in the criterion folder where `benches/verify.rs` notes the clock of
/// its last run (`wall` or `cpu`, see `BENCH_CLOCK`).
pub const CLOCK_FILE: &str = "verify-clock.txt";

/// The clock of the last `verify` run, `wall` when not noted.
pub fn clock(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(CLOCK_FILE))
        .map(|c| c.trim().to_owned())
        .unwrap_or_else(|_| "wall".to_owned())
}

/// One case's result.
#[derive(Debug, Clone, Copy)]
pub struct Estimate {
    /// Mean time per operation, in nanoseconds.
    pub mean_ns: f64,
    /// When criterion wrote it.
    pub written: SystemTime,
}

/// Reads every case of [`CASES`] that has a result in `dir`.
pub fn load(dir: &Path) -> BTreeMap<&'static str, Estimate> {
    let mut found = BTreeMap::new();
    for case in CASES {
        let path = dir.join(case.name).join("new/estimates.json");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
            eprintln!("cannot parse {}", path.display());
            continue;
        };
        let Some(mean_ns) = json["mean"]["point_estimate"].as_f64() else {
            eprintln!("no mean.point_estimate in {}", path.display());
            continue;
        };
        let written = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        found.insert(case.name, Estimate { mean_ns, written });
    }
    found
}

/// `12.3 µs`, `456 ns`.
pub fn format_time(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// `54.1k`, `1.23M`.
pub fn format_rate(per_sec: f64) -> String {
    if per_sec >= 1e6 {
        format!("{:.2}M", per_sec / 1e6)
    } else if per_sec >= 1e3 {
        format!("{:.1}k", per_sec / 1e3)
    } else {
        format!("{per_sec:.0}")
    }
}

/// Operations per second per core: a case on `threads` threads reports wall time /
/// (threads × N) per operation, so one core did 1 / (time × threads) per second.
pub fn per_core_rate(case: &Case, estimate: &Estimate) -> f64 {
    1e9 / (estimate.mean_ns * f64::from(case.threads))
}

/// The Markdown table: case, time per op, ops/s per core, ratio to floor. Results
/// written before `since` (an earlier run) are marked.
pub fn markdown_table(
    estimates: &BTreeMap<&'static str, Estimate>,
    since: Option<SystemTime>,
) -> String {
    let floor = estimates.get("floor").map(|e| e.mean_ns);
    let mut out = String::new();
    out.push_str("| case | what | time per op | ops/s per core | ratio to floor |\n");
    out.push_str("| --- | --- | ---: | ---: | ---: |\n");
    for case in CASES {
        let Some(estimate) = estimates.get(case.name) else {
            continue;
        };
        let stale = since.is_some_and(|since| estimate.written < since);
        let ratio = floor.map_or("-".to_owned(), |f| format!("{:.3}", estimate.mean_ns / f));
        let _ = writeln!(
            out,
            "| {}{} | {} | {} | {} | {} |",
            case.name,
            if stale { " (earlier run)" } else { "" },
            case.what,
            format_time(estimate.mean_ns),
            format_rate(per_core_rate(case, estimate)),
            ratio,
        );
    }
    out
}

/// One target and how a run did.
#[derive(Debug, Clone)]
pub struct Target {
    /// The target, e.g. `verify_uncached / floor ≤ 1.10`.
    pub label: &'static str,
    /// The measured ratio, when its cases were measured.
    pub value: Option<f64>,
    pub limit: f64,
    /// `value ≥ limit` passes (else `value ≤ limit`).
    pub at_least: bool,
    /// More about the measurement, e.g. the two scalings compared.
    pub detail: String,
}

impl Target {
    pub fn pass(&self) -> Option<bool> {
        self.value.map(|v| {
            if self.at_least {
                v >= self.limit
            } else {
                v <= self.limit
            }
        })
    }
}

/// The targets, from the time per operation of each case (`time(name)` in ns);
/// a target whose cases are missing has no value.
pub fn targets(time: impl Fn(&str) -> Option<f64>) -> Vec<Target> {
    let ratio = |a: &str, b: &str| time(a).zip(time(b)).map(|(a, b)| a / b);
    let target = |label, value, limit, at_least| Target {
        label,
        value,
        limit,
        at_least,
        detail: String::new(),
    };
    let mut out = vec![
        target(
            "verify_uncached / floor ≤ 1.10",
            ratio("verify_uncached", "floor"),
            1.10,
            false,
        ),
        target(
            "layer_uncached / floor ≤ 1.15",
            ratio("layer_uncached", "floor"),
            1.15,
            false,
        ),
        target(
            "(layer_cached − router_no_layer) / floor ≤ 1/50",
            time("layer_cached")
                .zip(time("router_no_layer"))
                .zip(time("floor"))
                .map(|((l, r), f)| (l - r) / f),
            1.0 / 50.0,
            false,
        ),
        target(
            "(layer_cached_per_route − router_no_layer) / floor ≤ 1/50",
            time("layer_cached_per_route")
                .zip(time("router_no_layer"))
                .zip(time("floor"))
                .map(|((l, r), f)| (l - r) / f),
            1.0 / 50.0,
            false,
        ),
        target(
            "refuse_malformed / floor ≤ 1/10",
            ratio("refuse_malformed", "floor"),
            0.10,
            false,
        ),
        target(
            "refuse_wrong_aud / floor ≤ 1/10",
            ratio("refuse_wrong_aud", "floor"),
            0.10,
            false,
        ),
        target(
            "refuse_expired / floor ≤ 1/10",
            ratio("refuse_expired", "floor"),
            0.10,
            false,
        ),
        target(
            "refuse_unknown_user / floor ≤ 1/10",
            ratio("refuse_unknown_user", "floor"),
            0.10,
            false,
        ),
        target(
            "verify_uncached_10000_users / verify_uncached_1_user ≤ 1.05",
            ratio("verify_uncached_10000_users", "verify_uncached_1_user"),
            1.05,
            false,
        ),
        target(
            "verify_uncached_full_cache / verify_uncached_empty_cache ≤ 1.05",
            ratio("verify_uncached_full_cache", "verify_uncached_empty_cache"),
            1.05,
            false,
        ),
        target(
            "jwt_authorizer_layer / layer_uncached ≥ 1.3",
            ratio("jwt_authorizer_layer", "layer_uncached"),
            1.3,
            true,
        ),
        target(
            "jwt_authorizer_layer / layer_cached ≥ 20",
            ratio("jwt_authorizer_layer", "layer_cached"),
            20.0,
            true,
        ),
    ];
    // Scaling = 1-thread time per op / 2-thread time per op (2.0 is perfect).
    let floor_scaling = ratio("floor_1_thread", "floor_2_threads");
    for (label, one, two) in [
        (
            "verify_uncached 2-thread scaling / floor's ≥ 0.95",
            "verify_uncached_1_thread",
            "verify_uncached_2_threads",
        ),
        (
            "layer_cached 2-thread scaling / floor's ≥ 0.95",
            "layer_cached_1_thread",
            "layer_cached_2_threads",
        ),
    ] {
        let scaling = ratio(one, two);
        let mut t = target(
            label,
            scaling.zip(floor_scaling).map(|(s, f)| s / f),
            0.95,
            true,
        );
        if let Some((s, f)) = scaling.zip(floor_scaling) {
            t.detail = format!("{s:.2}× vs floor {f:.2}×");
        }
        out.push(t);
    }
    out
}

/// Figures that are not targets: the layer on the routes (`Router::layer`)
/// instead of around the Router, and the share of that which axum takes for any
/// layer on the routes. `(label, value)`, from the time per operation of each case.
pub fn per_route_figures(time: impl Fn(&str) -> Option<f64>) -> Vec<(&'static str, Option<f64>)> {
    let over_floor = |a: &str, b: Option<&str>| {
        let extra = match b {
            Some(b) => time(a).zip(time(b)).map(|(a, b)| a - b),
            None => time(a),
        };
        extra.zip(time("floor")).map(|(e, f)| e / f)
    };
    vec![
        (
            "layer_uncached_per_route / floor",
            over_floor("layer_uncached_per_route", None),
        ),
        (
            "(layer_cached_per_route − router_no_layer) / floor",
            over_floor("layer_cached_per_route", Some("router_no_layer")),
        ),
        (
            "(router_noop_layer_per_route − router_no_layer) / floor: axum's share",
            over_floor("router_noop_layer_per_route", Some("router_no_layer")),
        ),
        (
            "(layer_cached_per_route − router_noop_layer_per_route) / floor: the layer's",
            over_floor(
                "layer_cached_per_route",
                Some("router_noop_layer_per_route"),
            ),
        ),
        (
            "(validate_request_cached_per_route − router_no_layer) / floor: the same decision, axum's body",
            over_floor("validate_request_cached_per_route", Some("router_no_layer")),
        ),
    ]
}

/// [`per_route_figures`] as a Markdown table: over the rounds of the interleaved
/// pass (median and p25..p75), or for criterion's means (one "round").
pub fn per_route_table(rounds: &[BTreeMap<&'static str, f64>]) -> String {
    let per_round: Vec<_> = rounds
        .iter()
        .map(|r| per_route_figures(|name| r.get(name).copied()))
        .collect();
    let mut out = String::new();
    let Some(first) = per_round.first() else {
        return out;
    };
    let means = per_round.len() == 1;
    out.push_str(if means {
        "| the layer on the routes, for information | from the means |\n| --- | ---: |\n"
    } else {
        "| the layer on the routes, for information | median | p25..p75 |\n| --- | ---: | ---: |\n"
    });
    for (i, (label, _)) in first.iter().enumerate() {
        let values: Vec<f64> = per_round.iter().filter_map(|f| f[i].1).collect();
        let _ = match values.as_slice() {
            [] => writeln!(
                out,
                "| {label} | not measured |{}",
                if means { "" } else { " |" }
            ),
            [value] if means => writeln!(out, "| {label} | {value:.3} |"),
            _ => writeln!(
                out,
                "| {label} | {:.3} | {:.3}..{:.3} |",
                quantile(&values, 0.5),
                quantile(&values, 0.25),
                quantile(&values, 0.75),
            ),
        };
    }
    out
}

/// [`per_route_table`] for criterion's means.
pub fn per_route_means_table(estimates: &BTreeMap<&'static str, Estimate>) -> String {
    let means = estimates
        .iter()
        .map(|(name, e)| (*name, e.mean_ns))
        .collect();
    per_route_table(&[means])
}

/// The targets for criterion's results.
pub fn verdicts(estimates: &BTreeMap<&'static str, Estimate>) -> Vec<Target> {
    targets(|name| estimates.get(name).map(|e| e.mean_ns))
}

fn result(pass: Option<bool>) -> &'static str {
    match pass {
        Some(true) => "PASS",
        Some(false) => "FAIL",
        None => "-",
    }
}

/// The targets as a Markdown table.
pub fn verdict_table(targets: &[Target]) -> String {
    let mut out = String::new();
    out.push_str("| target | measured | result | detail |\n| --- | ---: | --- | --- |\n");
    for t in targets {
        let measured = t
            .value
            .map_or("not measured".to_owned(), |v| format!("{v:.3}"));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            t.label,
            measured,
            result(t.pass()),
            t.detail
        );
    }
    out
}

/// The value at fraction `q` (0 to 1) of `values`, interpolated linearly between
/// the two nearest ranks (`q = 0.5` is the median); NaN when `values` is empty.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let Some(last) = sorted.len().checked_sub(1) else {
        return f64::NAN;
    };
    let rank = q.clamp(0.0, 1.0) * last as f64;
    let (low, high) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[low] + (sorted[high] - sorted[low]) * (rank - low as f64)
}

/// The interleaved pass's per-case table: each case's median time per op over the
/// rounds, its interquartile range (p25..p75), and the median's ops/s per core.
pub fn interleaved_cases_table(rounds: &[BTreeMap<&'static str, f64>]) -> String {
    let mut out = String::new();
    out.push_str(
        "| case | median time per op | p25..p75 | ops/s per core |\n| --- | ---: | ---: | ---: |\n",
    );
    for case in CASES {
        let times: Vec<f64> = rounds
            .iter()
            .filter_map(|r| r.get(case.name).copied())
            .collect();
        if times.is_empty() {
            continue;
        }
        let t = quantile(&times, 0.5);
        let _ = writeln!(
            out,
            "| {} | {} | {}..{} | {} |",
            case.name,
            format_time(t),
            format_time(quantile(&times, 0.25)),
            format_time(quantile(&times, 0.75)),
            format_rate(1e9 / (t * f64::from(case.threads)))
        );
    }
    out
}

/// One target over the rounds of the interleaved pass.
#[derive(Debug, Clone)]
pub struct TargetSummary {
    /// The target with its median over the rounds as its value (which decides
    /// PASS or FAIL); `None` when its cases were not measured.
    pub median: Target,
    /// The interquartile range of the per-round values.
    pub p25: f64,
    pub p75: f64,
    /// In how many rounds it passed, of how many.
    pub passed: usize,
    pub rounds: usize,
}

/// Each target checked in every round of `rounds` (time per op by case), with
/// its median over the rounds.
pub fn interleaved_targets(rounds: &[BTreeMap<&'static str, f64>]) -> Vec<TargetSummary> {
    let per_round: Vec<Vec<Target>> = rounds
        .iter()
        .map(|r| targets(|name| r.get(name).copied()))
        .collect();
    let Some(first) = per_round.first() else {
        return Vec::new();
    };
    first
        .iter()
        .enumerate()
        .map(|(i, target)| {
            let values: Vec<f64> = per_round.iter().filter_map(|ts| ts[i].value).collect();
            let passed = per_round
                .iter()
                .filter(|ts| ts[i].pass() == Some(true))
                .count();
            TargetSummary {
                median: Target {
                    value: (!values.is_empty()).then(|| quantile(&values, 0.5)),
                    ..target.clone()
                },
                p25: quantile(&values, 0.25),
                p75: quantile(&values, 0.75),
                passed,
                rounds: values.len(),
            }
        })
        .collect()
}

/// The interleaved pass's verdict: each target checked in every round, with the
/// median over the rounds (which decides PASS or FAIL), the interquartile range
/// of the per-round values (p25..p75) and how many rounds passed.
pub fn interleaved_targets_table(rounds: &[BTreeMap<&'static str, f64>]) -> String {
    let mut out = String::new();
    out.push_str("| target | median | p25..p75 | rounds passed | result |\n");
    out.push_str("| --- | ---: | ---: | ---: | --- |\n");
    for summary in interleaved_targets(rounds) {
        let target = &summary.median;
        let Some(median) = target.value else {
            let _ = writeln!(out, "| {} | not measured | | | - |", target.label);
            continue;
        };
        let _ = writeln!(
            out,
            "| {} | {median:.3} | {:.3}..{:.3} | {}/{} | {} |",
            target.label,
            summary.p25,
            summary.p75,
            summary.passed,
            summary.rounds,
            result(target.pass()),
        );
    }
    out
}

/// The 2-thread targets over the same slices timed by the threads' CPU time
/// instead of the wall clock (`rounds` holds the thread cases only), for
/// information: what running side by side costs in CPU (cache lines bouncing
/// between cores), without the time a thread waited for a core, which on a shared
/// VM is most of the wall clock's spread.
pub fn cpu_scaling_table(rounds: &[BTreeMap<&'static str, f64>]) -> String {
    let mut out = String::new();
    out.push_str(
        "| 2-thread scaling of the same slices by CPU time, for information | median | p25..p75 | rounds within the target |\n",
    );
    out.push_str("| --- | ---: | ---: | ---: |\n");
    for summary in interleaved_targets(rounds) {
        let Some(median) = summary.median.value else {
            continue;
        };
        let _ = writeln!(
            out,
            "| {} | {median:.3} | {:.3}..{:.3} | {}/{} |",
            summary.median.label, summary.p25, summary.p75, summary.passed, summary.rounds,
        );
    }
    out
}

/// One speed-up's pair of slices in the interleaved pass: its case with every
/// speed-up on and with this one off, side by side in every round.
#[derive(Debug, Clone)]
pub struct SpeedupPair<'a> {
    /// The speed-up's name.
    pub speedup: String,
    /// The case it was measured on.
    pub case: &'static str,
    /// Each round's (with, without) time per op, in nanoseconds.
    pub rounds: &'a [(f64, f64)],
}

/// The rounds of the interleaved pass in which every case ran with one speed-up
/// off: the speed-up's name, and each round's time per op by case.
pub type SettingRounds<'a> = (String, &'a [BTreeMap<&'static str, f64>]);

/// "speed-up | case | with | without | ratio | targets that fail without it":
/// each pair's median times and the median of the per-round ratio without ÷
/// with; then the targets whose median fails over the rounds with that speed-up
/// off (from `off`), each marked when it fails with every speed-up on too (from
/// `all_on`), so that it is not the speed-up's doing.
pub fn speedup_table(
    pairs: &[SpeedupPair<'_>],
    all_on: &[BTreeMap<&'static str, f64>],
    off: &[SettingRounds<'_>],
) -> String {
    let with_all_on = interleaved_targets(all_on);
    let mut out = String::new();
    out.push_str(
        "| speed-up | case | with | without | ratio (without ÷ with) | p25..p75 | targets that fail without it |\n",
    );
    out.push_str("| --- | --- | ---: | ---: | ---: | ---: | --- |\n");
    let mut listed: Vec<&str> = Vec::new();
    for pair in pairs {
        let with: Vec<f64> = pair.rounds.iter().map(|r| r.0).collect();
        let without: Vec<f64> = pair.rounds.iter().map(|r| r.1).collect();
        let ratios: Vec<f64> = pair.rounds.iter().map(|r| r.1 / r.0).collect();
        // The targets once per speed-up, on its first row.
        let failing = if listed.contains(&pair.speedup.as_str()) {
            "(as above)".to_owned()
        } else {
            listed.push(&pair.speedup);
            match off.iter().find(|(name, _)| *name == pair.speedup) {
                None => "not measured".to_owned(),
                Some((_, rounds)) => {
                    let failing: Vec<String> = interleaved_targets(rounds)
                        .iter()
                        .zip(&with_all_on)
                        .filter(|(without, _)| without.median.pass() == Some(false))
                        .map(|(without, with)| {
                            let value = |t: &TargetSummary| t.median.value.unwrap_or(f64::NAN);
                            format!(
                                "{}: {:.3}, {}/{} rounds pass (with it: {:.3}{})",
                                without.median.label,
                                value(without),
                                without.passed,
                                without.rounds,
                                value(with),
                                if with.median.pass() == Some(false) {
                                    ", fails too"
                                } else {
                                    ""
                                }
                            )
                        })
                        .collect();
                    if failing.is_empty() {
                        "none".to_owned()
                    } else {
                        failing.join("; ")
                    }
                }
            }
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.3} | {:.3}..{:.3} | {failing} |",
            pair.speedup,
            pair.case,
            format_time(quantile(&with, 0.5)),
            format_time(quantile(&without, 0.5)),
            quantile(&ratios, 0.5),
            quantile(&ratios, 0.25),
            quantile(&ratios, 0.75),
        );
    }
    out
}

/// Every target's median over the rounds with every speed-up on, and over the
/// rounds with each speed-up of `off` off, with PASS or FAIL.
pub fn targets_by_setting_table(
    all_on: &[BTreeMap<&'static str, f64>],
    off: &[SettingRounds<'_>],
) -> String {
    let mut columns = vec![interleaved_targets(all_on)];
    columns.extend(off.iter().map(|(_, rounds)| interleaved_targets(rounds)));
    let mut out = String::from("| target | every speed-up on |");
    for (name, _) in off {
        let _ = write!(out, " {name} off |");
    }
    out.push_str("\n| --- |");
    out.push_str(&" ---: |".repeat(columns.len()));
    out.push('\n');
    for (i, summary) in columns[0].iter().enumerate() {
        let _ = write!(out, "| {} |", summary.median.label);
        for column in &columns {
            let target = &column[i].median;
            let _ = match target.value {
                Some(value) => write!(out, " {value:.3} {} |", result(target.pass())),
                None => write!(out, " - |"),
            };
        }
        out.push('\n');
    }
    out
}

/// Prints criterion's results in `dir`: the per-case table and the targets
/// computed from its means. Each case there was measured on its own, one after
/// another, so a ratio between two cases also carries whatever the machine's load
/// did in the minutes between them.
pub fn print_report(dir: &Path, since: Option<SystemTime>) {
    let estimates = load(dir);
    if estimates.is_empty() {
        println!("no results under {}", dir.display());
        return;
    }
    println!(
        "\n## Criterion means, cases measured one after another\n\nFrom {} (per case, \
         sequential: the cases were measured minutes apart, so these ratios also carry the \
         machine's drift in between).\n",
        dir.display()
    );
    println!("{}", markdown_table(&estimates, since));
    println!("Targets from criterion's means (cases measured one after another):\n");
    println!("{}", verdict_table(&verdicts(&estimates)));
    println!("{}", per_route_means_table(&estimates));
}
