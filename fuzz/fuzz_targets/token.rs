//! Fuzz target: the token path, through `SystemAuth::verify` (with and without the
//! token cache) and through the layer.
//!
//! The first input byte picks how the rest is used (its top bit asks for a gRPC
//! request at the layer):
//!
//! - `% 3 == 0`, raw: the rest is the token for `verify` and, as it is, the
//!   `Authorization` header value;
//! - `% 3 == 1`, mutate: the next byte picks one of the valid tokens made at start,
//!   and the rest, four bytes at a time, edits it (replace, insert, remove, cut;
//!   a big-endian 16-bit position and a byte);
//! - `% 3 == 2`, sign: the next byte picks the algorithm (`& 7`: RS256, RS384,
//!   RS512, PS256, PS384, PS512, else the one the header names) and the key
//!   (`& 8`: the other user's); the rest is the header JSON, `0xFF`, the payload
//!   JSON, signed as they are, so every claim check and the acceptance are reached.
//!
//! Every decision is checked against the reference model of the rules that the
//! property tests share (`tests/support/model.rs`): an accepted token must verify,
//! independently, with the key of the user `iss` names, and carry valid claims; and
//! such a token must be accepted. The clock is
//! fixed, so time-dependent branches are reproducible. Keys are made at start: no
//! private key is stored anywhere.

#![no_main]

#[path = "../../tests/support/model.rs"]
mod model;

use std::{
    convert::Infallible,
    future::{Future, Ready, ready},
    pin::pin,
    sync::LazyLock,
    task::{Context, Poll, Waker},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    body::Body,
    http::{
        HeaderValue, Request, Response, StatusCode,
        header::{AUTHORIZATION, CONTENT_TYPE},
    },
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tower_layer::Layer as _;
use tower_service::Service;
use zitadel_system_auth::{
    Algorithm, SystemAuth, SystemAuthService, SystemUser,
    testing::{TEST_AUDIENCE, TEST_USER, TestKey},
};

/// The verifier's "now"; clock offset 1 s, maximum age 1 h (the defaults).
const T: u64 = 1_700_000_000;
const MAX_TOKEN_LENGTH: usize = 8 * 1024;
const USERS: [&str; 2] = [TEST_USER, "system-user-2"];
const ALGORITHMS: [Algorithm; 6] = Algorithm::ALL;

struct World {
    /// `keys[i]` is `USERS[i]`'s key.
    keys: [TestKey; 2],
    /// The rules of the shared reference model, with `USERS[i]`'s public key.
    rules: model::Rules<'static>,
    /// Cache off: every call runs every check.
    auth: SystemAuth,
    /// Cache on, small, so entries come and go.
    cached: SystemAuth,
    service: SystemAuthService<Echo>,
    valid: Vec<String>,
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let keys = [TestKey::generate(), TestKey::generate()];
    let config = format!(
        "ExternalDomain: custom-domain.com\nExternalPort: 443\nSystemAPIUsers:\n  \
         - {}:\n      KeyData: {}\n  - {}:\n      KeyData: {}\n",
        USERS[0],
        keys[0].key_data(),
        USERS[1],
        keys[1].key_data()
    );
    let build = |cache: bool| {
        SystemAuth::builder()
            .config_yaml(&config)
            .clock(|| at(T))
            .token_cache(cache)
            .token_cache_capacity(8)
            .watch(false)
            .build()
            .expect("the fuzz config loads")
    };
    let auth = build(false);
    let cached = build(true);
    let service = auth.layer().layer(Echo);
    let valid = vec![
        keys[0]
            .token(USERS[0], TEST_AUDIENCE)
            .issued_at(at(T))
            .expires_at(at(T + 3600))
            .build(),
        keys[0]
            .token(USERS[0], TEST_AUDIENCE)
            .algorithm(Algorithm::PS256)
            .issued_at(at(T - 3600))
            .expires_at(at(T + 2))
            .claim("nbf", T + 1)
            .build(),
        keys[1]
            .token(USERS[1], TEST_AUDIENCE)
            .claim("aud", vec!["https://other", TEST_AUDIENCE])
            .claim("iat", T as f64 + 0.9)
            .claim("exp", T as f64 + 60.5)
            .header("kid", "k1")
            .build(),
        keys[0]
            .token(USERS[0], TEST_AUDIENCE)
            .issued_at(at(T - 10))
            .expires_at(at(T + 10))
            .build_with_jsonwebtoken(),
    ];
    let users: &'static [(&str, Vec<u8>)] = Box::leak(Box::new([
        (USERS[0], keys[0].public_der()),
        (USERS[1], keys[1].public_der()),
    ]));
    World {
        rules: model::Rules {
            now: T,
            audience: TEST_AUDIENCE,
            users,
            max_token_length: MAX_TOKEN_LENGTH,
        },
        keys,
        auth,
        cached,
        service,
        valid,
    }
});

/// The inner service: answers 200 with the user id in `x-user`.
#[derive(Clone)]
struct Echo;

impl Service<Request<Body>> for Echo {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let mut response = Response::new(Body::empty());
        if let Some(user) = request.extensions().get::<SystemUser>() {
            let id = HeaderValue::from_str(user.user_id()).expect("a configured id");
            response.headers_mut().insert("x-user", id);
        }
        ready(Ok(response))
    }
}

