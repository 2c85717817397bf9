//! Property tests for hostile input: whatever arrives in the
//! `Authorization` header, in a token's header and payload, or in the config text,
//! nothing panics, nothing is answered 5xx, and no token is accepted unless the
//! user's own key signed claims that really are valid.
//!
//! The case counts keep these tests at about ten seconds in a debug build on two
//! cores; `PROPTEST_CASES=n cargo test --test it properties::` runs every property
//! with `n` cases instead.

use std::{
    cell::Cell,
    path::PathBuf,
    sync::LazyLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    Router,
    body::Body,
    http::{
        HeaderValue, Request, StatusCode,
        header::{AUTHORIZATION, CONTENT_TYPE},
    },
    routing::get,
};
use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD},
};
use proptest::{
    collection::vec,
    option::weighted,
    prelude::*,
    sample::{Index, select},
    test_runner::{Config as ProptestConfig, TestRunner},
};
use serde_json::{Value, json};
use tower::ServiceExt as _;
use zitadel_system_auth::{
    Algorithm, Config, SystemAuth, SystemUser,
    testing::{TEST_AUDIENCE, TEST_USER, TestKey},
};

use crate::model;

/// The verifier's "now" (2023-11-14T22:13:20Z); clock offset 1 s, max age 1 h.
const T: u64 = 1_700_000_000;
/// The latest time a claim may name: 9999-12-31T23:59:59Z.
const MAX_TIME: u64 = 253_402_300_799;
/// The default token length cap.
const MAX_TOKEN_LENGTH: usize = 8 * 1024;
/// The second configured user, with its own key.
const OTHER_USER: &str = "system-user-2";
/// The configured users; `KEYS[i]` is `USERS[i]`'s key.
const USERS: [&str; 2] = [TEST_USER, OTHER_USER];
const ALGORITHMS: [Algorithm; 6] = Algorithm::ALL;

static KEYS: LazyLock<[TestKey; 2]> = LazyLock::new(|| [TestKey::generate(), TestKey::generate()]);

/// The configured users and their public keys, for the reference model.
static USER_KEYS: LazyLock<[(&str, Vec<u8>); 2]> = LazyLock::new(|| {
    [
        (USERS[0], KEYS[0].public_der()),
        (USERS[1], KEYS[1].public_der()),
    ]
});
/// The rules the verifier must follow, from the shared reference model.
static RULES: LazyLock<model::Rules<'static>> = LazyLock::new(|| model::Rules {
    now: T,
    audience: TEST_AUDIENCE,
    users: &*USER_KEYS,
    max_token_length: MAX_TOKEN_LENGTH,
});

fn config_yaml() -> String {
    format!(
        "ExternalDomain: custom-domain.com\nExternalPort: 443\nSystemAPIUsers:\n  \
         - {}:\n      KeyData: {}\n  - {}:\n      KeyData: {}\n",
        USERS[0],
        KEYS[0].key_data(),
        USERS[1],
        KEYS[1].key_data()
    )
}

fn build(cache: bool) -> SystemAuth {
    SystemAuth::builder()
        .config_yaml(&config_yaml())
        .clock(|| at(T))
        .token_cache(cache)
        .watch(false)
        .build()
        .expect("the test config loads")
}

/// The verifier without the token cache, so every call runs every check.
static AUTH: LazyLock<SystemAuth> = LazyLock::new(|| build(false));
/// The same users with the token cache on.
static CACHED: LazyLock<SystemAuth> = LazyLock::new(|| build(true));
/// `GET /` behind the layer (of `AUTH`), answering the user id.
static APP: LazyLock<Router> = LazyLock::new(|| {
    Router::new()
        .route(
            "/",
            get(|user: SystemUser| async move { user.user_id().to_owned() }),
        )
        .layer(AUTH.layer())
});

thread_local! {
    /// One runtime per test thread, reused by every case.
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio runtime");
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        // A failure is turned into a named test by hand; no files next to this one.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Sends `GET /` with these `Authorization` values (and `content-type:
/// application/grpc` when `grpc`) through the layer: the status and `grpc-status`.
fn send(authorization: &[HeaderValue], grpc: bool) -> (StatusCode, Option<String>) {
    let mut request = Request::get("/");
    for value in authorization {
        request = request.header(AUTHORIZATION, value.clone());
    }
    if grpc {
        request = request.header(CONTENT_TYPE, "application/grpc");
    }
    let request = request.body(Body::empty()).expect("a request");
    let response = RUNTIME
        .with(|runtime| runtime.block_on(APP.clone().oneshot(request)))
        .expect("the router is infallible");
    let grpc_status = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (response.status(), grpc_status)
}

/// `Authorization: Bearer <token>` through the layer, as HTTP: whether it got in.
fn layer_accepts(token: &str) -> Option<bool> {
    let value = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    let (status, _) = send(&[value], false);
    assert!(
        status == StatusCode::OK || status == StatusCode::UNAUTHORIZED,
        "a single bearer token was answered {status}"
    );
    Some(status == StatusCode::OK)
}

// ---------------------------------------------------------------------------
// 1. Arbitrary bytes as the Authorization value.
// ---------------------------------------------------------------------------

/// base64url, the separators, padding and a few characters that are near misses.
const TOKEN_CHARS: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \t~%!\"{}\\";

fn scheme() -> impl Strategy<Value = &'static str> {
    select(vec![
        "Bearer ",
        "bearer ",
        "BEARER ",
        "bEaReR ",
        "Bearer   ",
        "Bearer",
        "Bearer\t",
        " Bearer ",
        "Basic ",
        "Bearerx ",
        "Bearer .",
        "",
    ])
}

