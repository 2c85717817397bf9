//! What the crate logs about refusals and failed reloads (issue 5, point 5): the
//! reason, never the token, a claim value from it, or key material; and refusal
//! logs are rate-limited.
//!
//! Each test captures the tracing output in a buffer: a scoped subscriber for work
//! on the test's own thread, and (in `the_watcher_logs_failed_reloads_without_key_material`)
//! the global one for the reload thread.

mod common;

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    Router,
    body::Body,
    http::{HeaderValue, Request, StatusCode, header},
    routing::get,
};
use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use common::Captured;
use serde_json::json;
use tower::ServiceExt as _;
use zitadel_system_auth::{
    Algorithm, ReloadOutcome, SystemAuth,
    testing::{KeyForm, TEST_AUDIENCE, TEST_USER, TestKey, write_config},
};

/// A marker put into every attacker-chosen value: it must never be logged.
const MARK: &str = "intruder5c1d";

/// `REFUSAL_LOGS_PER_SECOND` in the crate's `auth` module (not re-exported).
const REFUSAL_LOGS_PER_SECOND: usize = 20;

// ---------------------------------------------------------------------------
// Capturing
// ---------------------------------------------------------------------------

/// The global subscriber's buffer, for threads the crate starts itself.
fn global() -> &'static Captured {
    static GLOBAL: OnceLock<Captured> = OnceLock::new();
    GLOBAL.get_or_init(|| {
        let buffer = Captured::default();
        tracing::subscriber::set_global_default(buffer.subscriber())
            .expect("no other global subscriber in this test binary");
        buffer
    })
}

// ---------------------------------------------------------------------------
// What must never appear
// ---------------------------------------------------------------------------

/// Guidance text the crate prints on purpose (the PEM header it expects), which
/// is not key material.
const GUIDANCE: &[&str] = &["expected -----BEGIN PUBLIC KEY----- or -----BEGIN CERTIFICATE-----"];

#[derive(Default)]
struct Secrets(Vec<(String, String)>);

impl Secrets {
    fn add(&mut self, label: impl Into<String>, text: impl Into<String>) {
        let text = text.into();
        if text.len() >= 12 {
            self.0.push((label.into(), text));
        }
    }

    /// The token, and its payload and signature segments.
    fn token(&mut self, label: &str, token: &str) {
        self.add(format!("{label}: token"), token);
        let mut parts = token.split('.');
        let (_, payload, signature) = (parts.next(), parts.next(), parts.next());
        if let Some(payload) = payload {
            self.add(format!("{label}: payload segment"), payload);
        }
        if let Some(signature) = signature {
            self.add(format!("{label}: signature segment"), signature);
        }
    }

    /// Pieces (24 characters each) of base64 text, except those that also occur in
    /// `common` (boilerplate every key shares: PEM labels, DER prefixes).
    fn pieces(&mut self, label: &str, base64_text: &str, common: &str) {
        let text: String = base64_text.split_whitespace().collect();
        let common: String = common.split_whitespace().collect();
        for piece in text.as_bytes().chunks(24) {
            let piece = String::from_utf8_lossy(piece).into_owned();
            if piece.len() == 24 && !common.contains(&piece) {
                self.add(label, piece);
            }
        }
    }

    /// Every form a key appears in: the PEM bodies of both halves, KeyData (base64
    /// of the PEM text) of both halves; `other` is another key, to tell shared
    /// boilerplate from key material.
    fn key(&mut self, label: &str, key: &TestKey, other: &TestKey) {
        self.pieces(
            &format!("{label}: public PEM body"),
            &pem_body(key.public_pem()),
            &pem_body(other.public_pem()),
        );
        self.pieces(
            &format!("{label}: private PEM body"),
            &pem_body(key.private_pem()),
            &pem_body(other.private_pem()),
        );
        self.pieces(
            &format!("{label}: public KeyData"),
            &key.key_data(),
            &other.key_data(),
        );
        self.pieces(
            &format!("{label}: private KeyData"),
            &STANDARD.encode(key.private_pem()),
            &STANDARD.encode(other.private_pem()),
        );
    }