// ---- The checks ----

type Outcome = Result<(String, SystemTime, SystemTime), zitadel_system_auth::AuthError>;

fn outcome(result: Result<SystemUser, zitadel_system_auth::AuthError>) -> Outcome {
    result.map(|user| {
        (
            user.user_id().to_owned(),
            user.issued_at(),
            user.expires_at(),
        )
    })
}

fn check_token(world: &World, token: &str) {
    let result = outcome(world.auth.verify(token));
    match (&result, world.rules.accepts(token)) {
        (Ok((id, iat, exp)), Some(accepted)) => {
            assert_eq!(id, USERS[accepted.user]);
            assert_eq!(*iat, at(accepted.iat));
            assert_eq!(*exp, at(accepted.exp));
        }
        (Err(_), None) => {}
        (Ok((id, ..)), None) => {
            panic!("accepted for {id} a token the model refuses: {token:?}")
        }
        (Err(error), Some(_)) => {
            panic!("refused ({error:?}) a token the model accepts: {token:?}")
        }
    }
    // The cache answers as the full check does, on the first call and the next.
    assert_eq!(outcome(world.cached.verify(token)), result);
    assert_eq!(outcome(world.cached.verify(token)), result);
}

/// Sends one `Authorization` value through the layer (polled once: nothing in it
/// waits) and checks the answer against `verify`.
fn check_header(world: &World, value: HeaderValue, grpc: bool) {
    // What the layer must take as the token: after `Bearer` (any case) and spaces.
    let token = value
        .to_str()
        .ok()
        .and_then(|text| text.split_once(' ').or(Some((text, ""))))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, rest)| rest.trim_start_matches(' ').to_owned());
    let valid = token
        .as_deref()
        .is_some_and(|t| !t.is_empty() && world.auth.verify(t).is_ok());

    let mut request = Request::new(Body::empty());
    request.headers_mut().insert(AUTHORIZATION, value);
    if grpc {
        request
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    }
    let mut service = world.service.clone();
    let future = pin!(service.call(request));
    let Poll::Ready(Ok(response)) = future.poll(&mut Context::from_waker(Waker::noop())) else {
        panic!("the layer's answer was not ready");
    };
    let status = response.status();
    assert!(!status.is_server_error(), "answered {status}");
    match response.headers().get("x-user") {
        Some(_) => {
            assert!(valid, "the layer let {token:?} in");
            assert_eq!(status, StatusCode::OK);
        }
        None if grpc => {
            assert!(!valid, "the layer refused the valid {token:?}");
            assert_eq!(status, StatusCode::OK);
            assert_eq!(
                response
                    .headers()
                    .get("grpc-status")
                    .map(HeaderValue::as_bytes),
                Some(b"16".as_slice())
            );
        }
        None => {
            assert!(!valid, "the layer refused the valid {token:?}");
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
    }
}

fn check_both(world: &World, token: &str, grpc: bool) {
    check_token(world, token);
    if let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) {
        check_header(world, value, grpc);
    }
}

fuzz_target!(|data: &[u8]| {
    let world = &*WORLD;
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let grpc = mode & 0x80 != 0;
    match mode % 3 {
        0 => {
            if let Ok(token) = std::str::from_utf8(rest) {
                check_token(world, token);
            }
            if let Ok(value) = HeaderValue::from_bytes(rest) {
                check_header(world, value, grpc);
            }
        }
        1 => {
            let Some((&which, edits)) = rest.split_first() else {
                return;
            };
            let mut token = world.valid[usize::from(which) % world.valid.len()]
                .clone()
                .into_bytes();
            for edit in edits.chunks_exact(4).take(16) {
                let position = usize::from(u16::from_be_bytes([edit[1], edit[2]]));
                match edit[0] % 4 {
                    0 if !token.is_empty() => {
                        let i = position % token.len();
                        token[i] = edit[3];
                    }
                    1 => token.insert(position % (token.len() + 1), edit[3]),
                    2 if !token.is_empty() => {
                        token.remove(position % token.len());
                    }
                    3 => token.truncate(position % (token.len() + 1)),
                    _ => {}
                }
            }
            if let Ok(token) = String::from_utf8(token) {
                check_both(world, &token, grpc);
            }
        }
        _ => {
            let Some((&how, json)) = rest.split_first() else {
                return;
            };
            let (header, payload) = match json.iter().position(|b| *b == 0xff) {
                Some(i) => (&json[..i], &json[i + 1..]),
                None => (json, &b"{}"[..]),
            };
            let algorithm = match usize::from(how & 7) {
                i if i < ALGORITHMS.len() => ALGORITHMS[i],
                _ => serde_json::from_slice::<Value>(header)
                    .ok()
                    .and_then(|h| h.get("alg")?.as_str()?.parse().ok())
                    .unwrap_or(Algorithm::RS256),
            };
            let key = usize::from(how & 8 != 0);
            let mut token = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(payload)
            );
            let signature = world.keys[key].sign_input(algorithm, token.as_bytes());
            token.push('.');
            token.push_str(&URL_SAFE_NO_PAD.encode(signature));
            check_both(world, &token, grpc);
        }
    }
});
