//! Shared helpers for the integration tests: real RSA keys, real tokens from two
//! independent signers (aws-lc-rs/jsonwebtoken in process, and the `openssl`
//! command line), and a way to send a request through a Router.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::rsa::KeySize;
use axum::{
    Router,
    body::Body,
    http::{HeaderMap, Request, StatusCode},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;
use zitadel_system_auth::{Algorithm, testing};

/// The audience the default test config expects.
pub const AUD: &str = "https://custom-domain.com";
/// The user id of the default test config.
pub const USER: &str = "system-user-1";

/// An RSA key pair (from the crate's `testing` helpers) written to a folder that
/// lives as long as the test process.
pub struct TestKey {
    pub private_pem: String,
    pub public_pem: String,
    pub private_path: PathBuf,
    pub public_path: PathBuf,
    key: testing::TestKey,
}

fn key_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
        .path()
}

impl TestKey {
    /// Generates a 2048-bit key pair named `name` (`name.pem`, `name.pub`).
    pub fn generate(name: &str) -> TestKey {
        TestKey::generate_bits(name, KeySize::Rsa2048)
    }

    /// Generates a key pair of the given size.
    pub fn generate_bits(name: &str, size: KeySize) -> TestKey {
        let key = testing::TestKey::generate_size(size);
        let public_path = key.write(key_dir(), name).expect("write the key pair");
        TestKey {
            private_pem: key.private_pem().to_owned(),
            public_pem: key.public_pem().to_owned(),
            private_path: key_dir().join(format!("{name}.pem")),
            public_path,
            key,
        }
    }

    /// The public key's SubjectPublicKeyInfo DER.
    pub fn public_der(&self) -> Vec<u8> {
        self.key.public_der()
    }

    /// Signs `header.payload` (both JSON texts, taken byte for byte) with RS256.
    pub fn sign_raw(&self, header_json: &str, payload_json: &str) -> String {
        self.key
            .sign_raw(Algorithm::RS256, header_json, payload_json)
    }

    /// Signs `header.payload` with `algorithm`'s padding and hash, whatever the header says.
    pub fn sign_raw_with(
        &self,
        algorithm: Algorithm,
        header_json: &str,
        payload_json: &str,
    ) -> String {
        self.key.sign_raw(algorithm, header_json, payload_json)
    }

    /// Signs claims with jsonwebtoken (an independent JWT encoder).
    pub fn jwt(&self, alg: jsonwebtoken::Algorithm, claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(alg),
            claims,
            &jsonwebtoken::EncodingKey::from_rsa_pem(self.private_pem.as_bytes()).expect("key"),
        )
        .expect("encode")
    }

    /// An RS256 token for `claims` from jsonwebtoken.
    pub fn rs256(&self, claims: &serde_json::Value) -> String {
        self.jwt(jsonwebtoken::Algorithm::RS256, claims)
    }

    /// Signs `header.payload` with the `openssl` command line (RS256).
    pub fn sign_openssl(&self, header_json: &str, payload_json: &str) -> String {
        let input = format!(
            "{}.{}",
            b64(header_json.as_bytes()),
            b64(payload_json.as_bytes())
        );
        let sig = openssl_stdin(
            &[
                "dgst",
                "-sha256",
                "-sign",
                path_str(&self.private_path),
                "-binary",
            ],
            input.as_bytes(),
        );
        format!("{input}.{}", b64(&sig))
    }
}

/// The default key, generated once per test binary.
pub fn key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| TestKey::generate("system-user-1"))
}

/// A second key, which no configured user has.
pub fn other_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| TestKey::generate("other"))
}

/// Unpadded base64url.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Seconds since the Unix epoch, now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A point in time `secs` seconds (and `nanos`) after the epoch.
pub fn at(secs: u64, nanos: u32) -> SystemTime {
    UNIX_EPOCH + Duration::new(secs, nanos)
}

/// Valid claims for `user` with `iat = now` and `exp = now + 1h`.
pub fn claims_for(user: &str, aud: &str, now: u64) -> serde_json::Value {
    serde_json::json!({ "iss": user, "sub": user, "aud": aud, "iat": now, "exp": now + 3600 })
}

/// Valid claims for the default user and audience, now.
pub fn claims() -> serde_json::Value {
    claims_for(USER, AUD, now())
}