fn authorization_bytes() -> impl Strategy<Value = Vec<u8>> {
    let visible = prop_oneof![8 => 0x20u8..=0x7e, 1 => 0x80u8..=0xff, 1 => Just(b'\t')];
    let token_char = select(TOKEN_CHARS.to_vec());
    prop_oneof![
        // Anything at all (values the http crate refuses are not sent).
        2 => vec(any::<u8>(), 0..256),
        // Anything a header value may hold.
        2 => vec(visible.clone(), 0..512),
        2 => (scheme(), vec(visible, 0..512)).prop_map(|(s, t)| [s.as_bytes(), &t].concat()),
        // A scheme and token-like characters, dots included.
        2 => (scheme(), vec(token_char.clone(), 0..700))
            .prop_map(|(s, t)| [s.as_bytes(), &t].concat()),
        // Dot-separated base64url of random bytes: reaches the JSON parsers.
        2 => (scheme(), vec(vec(any::<u8>(), 0..96), 0..5)).prop_map(|(s, parts)| {
            let parts: Vec<String> = parts.iter().map(|p| URL_SAFE_NO_PAD.encode(p)).collect();
            format!("{s}{}", parts.join(".")).into_bytes()
        }),
        // Dot-separated base64url of random JSON.
        2 => (scheme(), vec(any_json(), 0..4)).prop_map(|(s, parts)| {
            let parts: Vec<String> = parts
                .iter()
                .map(|p| URL_SAFE_NO_PAD.encode(p.to_string()))
                .collect();
            format!("{s}{}", parts.join(".")).into_bytes()
        }),
        // Around the length cap.
        1 => vec(token_char, 8150..8250).prop_map(|t| [b"Bearer ".as_slice(), &t].concat()),
    ]
}

proptest! {
    #![proptest_config(config(1000))]

    /// Random bytes in one or two `Authorization` headers, over HTTP and gRPC:
    /// refused with 401 (400 for two headers; gRPC status 16 or 3), never 5xx,
    /// never a panic; `verify` on the same text refuses too.
    #[test]
    fn arbitrary_authorization_values_are_refused(
        values in vec(authorization_bytes(), 1..=2),
        grpc in any::<bool>(),
    ) {
        for bytes in &values {
            let text = String::from_utf8_lossy(bytes);
            prop_assert!(AUTH.verify(&text).is_err());
            if let Some(token) = text.strip_prefix("Bearer ") {
                prop_assert!(AUTH.verify(token).is_err());
            }
        }
        let headers: Vec<HeaderValue> = values
            .iter()
            .filter_map(|bytes| HeaderValue::from_bytes(bytes).ok())
            .collect();
        let (status, grpc_status) = send(&headers, grpc);
        let several = headers.len() > 1;
        if grpc {
            prop_assert_eq!(status, StatusCode::OK, "a gRPC refusal is trailers-only");
            let expected = if several { "3" } else { "16" };
            prop_assert_eq!(grpc_status.as_deref(), Some(expected));
        } else {
            let expected = if several { StatusCode::BAD_REQUEST } else { StatusCode::UNAUTHORIZED };
            prop_assert_eq!(status, expected);
        }
    }
}

// ---------------------------------------------------------------------------
// 2. A valid token with one byte changed.
// ---------------------------------------------------------------------------

/// Valid tokens at `T`: RS256 and PS256 for the first user (hand-made header), and
/// RS256 by jsonwebtoken for the second.
static VALID: LazyLock<Vec<String>> = LazyLock::new(|| {
    vec![
        KEYS[0]
            .token(USERS[0], TEST_AUDIENCE)
            .issued_at(at(T))
            .expires_at(at(T + 3600))
            .build(),
        KEYS[0]
            .token(USERS[0], TEST_AUDIENCE)
            .algorithm(Algorithm::PS256)
            .issued_at(at(T - 60))
            .expires_at(at(T + 60))
            .claim("nbf", T - 60)
            .build(),
        KEYS[1]
            .token(USERS[1], TEST_AUDIENCE)
            .issued_at(at(T))
            .expires_at(at(T + 600))
            .build_with_jsonwebtoken(),
    ]
});

