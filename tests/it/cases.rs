//! The one table of refusals, and the answer every refusal must get.
//!
//! [`refusals`] is the table: for each case, how to make the request (usually a
//! token; for the header's own checks, the headers), the `AuthError` it must be
//! refused with, and then, written out as literals, the HTTP status, the body's
//! `code`, the exact `WWW-Authenticate`, the reason code logs and metrics carry, and
//! how many RSA verifications the refusal may cost. The verify tests iterate it
//! against `SystemAuth::verify`, the layer tests send every case through the real
//! layer, the RSA-budget tests count each case's RSA operations and the log tests
//! check each case's log line.
//!
//! [`description`] and [`wire`] are the expected answer of every `AuthError`,
//! written by hand once from the README's error table and texts, for the suites with
//! tables of their own (the adversarial classes). Nothing here is computed from the
//! crate's `AuthError::status`, `grpc_code`, `Display`, `www_authenticate` or
//! `reason`: a wrong mapping in the crate fails these tests.
//!
//! The world of the cases: two configured users and a third whose key is a
//! certificate (valid for a day from when this process made it), an attacker's key,
//! and a clock fixed at `T`, a whole second, so every time boundary is exact:
//! `exp` must be after `T + 1`, `iat` at most `T + 1` and at least `T - 3600`, `nbf`
//! at most `T + 1` (ZITADEL's 1 s offset and 1 h age).

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, UNIX_EPOCH},
};

use axum::{
    Router,
    body::Body,
    http::{HeaderName, HeaderValue, Request, StatusCode, header},
    routing::get,
};
use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use zitadel_system_auth::{
    Algorithm, AuthError, RequireRoleLayer, SystemAuth, SystemAuthBuilder, SystemUser,
    error::{AudienceHint, Claim, Malformed},
    testing::{TEST_AUDIENCE, TEST_USER, TestKey, TokenBuilder},
};

use crate::common::{self, KeyExt as _};

/// The verifier's "now": a whole second (2023-11-14T22:13:20Z).
pub const T: u64 = 1_700_000_000;
/// `exp` of a valid token.
pub const EXP: u64 = T + 3600;
/// The configured users.
pub const USER: &str = TEST_USER;
pub const USER2: &str = "system-user-2";
/// The user whose key is a certificate.
pub const CERT_USER: &str = "cert-user";
/// The expected audience.
pub const AUD: &str = TEST_AUDIENCE;
/// The header every valid token has.
pub const HEADER: &str = r#"{"alg":"RS256","typ":"JWT"}"#;
/// 9999-12-31T23:59:59Z, the latest time a claim may name.
pub const MAX_TIME: u64 = 253_402_300_799;
/// The default token length cap.
pub const MAX_LEN: usize = 8 * 1024;
/// A marker put into attacker-chosen values: no answer and no log may repeat it.
pub const MARK: &str = "intruder5c1d";

/// The one public description of an unknown user, a bad signature and a key
/// outside its certificate's validity (so no caller learns which user ids exist).
pub const NOT_SIGNED: &str = "the token is not signed by a valid key of a configured system user";

// ---------------------------------------------------------------------------
// The expected answer of every refusal, by hand
// ---------------------------------------------------------------------------

/// The public description of `error`: the body's `message`, the gRPC message, and
/// (without `"`) the `error_description`.
pub fn description(error: &AuthError) -> String {
    let fixed = match error {
        AuthError::MissingToken => "a bearer token is required",
        AuthError::MultipleAuthorizationHeaders => "exactly one Authorization header is allowed",
        AuthError::MultipleOrganizationHeaders => "at most one x-zitadel-orgid header is allowed",
        AuthError::TokenTooLong { limit } => {
            return format!("the token is longer than {limit} bytes");
        }
        AuthError::Malformed(what) => match what {
            Malformed::HeaderEncoding => "the Authorization header is not visible ASCII",
            Malformed::EmptyToken => "the bearer token is empty",
            Malformed::Segments => "the token must have three dot-separated parts",
            Malformed::HeaderBase64 => "the token header is not unpadded base64url",
            Malformed::HeaderJson => "the token header is not a JSON object with a string alg",
            Malformed::PayloadBase64 => "the token payload is not unpadded base64url",
            Malformed::PayloadJson => "the token payload is not a JSON object",
            Malformed::DuplicateMember => "a member name appears twice in the token",
            Malformed::AmbiguousClaimName => {
                "a claim name differs from a registered claim only in letter case"
            }
            Malformed::NestingTooDeep => "the token's JSON nests deeper than 64 levels",
            Malformed::SignatureBase64 => "the token signature is not unpadded base64url",
            other => panic!("no expected description for {other:?}: add it here"),
        },
        AuthError::MissingClaim(claim) => match claim {
            Claim::Iss => "the iss claim is missing",
            Claim::Sub => "the sub claim is missing",
            Claim::Aud => "the aud claim is missing",
            Claim::Exp => "the exp claim is missing",
            Claim::Iat => "the iat claim is missing",
            Claim::Nbf => "the nbf claim is missing",
            other => panic!("no expected description for {other:?}: add it here"),
        },
        AuthError::InvalidClaim(claim) => match claim {
            Claim::Iss => "the iss claim must be a string",
            Claim::Sub => "the sub claim must be a string",
            Claim::Aud => "the aud claim must be a string or an array of strings",
            Claim::Exp => "the exp claim must be a number of seconds between 1970 and 9999",
            Claim::Iat => "the iat claim must be a number of seconds between 1970 and 9999",
            Claim::Nbf => "the nbf claim must be a number of seconds between 1970 and 9999",
            other => panic!("no expected description for {other:?}: add it here"),
        },
        AuthError::AudienceMismatch { expected, hint } => {
            let how = match hint {
                AudienceHint::TrailingSlash => "the token's aud differs only by a trailing slash",
                AudienceHint::Scheme => "the token's aud differs only in the scheme",
                AudienceHint::Port => "the token's aud differs only in the port",
                AudienceHint::Case => "the token's aud differs only in letter case",
                AudienceHint::Other => "the token's aud is another URL",
                other => panic!("no expected description for {other:?}: add it here"),
            };
            return format!("audience mismatch: expected \"{expected}\" exactly; {how}");
        }
        AuthError::Expired => "the token has expired",
        AuthError::IssuedInFuture => "the token's iat is in the future",
        AuthError::IssuedTooLongAgo => "the token's iat is too old",
        AuthError::NotYetValid => "the token's nbf is in the future",
        AuthError::IssuerSubjectMismatch => "iss and sub must be identical",
        AuthError::UnknownUser
        | AuthError::KeyNotYetValid
        | AuthError::KeyExpired
        | AuthError::InvalidSignature => NOT_SIGNED,
        AuthError::AlgorithmNotAllowed => "the signing algorithm is not allowed",
        AuthError::CriticalHeader => "the crit header is not supported",
        AuthError::RefusedHeaderMember => {
            "the token header names a key or has a member this service refuses"
        }
        AuthError::UnsupportedType => "the token typ must be JWT",
        AuthError::MissingRole { role } => {
            return format!("the system user lacks the role {role} here");
        }
        AuthError::Internal => "internal error while checking the token",
        other => panic!("no expected description for {other:?}: add it here"),
    };
    fixed.to_owned()
}

