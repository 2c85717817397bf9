//! The `metrics` feature: decisions, cache use and reloads are counted, and no label
//! value comes from a token. Runs with `cargo test --all-features`.
#![cfg(feature = "metrics")]

use metrics_util::{
    CompositeKey, MetricKind,
    debugging::{DebugValue, DebuggingRecorder},
};
use zitadel_system_auth::testing::TestSystem;

/// One metric from a snapshot: kind, name, sorted labels, value.
type Row = (MetricKind, String, Vec<(String, String)>, DebugValue);
/// A snapshot as `DebuggingRecorder` gives it.
type Snapshot = Vec<(
    CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;

/// (kind, name, sorted labels) → value, from a snapshot.
fn values(snapshot: Snapshot) -> Vec<Row> {
    snapshot
        .into_iter()
        .map(|(key, _, _, value)| {
            let (kind, key) = key.into_parts();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            (kind, key.name().to_owned(), labels, value)
        })
        .collect()
}

fn counter(values: &[Row], name: &str, labels: &[(&str, &str)]) -> u64 {
    let mut wanted: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    wanted.sort();
    values
        .iter()
        .find(|(kind, n, l, _)| *kind == MetricKind::Counter && n == name && *l == wanted)
        .map_or(0, |(_, _, _, value)| match value {
            DebugValue::Counter(count) => *count,
            other => panic!("{name} is not a counter: {other:?}"),
        })
}

#[test]
fn decisions_cache_and_reloads_are_counted_without_token_labels() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let (valid, junk) = metrics::with_local_recorder(&recorder, || {
        let system = TestSystem::with(|b| b.watch(false));
        let valid = system.token().build();
        let junk = system
            .token()
            .audience("https://attacker.example/XYZ")
            .build();
        for _ in 0..3 {
            system.auth.verify(&valid).expect("valid token");
        }
        assert!(system.auth.verify(&junk).is_err());
        assert!(
            system
                .auth
                .verify(&system.token().expired().build())
                .is_err()
        );
        system.auth.reload().expect("reload");
        (valid, junk)
    });
    let values = values(snapshotter.snapshot().into_vec());
    let requests = "zitadel_system_auth_requests_total";
    assert_eq!(counter(&values, requests, &[("outcome", "accepted")]), 3);
    assert_eq!(
        counter(
            &values,
            requests,
            &[("outcome", "refused"), ("reason", "audience")]
        ),
        1
    );
    assert_eq!(
        counter(
            &values,
            requests,
            &[("outcome", "refused"), ("reason", "expired")]
        ),
        1
    );
    let cache = "zitadel_system_auth_token_cache_total";
    assert_eq!(counter(&values, cache, &[("result", "hit")]), 2);
    assert_eq!(counter(&values, cache, &[("result", "miss")]), 3);
    assert_eq!(
        counter(
            &values,
            "zitadel_system_auth_reloads_total",
            &[("outcome", "unchanged")]
        ),
        1
    );
    let generation = values
        .iter()
        .find(|(_, name, _, _)| name == "zitadel_system_auth_registry_generation")
        .map(|(_, _, _, value)| value);
    assert_eq!(generation, Some(&DebugValue::Gauge(1.0.into())));
    assert!(
        values
            .iter()
            .any(|(_, name, _, _)| name == "zitadel_system_auth_seconds_since_last_good_reload")
    );
    // No label value comes from a token.
    for (_, name, labels, _) in &values {
        for (_, value) in labels {
            assert!(
                !valid.contains(value.as_str()) || value.len() < 3,
                "{name}: {value}"
            );
            assert!(
                !junk.contains(value.as_str()) || value.len() < 3,
                "{name}: {value}"
            );
            assert!(!value.contains("attacker"), "{name}: {value}");
        }
    }
}

