//! Refusals that need no RSA work never reach it (issue 5, point 2).
//!
//! `rsa_operations_on_this_thread()` counts the RSA verifications started on the
//! calling thread. `SystemAuth::verify`, and the layer's decision (made in `call`,
//! on the thread that calls the service), run on the test's own thread, so the
//! count before and after a refusal tells whether RSA was used.

use axum::{
    Router,
    body::Body,
    http::{HeaderValue, Request, StatusCode, header},
    routing::get,
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::json;
use tower::ServiceExt as _;
use zitadel_system_auth::{
    Algorithm, AuthError,
    error::{AudienceHint, Claim, Malformed},
    testing::{TEST_AUDIENCE, TEST_USER, TestKey, TestSystem, rsa_operations_on_this_thread},
};

/// Makes a token for a system (with an attacker's key at hand).
type MakeToken = Box<dyn Fn(&TestSystem, &TestKey) -> String>;

/// One token to refuse, made for a given system, and the refusal it must get.
struct Case {
    name: &'static str,
    token: MakeToken,
    error: AuthError,
}

fn case(
    name: &'static str,
    token: impl Fn(&TestSystem, &TestKey) -> String + 'static,
    error: AuthError,
) -> Case {
    Case {
        name,
        token: Box::new(token),
        error,
    }
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The token with its signature replaced by these bytes.
fn with_signature(token: &str, signature: &[u8]) -> String {
    let input = &token[..token.rfind('.').expect("compact token")];
    format!("{input}.{}", b64(signature))
}

fn signature_of(token: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(token.rsplit('.').next().expect("signature"))
        .expect("base64url signature")
}

/// Every refusal that must be decided without RSA.
fn cheap_refusals() -> Vec<Case> {
    let audience = |hint| AuthError::AudienceMismatch {
        expected: TEST_AUDIENCE.into(),
        hint,
    };
    vec![
        // Malformed.
        case(
            "junk",
            |_, _| "junk".to_owned(),
            AuthError::Malformed(Malformed::Segments),
        ),
        case(
            "two segments",
            |s, _| {
                let t = s.token().build();
                t[..t.rfind('.').unwrap()].to_owned()
            },
            AuthError::Malformed(Malformed::Segments),
        ),
        case(
            "header not base64url",
            |s, _| format!("!!!{}", s.token().build()),
            AuthError::Malformed(Malformed::HeaderBase64),
        ),
        case(
            "header not JSON",
            |s, _| s.key.sign_raw(Algorithm::RS256, "not json", r#"{}"#),
            AuthError::Malformed(Malformed::HeaderJson),
        ),
        case(
            "payload not JSON",
            |s, _| s.key.sign_raw(Algorithm::RS256, r#"{"alg":"RS256"}"#, "[]"),
            AuthError::Malformed(Malformed::PayloadJson),
        ),
        case(
            "duplicate claim",
            |s, _| {
                let claims = serde_json::Value::Object(s.token().claims().clone()).to_string();
                let twice = format!("{{\"iss\":\"{TEST_USER}\",{}", &claims[1..]);
                s.key
                    .sign_raw(Algorithm::RS256, r#"{"alg":"RS256"}"#, &twice)
            },
            AuthError::Malformed(Malformed::DuplicateMember),
        ),
        case(
            "signature not base64url",
            |s, _| {
                let t = s.token().build();
                format!("{}.!!!", &t[..t.rfind('.').unwrap()])
            },
            AuthError::Malformed(Malformed::SignatureBase64),
        ),
        // Too long.
        case(
            "9000 bytes of junk",
            |_, _| "a".repeat(9000),
            AuthError::TokenTooLong { limit: 8192 },
        ),
        case(
            "validly signed, too long",
            |s, _| s.token().claim("pad", "x".repeat(9000)).build(),
            AuthError::TokenTooLong { limit: 8192 },
        ),
        // Claims.
        case(
            "wrong aud",
            |s, _| s.token().audience("https://other.example").build(),
            audience(AudienceHint::Other),
        ),
        case(
            "aud with a trailing slash",
            |s, _| s.token().audience("https://custom-domain.com/").build(),
            audience(AudienceHint::TrailingSlash),
        ),
        case(
            "aud missing",
            |s, _| s.token().without("aud").build(),
            AuthError::MissingClaim(Claim::Aud),
        ),
        case(
            "aud mistyped",
            |s, _| s.token().claim("aud", 42).build(),
            AuthError::InvalidClaim(Claim::Aud),
        ),
        case(
            "expired",
            |s, _| s.token().expired().build(),
            AuthError::Expired,
        ),
        case(
            "exp missing",
            |s, _| s.token().without("exp").build(),
            AuthError::MissingClaim(Claim::Exp),
        ),
        case(
            "exp a string",
            |s, _| s.token().claim("exp", "tomorrow").build(),
            AuthError::InvalidClaim(Claim::Exp),
        ),
        case(
            "iat in the future",
            |s, _| s.token().issued_in_future().build(),
            AuthError::IssuedInFuture,
        ),
        case(
            "iat too old",
            |s, _| s.token().issued_too_long_ago().build(),
            AuthError::IssuedTooLongAgo,
        ),
        case(
            "nbf in the future",
            |s, _| {
                let nbf = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs()
                    + 600;
                s.token().claim("nbf", nbf).build()
            },
            AuthError::NotYetValid,
        ),
        case(
            "iss differs from sub",
            |s, _| s.token().claim("sub", "system-user-2").build(),
            AuthError::IssuerSubjectMismatch,
        ),
        case(
            "iss an array",
            |s, _| s.token().claim("iss", json!([TEST_USER])).build(),
            AuthError::InvalidClaim(Claim::Iss),
        ),
        case(
            "unknown user",
            |s, _| {
                s.token()
                    .claim("iss", "nobody")
                    .claim("sub", "nobody")
                    .build()
            },
            AuthError::UnknownUser,
        ),
        case(
            "unknown user, attacker-signed",
            |_, attacker| attacker.token("nobody", TEST_AUDIENCE).build(),
            AuthError::UnknownUser,
        ),
        // Header.
        case(
            "crit",
            |s, _| s.token().header("crit", json!(["exp"])).build(),
            AuthError::CriticalHeader,
        ),
        case(
            "typ JOSE",
            |s, _| s.token().header("typ", "JOSE").build(),
            AuthError::UnsupportedType,
        ),
        case(
            "alg none",
            |s, _| {
                let t = s.token().header("alg", "none").build();
                format!("{}.", &t[..t.rfind('.').unwrap()])
            },
            AuthError::AlgorithmNotAllowed,
        ),
        case(
            "alg HS256 (public key as secret)",
            |s, _| {
                let t = s.token().header("alg", "HS256").build();
                let input = &t[..t.rfind('.').unwrap()];
                let key = aws_lc_rs::hmac::Key::new(
                    aws_lc_rs::hmac::HMAC_SHA256,
                    s.key.public_pem().as_bytes(),
                );
                format!(
                    "{input}.{}",
                    b64(aws_lc_rs::hmac::sign(&key, input.as_bytes()))
                )
            },
            AuthError::AlgorithmNotAllowed,
        ),
        case(
            "alg RS512, validly signed",
            |s, _| s.token().algorithm(Algorithm::RS512).build(),
            AuthError::AlgorithmNotAllowed,
        ),
        case(
            "alg ES256",
            |s, _| s.token().header("alg", "ES256").build(),
            AuthError::AlgorithmNotAllowed,
        ),
        // Signatures of the wrong length.
        case(
            "empty signature",
            |s, _| with_signature(&s.token().build(), &[]),
            AuthError::InvalidSignature,
        ),
        case(
            "signature one byte short",
            |s, _| {
                let t = s.token().build();
                let sig = signature_of(&t);
                with_signature(&t, &sig[..sig.len() - 1])
            },
            AuthError::InvalidSignature,
        ),
        case(
            "signature one byte long",
            |s, _| {
                let t = s.token().build();
                let mut sig = signature_of(&t);
                sig.push(0);
                with_signature(&t, &sig)
            },
            AuthError::InvalidSignature,
        ),
        case(
            "signature of a 4096-bit key",
            |s, _| with_signature(&s.token().build(), &[1; 512]),
            AuthError::InvalidSignature,
        ),
    ]
}

/// The two systems every check runs against: token cache off and on.
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

#[test]
fn cheap_refusals_use_no_rsa() {
    let attacker = TestKey::generate();
    let mut failures = Vec::new();
    let cases = cheap_refusals();
    for (mode, system) in systems() {
        for case in &cases {
            let token = (case.token)(&system, &attacker);
            // Twice: a refusal must not become cheaper or dearer when repeated.
            for round in 1..=2 {
                let (result, rsa) = counted(|| system.auth.verify(&token));
                match result {
                    Err(error) if error == case.error && rsa == 0 => {}
                    other => failures.push(format!(
                        "- {mode}, {} (round {round}): {other:?} with {rsa} RSA operations (want {:?} with 0)",
                        case.name, case.error
                    )),
                }
            }
        }
    }
    eprintln!("{} cheap refusals, cache off and on", cases.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_bad_signature_of_the_right_length_costs_exactly_one() {
    let attacker = TestKey::generate();
    for (mode, system) in systems() {
        let valid = system.token().build();
        let mut sig = signature_of(&valid);
        sig[10] ^= 0x40;
        let tokens = [
            ("bit flipped", with_signature(&valid, &sig)),
            (
                "attacker-signed",
                system.token().signed_by(&attacker).build(),
            ),
            (
                "attacker-signed PS256",
                system
                    .token()
                    .algorithm(Algorithm::PS256)
                    .signed_by(&attacker)
                    .build(),
            ),
            ("header RS256, PSS signature", {
                let t = system.token().algorithm(Algorithm::PS256).build();
                let (_, rest) = t.split_once('.').unwrap();
                format!("{}.{rest}", b64(r#"{"alg":"RS256","typ":"JWT"}"#))
            }),
            ("all zeros", with_signature(&valid, &[0; 256])),
        ];
        for (name, token) in tokens {
            // Refusals are not cached: each attempt costs one operation again.
            for round in 1..=3 {
                let (result, rsa) = counted(|| system.auth.verify(&token));
                assert_eq!(
                    result.unwrap_err(),
                    AuthError::InvalidSignature,
                    "{mode}, {name}"
                );
                assert_eq!(rsa, 1, "{mode}, {name}, round {round}");
            }
        }
    }
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
    let (result, rsa) = counted(|| system.auth.verify(&token));
    assert!(result.is_ok());
    assert_eq!(rsa, 1);
    offset.store(120, Ordering::SeqCst);
    let (result, rsa) = counted(|| system.auth.verify(&token));
    assert_eq!(result.unwrap_err(), AuthError::Expired);
    assert_eq!(rsa, 0);
}

/// The same budget through the layer, including refusals decided from the header
/// alone.
#[tokio::test(flavor = "current_thread")]
async fn through_the_layer() {
    let attacker = TestKey::generate();
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

    // Header-only refusals.
    assert_eq!(send(vec![]).await, (StatusCode::UNAUTHORIZED, 0));
    assert_eq!(
        send(vec![HeaderValue::from_static("Basic dXNlcjpwdw==")]).await,
        (StatusCode::UNAUTHORIZED, 0)
    );
    assert_eq!(
        send(vec![HeaderValue::from_static("Bearer ")]).await,
        (StatusCode::UNAUTHORIZED, 0)
    );
    assert_eq!(
        send(vec![bearer(&token), bearer(&token)]).await,
        (StatusCode::BAD_REQUEST, 0)
    );
    assert_eq!(
        send(vec![
            HeaderValue::from_bytes(&[format!("Bearer {token}").as_bytes(), b"\xff"].concat())
                .unwrap()
        ])
        .await,
        (StatusCode::UNAUTHORIZED, 0)
    );
    // Every cheap token refusal.
    for case in cheap_refusals() {
        let t = (case.token)(&system, &attacker);
        assert_eq!(
            send(vec![bearer(&t)]).await,
            (StatusCode::UNAUTHORIZED, 0),
            "{}",
            case.name
        );
    }
    // A bad signature costs one; a valid token one, then none from the cache.
    let forged = system.token().signed_by(&attacker).build();
    assert_eq!(
        send(vec![bearer(&forged)]).await,
        (StatusCode::UNAUTHORIZED, 1)
    );
    assert_eq!(send(vec![bearer(&token)]).await, (StatusCode::OK, 1));
    assert_eq!(send(vec![bearer(&token)]).await, (StatusCode::OK, 0));

    // The layer looks a cached token up by the header's bytes: any way of writing
    // the scheme still hits, and a header the full reading refuses is still refused.
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