    /// `Err` naming what `text` holds: a secret, a PEM marker (beyond the crate's
    /// guidance text), or the attacker's marker.
    fn check(&self, text: &str, context: &str) -> Result<(), String> {
        let mut found: Vec<String> = Vec::new();
        for (label, secret) in &self.0 {
            if text.contains(secret.as_str()) && !found.iter().any(|f| f == label) {
                found.push(label.clone());
            }
        }
        let mut stripped = text.to_owned();
        for guidance in GUIDANCE {
            stripped = stripped.replace(guidance, "");
        }
        if stripped.contains("BEGIN") || stripped.contains("-----END") {
            found.push("a PEM BEGIN/END marker".into());
        }
        if stripped.contains("PRIVATE KEY") {
            found.push("a PRIVATE KEY label".into());
        }
        if text.contains(MARK) {
            found.push("an attacker-chosen value".into());
        }
        if found.is_empty() {
            Ok(())
        } else {
            let excerpt: String = text.chars().take(400).collect();
            Err(format!(
                "- {context}: holds {found:?}; text begins: {excerpt}"
            ))
        }
    }

    #[track_caller]
    fn assert_absent_from(&self, text: &str, context: &str) {
        if let Err(failure) = self.check(text, context) {
            panic!("{failure}\nfull text:\n{text}");
        }
    }
}

/// The reason field as the fmt subscriber writes it (`reason="expired"`).
fn has_reason(text: &str, reason: &str) -> bool {
    text.contains(&format!("reason=\"{reason}\"")) || text.contains(&format!("reason={reason} "))
}

fn pem_body(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---------------------------------------------------------------------------
// A configured user, an attacker, and every kind of refusal
// ---------------------------------------------------------------------------

struct Fixture {
    dir: tempfile::TempDir,
    config: PathBuf,
    user: TestKey,
    attacker: TestKey,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let user = TestKey::generate();
        let config = write_config(
            dir.path(),
            "custom-domain.com",
            &[(TEST_USER, &user)],
            KeyForm::Path,
        )
        .unwrap();
        Fixture {
            dir,
            config,
            user,
            attacker: TestKey::generate(),
        }
    }

    /// A fresh verifier (its own refusal rate limit), not watching.
    fn auth(&self) -> SystemAuth {
        SystemAuth::builder()
            .config_file(&self.config)
            .watch(false)
            .build()
            .unwrap()
    }

    fn key_file(&self) -> PathBuf {
        self.dir.path().join(format!("{TEST_USER}.pub"))
    }

    fn secrets(&self) -> Secrets {
        let mut secrets = Secrets::default();
        secrets.key("user key", &self.user, &self.attacker);
        secrets.key("attacker key", &self.attacker, &self.user);
        secrets
    }
}

struct Refusal {
    name: &'static str,
    token: String,
    reason: &'static str,
}