#[test]
fn a_panic_in_the_reload_thread_is_counted() {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };
    use std::time::{Duration, Instant};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // The first watch of the config's folder fails (it is polled), the retry a
    // second later panics inside the reload thread, later ones succeed.
    let calls = Arc::new(AtomicUsize::new(0));
    let system = metrics::with_local_recorder(&recorder, || {
        let calls = calls.clone();
        TestSystem::with(move |b| {
            b.watch_hook(move |_| match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Err(std::io::Error::other("refused by the test")),
                1 => panic!("the test's watch hook panics"),
                _ => Ok(()),
            })
        })
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while system.auth.status().reload_thread_panics == 0 {
        assert!(Instant::now() < deadline, "{:#?}", system.auth.status());
        std::thread::sleep(Duration::from_millis(5));
    }
    let values = values(snapshotter.snapshot().into_vec());
    assert_eq!(
        counter(
            &values,
            "zitadel_system_auth_reload_thread_panics_total",
            &[]
        ),
        1
    );
}

/// Every token of the refusal table is counted under its row's reason, the three
/// refusals that share one public text (unknown user, signature, certificate
/// window) each under its own.
#[test]
fn every_refusal_of_the_table_is_counted_under_its_reason() {
    use std::collections::BTreeMap;

    use crate::cases;

    let world = cases::World::new();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let mut expected: BTreeMap<&str, u64> = BTreeMap::new();
    metrics::with_local_recorder(&recorder, || {
        for (case, token) in cases::refused_by_verify() {
            world.set_at(case.at);
            let auth = world.builder().build().expect("build SystemAuth");
            auth.verify(&token).expect_err(case.name);
            *expected.entry(case.reason).or_default() += 1;
        }
    });
    for reason in [
        "unknown_user",
        "signature",
        "key_not_yet_valid",
        "key_expired",
    ] {
        assert!(
            expected.contains_key(reason),
            "the table has no {reason} row"
        );
    }
    let values = values(snapshotter.snapshot().into_vec());
    for (reason, count) in expected {
        assert_eq!(
            counter(
                &values,
                "zitadel_system_auth_requests_total",
                &[("outcome", "refused"), ("reason", reason)]
            ),
            count,
            "{reason}"
        );
    }
}

/// A route's role check counts its refusals by reason; the request was counted as
/// accepted by the authentication layer before it, and a request that passes the
/// role check counts no role refusal.
#[test]
fn role_refusals_are_counted_by_reason() {
    use axum::{Router, body::Body, http::Request, routing::get};
    use tower::ServiceExt as _;
    use zitadel_system_auth::RequireRoleLayer;

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let system = TestSystem::with(|b| b.watch(false));
        let token = system.token().build();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let status = |app: Router, bearer: bool| {
            let mut request = Request::get("/");
            if bearer {
                request = request.header("authorization", format!("Bearer {token}"));
            }
            let request = request.body(Body::empty()).expect("request");
            runtime
                .block_on(app.oneshot(request))
                .expect("response")
                .status()
                .as_u16()
        };
        let guarded = |role: &'static str| {
            Router::new()
                .route("/", get(|| async { "ok" }))
                .route_layer(RequireRoleLayer::new(role))
                .route_layer(system.auth.layer())
        };
        // The test user has ZITADEL's default membership: System, SYSTEM_OWNER.
        assert_eq!(status(guarded("IAM_OWNER"), true), 403);
        assert_eq!(status(guarded("IAM_OWNER"), true), 403);
        assert_eq!(status(guarded("SYSTEM_OWNER"), true), 200);
        // No authentication layer in front: no user on the request.
        let unauthenticated = Router::new()
            .route("/", get(|| async { "ok" }))
            .route_layer(RequireRoleLayer::new("SYSTEM_OWNER"));
        assert_eq!(status(unauthenticated, true), 401);
    });
    let values = values(snapshotter.snapshot().into_vec());
    let refusals = "zitadel_system_auth_role_refusals_total";
    assert_eq!(counter(&values, refusals, &[("reason", "missing_role")]), 2);
    assert_eq!(
        counter(&values, refusals, &[("reason", "missing_token")]),
        1
    );
    assert_eq!(
        counter(
            &values,
            "zitadel_system_auth_requests_total",
            &[("outcome", "accepted")]
        ),
        3,
        "the authentication layer accepted the three tokens it saw"
    );
}
