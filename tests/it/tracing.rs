//! tracing: one event per decision (accepted at DEBUG with the user id, refused at
//! INFO with a reason code) and a `reload` span around each reload.

use axum::{Router, body::Body, http::Request, routing::get};
use tower::ServiceExt as _;
use zitadel_system_auth::testing::{TEST_USER, TestSystem};

use crate::common::Captured;

#[tokio::test]
async fn each_decision_is_one_event_and_reloads_have_a_span() {
    let captured = Captured::default();
    let _guard = tracing::subscriber::set_default(captured.subscriber());

    let system = TestSystem::with(|b| b.watch(false));
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(system.auth.layer());
    let send = |token: Option<String>| {
        let mut request = Request::get("/");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        app.clone()
            .oneshot(request.body(Body::empty()).expect("request"))
    };
    let before = captured.lines().len();
    assert_eq!(
        send(Some(system.token().build()))
            .await
            .expect("ok")
            .status(),
        200
    );
    assert_eq!(
        send(Some(system.token().expired().build()))
            .await
            .expect("ok")
            .status(),
        401
    );
    assert_eq!(send(None).await.expect("ok").status(), 401);
    let lines = captured.lines()[before..].to_vec();
    assert_eq!(lines.len(), 3, "one event per decision: {lines:#?}");
    let has = |line: &str, field: &str, value: &str| {
        line.contains(&format!("{field}={value}")) || line.contains(&format!("{field}=\"{value}\""))
    };
    assert!(
        lines[0].contains("DEBUG") && has(&lines[0], "user_id", TEST_USER),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(" INFO") && has(&lines[1], "reason", "expired"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains(" INFO") && has(&lines[2], "reason", "missing_token"),
        "{}",
        lines[2]
    );
    for line in &lines[1..] {
        assert!(
            !line.contains("user_id"),
            "no user id before verification: {line}"
        );
    }

    // A reload runs inside a `reload` span, and a failed one says what and where.
    std::fs::write(system.dir().join(format!("{TEST_USER}.pub")), "not a key").expect("write");
    let report = system.auth.reload().expect("the config still loads");
    assert!(!report.problems.is_empty());
    let lines = captured.lines();
    let warning = lines
        .iter()
        .find(|l| l.contains("reload kept the last good keys"))
        .unwrap_or_else(|| panic!("no reload warning in {lines:#?}"));
    assert!(
        warning.contains("WARN") && warning.contains("reload:"),
        "{warning}"
    );
    assert!(warning.contains(&format!("{TEST_USER}.pub")), "{warning}");
    // Logged once per change, not once per attempt.
    system.auth.reload().expect("reload");
    let count = captured
        .lines()
        .iter()
        .filter(|l| l.contains("reload kept the last good keys"))
        .count();
    assert_eq!(count, 1);
}