fn refusals(f: &Fixture) -> Vec<Refusal> {
    let t = || f.user.token(TEST_USER, TEST_AUDIENCE);
    let header = r#"{"alg":"RS256","typ":"JWT"}"#;
    let strip_sig = |token: String| token[..token.rfind('.').unwrap()].to_owned();
    let valid = t().build();
    let mut flipped = URL_SAFE_NO_PAD
        .decode(valid.rsplit('.').next().unwrap())
        .unwrap();
    flipped[7] ^= 1;
    let hmac_input = strip_sig(t().header("alg", "HS256").build());
    let hmac_sig = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, f.user.public_pem().as_bytes()),
        hmac_input.as_bytes(),
    );
    let r = |name, token: String, reason| Refusal {
        name,
        token,
        reason,
    };
    vec![
        r(
            "no dots",
            format!("{MARK}-junk-token-without-dots"),
            "malformed",
        ),
        r(
            "header not base64url",
            format!("{MARK}!{valid}"),
            "malformed",
        ),
        r(
            "payload not an object",
            f.user
                .sign_raw(Algorithm::RS256, header, &format!("[\"{MARK}\"]")),
            "malformed",
        ),
        r(
            "duplicate member",
            f.user.sign_raw(
                Algorithm::RS256,
                header,
                &format!("{{\"iss\":\"{MARK}\",\"iss\":\"{MARK}\"}}"),
            ),
            "malformed",
        ),
        r(
            "signature not base64url",
            format!("{}.{MARK}!!", strip_sig(valid.clone())),
            "malformed",
        ),
        r(
            "invalid UTF-8 in the payload",
            format!(
                "{}.{}.{}",
                b64(header),
                b64([format!("{{\"iss\":\"{MARK}").as_bytes(), b"\xff\"}"].concat()),
                valid.rsplit('.').next().unwrap()
            ),
            "malformed",
        ),
        r(
            "too long",
            format!(
                "{}.{}.{}",
                MARK.repeat(300),
                MARK.repeat(300),
                MARK.repeat(300)
            ),
            "token_too_long",
        ),
        r(
            "audience",
            t().audience(&format!("https://{MARK}.example")).build(),
            "audience",
        ),
        r("aud missing", t().without("aud").build(), "missing_claim"),
        r(
            "aud mistyped",
            t().claim("aud", json!([MARK, 1])).build(),
            "invalid_claim",
        ),
        r(
            "exp a string",
            t().claim("exp", format!("{MARK}-tomorrow")).build(),
            "invalid_claim",
        ),
        r("expired", t().expired().build(), "expired"),
        r(
            "iat in the future",
            t().issued_in_future().build(),
            "iat_in_future",
        ),
        r(
            "iat too old",
            t().issued_too_long_ago().build(),
            "iat_too_old",
        ),
        r(
            "nbf in the future",
            t().claim("nbf", now() + 600).build(),
            "not_yet_valid",
        ),
        r(
            "iss differs from sub",
            t().claim("sub", format!("{MARK}-sub")).build(),
            "iss_sub_mismatch",
        ),
        r(
            "unknown user",
            f.attacker
                .token(&format!("{MARK}-user"), TEST_AUDIENCE)
                .build(),
            "unknown_user",
        ),
        r("crit", t().header("crit", json!([MARK])).build(), "crit"),
        r("typ", t().header("typ", MARK).build(), "typ"),
        r("alg unknown", t().header("alg", MARK).build(), "algorithm"),
        r(
            "alg none",
            format!("{}.", strip_sig(t().header("alg", "none").build())),
            "algorithm",
        ),
        r(
            "HS256 with the public key as secret",
            format!("{hmac_input}.{}", b64(hmac_sig.as_ref())),
            "algorithm",
        ),
        r(
            "RS512 (not allowed)",
            t().algorithm(Algorithm::RS512).build(),
            "algorithm",
        ),
        r(
            "signed by the attacker",
            t().signed_by(&f.attacker).header("kid", MARK).build(),
            "signature",
        ),
        r(
            "signed by the attacker with an embedded jwk",
            t().signed_by(&f.attacker)
                .header("jwk", json!({"kty": "RSA", "n": MARK, "e": "AQAB"}))
                .build(),
            "header_member",
        ),
        r(
            "bit flipped",
            format!("{}.{}", strip_sig(valid.clone()), b64(&flipped)),
            "signature",
        ),
        r(
            "signature truncated",
            format!("{}.{}", strip_sig(valid.clone()), b64(&flipped[..200])),
            "signature",
        ),
    ]
}

// ---------------------------------------------------------------------------
// Refusals
// ---------------------------------------------------------------------------