/// Runs `openssl` with `args`, panicking with its stderr when it fails.
pub fn openssl(args: &[&str]) -> Vec<u8> {
    openssl_stdin(args, &[])
}

/// Runs `openssl` with `args` and `input` on standard input.
pub fn openssl_stdin(args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the openssl command line is installed (see .ci/run)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    let output = child.wait_with_output().expect("openssl output");
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A path as `&str` (temp paths are UTF-8 here).
pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// A config in ZITADEL's documented form with one user whose key is at `path`.
pub fn config_with_path(user: &str, path: &Path) -> String {
    format!(
        "ExternalDomain: custom-domain.com\nExternalPort: 443\nExternalSecure: true\nSystemAPIUsers:\n  - {user}:\n      Path: {}\n",
        path.display()
    )
}

/// The default config: `system-user-1` with the default key, audience [`AUD`].
pub fn default_config() -> String {
    config_with_path(USER, &key().public_path)
}

/// The answer to a request, with the body parsed as JSON when it is JSON.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("JSON body")
    }

    /// The `WWW-Authenticate` header, or "" when absent.
    pub fn www_authenticate(&self) -> &str {
        self.headers
            .get("www-authenticate")
            .map(|v| v.to_str().expect("ASCII"))
            .unwrap_or("")
    }
}

/// Sends `request` through `app` with `oneshot`.
pub async fn send(app: Router, request: Request<Body>) -> Answer {
    let response = app.oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// Sends `GET /` with `Authorization: Bearer <token>` (or none) through `app`.
pub async fn get_with_token(app: Router, token: Option<&str>) -> Answer {
    let mut builder = Request::get("/");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    send(app, builder.body(Body::empty()).expect("request")).await
}

/// Log output captured in memory: a `MakeWriter` target for tracing-subscriber whose
/// writes all land in one shared buffer.
#[derive(Clone, Default)]
pub struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }

    /// Everything captured so far, emptying the buffer.
    pub fn take(&self) -> String {
        let bytes = std::mem::take(&mut *self.0.lock().expect("lock"));
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The captured lines.
    pub fn lines(&self) -> Vec<String> {
        self.text().lines().map(str::to_owned).collect()
    }

    /// A subscriber writing every event (TRACE and up, no colours) here.
    pub fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + use<> {
        let writer = self.clone();
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .finish()
    }
}

/// NotBefore and NotAfter of the certificate at `cert`, as the openssl command line
/// reads them, in seconds since the epoch.
pub fn openssl_validity(cert: &Path) -> (u64, u64) {
    let out = String::from_utf8(openssl(&[
        "x509",
        "-noout",
        "-startdate",
        "-enddate",
        "-dateopt",
        "iso_8601",
        "-in",
        path_str(cert),
    ]))
    .expect("text");
    let time = |prefix: &str| {
        let line = out
            .lines()
            .find_map(|line| line.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix} line in {out}"));
        openssl_time(line)
    };
    (time("notBefore="), time("notAfter="))
}

/// Parses openssl's `-dateopt iso_8601` time, `2026-11-24 03:37:37Z`.
fn openssl_time(text: &str) -> u64 {
    let text = text.trim().trim_end_matches('Z');
    let (date, time) = text.split_once(' ').expect("date and time");
    let d: Vec<i64> = date.split('-').map(|p| p.parse().expect("date")).collect();
    let t: Vec<i64> = time.split(':').map(|p| p.parse().expect("time")).collect();
    let secs = days_from_civil(d[0], d[1], d[2]) * 86_400 + t[0] * 3600 + t[1] * 60 + t[2];
    u64::try_from(secs).expect("after 1970")
}

/// Days from 1970-01-01 to the given civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `GET /` → the caller's user id (`anonymous` without one), counting its calls,
/// behind `layer`.
pub fn counting_app(
    layer: zitadel_system_auth::SystemAuthLayer,
) -> (Router, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = Router::new()
        .route(
            "/",
            axum::routing::get(move |user: Option<zitadel_system_auth::SystemUser>| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    user.map_or_else(|| "anonymous".to_owned(), |u| u.user_id().to_owned())
                }
            }),
        )
        .layer(layer);
    (app, calls)
}
