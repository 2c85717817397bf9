//! Each thread keeps the last few tokens the shared cache answered for it (the
//! `ThreadCache` speed-up, on in every test). Nothing it keeps outlives the
//! registry that verified it: after a reload that removes a user or replaces a key,
//! on the thread that kept the token and on any other, and between two verifiers on
//! one thread, the verdict is the registry's in place.
//!
//! Each test uses a token on one thread three times before the change: the first
//! verifies it with RSA, the second finds it in the shared cache and hands it to the
//! thread, the third is answered by the thread (no RSA, as the counts show). That a
//! kept token is still refused once it expires is checked in
//! `rsa_budget::a_cached_token_that_expired_is_refused_without_rsa`.

use std::{sync::mpsc, thread};

use axum::{Router, body::Body, http::Request, routing::get};
use tower::ServiceExt as _;
use zitadel_system_auth::{
    AuthError, SystemAuth,
    testing::{
        KeyForm, TEST_USER, TestKey, TestSystem, rsa_operations_on_this_thread, write_config,
    },
};

fn system() -> TestSystem {
    TestSystem::with(|b| b.token_cache(true).watch(false))
}

/// Verifies `token` three times on this thread and checks that only the first
/// needed RSA, so that the thread now keeps it, and that every round hands out the
/// same user (id, memberships, times).
fn keep_on_this_thread(auth: &SystemAuth, token: &str) {
    let mut first = None;
    for round in 1..=3 {
        let before = rsa_operations_on_this_thread();
        let user = auth.verify(token).expect("a valid token");
        assert_eq!(user.user_id(), TEST_USER);
        let rsa = rsa_operations_on_this_thread() - before;
        assert_eq!(rsa, u64::from(round == 1), "round {round}");
        assert_eq!(
            first.get_or_insert_with(|| user.clone()),
            &user,
            "round {round}"
        );
    }
}

/// Rewrites the config of `system` with `users` and reloads it.
fn reload_with(system: &TestSystem, users: &[(&str, &TestKey)]) {
    write_config(system.dir(), "custom-domain.com", users, KeyForm::Path).expect("config");
    let report = system.auth.reload().expect("the new config loads");
    assert!(report.changed, "{report:?}");
}

#[test]
fn a_kept_token_is_refused_once_a_reload_removes_its_user() {
    let system = system();
    let other = TestKey::generate();
    let token = system.token().build();
    keep_on_this_thread(&system.auth, &token);

    reload_with(&system, &[("another-user", &other)]);
    assert_eq!(
        system.auth.verify(&token).unwrap_err(),
        AuthError::UnknownUser
    );
}

#[test]
fn a_kept_token_is_refused_once_a_reload_replaces_its_key() {
    let system = system();
    let token = system.token().build();
    keep_on_this_thread(&system.auth, &token);

    let new_key = TestKey::generate();
    reload_with(&system, &[(TEST_USER, &new_key)]);
    assert_eq!(
        system.auth.verify(&token).unwrap_err(),
        AuthError::InvalidSignature
    );
    // The new key's token is verified afresh and kept in turn.
    keep_on_this_thread(
        &system.auth,
        &new_key
            .token(TEST_USER, zitadel_system_auth::testing::TEST_AUDIENCE)
            .build(),
    );
}

/// The thread that kept the token is not the one that reloads: the reload clears
/// nothing on it, and its next verdict is still the new registry's.
#[test]
fn a_token_kept_by_another_thread_is_refused_there_after_the_reload() {
    let system = system();
    let token = system.token().build();
    let (to_worker, worker_gets) = mpsc::channel::<()>();
    let (to_test, test_gets) = mpsc::channel();
    thread::scope(|scope| {
        let (auth, token) = (&system.auth, &token);
        scope.spawn(move || {
            keep_on_this_thread(auth, token);
            to_test.send(None).expect("test waits");
            worker_gets.recv().expect("the reload is done");
            to_test.send(Some(auth.verify(token))).expect("test waits");
        });
        assert!(
            test_gets
                .recv()
                .expect("the worker kept the token")
                .is_none()
        );
        reload_with(&system, &[("another-user", &TestKey::generate())]);
        to_worker.send(()).expect("the worker waits");
        let verdict = test_gets
            .recv()
            .expect("the worker's verdict")
            .expect("a verdict");
        assert_eq!(verdict.unwrap_err(), AuthError::UnknownUser);
    });
}

/// Two verifiers of the same token on one thread: one that keeps it, and one
/// whose registry holds another key for the user. The second never takes the
/// first one's verdict.
#[test]
fn two_verifiers_on_one_thread_keep_their_own_verdicts() {
    let trusting = system();
    let token = trusting.token().build();
    keep_on_this_thread(&trusting.auth, &token);

    let other = system(); // the same user id, another key
    for _ in 0..3 {
        assert_eq!(
            other.auth.verify(&token).unwrap_err(),
            AuthError::InvalidSignature
        );
    }
    // And the first still answers from what this thread keeps, without RSA.
    let before = rsa_operations_on_this_thread();
    assert_eq!(
        trusting.auth.verify(&token).expect("valid").user_id(),
        TEST_USER
    );
    assert_eq!(rsa_operations_on_this_thread(), before);
}

/// Through the layer: the token kept while the user existed gets a 401 after the
/// reload that removed the user.
#[tokio::test(flavor = "current_thread")]
async fn the_layer_refuses_a_kept_token_after_a_reload_removes_its_user() {
    let system = system();
    let token = system.token().build();
    let app = Router::new()
        .route("/", get(|| async { "called" }))
        .layer(system.auth.layer());
    let send = || {
        let request = Request::get("/")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .expect("request");
        app.clone().oneshot(request)
    };
    for round in 1..=3 {
        let before = rsa_operations_on_this_thread();
        assert_eq!(send().await.expect("answer").status(), 200, "round {round}");
        let rsa = rsa_operations_on_this_thread() - before;
        assert_eq!(rsa, u64::from(round == 1), "round {round}");
    }
    reload_with(&system, &[("another-user", &TestKey::generate())]);
    assert_eq!(send().await.expect("answer").status(), 401);
}