/// What a single edit may put into a token: ASCII, mostly base64url and the
/// characters next to it.
const EDIT_BYTES: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \t~%!\"{}\\\0\x7f";

#[derive(Debug, Clone)]
enum Edit {
    /// The byte at the index becomes this one (the next in `EDIT_BYTES` if it
    /// already is this one).
    Replace(Index, u8),
    /// This byte is inserted before the index (or at the end).
    Insert(Index, u8),
    /// The byte at the index is removed.
    Delete(Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    let byte = select(EDIT_BYTES.to_vec());
    prop_oneof![
        6 => (any::<Index>(), byte.clone()).prop_map(|(i, b)| Edit::Replace(i, b)),
        1 => (any::<Index>(), byte).prop_map(|(i, b)| Edit::Insert(i, b)),
        1 => any::<Index>().prop_map(Edit::Delete),
    ]
}

fn apply(token: &str, edit: &Edit) -> String {
    let mut bytes = token.as_bytes().to_vec();
    match *edit {
        Edit::Replace(ref index, byte) => {
            let i = index.index(bytes.len());
            bytes[i] = if bytes[i] == byte {
                let next = EDIT_BYTES.iter().position(|b| *b == byte).unwrap_or(0) + 1;
                EDIT_BYTES[next % EDIT_BYTES.len()]
            } else {
                byte
            };
        }
        Edit::Insert(ref index, byte) => bytes.insert(index.index(bytes.len() + 1), byte),
        Edit::Delete(ref index) => {
            bytes.remove(index.index(bytes.len()));
        }
    }
    String::from_utf8(bytes).expect("ASCII edits keep the token UTF-8")
}

#[test]
fn the_valid_tokens_are_accepted() {
    for (i, token) in VALID.iter().enumerate() {
        let user = if i == 2 { USERS[1] } else { USERS[0] };
        assert_eq!(AUTH.verify(token).expect("valid").user_id(), user);
        assert_eq!(CACHED.verify(token).expect("valid").user_id(), user);
        assert_eq!(layer_accepts(token), Some(true));
    }
}

proptest! {
    #![proptest_config(config(1000))]

    /// Any one byte replaced, inserted or removed: refused by `verify` (with and
    /// without the cache, which holds the original) and by the layer. The signature
    /// covers the exact bytes of the first two segments, and canonical base64 gives
    /// every signature one spelling, so no single edit can be accepted; the one
    /// exception is spaces after `Bearer`, which the layer skips.
    #[test]
    fn a_valid_token_with_one_byte_changed_is_refused(which in 0..3usize, edit in edit()) {
        let original = &VALID[which];
        let edited = apply(original, &edit);
        prop_assert_ne!(&edited, original);
        prop_assert!(AUTH.verify(&edited).is_err(), "accepted {:?}", edited);
        prop_assert!(CACHED.verify(original).is_ok());
        prop_assert!(CACHED.verify(&edited).is_err(), "the cache accepted {:?}", edited);
        if let Some(accepted) = layer_accepts(&edited) {
            prop_assert_eq!(accepted, edited.trim_start_matches(' ') == original);
        }
    }
}

// ---------------------------------------------------------------------------
// 3. Random JSON as header and payload, correctly signed.
// ---------------------------------------------------------------------------

fn interesting_string() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        select(vec![
            TEST_USER,
            OTHER_USER,
            TEST_AUDIENCE,
            "https://custom-domain.com/",
            "RS256",
            "PS256",
            "none",
            "HS256",
            "JWT",
            "",
            "system-user-3",
            "1700000000",
        ])
        .prop_map(String::from),
        ".{0,12}",
    ]
}

