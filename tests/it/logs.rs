//! What the crate logs about refusals and failed reloads: the reason, never the
//! token, a claim value from it, or key material; and refusal logs are
//! rate-limited.
//!
//! Each test captures the tracing output of its own thread in a buffer (a scoped
//! subscriber); the watcher's reload thread, which no scoped subscriber reaches,
//! writes to the test binary's global capture (`common::reload_log`).

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
    routing::get,
};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use tower::ServiceExt as _;
use zitadel_system_auth::{ReloadOutcome, SystemAuth, testing::TestKey};

use crate::{
    cases::{self, MARK, USER, World, keys},
    common::{self, Captured},
};

/// Refusals logged in one second at most (the README: 20 a second; the crate
/// exports the number as `REFUSAL_LOGS_PER_SECOND`).
const REFUSAL_LOGS_PER_SECOND: usize = 20;

#[test]
fn the_refusal_log_rate_is_the_documented_one() {
    assert_eq!(
        zitadel_system_auth::REFUSAL_LOGS_PER_SECOND as usize,
        REFUSAL_LOGS_PER_SECOND
    );
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
    /// Every key of the cases, in every form.
    fn of_the_keys() -> Secrets {
        let k = keys();
        let mut secrets = Secrets::default();
        secrets.key("user key", &k.user, &k.attacker);
        secrets.key("user 2 key", &k.user2, &k.attacker);
        secrets.key("certificate key", &k.cert, &k.attacker);
        secrets.key("attacker key", &k.attacker, &k.user);
        secrets
    }

    fn add(&mut self, label: impl Into<String>, text: impl Into<String>) {
        let text = text.into();
        if text.len() >= 12 {
            self.0.push((label.into(), text));
        }
    }

    /// What a request sent (`cases::Sent::secrets`).
    fn sent(&mut self, label: &str, sent: &cases::Sent) {
        for secret in sent.secrets() {
            self.add(format!("{label}: what was sent"), secret);
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

// ---------------------------------------------------------------------------
// Refusals: every case of the table
// ---------------------------------------------------------------------------

/// Every token of the refusal table, through `verify` (each with a verifier of its
/// own, so the rate limit never hides a line): one line `system user token
/// refused` with the row's reason, and nothing of the token, the keys or an
/// attacker-chosen value, in the log or in the error's own text.
#[test]
fn refusals_through_verify_log_the_reason_and_nothing_of_the_token() {
    let world = World::new();
    let buffer = Captured::default();
    let mut checked = 0;
    tracing::subscriber::with_default(buffer.subscriber(), || {
        for (case, token) in cases::refused_by_verify() {
            world.set_at(case.at);
            let auth = world.builder().build().expect("build SystemAuth");
            buffer.take();
            let error = auth.verify(&token).expect_err(case.name);
            let text = buffer.take();
            assert!(
                text.contains("system user token refused") && has_reason(&text, case.reason),
                "{}: no refusal logged with reason {}:\n{text}",
                case.name,
                case.reason
            );
            let mut secrets = Secrets::of_the_keys();
            secrets.sent(case.name, &cases::Sent::Bearer(token));
            secrets.assert_absent_from(&text, case.name);
            // The error's own text (what an application would log) is clean too.
            secrets.assert_absent_from(&format!("{error} {error:?}"), case.name);
            checked += 1;
        }

        // An accepted token is logged (at debug, with the user id), not the token.
        world.set_at(cases::At::T);
        let token = cases::valid();
        world.builder().build().unwrap().verify(&token).unwrap();
        let text = buffer.take();
        assert!(
            text.contains("system user token accepted") && text.contains(USER),
            "{text}"
        );
        let mut secrets = Secrets::of_the_keys();
        secrets.token("accepted", &token);
        secrets.assert_absent_from(&text, "accepted");
    });
    eprintln!("{checked} refusals checked through verify");
}

/// Every case of the refusal table through the layer: the row's reason, nothing
/// of what was sent. (A route's role is refused after the layer accepted the
/// token, which it logs as accepted; the role check then logs its refusal with
/// the user id and the role.)
#[tokio::test(flavor = "current_thread")]
async fn refusals_through_the_layer_log_the_reason_and_nothing_of_the_token() {
    let world = World::new();
    let buffer = Captured::default();
    let _guard = tracing::subscriber::set_default(buffer.subscriber());
    let table = cases::refusals();
    for case in &table {
        world.set_at(case.at);
        let auth = world.builder().build().expect("build SystemAuth");
        let (app, _) = cases::app(&auth, case.role);
        let sent = (case.make)();
        buffer.take();
        let response = app.oneshot(sent.request(false)).await.unwrap();
        assert_eq!(response.status().as_u16(), case.status, "{}", case.name);
        let text = buffer.take();
        match case.role {
            None => assert!(
                text.contains("system user token refused") && has_reason(&text, case.reason),
                "{}: no refusal logged with reason {}:\n{text}",
                case.name,
                case.reason
            ),
            // The layer accepted the token; the route's role check refused it.
            Some(role) => assert!(
                text.contains("system user token accepted")
                    && text.contains("request refused by the route's role check")
                    && has_reason(&text, case.reason)
                    && text.contains(&format!("role=\"{role}\""))
                    && text.contains(USER),
                "{}: no role refusal logged with reason {}, the role and the user:\n{text}",
                case.name,
                case.reason
            ),
        }
        let mut secrets = Secrets::of_the_keys();
        secrets.sent(case.name, &sent);
        secrets.assert_absent_from(&text, case.name);
    }

    // Accepted through the layer: the user id, not the token.
    world.set_at(cases::At::T);
    let valid = cases::valid();
    let app = Router::new()
        .route("/", get(|| async { "called" }))
        .layer(world.builder().build().unwrap().layer());
    let request = Request::get("/")
        .header(header::AUTHORIZATION, format!("Bearer {valid}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.oneshot(request).await.unwrap().status(), StatusCode::OK);
    let text = buffer.take();
    assert!(text.contains("system user token accepted"), "{text}");
    let mut secrets = Secrets::of_the_keys();
    secrets.token("accepted", &valid);
    secrets.assert_absent_from(&text, "accepted through the layer");
    eprintln!("{} refusals checked through the layer", table.len());
}

/// A route's role check with no authentication layer in front refuses with 401
/// and logs why, with no user id (there is none).
#[tokio::test(flavor = "current_thread")]
async fn a_role_check_without_a_user_logs_a_missing_token() {
    let buffer = Captured::default();
    let _guard = tracing::subscriber::set_default(buffer.subscriber());
    let app = Router::new()
        .route("/", get(|| async { "called" }))
        .route_layer(zitadel_system_auth::RequireRoleLayer::new("SYSTEM_OWNER"));
    let request = Request::get("/")
        .header(header::AUTHORIZATION, format!("Bearer {}", cases::valid()))
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let text = buffer.take();
    assert!(
        text.contains("request refused by the route's role check")
            && has_reason(&text, "missing_token")
            && text.contains("role=\"SYSTEM_OWNER\"")
            && !text.contains("user_id"),
        "{text}"
    );
    let mut secrets = Secrets::of_the_keys();
    secrets.token("sent to a role check alone", &cases::valid());
    secrets.assert_absent_from(&text, "role check without a user");
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
    let world = World::new();
    let auth = &world.auth;
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
        // (with the next refusal): wait for the wall clock's next second.
        let second = |time: SystemTime| time.duration_since(UNIX_EPOCH).unwrap().as_secs();
        let last = second(SystemTime::now());
        while second(SystemTime::now()) == last {
            std::thread::sleep(Duration::from_millis(10));
        }
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
        Secrets::of_the_keys().assert_absent_from(&text, "flood");
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

fn bad_changes(world: &World) -> Vec<BadChange> {
    let user = &keys().user;
    let private = user.private_pem();
    let public = user.public_pem();
    let private_data = STANDARD.encode(private);
    let header = "ExternalDomain: custom-domain.com\nExternalPort: 443\nExternalSecure: true\n";
    let private_path = world.dir().join("private.pem");
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
            user.key_data().into_bytes(),
        ),
        config(
            "config: broken YAML next to private KeyData",
            format!(
                "SystemAPIUsers:\n  - {USER}:\n      KeyData: {private_data}\n     broken: [\n"
            ),
        ),
        config(
            "config: KeyData holds the private key",
            format!("SystemAPIUsers:\n  - {USER}:\n      KeyData: {private_data}\n"),
        ),
        config(
            "config: KeyData holds the private PEM text",
            format!(
                "SystemAPIUsers:\n  - {USER}:\n      KeyData: |\n{}",
                private
                    .lines()
                    .map(|l| format!("        {l}\n"))
                    .collect::<String>()
            ),
        ),
        config(
            "config: KeyData holds damaged base64 of the private key",
            format!(
                "SystemAPIUsers:\n  - {USER}:\n      KeyData: {}*{}\n",
                &private_data[..40],
                &private_data[40..]
            ),
        ),
        config(
            "config: Path names the private key file",
            format!(
                "SystemAPIUsers:\n  - {USER}:\n      Path: {}\n",
                private_path.display()
            ),
        ),
        config(
            "config: the user's value is the private key data (KeyData: forgotten)",
            format!("SystemAPIUsers:\n  - {USER}: {private_data}\n"),
        ),
        config(
            "config: the user's value is the public key data (KeyData: forgotten)",
            format!("SystemAPIUsers:\n  - {USER}: {}\n", user.key_data()),
        ),
        config(
            "config: SystemAPIUsers is the private key data",
            format!("SystemAPIUsers: {private_data}\n"),
        ),
        config(
            "config: JSON form with a syntax error after private keyData",
            format!("SystemAPIUsers: '{{\"{USER}\": {{\"keyData\": \"{private_data}\"}}'\n"),
        ),
        config(
            "config: Memberships holds the private key data",
            format!(
                "SystemAPIUsers:\n  - {USER}:\n      Path: {}\n      Memberships: {private_data}\n",
                key_file(world).display()
            ),
        ),
        config(
            "config: Roles holds a list of the private key data",
            format!(
                "SystemAPIUsers:\n  - {USER}:\n      Path: {}\n      Memberships:\n        - MemberType: System\n          Roles: [[{private_data}]]\n",
                key_file(world).display()
            ),
        ),
        config(
            "config: MemberType holds the private key data",
            format!(
                "SystemAPIUsers:\n  - {USER}:\n      Path: {}\n      Memberships:\n        - MemberType: {private_data}\n          Roles: [SYSTEM_OWNER]\n",
                key_file(world).display()
            ),
        ),
        config(
            "config: ExternalPort holds the private key data",
            format!(
                "ExternalPort: {private_data}\nSystemAPIUsers:\n  - {USER}:\n      Path: {}\n",
                key_file(world).display()
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

/// The user's key file.
fn key_file(world: &World) -> PathBuf {
    world.dir().join(format!("{USER}.pub"))
}

/// Applies a bad change; returns a function that restores the good files.
fn apply(world: &World, change: &BadChange) -> impl FnOnce() + use<> {
    let (key_file, config) = (key_file(world), world.config());
    let good_key = std::fs::read(&key_file).unwrap();
    let good_config = std::fs::read(&config).unwrap();
    if let Some(bytes) = &change.key_file {
        replace(&key_file, bytes);
    }
    if let Some(text) = &change.config {
        replace(&config, text.as_bytes());
    }
    move || {
        replace(&key_file, &good_key);
        replace(&config, &good_config);
    }
}

#[test]
fn failed_reloads_report_and_log_no_key_material() {
    let world = World::new();
    let auth = world.builder().build().expect("build SystemAuth");
    let token = cases::valid();
    let changes = bad_changes(&world);
    let buffer = Captured::default();
    let mut failures = Vec::new();
    tracing::subscriber::with_default(buffer.subscriber(), || {
        for change in &changes {
            let restore = apply(&world, change);
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
            let secrets = Secrets::of_the_keys();
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
/// The thread has no scoped subscriber: its lines are in the test binary's global
/// capture, told from other tests' by the thread that wrote them (the one that
/// names this test's folder).
#[test]
fn the_watcher_logs_failed_reloads_without_key_material() {
    let log = common::reload_log();
    let world = World::new();
    let auth: SystemAuth = world
        .builder()
        .watch(true)
        .debounce(Duration::from_millis(20))
        .build()
        .unwrap();
    let token = cases::valid();
    let changes = bad_changes(&world);
    let folder = world.dir().display().to_string();
    // This test's reload thread's lines.
    let ours = || log.lines_of_threads_mentioning(&folder).join("\n");
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; status {:#?}; this folder's lines: {:#?}; {} lines captured",
                auth.status(),
                log.lines_with(&folder),
                log.lines_with("").len()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let failure_line = "reload kept the last good keys";
    let mut logged = 0;
    let mut failures = Vec::new();
    let secrets = Secrets::of_the_keys();
    for change in &changes {
        let before = count(&ours(), failure_line);
        let restore = apply(&world, change);
        wait(change.name, &|| count(&ours(), failure_line) > before);
        logged += 1;
        let line = ours()
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
    let text = ours();
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
