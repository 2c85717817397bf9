//! Hot reload: how soon a rotated key is in use, and what a reload costs.
//!
//! `cargo bench --bench reload` prints two tables (a custom main: criterion cannot
//! report percentiles):
//!
//! 1. Latency: a key file is replaced by save-by-rename (a new file written beside
//!    it, then renamed over it, as editors, `mv` and most deploy tools do) with the
//!    watcher on; the time runs from just before the rename to the first moment
//!    `SystemAuth::generation()` shows the new registry (polled every 100 µs).
//!    Repeated for each rotation, with the default debounce (50 ms) and with 5 ms.
//! 2. Cost: `SystemAuth::reload()` right after one user's key file was replaced, so
//!    every reload reads every file, parses every key and swaps in a new registry,
//!    with 1, 100 and 10,000 users, each with its own key file (copies of a few
//!    keys). The watcher is off, so only the explicit reloads run. The config is in
//!    ZITADEL's documented form (a list of one-key mappings); the 10,000-user case
//!    is also run with `SystemAPIUsers` as one plain mapping, which parses
//!    differently.
//!
//! Options (after `--`): `--rotations N` (default 50) and `--quick` (fewer
//! repetitions, for a smoke test).

mod common;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use common::{AUD, BenchKey};
use zitadel_system_auth::SystemAuth;

/// Percentiles of a set of durations (nearest rank).
struct Summary {
    n: usize,
    min: Duration,
    p50: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
    mean: Duration,
}

impl Summary {
    fn of(mut samples: Vec<Duration>) -> Summary {
        assert!(!samples.is_empty());
        samples.sort();
        let n = samples.len();
        let rank = |p: f64| samples[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        Summary {
            n,
            min: samples[0],
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: samples[n - 1],
            mean: samples.iter().sum::<Duration>() / n as u32,
        }
    }

    fn row(&self, label: &str) -> String {
        format!(
            "| {label} | {} | {} | {} | {} | {} | {} | {} |",
            self.n,
            ms(self.min),
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max),
            ms(self.mean),
        )
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

const HEADER: &str = "| case | n | min | p50 | p90 | p99 | max | mean |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |";

/// The shape of `SystemAPIUsers` in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// ZITADEL's documented form: a list of one-key mappings.
    List,
    /// One plain mapping of user ids.
    Map,
}

/// A config file and one key file per user, in a fresh temp folder.
struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
    key_paths: Vec<PathBuf>,
}

fn write_setup(users: usize, keys: &[BenchKey], form: Form) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let keys_dir = dir.path().join("keys");
    std::fs::create_dir(&keys_dir).expect("keys folder");
    let key_paths: Vec<PathBuf> = (0..users)
        .map(|i| {
            let path = keys_dir.join(format!("system-user-{i}.pub"));
            std::fs::write(&path, &keys[i % keys.len()].public_pem).expect("write key");
            path
        })
        .collect();
    let config = dir.path().join("config.yaml");
    let users = key_paths
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("system-user-{i}"), p.as_path()));
    let yaml = match form {
        Form::List => common::config_with_paths(users),
        Form::Map => common::config_with_paths_map(users),
    };
    std::fs::write(&config, yaml).expect("write config");
    Setup {
        _dir: dir,
        config,
        key_paths,
    }
}