#[test]
fn refusals_through_verify_log_the_reason_and_nothing_of_the_token() {
    let f = Fixture::new();
    let cases = refusals(&f);
    let buffer = Captured::default();
    tracing::subscriber::with_default(buffer.subscriber(), || {
        for case in &cases {
            let auth = f.auth();
            buffer.take();
            let error = auth.verify(&case.token).expect_err(case.name);
            assert_eq!(error.reason(), case.reason, "{}", case.name);
            let text = buffer.take();
            assert!(
                text.contains("system user token refused") && has_reason(&text, case.reason),
                "{}: no refusal logged:\n{text}",
                case.name
            );
            let mut secrets = f.secrets();
            secrets.token(case.name, &case.token);
            secrets.assert_absent_from(&text, case.name);
            // The error's own text (what an application would log) is clean too.
            secrets.assert_absent_from(&format!("{error} {error:?}"), case.name);
        }

        // An accepted token is logged (at debug, with the user id), not the token.
        let token = f.user.token(TEST_USER, TEST_AUDIENCE).build();
        f.auth().verify(&token).unwrap();
        let text = buffer.take();
        assert!(
            text.contains("system user token accepted") && text.contains(TEST_USER),
            "{text}"
        );
        let mut secrets = f.secrets();
        secrets.token("accepted", &token);
        secrets.assert_absent_from(&text, "accepted");
    });
    eprintln!("{} refusals checked through verify", cases.len());
}

