//! Refusals that need no RSA work never reach it, and a refusal that needs it costs
//! exactly one RSA verification, every time (refusals are not cached).
//!
//! `rsa_operations_on_this_thread()` counts the RSA verifications started on the
//! calling thread. `SystemAuth::verify`, and the layer's decision (made in `call`,
//! on the thread that calls the service), run on the test's own thread, so the
//! count before and after a refusal tells whether RSA was used. The refusal table
//! (`cases::refusals`) says for each case what it may cost.

use axum::{
    Router,
    body::Body,
    http::{HeaderValue, Request, StatusCode, header},
    routing::get,
};
use tower::ServiceExt as _;
use zitadel_system_auth::{
    Algorithm, AuthError,
    testing::{TEST_USER, TestSystem, rsa_operations_on_this_thread},
};

use crate::cases::{self, World};

/// The two systems the acceptance checks run against: token cache off and on.
fn systems() -> [(&'static str, TestSystem); 2] {
    [
        (
            "cache off",
            TestSystem::with(|b| b.token_cache(false).watch(false)),
        ),
        (
            "cache on",
            TestSystem::with(|b| b.token_cache(true).watch(false)),
        ),
    ]
}

/// Runs `f` and returns what it returned and how many RSA operations it started.
fn counted<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = rsa_operations_on_this_thread();
    let result = f();
    (result, rsa_operations_on_this_thread() - before)
}