/// The answer a refusal gets over HTTP (and, as `grpc-status` and `grpc-message`,
/// over gRPC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wire {
    /// The HTTP status.
    pub status: u16,
    /// The body's `code` (a gRPC status code).
    pub code: u16,
    /// The body's `message`.
    pub message: String,
    /// The one `WWW-Authenticate` value; none for an internal error.
    pub www_authenticate: Option<String>,
}

/// The answer to `error`, from the README's table: no token or another scheme 401,
/// code 16 and a bare `Bearer`; several `Authorization` or `x-zitadel-orgid` headers
/// 400, code 3, `invalid_request`; a missing role 403, code 7,
/// `insufficient_scope`; a panic 500, code 13, no challenge; any other refusal 401,
/// code 16, `invalid_token`. The `error_description` is the description without `"`
/// (RFC 6750 allows none in it).
pub fn wire(error: &AuthError) -> Wire {
    let message = description(error);
    let challenge = |code: &str| {
        let description = message.replace(['"', '\\'], "");
        Some(format!(
            "Bearer error=\"{code}\", error_description=\"{description}\""
        ))
    };
    let (status, code, www_authenticate) = match error {
        AuthError::MissingToken => (401, 16, Some("Bearer".to_owned())),
        AuthError::MultipleAuthorizationHeaders | AuthError::MultipleOrganizationHeaders => {
            (400, 3, challenge("invalid_request"))
        }
        AuthError::MissingRole { .. } => (403, 7, challenge("insufficient_scope")),
        AuthError::Internal => (500, 13, None),
        _ => (401, 16, challenge("invalid_token")),
    };
    Wire {
        status,
        code,
        message,
        www_authenticate,
    }
}

// ---------------------------------------------------------------------------
// The world: configured users, an attacker, a movable clock
// ---------------------------------------------------------------------------

/// The keys of the cases, made once per process.
pub struct Keys {
    /// [`USER`]'s key.
    pub user: TestKey,
    /// [`USER2`]'s key.
    pub user2: TestKey,
    /// A key no configured user has.
    pub attacker: TestKey,
    /// The key in [`CERT_USER`]'s certificate.
    pub cert: TestKey,
}

/// The keys of the cases.
pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        user: TestKey::generate(),
        user2: TestKey::generate(),
        attacker: TestKey::generate(),
        cert: TestKey::generate(),
    })
}

/// [`CERT_USER`]'s self-signed certificate and its validity as `openssl` reads it.
pub struct Certificate {
    /// The PEM file.
    pub path: PathBuf,
    /// NotAfter, seconds since the epoch: a day after NotBefore, when this process
    /// made it (after `T`).
    pub not_after: u64,
}

/// The certificate, made by `openssl` once per process.
pub fn certificate() -> &'static Certificate {
    static CERT: OnceLock<Certificate> = OnceLock::new();
    CERT.get_or_init(|| {
        let private = keys().cert.private_path();
        let path = private.with_extension("crt");
        common::openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            common::path_str(&private),
            "-subj",
            "/CN=cert-user",
            "-days",
            "1",
            "-out",
            common::path_str(&path),
        ]);
        let (not_before, not_after) = common::openssl_validity(&path);
        assert!(not_before > T, "the certificate starts after T");
        Certificate { path, not_after }
    })
}

/// The config of the cases, with its keys, in a folder of its own, and a verifier
/// whose clock is set by the test (at `T` to begin with), not watching the files.
pub struct World {
    /// The verifier (token cache on, as by default, unless built otherwise).
    pub auth: SystemAuth,
    clock: Arc<AtomicU64>,
    dir: tempfile::TempDir,
}

impl World {
    /// At `T`, the token cache on.
    pub fn new() -> World {
        World::with(|builder| builder)
    }

    /// The clock reads `T + after`.
    pub fn at(after: Duration) -> World {
        let world = World::new();
        world.set_clock(Duration::from_secs(T) + after);
        world
    }

    /// At `T`, with the builder adjusted (e.g. the token cache off).
    pub fn with(adjust: impl FnOnce(SystemAuthBuilder) -> SystemAuthBuilder) -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let k = keys();
        let user = k.user.write(dir.path(), USER).expect("write key");
        let user2 = k.user2.write(dir.path(), USER2).expect("write key");
        let cert = dir.path().join(format!("{CERT_USER}.crt"));
        std::fs::copy(&certificate().path, &cert).expect("copy the certificate");
        let yaml = format!(
            "ExternalDomain: custom-domain.com\nExternalPort: 443\nExternalSecure: true\n\
             SystemAPIUsers:\n  - {USER}:\n      Path: {}\n  - {USER2}:\n      Path: {}\n  \
             - {CERT_USER}:\n      Path: {}\n",
            user.display(),
            user2.display(),
            cert.display()
        );
        std::fs::write(dir.path().join("config.yaml"), yaml).expect("write config");
        let clock = Arc::new(AtomicU64::new(T * 1_000_000_000));
        let auth = adjust(builder(dir.path(), &clock))
            .build()
            .expect("build SystemAuth");
        World { auth, clock, dir }
    }

    /// A builder for another verifier of the same files and clock (a fresh token
    /// cache and refusal-log budget), not watching the files.
    pub fn builder(&self) -> SystemAuthBuilder {
        builder(self.dir(), &self.clock)
    }

    /// Sets the clock (since the epoch).
    pub fn set_clock(&self, since_epoch: Duration) {
        let nanos = u64::try_from(since_epoch.as_nanos()).expect("before 2554");
        self.clock.store(nanos, Ordering::SeqCst);
    }

    /// Sets the clock for a case.
    pub fn set_at(&self, at: At) {
        self.set_clock(Duration::from_secs(at.secs()));
    }

    /// The folder of the config and the keys.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The config file.
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }
}

/// A verifier of the config in `dir` whose clock reads `clock` (nanoseconds since
/// the epoch), not watching the files.
fn builder(dir: &Path, clock: &Arc<AtomicU64>) -> SystemAuthBuilder {
    let clock = clock.clone();
    SystemAuth::builder()
        .config_file(dir.join("config.yaml"))
        .clock(move || UNIX_EPOCH + Duration::from_nanos(clock.load(Ordering::SeqCst)))
        .watch(false)
}

// ---------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------

/// Unpadded base64url.
pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A JSON string literal.
pub fn js(text: &str) -> String {
    serde_json::to_string(text).expect("a string serialises")
}