#[tokio::test(flavor = "current_thread")]
async fn refusals_through_the_layer_log_the_reason_and_nothing_of_the_token() {
    let f = Fixture::new();
    let buffer = Captured::default();
    let _guard = tracing::subscriber::set_default(buffer.subscriber());

    let bearer = |t: &str| HeaderValue::from_str(&format!("Bearer {t}")).unwrap();
    let valid = f.user.token(TEST_USER, TEST_AUDIENCE).build();
    let basic = STANDARD.encode(format!("{MARK}:hunter2-password"));
    let mut cases: Vec<(&str, Vec<HeaderValue>, &str, Vec<String>)> = refusals(&f)
        .into_iter()
        .map(|r| {
            let token = r.token.clone();
            (r.name, vec![bearer(&r.token)], r.reason, vec![token])
        })
        .collect();
    cases.push(("no header", vec![], "missing_token", vec![]));
    cases.push((
        "Basic credentials",
        vec![HeaderValue::from_str(&format!("Basic {basic}")).unwrap()],
        "missing_token",
        vec![basic.clone()],
    ));
    cases.push((
        "another scheme with a valid token",
        vec![HeaderValue::from_str(&format!("Token {valid}")).unwrap()],
        "missing_token",
        vec![valid.clone()],
    ));
    cases.push((
        "two Authorization headers",
        vec![bearer(&valid), bearer(&format!("{MARK}.{MARK}.{MARK}"))],
        "multiple_authorization_headers",
        vec![valid.clone()],
    ));
    cases.push((
        "non-ASCII header",
        vec![
            HeaderValue::from_bytes(
                &[format!("Bearer {valid}{MARK}").as_bytes(), b"\xff"].concat(),
            )
            .unwrap(),
        ],
        "malformed",
        vec![valid.clone()],
    ));
    cases.push((
        "empty bearer token",
        vec![HeaderValue::from_static("Bearer ")],
        "malformed",
        vec![],
    ));

    for (name, values, reason, tokens) in &cases {
        let auth = f.auth();
        let app = Router::new()
            .route("/", get(|| async { "called" }))
            .layer(auth.layer());
        let mut request = Request::get("/").body(Body::empty()).unwrap();
        for value in values {
            request
                .headers_mut()
                .append(header::AUTHORIZATION, value.clone());
        }
        buffer.take();
        let response = app.oneshot(request).await.unwrap();
        assert_ne!(response.status(), StatusCode::OK, "{name}");
        let text = buffer.take();
        assert!(
            text.contains("system user token refused") && has_reason(&text, reason),
            "{name}: no refusal logged:\n{text}"
        );
        let mut secrets = f.secrets();
        for token in tokens {
            secrets.token(name, token);
        }
        secrets.assert_absent_from(&text, name);
    }

    // Accepted through the layer: the user id, not the token.
    let app = Router::new()
        .route("/", get(|| async { "called" }))
        .layer(f.auth().layer());
    let request = Request::get("/")
        .header(header::AUTHORIZATION, format!("Bearer {valid}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.oneshot(request).await.unwrap().status(), StatusCode::OK);
    let text = buffer.take();
    assert!(text.contains("system user token accepted"), "{text}");
    let mut secrets = f.secrets();
    secrets.token("accepted", &valid);
    secrets.assert_absent_from(&text, "accepted through the layer");
    eprintln!("{} refusals checked through the layer", cases.len());
}

// ---------------------------------------------------------------------------
// Rate limit
// ---------------------------------------------------------------------------

fn count(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

fn suppressed_total(text: &str) -> usize {
    text.lines()
        .filter(|l| l.contains("more system user tokens were refused than are logged"))
        .map(|l| {
            let digits: String = l
                .split("suppressed=")
                .nth(1)
                .expect("a suppressed= field")
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse::<usize>().expect("a count")
        })
        .sum()
}

#[test]
fn a_flood_of_refusals_is_logged_at_a_bounded_rate_and_summarised() {
    const FLOOD: usize = 10_000;
    let f = Fixture::new();
    let auth = f.auth();
    let buffer = Captured::default();
    tracing::subscriber::with_default(buffer.subscriber(), || {
        let start = Instant::now();
        for i in 0..FLOOD {
            let _ = auth.verify(&format!("junk-{MARK}-{i}"));
        }
        let elapsed = start.elapsed();
        let text = buffer.text();
        let logged = count(&text, "system user token refused");
        // The flood touches at most `elapsed + 2` distinct seconds.
        let bound = REFUSAL_LOGS_PER_SECOND * (elapsed.as_secs() as usize + 2);
        assert!(
            (1..=bound).contains(&logged),
            "{logged} refusal lines for {FLOOD} refusals in {elapsed:?} (bound {bound})"
        );
        assert!(
            text.len() < 64 * 1024,
            "{} bytes of log for the flood",
            text.len()
        );

        // The count of what was not logged appears once the next second begins
        // (with the next refusal).
        let into_second = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        std::thread::sleep(Duration::from_nanos(
            1_000_000_000 - u64::from(into_second) + 50_000_000,
        ));
        let _ = auth.verify(&format!("junk-{MARK}-last"));
        let text = buffer.text();
        let logged = count(&text, "system user token refused");
        let suppressed = suppressed_total(&text);
        assert!(suppressed > 0, "no summary line:\n{text}");
        assert_eq!(
            logged + suppressed,
            FLOOD + 1,
            "every refusal is either logged or counted in a summary:\n{text}"
        );
        f.secrets().assert_absent_from(&text, "flood");
        assert!(!text.contains("junk-"), "a junk token was logged");
        eprintln!(
            "flood: {FLOOD} refusals in {elapsed:?}; {logged} logged, {suppressed} summarised"
        );
    });
}

// ---------------------------------------------------------------------------
// Failed reloads
// ---------------------------------------------------------------------------

/// A change that breaks a reload: new content for the key file or the config.
struct BadChange {
    name: &'static str,
    key_file: Option<Vec<u8>>,
    config: Option<String>,
}

/// A 1024-bit RSA public key in PEM, made by `openssl` (`None` without it).
fn small_public_pem() -> Option<Vec<u8>> {
    let private = Command::new("openssl")
        .args(["genrsa", "1024"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?
        .stdout;
    let mut child = Command::new("openssl")
        .args(["rsa", "-pubout"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(&private).ok()?;
    let out = child.wait_with_output().ok()?;
    out.status.success().then_some(out.stdout)
}

fn bad_changes(f: &Fixture) -> Vec<BadChange> {
    let private = f.user.private_pem();
    let public = f.user.public_pem();
    let private_data = STANDARD.encode(private);
    let header = "ExternalDomain: custom-domain.com\nExternalPort: 443\nExternalSecure: true\n";
    let private_path = f.dir.path().join("private.pem");
    std::fs::write(&private_path, private).unwrap();
    let mut damaged = public.to_owned();
    let at = damaged.find('\n').unwrap() + 20;
    damaged.replace_range(at..at + 1, "*");
    let key = |name, bytes: Vec<u8>| BadChange {
        name,
        key_file: Some(bytes),
        config: None,
    };
    let config = |name, text: String| BadChange {
        name,
        key_file: None,
        config: Some(format!("{header}{text}")),
    };
    let mut changes = vec![
        key("key file: garbage", b"this is not a key at all\n".to_vec()),
        key("key file: empty", Vec::new()),
        key("key file: the private key", private.as_bytes().to_vec()),
        key(
            "key file: public and private key",
            format!("{public}{private}").into_bytes(),
        ),
        key("key file: damaged PEM", damaged.into_bytes()),
        key(
            "key file: public key labelled CERTIFICATE",
            public.replace("PUBLIC KEY", "CERTIFICATE").into_bytes(),
        ),
        key(
            "key file: private key labelled PUBLIC KEY",
            private.replace("PRIVATE KEY", "PUBLIC KEY").into_bytes(),
        ),
        key(
            "key file: KeyData (base64 of the PEM) instead of PEM",
            f.user.key_data().into_bytes(),
        ),
        config(
            "config: broken YAML next to private KeyData",
            format!(
                "SystemAPIUsers:\n  - {TEST_USER}:\n      KeyData: {private_data}\n     broken: [\n"
            ),
        ),
        config(
            "config: KeyData holds the private key",
            format!("SystemAPIUsers:\n  - {TEST_USER}:\n      KeyData: {private_data}\n"),
        ),
        config(
            "config: KeyData holds the private PEM text",
            format!(
                "SystemAPIUsers:\n  - {TEST_USER}:\n      KeyData: |\n{}",
                private
                    .lines()
                    .map(|l| format!("        {l}\n"))
                    .collect::<String>()
            ),
        ),
        config(
            "config: KeyData holds damaged base64 of the private key",
            format!(
                "SystemAPIUsers:\n  - {TEST_USER}:\n      KeyData: {}*{}\n",
                &private_data[..40],
                &private_data[40..]
            ),
        ),
        config(
            "config: Path names the private key file",
            format!(
                "SystemAPIUsers:\n  - {TEST_USER}:\n      Path: {}\n",
                private_path.display()
            ),
        ),
        config(
            "config: the user's value is the private key data (KeyData: forgotten)",
            format!("SystemAPIUsers:\n  - {TEST_USER}: {private_data}\n"),
        ),
        config(
            "config: the user's value is the public key data (KeyData: forgotten)",
            format!("SystemAPIUsers:\n  - {TEST_USER}: {}\n", f.user.key_data()),
        ),
        config(
            "config: SystemAPIUsers is the private key data",
            format!("SystemAPIUsers: {private_data}\n"),
        ),
        config(
            "config: JSON form with a syntax error after private keyData",
            format!("SystemAPIUsers: '{{\"{TEST_USER}\": {{\"keyData\": \"{private_data}\"}}'\n"),
        ),
        config(
            "config: Memberships holds the private key data",
            format!(
                "SystemAPIUsers:\n  - {TEST_USER}:\n      Path: {}\n      Memberships: {private_data}\n",
                f.key_file().display()
            ),
        ),
        config(
            "config: Roles holds a list of the private key data",
            format!(
                "SystemAPIUsers:\n  - {TEST_USER}:\n      Path: {}\n      Memberships:\n        - MemberType: System\n          Roles: [[{private_data}]]\n",
                f.key_file().display()
            ),
        ),
        config(
            "config: MemberType holds the private key data",
            format!(
                "SystemAPIUsers:\n  - {TEST_USER}:\n      Path: {}\n      Memberships:\n        - MemberType: {private_data}\n          Roles: [SYSTEM_OWNER]\n",
                f.key_file().display()
            ),
        ),
        config(
            "config: ExternalPort holds the private key data",
            format!(
                "ExternalPort: {private_data}\nSystemAPIUsers:\n  - {TEST_USER}:\n      Path: {}\n",
                f.key_file().display()
            ),
        ),
    ];
    match small_public_pem() {
        Some(pem) => changes.push(key("key file: a 1024-bit key", pem)),
        None => eprintln!("openssl is not available: the too-small key is not tried"),
    }
    changes
}

/// Replaces `path` atomically (write beside it, rename over it).
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Applies a bad change; returns a function that restores the good files.
fn apply(f: &Fixture, change: &BadChange) -> impl FnOnce() + use<> {
    let good_key = std::fs::read(f.key_file()).unwrap();
    let good_config = std::fs::read(&f.config).unwrap();
    if let Some(bytes) = &change.key_file {
        replace(&f.key_file(), bytes);
    }
    if let Some(text) = &change.config {
        replace(&f.config, text.as_bytes());
    }
    let (key_file, config) = (f.key_file(), f.config.clone());
    move || {
        replace(&key_file, &good_key);
        replace(&config, &good_config);
    }
}

#[test]
fn failed_reloads_report_and_log_no_key_material() {
    let f = Fixture::new();
    let auth = f.auth();
    let token = f.user.token(TEST_USER, TEST_AUDIENCE).build();
    let changes = bad_changes(&f);
    let buffer = Captured::default();
    let mut failures = Vec::new();
    tracing::subscriber::with_default(buffer.subscriber(), || {
        for change in &changes {
            let restore = apply(&f, change);
            let result = auth.reload();
            let status = auth.status();
            assert!(
                matches!(
                    status.last_outcome,
                    ReloadOutcome::Failed | ReloadOutcome::Partial
                ),
                "{}: the reload did not fail: {result:?}",
                change.name
            );
            let reported = match &result {
                Ok(report) => format!("{} {report:?}", report.problems.join("; ")),
                Err(error) => format!("{error} {error:?}"),
            };
            // The last good key still verifies.
            assert!(auth.verify(&token).is_ok(), "{}", change.name);
            let secrets = f.secrets();
            for (what, text) in [
                ("log", buffer.take()),
                ("returned error", reported),
                ("status().last_error", format!("{:?}", status.last_error)),
            ] {
                if let Err(failure) = secrets.check(&text, &format!("{}, {what}", change.name)) {
                    failures.push(failure);
                }
            }
            restore();
            auth.reload().expect("the good files load again");
        }
    });
    eprintln!("{} failed reloads checked through reload()", changes.len());
    assert!(
        failures.is_empty(),
        "{} leaks:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The reload thread logs a failed reload once; that line holds no key material.
/// The thread has no scoped subscriber, so this uses the global one.
#[test]
fn the_watcher_logs_failed_reloads_without_key_material() {
    let buffer = global();
    let f = Fixture::new();
    let auth = SystemAuth::builder()
        .config_file(&f.config)
        .debounce(Duration::from_millis(20))
        .build()
        .unwrap();
    let token = f.user.token(TEST_USER, TEST_AUDIENCE).build();
    let changes = bad_changes(&f);
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let failure_line = "reload kept the last good keys";
    let mut logged = 0;
    let mut failures = Vec::new();
    let secrets = f.secrets();
    for change in &changes {
        let before = count(&buffer.text(), failure_line);
        let restore = apply(&f, change);
        wait(change.name, &|| {
            count(&buffer.text(), failure_line) > before
        });
        logged += 1;
        let line = buffer
            .text()
            .lines()
            .filter(|l| l.contains(failure_line))
            .nth(before)
            .unwrap_or_default()
            .to_owned();
        if let Err(failure) = secrets.check(&line, change.name) {
            failures.push(failure);
        }
        assert!(auth.verify(&token).is_ok(), "{}", change.name);
        restore();
        wait(&format!("{}: recovery", change.name), &|| {
            let status = auth.status();
            matches!(
                status.last_outcome,
                ReloadOutcome::Changed | ReloadOutcome::Unchanged
            ) && status.last_error.is_none()
        });
    }
    let text = buffer.text();
    assert_eq!(count(&text, failure_line), logged, "{text}");
    eprintln!("{logged} failed reloads checked through the watcher");
    assert!(
        failures.is_empty(),
        "{} leaks:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Everything else the reload thread logged (events, spans) is clean too.
    let others: String = text
        .lines()
        .filter(|l| !l.contains(failure_line))
        .collect::<Vec<_>>()
        .join("\n");
    secrets.assert_absent_from(&others, "reload thread, other lines");
}