fn member_name() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        4 => select(vec![
            "alg", "typ", "crit", "kid", "iss", "sub", "aud", "exp", "iat", "nbf", "jti", "ALG",
            "ISS", "Exp", "\u{017F}ub", "\u{0131}at", "jwk", "x5c", "b64", "nonce", "cty",
        ])
        .prop_map(String::from),
        1 => ".{0,6}",
    ]
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> + Clone {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        (T - 4000..T + 4000).prop_map(Value::from),
        interesting_string().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            vec((member_name(), inner), 0..4)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// A JSON text: an object written member by member (names may repeat), or any
/// other value; with or without spaces, and with something around it.
#[derive(Debug, Clone)]
struct Json {
    doc: Doc,
    spaced: bool,
    before: &'static str,
    after: &'static str,
}

#[derive(Debug, Clone)]
enum Doc {
    Object(Vec<(String, Value)>),
    Other(Value),
}

impl Doc {
    fn from_value(value: Value) -> Doc {
        match value {
            Value::Object(map) => Doc::Object(map.into_iter().collect()),
            other => Doc::Other(other),
        }
    }
}

impl Json {
    fn text(&self) -> String {
        let body = match &self.doc {
            Doc::Other(value) => value.to_string(),
            Doc::Object(members) => {
                let (colon, comma) = if self.spaced {
                    (" : ", " ,\n ")
                } else {
                    (":", ",")
                };
                let members: Vec<String> = members
                    .iter()
                    .map(|(name, value)| format!("{}{colon}{value}", Value::from(name.as_str())))
                    .collect();
                format!("{{{}}}", members.join(comma))
            }
        };
        format!("{}{body}{}", self.before, self.after)
    }
}

fn json_text(doc: impl Strategy<Value = Doc>) -> impl Strategy<Value = Json> {
    let around = || {
        prop_oneof![
            12 => Just(""),
            2 => select(vec![" ", "\n", "\t", "\r\n "]),
            1 => select(vec!["x", "}", "\0", ",", "{}", "\u{a0}", "\u{feff}"]),
        ]
    };
    (doc, any::<bool>(), around(), around()).prop_map(|(doc, spaced, before, after)| Json {
        doc,
        spaced,
        before,
        after,
    })
}

/// Members in a random order, with extra ones (maybe repeating a name).
fn shuffled(
    members: Vec<Option<(&'static str, Value)>>,
    extra: Vec<(String, Value)>,
) -> impl Strategy<Value = Doc> {
    let mut all: Vec<(String, Value)> = members
        .into_iter()
        .flatten()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    all.extend(extra);
    Just(all).prop_shuffle().prop_map(Doc::Object)
}

fn header_doc() -> impl Strategy<Value = Doc> {
    let alg = prop_oneof![
        8 => select(vec!["RS256", "PS256"]).prop_map(Value::from),
        1 => select(vec![
            "RS384", "RS512", "PS384", "PS512", "none", "HS256", "ES256", "rs256", "RS256 ", "",
        ])
        .prop_map(Value::from),
        1 => any_json(),
    ];
    let typ = prop_oneof![
        6 => Just(json!("JWT")),
        1 => select(vec!["jwt", "Jwt", "JOSE", "at+jwt", ""]).prop_map(Value::from),
        1 => any_json(),
    ];
    let extra = vec((member_name(), any_json()), 0..3);
    let structured = (
        weighted(0.95, alg),
        weighted(0.5, typ),
        weighted(0.05, any_json()),
        weighted(0.2, any_json()),
        prop_oneof![6 => Just(Vec::new()), 1 => extra],
    )
        .prop_flat_map(|(alg, typ, crit, kid, extra)| {
            let members = vec![
                alg.map(|v| ("alg", v)),
                typ.map(|v| ("typ", v)),
                crit.map(|v| ("crit", v)),
                kid.map(|v| ("kid", v)),
            ];
            shuffled(members, extra)
        });
    prop_oneof![12 => structured, 1 => any_json().prop_map(Doc::from_value)]
}

/// A time claim: mostly whole seconds around `T`, and every kind of wrong value.
fn time_value() -> BoxedStrategy<Value> {
    prop_oneof![
        6 => (T - 4000..T + 4000).prop_map(Value::from),
        2 => (-4000.0f64..4000.0).prop_map(|d| Value::from(T as f64 + d)),
        2 => select(vec![0, T - 3601, T - 3600, T + 1, T + 2, MAX_TIME, MAX_TIME + 1, u64::MAX])
            .prop_map(Value::from),
        1 => select(vec![-1i64, i64::MIN]).prop_map(Value::from),
        1 => select(vec![1e300, -0.0, 0.5, -0.5, MAX_TIME as f64 + 0.5, MAX_TIME as f64 + 1.0])
            .prop_map(Value::from),
        1 => Just(Value::from(T.to_string())),
        1 => any_json(),
    ]
    .boxed()
}

fn user_value() -> impl Strategy<Value = Value> + Clone {
    prop_oneof![
        8 => Just(Value::from(USERS[0])),
        3 => Just(Value::from(USERS[1])),
        1 => select(vec!["System-User-1", "system-user-1 ", "system-user-3", ""]).prop_map(Value::from),
        1 => any_json(),
    ]
}

fn audience_value() -> impl Strategy<Value = Value> {
    let near = select(vec![
        "https://custom-domain.com/",
        "http://custom-domain.com",
        "https://custom-domain.com:443",
        "https://Custom-Domain.com",
        "",
    ]);
    prop_oneof![
        8 => Just(Value::from(TEST_AUDIENCE)),
        2 => (vec(near.clone().prop_map(Value::from), 0..3), any::<Index>()).prop_map(|(mut list, i)| {
            list.insert(i.index(list.len() + 1), Value::from(TEST_AUDIENCE));
            Value::Array(list)
        }),
        1 => near.prop_map(Value::from),
        1 => vec(any_json(), 0..3).prop_map(Value::Array),
        1 => any_json(),
    ]
}

fn payload_doc() -> impl Strategy<Value = Doc> {
    let exp = prop_oneof![8 => (T + 2..T + 7200).prop_map(Value::from).boxed(), 2 => time_value()];
    let iat = prop_oneof![8 => (T - 3600..=T + 1).prop_map(Value::from).boxed(), 2 => time_value()];
    let nbf = prop_oneof![3 => (T - 7200..=T + 1).prop_map(Value::from).boxed(), 1 => time_value()];
    let claims = (
        weighted(0.95, user_value()),
        weighted(0.1, user_value()),
        weighted(0.95, audience_value()),
        weighted(0.95, exp),
        weighted(0.95, iat),
        weighted(0.3, nbf),
    );
    let extra = vec((member_name(), any_json()), 0..3);
    let structured = (claims, prop_oneof![6 => Just(Vec::new()), 1 => extra]).prop_flat_map(
        |((iss, other_sub, aud, exp, iat, nbf), extra)| {
            // `sub` is `iss` unless drawn separately (or left out with `iss`).
            let sub = other_sub.or_else(|| iss.clone());
            let members = vec![
                iss.map(|v| ("iss", v)),
                sub.map(|v| ("sub", v)),
                aud.map(|v| ("aud", v)),
                exp.map(|v| ("exp", v)),
                iat.map(|v| ("iat", v)),
                nbf.map(|v| ("nbf", v)),
            ];
            shuffled(members, extra)
        },
    );
    prop_oneof![12 => structured, 1 => any_json().prop_map(Doc::from_value)]
}

/// What signs the token: the algorithm (`None`: the one the header names, else
/// RS256) and whether the key is another user's.
#[derive(Debug, Clone)]
struct Signer {
    algorithm: Option<Algorithm>,
    wrong_key: bool,
}

fn signer() -> impl Strategy<Value = Signer> {
    (
        weighted(0.05, select(ALGORITHMS.to_vec())),
        proptest::bool::weighted(0.08),
    )
        .prop_map(|(algorithm, wrong_key)| Signer {
            algorithm,
            wrong_key,
        })
}

fn find<'m>(members: &'m [(String, Value)], name: &str) -> Option<&'m Value> {
    members.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

thread_local! {
    /// Tokens accepted and refused by `check_signed` on this test's thread.
    static OUTCOMES: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// Signs the two texts, and checks `verify` (cached and not) and the layer against
/// the model.
fn check_signed(header: &Json, payload: &Json, signer: &Signer) -> Result<(), TestCaseError> {
    let (header_text, payload_text) = (header.text(), payload.text());
    let named = match &header.doc {
        Doc::Object(members) => match find(members, "alg") {
            Some(Value::String(alg)) => alg.parse::<Algorithm>().ok(),
            _ => None,
        },
        Doc::Other(_) => None,
    };
    let algorithm = signer.algorithm.or(named).unwrap_or(Algorithm::RS256);
    // The key of the user `iss` names (the first user's for anyone else), or the
    // other one.
    let named_user = match &payload.doc {
        Doc::Object(members) => match find(members, "iss") {
            Some(Value::String(iss)) => USERS.iter().position(|u| u == iss),
            _ => None,
        },
        Doc::Other(_) => None,
    };
    let key = named_user.unwrap_or(0) ^ usize::from(signer.wrong_key);
    let token = KEYS[key].sign_raw(algorithm, &header_text, &payload_text);
    let expected = RULES
        .accepts(&token)
        .map(|accepted| (accepted.user, accepted.iat, accepted.exp));
    let result = AUTH.verify(&token);
    match (&result, expected) {
        (Ok(user), Some((index, iat, exp))) => {
            prop_assert_eq!(user.user_id(), USERS[index]);
            prop_assert_eq!(user.issued_at(), at(iat));
            prop_assert_eq!(user.expires_at(), at(exp));
            OUTCOMES.with(|n| n.set((n.get().0 + 1, n.get().1)));
        }
        (Err(_), None) => {
            OUTCOMES.with(|n| n.set((n.get().0, n.get().1 + 1)));
        }
        (Ok(user), None) => {
            return Err(TestCaseError::fail(format!(
                "accepted for {} a token that must be refused: header {header_text} payload {payload_text}",
                user.user_id()
            )));
        }
        (Err(error), Some(_)) => {
            return Err(TestCaseError::fail(format!(
                "refused ({error:?}) a valid token: header {header_text} payload {payload_text}"
            )));
        }
    }
    for _ in 0..2 {
        prop_assert_eq!(CACHED.verify(&token).is_ok(), result.is_ok());
    }
    if let Some(accepted) = layer_accepts(&token) {
        prop_assert_eq!(accepted, result.is_ok());
    }
    Ok(())
}

/// Structured headers and payloads (the registered names with values of every
/// type, repeated names, other members, any order), signed by the key of the user
/// `iss` names or by the other user's key: accepted exactly when the model says
/// so. The run must see both outcomes, so the model is not vacuous.
#[test]
fn random_json_tokens_are_accepted_only_when_valid() {
    let strategy = (json_text(header_doc()), json_text(payload_doc()), signer());
    let config = config(1024);
    let cases = config.cases as usize;
    TestRunner::new(config)
        .run(&strategy, |(header, payload, signer)| {
            check_signed(&header, &payload, &signer)
        })
        .unwrap();
    let (accepted, refused) = OUTCOMES.with(Cell::get);
    assert!(
        accepted >= cases / 20,
        "only {accepted} of {cases} accepted"
    );
    assert!(refused >= cases / 5, "only {refused} of {cases} refused");
}

proptest! {
    #![proptest_config(config(512))]

    /// Any JSON values at all as header and payload, correctly signed: never a
    /// panic, and accepted only when the model says so.
    #[test]
    fn arbitrary_json_as_header_and_payload(
        header in json_text(any_json().prop_map(Doc::from_value)),
        payload in json_text(any_json().prop_map(Doc::from_value)),
        signer in signer(),
    ) {
        check_signed(&header, &payload, &signer)?;
    }
}

// ---------------------------------------------------------------------------
// 4. Arbitrary config text.
// ---------------------------------------------------------------------------

/// Key files for `Path`: good ones, and every kind of bad one.
struct KeyFiles {
    _dir: tempfile::TempDir,
    paths: Vec<String>,
}

static KEY_FILES: LazyLock<KeyFiles> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let files: [(&str, String); 6] = [
        ("good.pub", KEYS[0].public_pem().to_owned()),
        ("other.pub", KEYS[1].public_pem().to_owned()),
        ("private.pem", KEYS[0].private_pem().to_owned()),
        ("garbage.pub", "not a key\n".to_owned()),
        ("empty.pub", String::new()),
        (
            "two.pub",
            format!("{}{}", KEYS[0].public_pem(), KEYS[1].public_pem()),
        ),
    ];
    let mut paths = Vec::new();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write a key file");
        paths.push(path.display().to_string());
    }
    let missing: PathBuf = dir.path().join("missing.pub");
    paths.push(missing.display().to_string());
    paths.push(dir.path().display().to_string());
    paths.push("relative/missing.pub".to_owned());
    KeyFiles { _dir: dir, paths }
});