/// `header`, `payload`, `signature` segments of a compact token.
pub fn parts(token: &str) -> (&str, &str, &str) {
    let mut it = token.split('.');
    let parts = (
        it.next().expect("header"),
        it.next().expect("payload"),
        it.next().expect("signature"),
    );
    assert!(it.next().is_none());
    parts
}

/// A valid token's builder for [`USER`], signed by `key`, at `T`.
pub fn tb(key: &TestKey) -> TokenBuilder<'_> {
    key.token(USER, AUD).claim("iat", T).claim("exp", EXP)
}

/// A valid token for [`USER`] at `T`.
pub fn valid() -> String {
    tb(&keys().user).build()
}

/// The valid claims as raw JSON members, changed: `Some(raw)` replaces (or adds)
/// a member with this raw JSON value, `None` removes it.
pub fn claims_with(changes: &[(&str, Option<&str>)]) -> String {
    let mut members: Vec<(String, String)> = vec![
        ("iss".into(), js(USER)),
        ("sub".into(), js(USER)),
        ("aud".into(), js(AUD)),
        ("iat".into(), T.to_string()),
        ("exp".into(), EXP.to_string()),
    ];
    for (name, raw) in changes {
        match (members.iter().position(|(n, _)| n == name), raw) {
            (Some(i), Some(raw)) => members[i].1 = (*raw).to_owned(),
            (Some(i), None) => {
                members.remove(i);
            }
            (None, Some(raw)) => members.push(((*name).to_owned(), (*raw).to_owned())),
            (None, None) => {}
        }
    }
    let body: Vec<String> = members
        .iter()
        .map(|(name, raw)| format!("{}:{raw}", js(name)))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// The user's RS256 token over exactly this payload JSON text.
pub fn signed(payload_json: &str) -> String {
    keys().user.sign_raw(Algorithm::RS256, HEADER, payload_json)
}

/// The user's RS256 token over the valid claims, changed.
pub fn signed_with(changes: &[(&str, Option<&str>)]) -> String {
    signed(&claims_with(changes))
}

/// `h.p.s` where `s` is the user's RS256 signature over exactly `h.p`, whatever the
/// two segments hold: the only defect of such a token is in `h` or `p`.
pub fn compact(header_segment: &str, payload_segment: &str) -> String {
    let input = format!("{header_segment}.{payload_segment}");
    let sig = keys().user.sign_input(Algorithm::RS256, input.as_bytes());
    format!("{input}.{}", b64(sig))
}

/// A token over these exact header and payload bytes, signed by the user.
pub fn signed_bytes(header: &[u8], payload: &[u8]) -> String {
    compact(&b64(header), &b64(payload))
}

/// A token with this header JSON and the valid claims, signed by the user (RS256).
pub fn with_header(header_json: &str) -> String {
    keys()
        .user
        .sign_raw(Algorithm::RS256, header_json, &claims_with(&[]))
}

/// A token with this header JSON and the valid claims and no signature.
pub fn unsigned(header_json: &str) -> String {
    format!("{}.{}.", b64(header_json), b64(claims_with(&[])))
}

/// The token with its signature replaced by these bytes.
pub fn with_signature(token: &str, signature: &[u8]) -> String {
    let (h, p, _) = parts(token);
    format!("{h}.{p}.{}", b64(signature))
}

/// The token's signature bytes.
pub fn signature_of(token: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(parts(token).2)
        .expect("base64url signature")
}

/// An HMAC token (`alg` `name`) over the valid claims, keyed with `secret`.
pub fn hmac_token(algorithm: aws_lc_rs::hmac::Algorithm, name: &str, secret: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        b64(format!(r#"{{"alg":"{name}","typ":"JWT"}}"#)),
        b64(claims_with(&[]))
    );
    let key = aws_lc_rs::hmac::Key::new(algorithm, secret);
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

/// `[[...[]...]]`, `depth` arrays deep.
pub fn deep_array(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

// ---------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------

/// What a case sends.
#[derive(Debug, Clone)]
pub enum Sent {
    /// `Authorization: Bearer <token>`; `SystemAuth::verify` gets the token itself.
    Bearer(String),
    /// Exactly these headers, for what only a request can hold (no header, several,
    /// bytes that are not visible ASCII, two `x-zitadel-orgid`): the layer only.
    Headers(Vec<(HeaderName, HeaderValue)>),
}

impl Sent {
    /// The token `SystemAuth::verify` gets, if the case is a token.
    pub fn token(&self) -> Option<&str> {
        match self {
            Sent::Bearer(token) => Some(token),
            Sent::Headers(_) => None,
        }
    }

    /// `GET /` with the case's headers, as a gRPC request when `grpc`.
    pub fn request(&self, grpc: bool) -> Request<Body> {
        let mut request = Request::get("/").body(Body::empty()).expect("request");
        let headers = request.headers_mut();
        match self {
            Sent::Bearer(token) => {
                let value = HeaderValue::from_str(&format!("Bearer {token}")).expect("ASCII");
                headers.append(header::AUTHORIZATION, value);
            }
            Sent::Headers(list) => {
                for (name, value) in list {
                    headers.append(name.clone(), value.clone());
                }
            }
        }
        if grpc {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
        }
        request
    }

    /// What must never come back in an answer or a log: the tokens and credentials
    /// sent, their payload and signature segments.
    pub fn secrets(&self) -> Vec<String> {
        let values: Vec<String> = match self {
            Sent::Bearer(token) => vec![token.clone()],
            Sent::Headers(list) => list
                .iter()
                .map(|(_, value)| String::from_utf8_lossy(value.as_bytes()).into_owned())
                .map(|value| {
                    let (_, credentials) = value.split_once(' ').unwrap_or(("", &value));
                    credentials.trim_start().to_owned()
                })
                .collect(),
        };
        let mut secrets = Vec::new();
        for value in values {
            let mut segments = value.split('.');
            let (_, payload, signature) = (segments.next(), segments.next(), segments.next());
            for secret in [Some(value.as_str()), payload, signature]
                .into_iter()
                .flatten()
            {
                if secret.len() >= 16 {
                    secrets.push(secret.to_owned());
                }
                // A part of it, too.
                if let Some(start) = secret.get(..24) {
                    secrets.push(start.to_owned());
                }
            }
        }
        secrets
    }
}

/// The clock of a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// `T`.
    T,
    /// A minute after [`CERT_USER`]'s certificate expired.
    AfterCertificate,
}

impl At {
    /// Seconds since the epoch.
    pub fn secs(self) -> u64 {
        match self {
            At::T => T,
            At::AfterCertificate => certificate().not_after + 60,
        }
    }
}

/// One refused request of the table.
pub struct Refusal {
    /// What is wrong.
    pub name: &'static str,
    /// Makes the request.
    pub make: fn() -> Sent,
    /// The clock.
    pub at: At,
    /// The role the route requires, if any (`RequireRoleLayer` behind the layer).
    pub role: Option<&'static str>,
    /// The token itself is valid (the request is refused for something else): a
    /// token cache keeps it, and it costs RSA work only the first time.
    pub valid_token: bool,
    /// The refusal.
    pub error: AuthError,
    /// The HTTP status.
    pub status: u16,
    /// The body's `code`.
    pub code: u16,
    /// The one `WWW-Authenticate` value.
    pub www_authenticate: &'static str,
    /// The reason code in the log line and the metrics.
    pub reason: &'static str,
    /// RSA verifications the refusal costs (a refusal is never cached).
    pub rsa: u64,
}

impl Refusal {
    /// The case's answer: this row's literals, and the description of its error.
    pub fn wire(&self) -> Wire {
        Wire {
            status: self.status,
            code: self.code,
            message: description(&self.error),
            www_authenticate: Some(self.www_authenticate.to_owned()),
        }
    }

    /// RSA verifications the case costs when sent again to the same verifier.
    pub fn rsa_again(&self, cache: bool) -> u64 {
        if cache && self.valid_token {
            0
        } else {
            self.rsa
        }
    }

    fn at(mut self, at: At) -> Refusal {
        self.at = at;
        self
    }

    fn behind_role(mut self, role: &'static str) -> Refusal {
        self.role = Some(role);
        self.valid_token = true;
        self
    }

    fn of_a_valid_token(mut self) -> Refusal {
        self.valid_token = true;
        self
    }
}

/// A row of the table, read as: `name`: `make` is refused as `error`, answered
/// `status` with body `code` and `www_authenticate`, logged with `reason`, at the
/// cost of `rsa` RSA verifications.
#[allow(clippy::too_many_arguments)]
fn row(
    name: &'static str,
    make: fn() -> Sent,
    error: AuthError,
    status: u16,
    code: u16,
    www_authenticate: &'static str,
    reason: &'static str,
    rsa: u64,
) -> Refusal {
    Refusal {
        name,
        make,
        at: At::T,
        role: None,
        valid_token: false,
        error,
        status,
        code,
        www_authenticate,
        reason,
        rsa,
    }
}

fn bearer(token: impl Into<String>) -> Sent {
    Sent::Bearer(token.into())
}

/// `Authorization` values, as bytes (anything a header value may hold).
fn authorization(values: &[&[u8]]) -> Sent {
    Sent::Headers(
        values
            .iter()
            .map(|v| {
                let value = HeaderValue::from_bytes(v).expect("a header value");
                (header::AUTHORIZATION, value)
            })
            .collect(),
    )
}

fn audience(hint: AudienceHint) -> AuthError {
    AuthError::AudienceMismatch {
        expected: Arc::from(AUD),
        hint,
    }
}

/// The `WWW-Authenticate` of a refused token, by its description.
macro_rules! invalid_token {
    ($description:literal) => {
        concat!(
            "Bearer error=\"invalid_token\", error_description=\"",
            $description,
            "\""
        )
    };
}

/// The rows that `SystemAuth::verify` itself refuses, each with its token: the rows
/// that send a token and need no route role (a role is checked after `verify`,
/// which accepts the token).
pub fn refused_by_verify() -> Vec<(Refusal, String)> {
    refusals()
        .into_iter()
        .filter(|case| case.role.is_none())
        .filter_map(|case| {
            let token = (case.make)().token()?.to_owned();
            Some((case, token))
        })
        .collect()
}

/// Every way of refusing a request, each with its answer. Tokens are valid at `T`
/// but for the one defect the name says.
pub fn refusals() -> Vec<Refusal> {
    use AuthError as E;
    vec![
        // The Authorization header.
        row(
            "no Authorization header",
            || Sent::Headers(Vec::new()),
            E::MissingToken,
            401,
            16,
            "Bearer",
            "missing_token",
            0,
        ),
        row(
            "Basic credentials",
            || {
                let basic = STANDARD.encode(format!("{MARK}:hunter2-password"));
                authorization(&[format!("Basic {basic}").as_bytes()])
            },
            E::MissingToken,
            401,
            16,
            "Bearer",
            "missing_token",
            0,
        ),
        row(
            "a valid token under another scheme",
            || authorization(&[format!("Token {}", valid()).as_bytes()]),
            E::MissingToken,
            401,
            16,
            "Bearer",
            "missing_token",
            0,
        ),
        row(
            "two Authorization headers",
            || {
                let marked = format!("Bearer {MARK}.{MARK}.{MARK}");
                authorization(&[format!("Bearer {}", valid()).as_bytes(), marked.as_bytes()])
            },
            E::MultipleAuthorizationHeaders,
            400,
            3,
            r#"Bearer error="invalid_request", error_description="exactly one Authorization header is allowed""#,
            "multiple_authorization_headers",
            0,
        ),
        // The organisation is read once the token is verified.
        row(
            "two x-zitadel-orgid headers with a valid token",
            || {
                let org = HeaderName::from_static("x-zitadel-orgid");
                Sent::Headers(vec![
                    (
                        header::AUTHORIZATION,
                        HeaderValue::from_str(&format!("Bearer {}", valid())).expect("ASCII"),
                    ),
                    (org.clone(), HeaderValue::from_static("987654321098765432")),
                    (org, HeaderValue::from_static("987654321098765433")),
                ])
            },
            E::MultipleOrganizationHeaders,
            400,
            3,
            r#"Bearer error="invalid_request", error_description="at most one x-zitadel-orgid header is allowed""#,
            "multiple_org_headers",
            1,
        )
        .of_a_valid_token(),
        row(
            "an Authorization header that is not visible ASCII",
            || authorization(&[&[format!("Bearer {}{MARK}", valid()).as_bytes(), b"\xff"].concat()]),
            E::Malformed(Malformed::HeaderEncoding),
            401,
            16,
            invalid_token!("the Authorization header is not visible ASCII"),
            "malformed",
            0,
        ),
        row(
            "Bearer and no token",
            || bearer(""),
            E::Malformed(Malformed::EmptyToken),
            401,
            16,
            invalid_token!("the bearer token is empty"),
            "malformed",
            0,
        ),
        row(
            "9000 bytes of junk",
            || bearer(format!("{}.{}.{}", MARK.repeat(250), MARK.repeat(250), MARK.repeat(250))),
            E::TokenTooLong { limit: 8192 },
            401,
            16,
            invalid_token!("the token is longer than 8192 bytes"),
            "token_too_long",
            0,
        ),
        row(
            "a validly signed token over the length cap",
            || bearer(tb(&keys().user).claim("pad", "x".repeat(9000)).build()),
            E::TokenTooLong { limit: 8192 },
            401,
            16,
            invalid_token!("the token is longer than 8192 bytes"),
            "token_too_long",
            0,
        ),
        // The shape.
        row(
            "no dots",
            || bearer(format!("{MARK}-junk-token-without-dots")),
            E::Malformed(Malformed::Segments),
            401,
            16,
            invalid_token!("the token must have three dot-separated parts"),
            "malformed",
            0,
        ),
        row(
            "two segments",
            || {
                let token = valid();
                let (h, p, _) = parts(&token);
                bearer(format!("{h}.{p}"))
            },
            E::Malformed(Malformed::Segments),
            401,
            16,
            invalid_token!("the token must have three dot-separated parts"),
            "malformed",
            0,
        ),
        row(
            "header not base64url",
            || bearer(format!("{MARK}!{}", valid())),
            E::Malformed(Malformed::HeaderBase64),
            401,
            16,
            invalid_token!("the token header is not unpadded base64url"),
            "malformed",
            0,
        ),
        row(
            "header not JSON",
            || bearer(signed_bytes(b"not json", claims_with(&[]).as_bytes())),
            E::Malformed(Malformed::HeaderJson),
            401,
            16,
            invalid_token!("the token header is not a JSON object with a string alg"),
            "malformed",
            0,
        ),
        row(
            "payload not base64url",
            || bearer(compact(&b64(HEADER), &format!("{MARK}!"))),
            E::Malformed(Malformed::PayloadBase64),
            401,
            16,
            invalid_token!("the token payload is not unpadded base64url"),
            "malformed",
            0,
        ),
        row(
            "payload not an object",
            || bearer(signed(&format!("[\"{MARK}\"]"))),
            E::Malformed(Malformed::PayloadJson),
            401,
            16,
            invalid_token!("the token payload is not a JSON object"),
            "malformed",
            0,
        ),
        row(
            "payload with invalid UTF-8",
            || {
                let payload = [
                    claims_with(&[]).trim_end_matches('}').as_bytes(),
                    format!(",\"x\":\"{MARK}").as_bytes(),
                    b"\xff\"}",
                ]
                .concat();
                bearer(signed_bytes(HEADER.as_bytes(), &payload))
            },
            E::Malformed(Malformed::PayloadJson),
            401,
            16,
            invalid_token!("the token payload is not a JSON object"),
            "malformed",
            0,
        ),
        row(
            "iss twice",
            || bearer(signed(&format!("{{\"iss\":{},{}", js(MARK), &claims_with(&[])[1..]))),
            E::Malformed(Malformed::DuplicateMember),
            401,
            16,
            invalid_token!("a member name appears twice in the token"),
            "malformed",
            0,
        ),
        row(
            "an upper-case ISS beside iss",
            || bearer(signed_with(&[("ISS", Some(&js(MARK)))])),
            E::Malformed(Malformed::AmbiguousClaimName),
            401,
            16,
            invalid_token!("a claim name differs from a registered claim only in letter case"),
            "malformed",
            0,
        ),
        row(
            "a claim nested 64 arrays deep (65 levels)",
            || bearer(signed_with(&[("x", Some(&deep_array(64)))])),
            E::Malformed(Malformed::NestingTooDeep),
            401,
            16,
            invalid_token!("the token's JSON nests deeper than 64 levels"),
            "malformed",
            0,
        ),
        row(
            "signature not base64url",
            || {
                let token = valid();
                let (h, p, _) = parts(&token);
                bearer(format!("{h}.{p}.{MARK}!!"))
            },
            E::Malformed(Malformed::SignatureBase64),
            401,
            16,
            invalid_token!("the token signature is not unpadded base64url"),
            "malformed",
            0,
        ),
        // The claims.
        row(
            "aud missing",
            || bearer(signed_with(&[("aud", None)])),
            E::MissingClaim(Claim::Aud),
            401,
            16,
            invalid_token!("the aud claim is missing"),
            "missing_claim",
            0,
        ),
        row(
            "exp missing",
            || bearer(signed_with(&[("exp", None)])),
            E::MissingClaim(Claim::Exp),
            401,
            16,
            invalid_token!("the exp claim is missing"),
            "missing_claim",
            0,
        ),
        row(
            "iat missing",
            || bearer(signed_with(&[("iat", None)])),
            E::MissingClaim(Claim::Iat),
            401,
            16,
            invalid_token!("the iat claim is missing"),
            "missing_claim",
            0,
        ),
        row(
            "iss missing",
            || bearer(signed_with(&[("iss", None)])),
            E::MissingClaim(Claim::Iss),
            401,
            16,
            invalid_token!("the iss claim is missing"),
            "missing_claim",
            0,
        ),
        row(
            "sub missing",
            || bearer(signed_with(&[("sub", None)])),
            E::MissingClaim(Claim::Sub),
            401,
            16,
            invalid_token!("the sub claim is missing"),
            "missing_claim",
            0,
        ),
        row(
            "aud an array with a number",
            || bearer(signed_with(&[("aud", Some(&format!("[{},1]", js(MARK))))])),
            E::InvalidClaim(Claim::Aud),
            401,
            16,
            invalid_token!("the aud claim must be a string or an array of strings"),
            "invalid_claim",
            0,
        ),
        row(
            "iss an array",
            || bearer(signed_with(&[("iss", Some(&format!("[{}]", js(USER))))])),
            E::InvalidClaim(Claim::Iss),
            401,
            16,
            invalid_token!("the iss claim must be a string"),
            "invalid_claim",
            0,
        ),
        row(
            "sub a number",
            || bearer(signed_with(&[("sub", Some("7"))])),
            E::InvalidClaim(Claim::Sub),
            401,
            16,
            invalid_token!("the sub claim must be a string"),
            "invalid_claim",
            0,
        ),
        row(
            "exp a string",
            || bearer(signed_with(&[("exp", Some(&js(&format!("{MARK}-tomorrow"))))])),
            E::InvalidClaim(Claim::Exp),
            401,
            16,
            invalid_token!("the exp claim must be a number of seconds between 1970 and 9999"),
            "invalid_claim",
            0,
        ),
        row(
            "iat negative",
            || bearer(signed_with(&[("iat", Some("-1"))])),
            E::InvalidClaim(Claim::Iat),
            401,
            16,
            invalid_token!("the iat claim must be a number of seconds between 1970 and 9999"),
            "invalid_claim",
            0,
        ),
        row(
            "nbf after 9999",
            || bearer(signed_with(&[("nbf", Some(&(MAX_TIME + 1).to_string()))])),
            E::InvalidClaim(Claim::Nbf),
            401,
            16,
            invalid_token!("the nbf claim must be a number of seconds between 1970 and 9999"),
            "invalid_claim",
            0,
        ),
        row(
            "aud another URL",
            || bearer(signed_with(&[("aud", Some(&js(&format!("https://{MARK}.example"))))])),
            audience(AudienceHint::Other),
            401,
            16,
            invalid_token!(
                "audience mismatch: expected https://custom-domain.com exactly; the token's aud is another URL"
            ),
            "audience",
            0,
        ),
        row(
            "aud with a trailing slash",
            || bearer(signed_with(&[("aud", Some(&js("https://custom-domain.com/")))])),
            audience(AudienceHint::TrailingSlash),
            401,
            16,
            invalid_token!(
                "audience mismatch: expected https://custom-domain.com exactly; the token's aud differs only by a trailing slash"
            ),
            "audience",
            0,
        ),
        row(
            "aud with http",
            || bearer(signed_with(&[("aud", Some(&js("http://custom-domain.com")))])),
            audience(AudienceHint::Scheme),
            401,
            16,
            invalid_token!(
                "audience mismatch: expected https://custom-domain.com exactly; the token's aud differs only in the scheme"
            ),
            "audience",
            0,
        ),
        row(
            "aud with the default port",
            || bearer(signed_with(&[("aud", Some(&js("https://custom-domain.com:443")))])),
            audience(AudienceHint::Port),
            401,
            16,
            invalid_token!(
                "audience mismatch: expected https://custom-domain.com exactly; the token's aud differs only in the port"
            ),
            "audience",
            0,
        ),
        row(
            "aud in another case",
            || bearer(signed_with(&[("aud", Some(&js("https://Custom-Domain.com")))])),
            audience(AudienceHint::Case),
            401,
            16,
            invalid_token!(
                "audience mismatch: expected https://custom-domain.com exactly; the token's aud differs only in letter case"
            ),
            "audience",
            0,
        ),
        row(
            "expired a minute ago",
            || {
                let (iat, exp) = ((T - 120).to_string(), (T - 60).to_string());
                bearer(signed_with(&[("iat", Some(&iat)), ("exp", Some(&exp))]))
            },
            E::Expired,
            401,
            16,
            invalid_token!("the token has expired"),
            "expired",
            0,
        ),
        row(
            "iat an hour ahead",
            || {
                let (iat, exp) = ((T + 3600).to_string(), (T + 7200).to_string());
                bearer(signed_with(&[("iat", Some(&iat)), ("exp", Some(&exp))]))
            },
            E::IssuedInFuture,
            401,
            16,
            invalid_token!("the token's iat is in the future"),
            "iat_in_future",
            0,
        ),
        row(
            "iat two hours old, exp ahead",
            || bearer(signed_with(&[("iat", Some(&(T - 7200).to_string()))])),
            E::IssuedTooLongAgo,
            401,
            16,
            invalid_token!("the token's iat is too old"),
            "iat_too_old",
            0,
        ),
        row(
            "nbf ten minutes ahead",
            || bearer(signed_with(&[("nbf", Some(&(T + 600).to_string()))])),
            E::NotYetValid,
            401,
            16,
            invalid_token!("the token's nbf is in the future"),
            "not_yet_valid",
            0,
        ),
        row(
            "iss differs from sub",
            || bearer(signed_with(&[("sub", Some(&js(&format!("{MARK}-sub"))))])),
            E::IssuerSubjectMismatch,
            401,
            16,
            invalid_token!("iss and sub must be identical"),
            "iss_sub_mismatch",
            0,
        ),
        // The JOSE header.
        row(
            "crit",
            || bearer(tb(&keys().user).header("crit", json!([MARK])).build()),
            E::CriticalHeader,
            401,
            16,
            invalid_token!("the crit header is not supported"),
            "crit",
            0,
        ),
        row(
            "typ not JWT",
            || bearer(tb(&keys().user).header("typ", MARK).build()),
            E::UnsupportedType,
            401,
            16,
            invalid_token!("the token typ must be JWT"),
            "typ",
            0,
        ),
        row(
            "an embedded jwk, signed by the attacker",
            || {
                let jwk = json!({ "kty": "RSA", "n": MARK, "e": "AQAB" });
                let k = keys();
                bearer(tb(&k.user).signed_by(&k.attacker).header("jwk", jwk).build())
            },
            E::RefusedHeaderMember,
            401,
            16,
            invalid_token!("the token header names a key or has a member this service refuses"),
            "header_member",
            0,
        ),
        row(
            "kid a number",
            || bearer(tb(&keys().user).header("kid", 7).build()),
            E::RefusedHeaderMember,
            401,
            16,
            invalid_token!("the token header names a key or has a member this service refuses"),
            "header_member",
            0,
        ),
        row(
            "alg none",
            || bearer(unsigned(r#"{"alg":"none","typ":"JWT"}"#)),
            E::AlgorithmNotAllowed,
            401,
            16,
            invalid_token!("the signing algorithm is not allowed"),
            "algorithm",
            0,
        ),
        row(
            "alg unknown",
            || bearer(tb(&keys().user).header("alg", MARK).build()),
            E::AlgorithmNotAllowed,
            401,
            16,
            invalid_token!("the signing algorithm is not allowed"),
            "algorithm",
            0,
        ),
        row(
            "HS256 keyed with the public key",
            || {
                let secret = keys().user.public_pem().as_bytes();
                bearer(hmac_token(aws_lc_rs::hmac::HMAC_SHA256, "HS256", secret))
            },
            E::AlgorithmNotAllowed,
            401,
            16,
            invalid_token!("the signing algorithm is not allowed"),
            "algorithm",
            0,
        ),
        row(
            "RS512, validly signed",
            || bearer(tb(&keys().user).algorithm(Algorithm::RS512).build()),
            E::AlgorithmNotAllowed,
            401,
            16,
            invalid_token!("the signing algorithm is not allowed"),
            "algorithm",
            0,
        ),
        row(
            "ES256",
            || bearer(format!("{}.{}.{}", b64(r#"{"alg":"ES256"}"#), b64(claims_with(&[])), b64([7u8; 64]))),
            E::AlgorithmNotAllowed,
            401,
            16,
            invalid_token!("the signing algorithm is not allowed"),
            "algorithm",
            0,
        ),
        // The user and the key: one public description, four reasons.
        row(
            "unknown user, signed by a configured key",
            || {
                let id = js(&format!("{MARK}-user"));
                bearer(signed_with(&[("iss", Some(&id)), ("sub", Some(&id))]))
            },
            E::UnknownUser,
            401,
            16,
            invalid_token!("the token is not signed by a valid key of a configured system user"),
            "unknown_user",
            0,
        ),
        row(
            "unknown user, signed by the attacker",
            || bearer(keys().attacker.token(&format!("{MARK}-user"), AUD).claim("iat", T).claim("exp", EXP).build()),
            E::UnknownUser,
            401,
            16,
            invalid_token!("the token is not signed by a valid key of a configured system user"),
            "unknown_user",
            0,
        ),
        row(
            "a certificate key before its NotBefore",
            || bearer(keys().cert.token(CERT_USER, AUD).claim("iat", T).claim("exp", EXP).build()),
            E::KeyNotYetValid,
            401,
            16,
            invalid_token!("the token is not signed by a valid key of a configured system user"),
            "key_not_yet_valid",
            0,
        ),
        row(
            "a certificate key after its NotAfter",
            || {
                let now = At::AfterCertificate.secs();
                let token = keys().cert.token(CERT_USER, AUD);
                bearer(token.claim("iat", now).claim("exp", now + 3600).build())
            },
            E::KeyExpired,
            401,
            16,
            invalid_token!("the token is not signed by a valid key of a configured system user"),
            "key_expired",
            0,
        )
        .at(At::AfterCertificate),
        row(
            "signed by the attacker (kid marked)",
            || {
                let k = keys();
                bearer(tb(&k.user).signed_by(&k.attacker).header("kid", MARK).build())
            },
            E::InvalidSignature,
            401,
            16,
            invalid_token!("the token is not signed by a valid key of a configured system user"),
            "signature",
            1,
        ),
        row(
            "signed by the attacker, PS256",
            || {
                let k = keys();
                bearer(tb(&k.user).signed_by(&k.attacker).algorithm(Algorithm::PS256).build())
            },
            E::InvalidSignature,
            401,
            16,
            invalid_token!("the token is not signed by a valid key of a configured system user"),
            "signature",
            1,
        ),
        row(
            "signed by another configured user's key",
            || bearer(tb(&keys().user2).build()),
            E::InvalidSignature,
            401,
            16,
            invalid_token!("the token is not signed by a valid key of a configured system user"),
            "signature",
            1,
        ),
        row(
            "header RS256 over a PS256 signature",
            || bearer(keys().user.sign_raw(Algorithm::PS256, HEADER, &claims_with(&[]))),
            E::InvalidSignature,
            401,
            16,
            invalid_token!("the token is not signed by a valid key of a configured system user"),
            "signature",
            1,
        ),
        row(
            "one bit of the signature flipped",
            || {
                let token = valid();
                let mut sig = signature_of(&token);
                sig[10] ^= 0x40;
                bearer(with_signature(&token, &sig))
            },
            E::InvalidSignature,
            401,
            16,
            invalid_token!("the token is not signed by a valid key of a configured system user"),
            "signature",
            1,
        ),
        row(
            "a signature of zeros",
            || bearer(with_signature(&valid(), &[0; 256])),
            E::InvalidSignature,
            401,
            16,
            invalid_token!("the token is not signed by a valid key of a configured system user"),
            "signature",
            1,
        ),
        // A signature of the wrong length needs no RSA work to be refused.
        row(
            "an empty signature",
            || bearer(with_signature(&valid(), &[])),
            E::InvalidSignature,
            401,
            16,
            invalid_token!("the token is not signed by a valid key of a configured system user"),
            "signature",
            0,
        ),
        row(
            "a signature one byte short",
            || {
                let token = valid();
                let sig = signature_of(&token);
                bearer(with_signature(&token, &sig[..sig.len() - 1]))
            },
            E::InvalidSignature,
            401,
            16,
            invalid_token!("the token is not signed by a valid key of a configured system user"),
            "signature",
            0,
        ),
        row(
            "a signature one byte long",
            || {
                let token = valid();
                let sig = [signature_of(&token), vec![0]].concat();
                bearer(with_signature(&token, &sig))
            },
            E::InvalidSignature,
            401,
            16,
            invalid_token!("the token is not signed by a valid key of a configured system user"),
            "signature",
            0,
        ),
        row(
            "a signature truncated to 200 bytes",
            || {
                let token = valid();
                bearer(with_signature(&token, &signature_of(&token)[..200]))
            },
            E::InvalidSignature,
            401,
            16,
            invalid_token!("the token is not signed by a valid key of a configured system user"),
            "signature",
            0,
        ),
        row(
            "a signature as long as a 4096-bit key's",
            || bearer(with_signature(&valid(), &[1; 512])),
            E::InvalidSignature,
            401,
            16,
            invalid_token!("the token is not signed by a valid key of a configured system user"),
            "signature",
            0,
        ),
        // Authenticated, without the route's role.
        row(
            "a valid token of a user without the route's role",
            || bearer(valid()),
            E::MissingRole {
                role: Arc::from("IAM_OWNER"),
            },
            403,
            7,
            r#"Bearer error="insufficient_scope", error_description="the system user lacks the role IAM_OWNER here""#,
            "missing_role",
            1,
        )
        .behind_role("IAM_OWNER"),
    ]
}

// ---------------------------------------------------------------------------
// Sending a request through the layer and judging the answer
// ---------------------------------------------------------------------------

/// What a request must get.
#[derive(Debug)]
pub enum Outcome {
    /// 200 from the handler, which sees this user.
    Accepted(&'static str),
    /// Refused before the handler, with this answer.
    Refused(Wire),
}

/// `GET /` answering the caller's user id and counting its calls, behind
/// `RequireRoleLayer(role)` if given and then `auth.layer()`.
pub fn app(auth: &SystemAuth, role: Option<&'static str>) -> (Router, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let mut router = Router::new().route(
        "/",
        get(move |user: SystemUser| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                user.user_id().to_owned()
            }
        }),
    );
    if let Some(role) = role {
        router = router.route_layer(RequireRoleLayer::new(role));
    }
    (router.layer(auth.layer()), calls)
}

/// Sends `request` through `app` and lists what is wrong with the answer, against
/// `outcome`; nothing in `secrets` and no [`MARK`] may come back.
pub async fn judge(
    (app, calls): (Router, Arc<AtomicUsize>),
    request: Request<Body>,
    outcome: &Outcome,
    secrets: &[String],
) -> Vec<String> {
    let response = match app.oneshot(request).await {
        Ok(response) => response,
        Err(error) => match error {},
    };
    let status = response.status();
    let headers = response.headers().clone();
    let body = match response.into_body().collect().await {
        Ok(body) => String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        Err(error) => return vec![format!("the body failed: {error}")],
    };
    let called = calls.load(Ordering::SeqCst);
    let www: Vec<String> = headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    let header = |name: header::HeaderName| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let mut problems = Vec::new();
    match outcome {
        Outcome::Accepted(user) => {
            if status != StatusCode::OK {
                problems.push(format!("status {status}, body {body}"));
            }
            if body != *user {
                problems.push(format!("the handler saw {body:?}"));
            }
            if called != 1 {
                problems.push(format!("the handler ran {called} times"));
            }
            if !www.is_empty() {
                problems.push(format!("WWW-Authenticate {www:?}"));
            }
            if let Some(cache) = header(header::CACHE_CONTROL) {
                problems.push(format!("the handler's answer got cache-control {cache}"));
            }
        }
        Outcome::Refused(wire) => {
            if status.as_u16() != wire.status {
                problems.push(format!("status {status} (want {})", wire.status));
            }
            let want_www: Vec<String> = wire.www_authenticate.iter().cloned().collect();
            if www != want_www {
                problems.push(format!("WWW-Authenticate {www:?} (want {want_www:?})"));
            }
            let want_body = json!({ "code": wire.code, "message": wire.message, "details": [] });
            match serde_json::from_str::<Value>(&body) {
                Ok(got) if got == want_body => {}
                _ => problems.push(format!("body {body} (want {want_body})")),
            }
            if header(header::CONTENT_TYPE).as_deref() != Some("application/json") {
                problems.push(format!("content-type {:?}", header(header::CONTENT_TYPE)));
            }
            if header(header::CACHE_CONTROL).as_deref() != Some("no-store") {
                problems.push(format!("cache-control {:?}", header(header::CACHE_CONTROL)));
            }
            if called != 0 {
                problems.push(format!("the handler ran {called} times"));
            }
            let mut everything = body.clone();
            for (name, value) in &headers {
                everything.push_str(name.as_str());
                everything.push_str(&String::from_utf8_lossy(value.as_bytes()));
            }
            if secrets
                .iter()
                .any(|secret| everything.contains(secret.as_str()))
            {
                problems.push("the answer repeats the token".to_owned());
            }
            if everything.contains(MARK) {
                problems.push("the answer repeats an attacker-chosen value".to_owned());
            }
        }
    }
    problems
}

/// gRPC's `grpc-message` encoding (the gRPC HTTP/2 protocol spec): `%` and every
/// byte outside space..`~` as `%XX`.
pub fn grpc_message(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b' '..=b'~' if byte != b'%' => char::from(byte).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// Sends `request` (a gRPC request) through `app` and lists what is wrong with the
/// answer against the refusal `wire`: a trailers-only gRPC status (HTTP 200,
/// `grpc-status` the code, `grpc-message` the description, no body), no
/// `WWW-Authenticate`, `cache-control: no-store`, and the handler not run.
pub async fn judge_grpc(
    (app, calls): (Router, Arc<AtomicUsize>),
    request: Request<Body>,
    wire: &Wire,
) -> Vec<String> {
    let response = match app.oneshot(request).await {
        Ok(response) => response,
        Err(error) => match error {},
    };
    let status = response.status();
    let headers = response.headers().clone();
    let body = match response.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(error) => return vec![format!("the body failed: {error}")],
    };
    let header = |name: &str| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let mut problems = Vec::new();
    if status != StatusCode::OK {
        problems.push(format!("HTTP status {status}"));
    }
    let want = [
        ("content-type", Some("application/grpc".to_owned())),
        ("grpc-status", Some(wire.code.to_string())),
        ("grpc-message", Some(grpc_message(&wire.message))),
        ("cache-control", Some("no-store".to_owned())),
        ("www-authenticate", None),
    ];
    for (name, value) in want {
        if header(name) != value {
            problems.push(format!("{name} {:?} (want {value:?})", header(name)));
        }
    }
    if !body.is_empty() {
        problems.push(format!("a body of {} bytes", body.len()));
    }
    let called = calls.load(Ordering::SeqCst);
    if called != 0 {
        problems.push(format!("the handler ran {called} times"));
    }
    problems
}

// ---------------------------------------------------------------------------
// The table itself
// ---------------------------------------------------------------------------

/// Every row's literal answer is the answer the README's rules give its error
/// ([`wire`]), so the table and the hand-written mapping say the same thing.
#[test]
fn every_row_agrees_with_the_rules_of_the_answers() {
    let mut failures = Vec::new();
    for case in refusals() {
        if case.wire() != wire(&case.error) {
            failures.push(format!(
                "- {}: the row says {:?}, the rules {:?}",
                case.name,
                case.wire(),
                wire(&case.error)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every refusal the layer can give, but a panic's (see the panic tests), has a
/// row; and the four refusals that share one public text have four reasons.
#[test]
fn the_table_has_every_refusal() {
    use AuthError as E;
    let mut wanted = vec![
        E::MissingToken,
        E::MultipleAuthorizationHeaders,
        E::MultipleOrganizationHeaders,
        E::TokenTooLong { limit: MAX_LEN },
        E::Expired,
        E::IssuedInFuture,
        E::IssuedTooLongAgo,
        E::NotYetValid,
        E::IssuerSubjectMismatch,
        E::UnknownUser,
        E::KeyNotYetValid,
        E::KeyExpired,
        E::AlgorithmNotAllowed,
        E::CriticalHeader,
        E::RefusedHeaderMember,
        E::UnsupportedType,
        E::InvalidSignature,
        E::MissingRole {
            role: Arc::from("IAM_OWNER"),
        },
    ];
    for what in [
        Malformed::HeaderEncoding,
        Malformed::EmptyToken,
        Malformed::Segments,
        Malformed::HeaderBase64,
        Malformed::HeaderJson,
        Malformed::PayloadBase64,
        Malformed::PayloadJson,
        Malformed::DuplicateMember,
        Malformed::AmbiguousClaimName,
        Malformed::NestingTooDeep,
        Malformed::SignatureBase64,
    ] {
        wanted.push(E::Malformed(what));
    }
    for claim in [Claim::Iss, Claim::Sub, Claim::Aud, Claim::Exp, Claim::Iat] {
        wanted.push(E::MissingClaim(claim));
    }
    for claim in [
        Claim::Iss,
        Claim::Sub,
        Claim::Aud,
        Claim::Exp,
        Claim::Iat,
        Claim::Nbf,
    ] {
        wanted.push(E::InvalidClaim(claim));
    }
    for hint in [
        AudienceHint::TrailingSlash,
        AudienceHint::Scheme,
        AudienceHint::Port,
        AudienceHint::Case,
        AudienceHint::Other,
    ] {
        wanted.push(audience(hint));
    }
    let table = refusals();
    let missing: Vec<&AuthError> = wanted
        .iter()
        .filter(|error| !table.iter().any(|case| case.error == **error))
        .collect();
    assert!(missing.is_empty(), "no row for {missing:#?}");

    // An unknown user, a bad signature and a key outside its certificate's window:
    // one answer, four reasons.
    let alike: Vec<&Refusal> = table
        .iter()
        .filter(|case| case.www_authenticate.contains(NOT_SIGNED))
        .collect();
    let mut reasons: Vec<&str> = alike.iter().map(|case| case.reason).collect();
    reasons.sort_unstable();
    reasons.dedup();
    assert_eq!(
        reasons,
        [
            "key_expired",
            "key_not_yet_valid",
            "signature",
            "unknown_user"
        ]
    );
    assert!(alike.iter().all(|case| case.wire() == alike[0].wire()));
}