/// Every token of the refusal table, through `verify`, with the token cache off
/// and on, three times each: the first attempt costs the row's RSA budget, and so
/// does every later one (a refusal is not cached), but for a valid token refused
/// for its route's role, which the cache then answers without RSA.
#[test]
fn every_refused_token_of_the_table_costs_its_budget() {
    let mut failures = Vec::new();
    let table = cases::refusals();
    for cache in [false, true] {
        let world = World::new();
        for case in &table {
            let sent = (case.make)();
            let Some(token) = sent.token() else { continue };
            world.set_at(case.at);
            // A verifier of its own: no earlier case's token is in its cache.
            let auth = world
                .builder()
                .token_cache(cache)
                .build()
                .expect("build SystemAuth");
            for round in 1..=3 {
                let (result, rsa) = counted(|| auth.verify(token));
                let want_rsa = if round == 1 {
                    case.rsa
                } else {
                    case.rsa_again(cache)
                };
                let verdict_ok = match (&result, case.role) {
                    (Err(error), None) => *error == case.error,
                    (Ok(_), Some(_)) => true,
                    _ => false,
                };
                if !verdict_ok || rsa != want_rsa {
                    failures.push(format!(
                        "- cache {}, {} (round {round}): {result:?} with {rsa} RSA operations (want {:?} with {want_rsa})",
                        if cache { "on" } else { "off" },
                        case.name,
                        case.error
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every case of the refusal table through the layer (cache on), twice: the
/// refusals decided from the header alone cost nothing either.
#[tokio::test(flavor = "current_thread")]
async fn every_refusal_of_the_table_through_the_layer_costs_its_budget() {
    let world = World::new();
    let mut failures = Vec::new();
    for case in cases::refusals() {
        world.set_at(case.at);
        let auth = world.builder().build().expect("build SystemAuth");
        let (app, _) = cases::app(&auth, case.role);
        let sent = (case.make)();
        for round in 1..=2 {
            let request = sent.request(false);
            let before = rsa_operations_on_this_thread();
            let response = app.clone().oneshot(request).await.expect("infallible");
            let rsa = rsa_operations_on_this_thread() - before;
            let want_rsa = if round == 1 {
                case.rsa
            } else {
                case.rsa_again(true)
            };
            if response.status().as_u16() != case.status || rsa != want_rsa {
                failures.push(format!(
                    "- {} (round {round}): {} with {rsa} RSA operations (want {} with {want_rsa})",
                    case.name,
                    response.status(),
                    case.status
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_valid_token_costs_one_then_nothing_while_cached() {
    let [(_, uncached), (_, cached)] = systems();

    for token in [
        uncached.token().build(),
        uncached.token().algorithm(Algorithm::PS256).build(),
    ] {
        for round in 1..=3 {
            let (result, rsa) = counted(|| uncached.auth.verify(&token));
            assert_eq!(result.expect("valid").user_id(), TEST_USER);
            assert_eq!(rsa, 1, "cache off, round {round}");
        }
    }

    for token in [
        cached.token().build(),
        cached.token().algorithm(Algorithm::PS256).build(),
    ] {
        let (result, rsa) = counted(|| cached.auth.verify(&token));
        assert_eq!(result.expect("valid").user_id(), TEST_USER);
        assert_eq!(rsa, 1, "cache on, first use");
        for round in 2..=4 {
            let (result, rsa) = counted(|| cached.auth.verify(&token));
            assert_eq!(result.expect("valid").user_id(), TEST_USER);
            assert_eq!(rsa, 0, "cache on, round {round}");
        }
    }

    // Another token pays again.
    let (_, rsa) = counted(|| {
        cached
            .auth
            .verify(&cached.token().claim("jti", "x").build())
    });
    assert_eq!(rsa, 1);
}

#[test]
fn a_cached_token_that_expired_is_refused_without_rsa() {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicU64, Ordering},
        },
        time::{Duration, SystemTime, UNIX_EPOCH},
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let offset = Arc::new(AtomicU64::new(0));
    let clock = offset.clone();
    let system = TestSystem::with(move |b| {
        b.watch(false)
            .clock(move || UNIX_EPOCH + Duration::from_secs(now + clock.load(Ordering::SeqCst)))
    });
    let token = system
        .token()
        .issued_at(UNIX_EPOCH + Duration::from_secs(now))
        .expires_at(UNIX_EPOCH + Duration::from_secs(now + 60))
        .build();
    // The first costs RSA; the second is the shared cache's, which hands the token
    // to this thread; the third is this thread's own (`thread_cache`).
    for round in 1..=3 {
        let (result, rsa) = counted(|| system.auth.verify(&token));
        assert!(result.is_ok(), "round {round}");
        assert_eq!(rsa, u64::from(round == 1), "round {round}");
    }
    offset.store(120, Ordering::SeqCst);
    let (result, rsa) = counted(|| system.auth.verify(&token));
    assert_eq!(result.unwrap_err(), AuthError::Expired);
    assert_eq!(rsa, 0);
}

/// The layer looks a cached token up by the header's bytes: any way of writing the
/// scheme still hits the cache, and a header the full reading refuses is still
/// refused, without RSA.
#[tokio::test(flavor = "current_thread")]
async fn the_layer_finds_a_cached_token_by_the_headers_bytes() {
    let [_, (_, system)] = systems(); // cache on
    let app = Router::new()
        .route("/", get(|| async { "called" }))
        .layer(system.auth.layer());
    let token = system.token().build();

    let send = |values: Vec<HeaderValue>| {
        let app = app.clone();
        async move {
            let mut request = Request::get("/").body(Body::empty()).unwrap();
            for value in values {
                request.headers_mut().append(header::AUTHORIZATION, value);
            }
            let before = rsa_operations_on_this_thread();
            let response = app.oneshot(request).await.unwrap();
            (response.status(), rsa_operations_on_this_thread() - before)
        }
    };
    let bearer = |t: &str| HeaderValue::from_str(&format!("Bearer {t}")).unwrap();

    // A valid token costs one, then none from the cache.
    assert_eq!(send(vec![bearer(&token)]).await, (StatusCode::OK, 1));
    assert_eq!(send(vec![bearer(&token)]).await, (StatusCode::OK, 0));

    let raw = |text: String| HeaderValue::from_str(&text).unwrap();
    for accepted in [format!("bearer {token}"), format!("BEARER    {token}")] {
        assert_eq!(send(vec![raw(accepted)]).await, (StatusCode::OK, 0));
    }
    assert_eq!(
        send(vec![bearer(&token), bearer(&token)]).await,
        (StatusCode::BAD_REQUEST, 0)
    );
    for refused in [
        [format!("Bearer {token}").as_bytes(), b"\xff"].concat(),
        [b"Bearer \xff", token.as_bytes()].concat(),
        format!("Bearer\t{token}").into_bytes(),
        format!("Bearer {token}.").into_bytes(),
        format!("Bearer {token} ").into_bytes(),
    ] {
        let value = HeaderValue::from_bytes(&refused).unwrap();
        assert_eq!(
            send(vec![value]).await,
            (StatusCode::UNAUTHORIZED, 0),
            "{}",
            String::from_utf8_lossy(&refused)
        );
    }
}