fn yaml_scalar() -> impl Strategy<Value = serde_yaml::Value> + Clone {
    use serde_yaml::Value as Y;
    prop_oneof![
        4 => select(vec![
            "true", "false", "yes", "1", "443", "-1", "65536", "8080", "0", "~", "null",
            "custom-domain.com", "", "https://x", "System", "IAM", "Organization", "SYSTEM_OWNER",
            TEST_USER, "a b",
        ])
        .prop_map(Y::from),
        1 => any::<i64>().prop_map(Y::from),
        1 => any::<bool>().prop_map(Y::from),
        1 => any::<f64>().prop_map(Y::from),
        1 => ".{0,12}".prop_map(Y::from),
        1 => Just(Y::Null),
    ]
}

fn yaml_any() -> impl Strategy<Value = serde_yaml::Value> + Clone {
    use serde_yaml::Value as Y;
    yaml_scalar().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Y::Sequence),
            vec((yaml_scalar(), inner), 0..4).prop_map(|m| Y::Mapping(m.into_iter().collect())),
        ]
    })
}

/// A field name in any of the spellings ZITADEL would accept (and a wrong one).
fn field(name: &'static str) -> impl Strategy<Value = serde_yaml::Value> + Clone {
    prop_oneof![
        6 => Just(name.to_owned()),
        1 => Just(name.to_ascii_lowercase()),
        1 => Just(name.to_ascii_uppercase()),
        1 => Just(format!("{name}x")),
    ]
    .prop_map(serde_yaml::Value::from)
}

