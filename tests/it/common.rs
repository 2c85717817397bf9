//! Shared helpers: real RSA keys (the crate's `testing::TestKey`) written to files,
//! tokens from two signers independent of the verifier (`jsonwebtoken` in process,
//! and the `openssl` command line), requests through a Router, and captured logs.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Command,
    sync::{Mutex, OnceLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    Router,
    body::Body,
    http::{HeaderMap, Request, StatusCode},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;
pub use zitadel_system_auth::testing::{KeyFiles, TestKey};
use zitadel_system_auth::testing::{TEST_AUDIENCE, TEST_USER};

/// The audience the default test config expects.
pub const AUD: &str = TEST_AUDIENCE;
/// The user id of the default test config.
pub const USER: &str = TEST_USER;

/// The folder the keys' files are written to; it lives as long as the process.
fn key_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
        .path()
}

/// What the tests do with a `TestKey` beyond the crate's helpers: its files, and
/// tokens from signers that are not the crate's.
pub trait KeyExt {
    /// `<fingerprint>.pem` and `<fingerprint>.pub` in a folder that lives as long
    /// as the process, written at the first call.
    fn files(&self) -> KeyFiles;
    /// The public key's file (for a config's `Path`).
    fn public_path(&self) -> PathBuf {
        self.files().public
    }
    /// The private key's file (for `openssl dgst -sign`).
    fn private_path(&self) -> PathBuf {
        self.files().private
    }
    /// Signs `claims` with jsonwebtoken (an independent JWT encoder), its standard
    /// header for `alg`.
    fn jwt(&self, alg: jsonwebtoken::Algorithm, claims: &serde_json::Value) -> String;
    /// An RS256 token for `claims` from jsonwebtoken.
    fn rs256(&self, claims: &serde_json::Value) -> String {
        self.jwt(jsonwebtoken::Algorithm::RS256, claims)
    }
    /// Signs `header.payload` (both JSON texts, byte for byte) with the `openssl`
    /// command line (RS256).
    fn sign_openssl(&self, header_json: &str, payload_json: &str) -> String;
}

impl KeyExt for TestKey {
    fn files(&self) -> KeyFiles {
        static WRITTEN: Mutex<Option<HashMap<String, KeyFiles>>> = Mutex::new(None);
        let mut written = WRITTEN.lock().unwrap_or_else(|e| e.into_inner());
        let fingerprint = self.fingerprint();
        written
            .get_or_insert_with(HashMap::new)
            .entry(fingerprint.clone())
            .or_insert_with(|| {
                self.write_pair(key_dir(), &fingerprint[..16])
                    .expect("write the key pair")
            })
            .clone()
    }

    fn jwt(&self, alg: jsonwebtoken::Algorithm, claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(alg),
            claims,
            &jsonwebtoken::EncodingKey::from_rsa_pem(self.private_pem().as_bytes()).expect("key"),
        )
        .expect("encode")
    }

    fn sign_openssl(&self, header_json: &str, payload_json: &str) -> String {
        let input = format!(
            "{}.{}",
            b64(header_json.as_bytes()),
            b64(payload_json.as_bytes())
        );
        let private = self.private_path();
        let sig = openssl_stdin(
            &["dgst", "-sha256", "-sign", path_str(&private), "-binary"],
            input.as_bytes(),
        );
        format!("{input}.{}", b64(&sig))
    }
}

/// The default key, generated once per process.
pub fn key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(TestKey::generate)
}

/// A second key, which no configured user has.
pub fn other_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(TestKey::generate)
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
    config_with_path(USER, &key().public_path())
}

/// The answer to a request, whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// A header's value, when present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("ASCII"))
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
    answer(app.oneshot(request).await.expect("infallible")).await
}

/// Reads `response` whole.
pub async fn answer<B>(response: axum::http::Response<B>) -> Answer
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
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

    /// A subscriber writing every event (TRACE and up, no colours) here, to set as
    /// a test thread's default.
    ///
    /// The global subscriber ([`reload_log`]) is installed first: tracing caches
    /// per call site whether any subscriber is interested, and while a single
    /// subscriber is registered it asks only the current thread's, so another
    /// thread with none (another test's) could mark a call site as of no interest
    /// and this subscriber would miss its events. With the global one always
    /// registered beside it, every call site is asked of both.
    pub fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + use<> {
        reload_log();
        let writer = self.clone();
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .finish()
    }
}

/// The name the crate gives its reload threads.
pub const RELOAD_THREAD: &str = "zitadel-system-auth-reload";

/// What the crate's reload threads log, in every test: the one global subscriber of
/// the test binary, installed at the first call. A reload thread is the crate's own,
/// so no scoped subscriber reaches it; events of every other thread are left out
/// here (a test captures its own thread with [`Captured::subscriber`]).
///
/// Every test's reload threads write here, so a test picks its own lines: by a path
/// only its files have ([`Captured::lines_with`]), or by the threads that wrote one
/// ([`Captured::lines_of_threads_mentioning`]). Each line names its thread
/// (`zitadel-system-auth-reload ThreadId(N)`), and thread ids are never reused.
pub fn reload_log() -> &'static Captured {
    static LOG: OnceLock<Captured> = OnceLock::new();
    let log = LOG.get_or_init(|| {
        use tracing_subscriber::{
            Layer as _, filter::dynamic_filter_fn, layer::SubscriberExt as _,
        };
        let buffer = Captured::default();
        let writer = buffer.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_thread_names(true)
            .with_thread_ids(true)
            // Decided per event, by the thread that logs it: a dynamic filter, so
            // tracing never caches "no interest" for a call site because the
            // thread that reached it first was not a reload thread (`filter_fn`
            // would, taking its answer for the call site's).
            .with_filter(dynamic_filter_fn(|_, _| {
                std::thread::current().name() == Some(RELOAD_THREAD)
            }));
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
            .expect("the only global subscriber of the test binary");
        buffer
    });
    // A call site that a thread without any subscriber reached while this one
    // was being installed may have cached "no interest" after the installation's
    // own refresh: ask every call site again (every answer is "sometimes" or
    // better now that this subscriber is registered).
    tracing::callsite::rebuild_interest_cache();
    log
}

impl Captured {
    /// The captured lines that contain `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|line| line.contains(needle))
            .map(str::to_owned)
            .collect()
    }

    /// Every line written by a thread that wrote a line containing `needle` (the
    /// `ThreadId(N)` the global subscriber writes), in order.
    pub fn lines_of_threads_mentioning(&self, needle: &str) -> Vec<String> {
        fn thread_of(line: &str) -> Option<&str> {
            let start = line.find("ThreadId(")?;
            let end = start + line[start..].find(')')?;
            Some(&line[start..=end])
        }
        let text = self.text();
        let threads: Vec<&str> = text
            .lines()
            .filter(|line| line.contains(needle))
            .filter_map(thread_of)
            .collect();
        text.lines()
            .filter(|line| thread_of(line).is_some_and(|t| threads.contains(&t)))
            .map(str::to_owned)
            .collect()
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