/// Waits until `auth.generation()` passes `before`, polling every 100 µs; gives up
/// after `limit`.
fn wait_for_generation(auth: &SystemAuth, before: u64, limit: Duration) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    loop {
        if auth.generation() > before {
            return Some(Instant::now());
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// Rotates user 0's key `rotations` times by save-by-rename and times each until the
/// new generation is visible.
fn rotation_latency(
    keys: &[BenchKey],
    debounce: Option<Duration>,
    rotations: usize,
) -> (Vec<Duration>, usize) {
    let setup = write_setup(1, keys, Form::List);
    let mut builder = SystemAuth::builder().config_file(&setup.config).watch(true);
    if let Some(debounce) = debounce {
        builder = builder.debounce(debounce);
    }
    let auth = builder.build().expect("config loads");
    let path = &setup.key_paths[0];
    let tmp = path.with_extension("pub.tmp");
    let mut samples = Vec::with_capacity(rotations);
    let mut missed = 0;
    let settle = debounce.unwrap_or(Duration::from_millis(50)) * 2 + Duration::from_millis(20);
    for i in 0..rotations {
        let next = &keys[(i + 1) % keys.len()];
        let before = auth.generation();
        std::fs::write(&tmp, &next.public_pem).expect("write temp key");
        let start = Instant::now();
        std::fs::rename(&tmp, path).expect("rename over the key");
        match wait_for_generation(&auth, before, Duration::from_secs(5)) {
            Some(seen) => samples.push(seen - start),
            None => missed += 1,
        }
        // Let the watcher finish the burst (its own reads, the re-arm) before the
        // next rotation, so each rotation starts from a quiet folder.
        std::thread::sleep(settle);
    }
    assert_eq!(auth.generation(), 1 + samples.len() as u64);
    // The rotated key is the one in use.
    let current = &keys[rotations % keys.len()];
    let token = current.rs256(&common::claims("system-user-0", AUD));
    auth.verify(&token).expect("the last rotated key verifies");
    (samples, missed)
}

/// Times `reload()` right after one key file changed, `reps` times.
fn reload_cost(keys: &[BenchKey], users: usize, form: Form, reps: usize) -> Vec<Duration> {
    let setup = write_setup(users, keys, form);
    let auth = SystemAuth::builder()
        .config_file(&setup.config)
        .watch(false)
        .build()
        .expect("config loads");
    assert_eq!(auth.user_ids().len(), users);
    // The user whose key rotates: one in the middle.
    let rotating = users / 2;
    let path: &Path = &setup.key_paths[rotating];
    let mut samples = Vec::with_capacity(reps);
    for i in 0..reps + 1 {
        // A key other than the one in the file now, so each reload changes something.
        let next = &keys[(rotating + i + 1) % keys.len()];
        common::save_by_rename(path, next.public_pem.as_bytes());
        let start = Instant::now();
        let report = auth.reload().expect("reload");
        let elapsed = start.elapsed();
        assert!(report.changed && report.problems.is_empty(), "{report:?}");
        if i > 0 {
            // The first one warms the page cache and the allocator.
            samples.push(elapsed);
        }
    }
    samples
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick" || a == "--test");
    let rotations = args
        .iter()
        .position(|a| a == "--rotations")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(if quick { 5 } else { 50 });

    let keys: Vec<BenchKey> = (0..4).map(|_| BenchKey::generate()).collect();

    println!("\nKey rotation to new generation visible ({rotations} rotations each):\n");
    println!("{HEADER}");
    for (label, debounce) in [
        ("watch, debounce 50 ms (default)", None),
        ("watch, debounce 5 ms", Some(Duration::from_millis(5))),
    ] {
        let (samples, missed) = rotation_latency(&keys, debounce, rotations);
        println!("{}", Summary::of(samples).row(label));
        if missed > 0 {
            println!("| {label}: {missed} rotation(s) not seen within 5 s | | | | | | | |");
        }
    }

    println!("\nSystemAuth::reload() after one key file changed (each user its own file):\n");
    println!("{HEADER}");
    for (users, form, reps) in [
        (1, Form::List, 200),
        (100, Form::List, 50),
        (10_000, Form::List, 5),
        (10_000, Form::Map, 10),
    ] {
        let reps = if quick { reps.min(3) } else { reps };
        let started = Instant::now();
        let samples = reload_cost(&keys, users, form, reps);
        let label = match form {
            Form::List => format!("reload, {users} users"),
            Form::Map => format!("reload, {users} users, SystemAPIUsers as one mapping"),
        };
        println!("{}", Summary::of(samples).row(&label));
        eprintln!("  ({label}: {:.1?} with setup)", started.elapsed());
    }
}