fn path_value() -> impl Strategy<Value = serde_yaml::Value> + Clone {
    prop_oneof![
        4 => select(KEY_FILES.paths.clone()).prop_map(serde_yaml::Value::from),
        1 => yaml_scalar(),
    ]
}

fn key_data_value() -> impl Strategy<Value = serde_yaml::Value> + Clone {
    let good = KEYS[0].key_data();
    let texts = vec![
        good.clone(),
        KEYS[1].key_data(),
        KEYS[0].public_pem().to_owned(),
        STANDARD_NO_PAD.encode(KEYS[0].public_pem()),
        good.chars()
            .enumerate()
            .flat_map(|(i, c)| (i % 60 == 59).then_some('\n').into_iter().chain([c]))
            .collect(),
        STANDARD.encode(KEYS[0].private_pem()),
        STANDARD.encode("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
        STANDARD.encode("   "),
        "!!!not base64".to_owned(),
        good[..good.len() / 2].to_owned(),
        String::new(),
    ];
    prop_oneof![
        4 => select(texts).prop_map(serde_yaml::Value::from),
        1 => yaml_scalar(),
    ]
}

fn membership() -> impl Strategy<Value = serde_yaml::Value> + Clone {
    let kind = prop_oneof![
        4 => select(vec!["System", "IAM", "Organization", "system", "MEMBER_TYPE_IAM", "Org"])
            .prop_map(serde_yaml::Value::from),
        1 => yaml_scalar(),
    ];
    let roles = prop_oneof![
        3 => vec(yaml_scalar(), 0..3).prop_map(serde_yaml::Value::Sequence),
        1 => yaml_any(),
    ];
    (
        weighted(0.9, (field("MemberType"), kind)),
        weighted(0.7, (field("Roles"), roles)),
        weighted(0.4, (field("AggregateID"), yaml_scalar())),
    )
        .prop_map(|(kind, roles, aggregate)| {
            serde_yaml::Value::Mapping([kind, roles, aggregate].into_iter().flatten().collect())
        })
}

fn entry() -> impl Strategy<Value = serde_yaml::Value> + Clone {
    let memberships = prop_oneof![
        4 => vec(membership(), 0..3).prop_map(serde_yaml::Value::Sequence),
        1 => yaml_any(),
    ];
    let structured = (
        weighted(0.5, (field("Path"), path_value())),
        weighted(0.6, (field("KeyData"), key_data_value())),
        weighted(0.3, (field("Memberships"), memberships)),
    )
        .prop_map(|(path, key_data, memberships)| {
            serde_yaml::Value::Mapping(
                [path, key_data, memberships]
                    .into_iter()
                    .flatten()
                    .collect(),
            )
        });
    prop_oneof![8 => structured, 1 => yaml_any()]
}

fn user_id() -> impl Strategy<Value = serde_yaml::Value> + Clone {
    prop_oneof![
        4 => select(vec![TEST_USER, OTHER_USER, "System-User", "", "1", "true"])
            .prop_map(serde_yaml::Value::from),
        1 => yaml_scalar(),
    ]
}

fn users_value() -> impl Strategy<Value = serde_yaml::Value> {
    use serde_yaml::Value as Y;
    let users = vec((user_id(), entry()), 0..4);
    prop_oneof![
        // ZITADEL's documented list of one-key maps (sometimes several keys).
        4 => vec(vec((user_id(), entry()), 0..3), 0..4).prop_map(|list| {
            Y::Sequence(
                list.into_iter()
                    .map(|entries| Y::Mapping(entries.into_iter().collect()))
                    .collect(),
            )
        }),
        // A plain mapping.
        2 => users.clone().prop_map(|users| Y::Mapping(users.into_iter().collect())),
        // A string holding JSON.
        2 => users.prop_map(|users| {
            let map: serde_yaml::Mapping = users.into_iter().collect();
            Y::from(serde_json::to_string(&map).unwrap_or_else(|_| "{not json".to_owned()))
        }),
        1 => yaml_any(),
    ]
}

fn config_document() -> impl Strategy<Value = String> {
    let top = (
        weighted(0.6, (field("ExternalDomain"), yaml_scalar())),
        weighted(0.6, (field("ExternalPort"), yaml_scalar())),
        weighted(0.4, (field("ExternalSecure"), yaml_scalar())),
        weighted(0.9, (field("SystemAPIUsers"), users_value())),
        vec((yaml_scalar(), yaml_any()), 0..2),
    )
        .prop_map(|(domain, port, secure, users, other)| {
            let map: serde_yaml::Mapping = [domain, port, secure, users]
                .into_iter()
                .flatten()
                .chain(other)
                .collect();
            serde_yaml::to_string(&serde_yaml::Value::Mapping(map)).expect("YAML writes")
        });
    (top, damage()).prop_map(|(text, damage)| damage.apply(&text))
}

/// Something done to a config text after it was written.
#[derive(Debug, Clone)]
enum Damage {
    None,
    Truncate(Index),
    DropLine(Index),
    RepeatLine(Index),
    Unindent(Index),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        4 => Just(Damage::None),
        1 => any::<Index>().prop_map(Damage::Truncate),
        1 => any::<Index>().prop_map(Damage::DropLine),
        1 => any::<Index>().prop_map(Damage::RepeatLine),
        1 => any::<Index>().prop_map(Damage::Unindent),
    ]
}

impl Damage {
    fn apply(&self, text: &str) -> String {
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let line = |index: &Index| index.index(lines.len().max(1));
        match self {
            Damage::None => return text.to_owned(),
            Damage::Truncate(index) => {
                let mut end = index.index(text.len() + 1);
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                return text[..end].to_owned();
            }
            Damage::DropLine(index) if !lines.is_empty() => {
                lines.remove(line(index));
            }
            Damage::RepeatLine(index) if !lines.is_empty() => {
                let i = line(index);
                lines.insert(i, lines[i].clone());
            }
            Damage::Unindent(index) if !lines.is_empty() => {
                let i = line(index);
                lines[i] = lines[i].trim_start().to_owned();
            }
            _ => {}
        }
        lines.join("\n")
    }
}

/// Pieces of YAML syntax and of the real shapes, for text that is nearly a config.
fn fragment_soup() -> impl Strategy<Value = String> {
    let key_data = format!("KeyData: {}", KEYS[0].key_data());
    let path = format!("Path: {}", KEY_FILES.paths[0]);
    let fragments: Vec<String> = [
        "SystemAPIUsers:",
        "\n",
        "  ",
        "    ",
        "      ",
        "- ",
        "system-user-1:",
        "system-user-2:",
        "Path:",
        "KeyData:",
        "Memberships:",
        "MemberType: IAM",
        "MemberType: System",
        "Roles: [a]",
        "Roles:",
        "AggregateID: 1",
        "{",
        "}",
        "[",
        "]",
        "'",
        "\"",
        "&a ",
        "*a",
        "!!binary ",
        "!!str ",
        "|",
        ">",
        "#",
        "---",
        "...",
        ": ",
        ":",
        ",",
        "?",
        "ExternalPort: ",
        "ExternalDomain: ",
        "ExternalSecure: ",
        "65536",
        "true",
        "~",
        "<<: *a",
        "{\"u\": {\"path\": \"x\"}}",
        "\t",
        "\\",
        "%YAML 1.2",
        "\u{feff}",
        "é",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([key_data, path])
    .collect();
    vec(select(fragments), 0..40).prop_map(|parts| parts.concat())
}

fn env_vars() -> impl Strategy<Value = Vec<(&'static str, String)>> {
    let name = select(vec![
        "ZITADEL_SYSTEMAPIUSERS",
        "ZITADEL_EXTERNALDOMAIN",
        "ZITADEL_EXTERNALPORT",
        "ZITADEL_EXTERNALSECURE",
    ]);
    let value = prop_oneof![
        2 => users_value().prop_map(|v| match v {
            serde_yaml::Value::String(json) => json,
            other => serde_json::to_string(&other).unwrap_or_default(),
        }),
        1 => select(vec!["443", " 80 ", "x", "true", "T", "", "{}", "null"]).prop_map(String::from),
        1 => ".{0,12}",
    ];
    prop_oneof![3 => Just(Vec::new()), 1 => vec((name, value), 0..3)]
}

/// Parses and builds; never a panic, the two agree, and a built verifier has
/// exactly the parsed users and the parsed audience.
fn check_config(text: &str, env: &[(&'static str, String)]) -> Result<(), TestCaseError> {
    let parsed = Config::from_yaml(text);
    match &parsed {
        Ok(config) => {
            let _ = (config.audience(), config.warnings());
            for user in config.users() {
                let _ = (user.id(), user.key(), user.memberships());
            }
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
    let mut builder = SystemAuth::builder()
        .config_yaml(text)
        .watch(false)
        .clock(|| at(T));
    if !env.is_empty() {
        builder = builder.env_overrides_from(env.iter().cloned());
    }
    let built = builder.build();
    if let Err(error) = &built {
        let _ = error.to_string();
    }
    if env.is_empty() {
        match (&parsed, &built) {
            (Err(_), Ok(_)) => {
                return Err(TestCaseError::fail(
                    "built from a config that does not parse",
                ));
            }
            (Ok(config), Ok(auth)) => {
                let mut ids: Vec<String> =
                    config.users().iter().map(|u| u.id().to_owned()).collect();
                ids.sort();
                prop_assert_eq!(auth.user_ids(), ids);
                let audience = config.audience();
                let audiences = auth.audiences();
                prop_assert_eq!(audiences.first(), Some(&audience));
            }
            _ => {}
        }
    }
    if let Ok(auth) = &built {
        // A verifier built from anything refuses junk without panicking.
        prop_assert!(auth.verify("a.b.c").is_err());
        let _ = auth.status();
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1000))]

    /// Any text at all.
    #[test]
    fn arbitrary_config_text_never_panics(text in any::<String>()) {
        check_config(&text, &[])?;
    }

    /// Near-configs made of YAML syntax and pieces of the real shapes.
    #[test]
    fn config_fragment_soup_never_panics(text in fragment_soup()) {
        check_config(&text, &[])?;
    }

    /// Configs in the real shapes (list, map, JSON string; Path, KeyData,
    /// Memberships) with random values, sometimes damaged, sometimes with ZITADEL's
    /// environment variables on top.
    #[test]
    fn random_config_documents_never_panic(text in config_document(), env in env_vars()) {
        check_config(&text, &env)?;
    }
}
