//! Drives the compiled examples over real TCP on loopback: the `server` example
//! (routes, refusals, environment overrides, shutdown), `key2jwt` with a key from
//! the `openssl` command line, and `quickstart --once`.
//!
//! The example binaries are found next to the test binary
//! (`target/<profile>/examples/`); they are built first with the same cargo, since
//! `cargo test --test it example_server` alone does not build examples.

#[path = "../../examples/support/http.rs"]
mod http;

use std::{
    io::{BufRead as _, BufReader, Read as _},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, OnceLock, mpsc},
    thread,
    time::{Duration, Instant},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use zitadel_system_auth::{SystemAuth, SystemUser, config};

use crate::common::{self, KeyExt as _};

/// How long a child may take to start or to finish (debug builds on a busy machine).
const STARTUP: Duration = Duration::from_secs(120);
/// The examples this test runs.
const EXAMPLES: [&str; 3] = ["server", "key2jwt", "quickstart"];
const SEARCH: &str = "/system/v1/instances/_search";
const AUD: &str = "https://custom-domain.com";
const OWNER: &str = "system-user-1";
const PLAIN: &str = "system-user-2";

// ---- Finding and running the examples ----

/// `target/<profile>/examples/<name>`, built (once per test run) if needed.
fn example(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        // current_exe is target/<profile>/deps/it-HASH.
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test binary lives in target/<profile>/deps");
        build_examples(profile_dir);
        profile_dir.join("examples")
    });
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "example binary {} is missing",
        path.display()
    );
    path
}

/// Runs `cargo build --example ...` with the cargo that runs this test, for the same
/// profile and target folder, so the binaries match the sources under test.
fn build_examples(profile_dir: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("profile folder name");
    // target/<profile>, or target/<triple>/<profile> when cross-compiling.
    let mut target_dir = profile_dir.parent().expect("target folder");
    let mut command = Command::new(cargo);
    command
        .args(["build", "--manifest-path"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
    if !target_dir.join("CACHEDIR.TAG").exists()
        && let (Some(triple), Some(parent)) = (
            target_dir.file_name().and_then(|n| n.to_str()),
            target_dir.parent(),
        )
    {
        command.args(["--target", triple]);
        target_dir = parent;
    }
    for example in EXAMPLES {
        command.args(["--example", example]);
    }
    // The features this test binary was built with, so the library under test is
    // the same build (and not a second one with other features).
    let features: Vec<&str> = [
        ("metrics", cfg!(feature = "metrics")),
        ("testing", cfg!(feature = "testing")),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    if !features.is_empty() {
        command.args(["--features", &features.join(",")]);
    }
    // What cargo sets for a running test describes this package, not the build:
    // build scripts that watch such variables (ring's watches CARGO_PKG_NAME and
    // CARGO_MANIFEST_DIR) would see them change, and rebuild here and then again in
    // the next `cargo test`.
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || name.starts_with("CARGO_BIN_")
            || name.starts_with("CARGO_CRATE_")
            || name.starts_with("CARGO_CFG_")
            || matches!(
                name,
                "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
                    | "OUT_DIR"
            )
        {
            command.env_remove(name);
        }
    }
    command.arg("--target-dir").arg(target_dir);
    match profile {
        "debug" => {}
        "release" => {
            command.arg("--release");
        }
        other => {
            command.args(["--profile", other]);
        }
    }
    let status = command.status().expect("run cargo build");
    assert!(
        status.success(),
        "cargo build of the examples failed: {status}"
    );
}

/// A child process that is killed (and reaped) when the guard goes away, also when
/// a test fails half-way.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl ChildGuard {
    /// Waits up to `limit` for the child to exit.
    fn wait_timeout(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A command for an example, with ZITADEL's environment variables cleared so the
/// caller's environment cannot change the outcome.
fn command(name: &str) -> Command {
    let mut command = Command::new(example(name));
    for var in [
        config::ENV_SYSTEM_API_USERS,
        config::ENV_EXTERNAL_DOMAIN,
        config::ENV_EXTERNAL_PORT,
        config::ENV_EXTERNAL_SECURE,
    ] {
        command.env_remove(var);
    }
    command.stdin(Stdio::null());
    command
}

/// Collects a pipe, line by line as it comes, into a shared string on a thread.
fn collect(pipe: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let mut sink = sink.lock().expect("lock");
            sink.push_str(&line);
            sink.push('\n');
        }
    });
    text
}

/// What a finished child printed.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs an example to completion (at most [`STARTUP`]).
fn run_to_end(mut command: Command) -> Finished {
    let mut child = ChildGuard(
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn example"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let stderr = child.0.stderr.take().expect("stderr");
    // Read both pipes to the end on threads, so a chatty child cannot block.
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(stdout).read_to_string(&mut text);
        let _ = tx.send((0, text));
    });
    thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut text);
        let _ = tx2.send((1, text));
    });
    let Some(status) = child.wait_timeout(STARTUP) else {
        panic!("the example did not finish within {STARTUP:?}");
    };
    let (mut out, mut err) = (String::new(), String::new());
    for _ in 0..2 {
        let (which, text) = rx.recv_timeout(STARTUP).expect("pipe reader");
        if which == 0 {
            out = text;
        } else {
            err = text;
        }
    }
    Finished {
        status,
        stdout: out,
        stderr: err,
    }
}

/// A running `server` example.
struct Server {
    child: ChildGuard,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts the server on a free loopback port with `config` and extra environment
    /// variables, and waits for its `listening on http://ADDR` line.
    fn start(config: &Path, env: &[(&str, &str)]) -> Server {
        Server::start_with(config, env, &[])
    }

    /// Like [`Server::start`], with further command-line arguments.
    fn start_with(config: &Path, env: &[(&str, &str)], args: &[&str]) -> Server {
        Server::spawn(server_command(config, env, args))
    }

    /// Starts `command` (from [`server_command`]) and waits for its `listening on`
    /// line.
    fn spawn(mut command: Command) -> Server {
        let mut child = ChildGuard(command.spawn().expect("spawn the server example"));
        let stderr = collect(child.0.stderr.take().expect("stderr"));
        let stdout = child.0.stdout.take().expect("stdout");
        let (lines, received) = mpsc::channel();
        thread::spawn(move || {
            // Keeps reading after the test stops listening, so the pipe stays open.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = lines.send(line);
            }
        });
        let deadline = Instant::now() + STARTUP;
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match received.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("listening on http://") {
                        break addr.parse().expect("a socket address after http://");
                    }
                }
                Err(error) => panic!(
                    "no `listening on` line from the server ({error}); status {:?}; stderr:\n{}",
                    child.0.try_wait(),
                    stderr.lock().expect("lock")
                ),
            }
        };
        Server {
            child,
            addr,
            stderr,
        }
    }

    async fn call(&self, method: &str, path: &str, token: Option<&str>) -> http::Reply {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer
            .as_deref()
            .map(|b| ("Authorization", b))
            .into_iter()
            .collect();
        http::request(self.addr, method, path, &headers)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{method} {path} failed: {e}; server stderr:\n{}",
                    self.stderr.lock().expect("lock")
                )
            })
    }
}

/// The command line of the server example on a free loopback port.
fn server_command(config: &Path, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut command = command("server");
    command
        .arg("--config")
        .arg(config)
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

// ---- Configuration ----

/// A config with `system-user-1` (System and IAM memberships) and `system-user-2`
/// (no memberships, so ZITADEL's default), written to a fresh folder.
fn write_config(owner: &common::TestKey, plain: &common::TestKey) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = format!(
        "ExternalDomain: custom-domain.com\n\
         ExternalPort: 443\n\
         ExternalSecure: true\n\
         SystemAPIUsers:\n\
         \x20 - {OWNER}:\n\
         \x20     Path: {}\n\
         \x20     Memberships:\n\
         \x20       - MemberType: System\n\
         \x20         Roles: [SYSTEM_OWNER_VIEWER]\n\
         \x20       - MemberType: IAM\n\
         \x20         Roles: [IAM_OWNER]\n\
         \x20         AggregateID: \"123456789012345678\"\n\
         \x20 - {PLAIN}:\n\
         \x20     Path: {}\n",
        owner.public_path().display(),
        plain.public_path().display(),
    );
    std::fs::write(dir.path().join("config.yaml"), yaml).expect("write config");
    dir
}

fn keys() -> &'static (common::TestKey, common::TestKey) {
    static KEYS: OnceLock<(common::TestKey, common::TestKey)> = OnceLock::new();
    KEYS.get_or_init(|| (common::TestKey::generate(), common::TestKey::generate()))
}

fn token(key: &common::TestKey, user: &str, aud: &str) -> String {
    key.rs256(&common::claims_for(user, aud, common::now()))
}

fn json_body(reply: &http::Reply) -> Value {
    serde_json::from_str(&reply.body)
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", reply.body))
}

fn instance_domain(reply: &http::Reply) -> Value {
    json_body(reply)["result"][0]["domains"][0]["domain"].clone()
}

// ---- The server ----

#[tokio::test]
async fn server_answers_over_tcp() {
    let (owner, plain) = keys();
    let dir = write_config(owner, plain);
    let server = Server::start(&dir.path().join("config.yaml"), &[]);
    assert!(server.addr.ip().is_loopback());

    // Open route.
    let reply = server.call("GET", "/healthz", None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, "ok");

    // No token: 401, bare challenge, ZITADEL's body.
    let reply = server.call("POST", SEARCH, None).await;
    assert_eq!(reply.status, 401, "{reply:?}");
    assert_eq!(reply.status_line, "HTTP/1.1 401 Unauthorized");
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
    assert_eq!(json_body(&reply)["code"], 16);

    // A valid token: the instance, on the configured domain.
    let reply = server
        .call("POST", SEARCH, Some(&token(owner, OWNER, AUD)))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let body = json_body(&reply);
    assert_eq!(body["details"]["totalResult"], "1");
    assert_eq!(body["result"][0]["state"], "STATE_RUNNING");
    assert_eq!(body["result"][0]["domains"][0]["primary"], true);
    assert_eq!(instance_domain(&reply), "custom-domain.com");

    // whoami: every membership; the roles of those that apply (System only, as the
    // request names no instance).
    let reply = server
        .call("GET", "/whoami", Some(&token(owner, OWNER, AUD)))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        json_body(&reply),
        json!({
            "userId": OWNER,
            "memberships": [
                { "memberType": "System", "roles": ["SYSTEM_OWNER_VIEWER"] },
                { "memberType": "IAM", "roles": ["IAM_OWNER"], "aggregateId": "123456789012345678" },
            ],
            "roles": ["SYSTEM_OWNER_VIEWER"],
        })
    );

    // A user without memberships gets ZITADEL's default.
    let reply = server
        .call("GET", "/whoami", Some(&token(plain, PLAIN, AUD)))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        json_body(&reply),
        json!({
            "userId": PLAIN,
            "memberships": [{ "memberType": "System", "roles": ["SYSTEM_OWNER"] }],
            "roles": ["SYSTEM_OWNER"],
        })
    );
    let reply = server.call("GET", "/whoami", None).await;
    assert_eq!(reply.status, 401, "{reply:?}");

    // The wrong audience: 401 naming the expected one.
    let reply = server
        .call(
            "POST",
            SEARCH,
            Some(&token(owner, OWNER, "https://custom-domain.com/")),
        )
        .await;
    assert_eq!(reply.status, 401, "{reply:?}");
    let challenge = reply.header("www-authenticate").expect("WWW-Authenticate");
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\""),
        "{challenge}"
    );
    assert!(challenge.contains(AUD), "{challenge}");
    assert_eq!(json_body(&reply)["code"], 16);

    // A token signed with another user's key.
    let reply = server
        .call("POST", SEARCH, Some(&token(plain, OWNER, AUD)))
        .await;
    assert_eq!(reply.status, 401, "{reply:?}");

    // Unknown paths are not protected routes: 404 with or without a token.
    let reply = server.call("GET", "/nothing-here", None).await;
    assert_eq!(reply.status, 404, "{reply:?}");
    let reply = server
        .call(
            "POST",
            "/system/v1/nothing",
            Some(&token(owner, OWNER, AUD)),
        )
        .await;
    assert_eq!(reply.status, 404, "{reply:?}");
}

#[tokio::test]
async fn server_env_overrides_the_audience() {
    let (owner, plain) = keys();
    let dir = write_config(owner, plain);
    let server = Server::start(
        &dir.path().join("config.yaml"),
        &[(config::ENV_EXTERNAL_DOMAIN, "override.example")],
    );

    let reply = server
        .call(
            "POST",
            SEARCH,
            Some(&token(owner, OWNER, "https://override.example")),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(instance_domain(&reply), "override.example");

    let reply = server
        .call("POST", SEARCH, Some(&token(owner, OWNER, AUD)))
        .await;
    assert_eq!(reply.status, 401, "{reply:?}");
    let challenge = reply.header("www-authenticate").expect("WWW-Authenticate");
    assert!(
        challenge.contains("https://override.example"),
        "{challenge}"
    );
}

#[test]
fn server_refuses_a_bad_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "SystemAPIUsers:\n  - system-user-1:\n      Path: missing.pub\n",
    )
    .expect("write config");
    let mut command = command("server");
    command
        .arg("--config")
        .arg(&config)
        .args(["--listen", "127.0.0.1:0"]);
    let finished = run_to_end(command);
    assert!(!finished.status.success(), "{:?}", finished.status);
    assert!(
        !finished.stdout.contains("listening on"),
        "{}",
        finished.stdout
    );
    assert!(
        finished.stderr.contains("system-user-1") && finished.stderr.contains("missing.pub"),
        "{}",
        finished.stderr
    );
}

/// Sends `signal` to the server and waits for it to exit 0.
#[cfg(unix)]
fn stop_with(server: &mut Server, signal: &str) {
    let pid = server.child.0.id().to_string();
    let status = Command::new("kill")
        .args([signal, &pid])
        .status()
        .expect("run kill");
    assert!(status.success());
    let status = server
        .child
        .wait_timeout(STARTUP)
        .unwrap_or_else(|| panic!("the server stops after kill {signal}"));
    assert!(status.success(), "{status:?}");
}

#[cfg(unix)]
#[test]
fn server_stops_on_ctrl_c() {
    let (owner, plain) = keys();
    let dir = write_config(owner, plain);
    let mut server = Server::start(&dir.path().join("config.yaml"), &[]);
    stop_with(&mut server, "-INT");
}

/// SIGTERM (what Kubernetes and systemd send) stops the server as Ctrl-C does: it
/// exits 0 after the requests in flight.
#[cfg(unix)]
#[tokio::test]
async fn server_stops_on_sigterm() {
    let (owner, plain) = keys();
    let dir = write_config(owner, plain);
    let mut server = Server::start(&dir.path().join("config.yaml"), &[]);
    assert_eq!(server.call("GET", "/healthz", None).await.status, 200);
    stop_with(&mut server, "-TERM");
}

/// The server's `RequestBodyLimitLayer` answers a body announced over 64 KiB with
/// 413 at once, before the layer or a handler reads anything, with or without a
/// token; a small body with a token goes through.
#[tokio::test]
async fn server_refuses_a_body_over_its_limit() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let (owner, plain) = keys();
    let dir = write_config(owner, plain);
    let server = Server::start(&dir.path().join("config.yaml"), &[]);
    let bearer = format!("Bearer {}", token(owner, OWNER, AUD));
    let status = |length: usize, authorization: Option<&str>| {
        let authorization = authorization
            .map(|value| format!("Authorization: {value}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "POST {SEARCH} HTTP/1.1\r\nHost: localhost\r\n{authorization}\
             Content-Type: application/json\r\nContent-Length: {length}\r\n\
             Connection: close\r\n\r\n"
        );
        let addr = server.addr;
        async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            stream
                .write_all(head.as_bytes())
                .await
                .expect("send the head");
            if length <= 64 * 1024 {
                stream
                    .write_all(&vec![b' '; length])
                    .await
                    .expect("send the body");
            }
            let mut answer = Vec::new();
            tokio::time::timeout(STARTUP, stream.read_to_end(&mut answer))
                .await
                .expect("an answer in time")
                .expect("read the answer");
            // The status code of `HTTP/1.1 413 ...`.
            let answer = String::from_utf8_lossy(&answer).into_owned();
            let status_line = answer.lines().next().unwrap_or_default().to_owned();
            status_line
                .split(' ')
                .nth(1)
                .unwrap_or_else(|| panic!("no status line in {answer:?}"))
                .to_owned()
        }
    };
    assert_eq!(status(1024 * 1024, Some(&bearer)).await, "413");
    assert_eq!(status(1024 * 1024, None).await, "413");
    assert_eq!(status(2, Some(&bearer)).await, "200");
    assert_eq!(status(2, None).await, "401");
}

#[cfg(unix)]
#[tokio::test]
async fn server_reloads_on_sighup() {
    let (owner, _) = keys();
    let dir = tempfile::tempdir().expect("tempdir");
    let owner_pub = dir.path().join("owner.pub");
    std::fs::write(&owner_pub, owner.public_pem()).expect("write the key");
    std::fs::write(
        dir.path().join("config.yaml"),
        format!("ExternalDomain: custom-domain.com\nExternalPort: 443\nSystemAPIUsers:\n  - {OWNER}:\n      Path: owner.pub\n"),
    )
    .expect("write config");
    let server = Server::start_with(&dir.path().join("config.yaml"), &[], &["--no-watch"]);
    let rotated = common::TestKey::generate();
    let new_token = token(&rotated, OWNER, AUD);
    let path = "/system/v1/instances/_search";
    assert_eq!(
        server.call("POST", path, Some(&new_token)).await.status,
        401
    );

    // Replace the owner's key file; without watching, nothing changes until SIGHUP.
    std::fs::write(&owner_pub, rotated.public_pem()).expect("rotate the key file");
    assert_eq!(
        server.call("POST", path, Some(&new_token)).await.status,
        401
    );

    let status = Command::new("kill")
        .args(["-HUP", &server.child.0.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let deadline = Instant::now() + STARTUP;
    while !server
        .stderr
        .lock()
        .expect("lock")
        .contains("SIGHUP: reloaded")
    {
        assert!(
            Instant::now() < deadline,
            "no reload after SIGHUP; stderr:\n{}",
            server.stderr.lock().expect("lock")
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        server.call("POST", path, Some(&new_token)).await.status,
        200
    );
    let old_token = token(owner, OWNER, AUD);
    assert_eq!(
        server.call("POST", path, Some(&old_token)).await.status,
        401
    );
}

/// How many lines of the server's stderr contain `needle`.
fn stderr_count(server: &Server, needle: &str) -> usize {
    server
        .stderr
        .lock()
        .expect("lock")
        .lines()
        .filter(|line| line.contains(needle))
        .count()
}

/// Sends SIGHUP and waits (at most [`RELOAD_WAIT`]) for the server to report one
/// more finished reload on stderr.
#[cfg(unix)]
async fn sighup_and_wait(server: &Server) {
    let before = stderr_count(server, "SIGHUP: ");
    let status = Command::new("kill")
        .args(["-HUP", &server.child.0.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let deadline = Instant::now() + RELOAD_WAIT;
    while stderr_count(server, "SIGHUP: ") == before {
        assert!(
            Instant::now() < deadline,
            "the reload after SIGHUP did not finish within {RELOAD_WAIT:?}; stderr:\n{}",
            server.stderr.lock().expect("lock")
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// How long a reload or a change may take to show before a test fails.
const RELOAD_WAIT: Duration = Duration::from_secs(15);

/// `GET /healthz` answers `ok` within a few seconds.
async fn assert_healthy(server: &Server) {
    let reply = tokio::time::timeout(Duration::from_secs(5), server.call("GET", "/healthz", None))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "/healthz did not answer within 5 s; stderr:\n{}",
                server.stderr.lock().expect("lock")
            )
        });
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "ok"),
        "{reply:?}"
    );
}

/// Makes a FIFO at `path` with the `mkfifo` command (no `unsafe` in the tests).
fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {} failed", path.display());
}

#[cfg(unix)]
#[tokio::test]
async fn server_keeps_answering_when_a_fifo_replaces_the_key_under_sighup() {
    let (owner, _) = keys();
    let dir = tempfile::tempdir().expect("tempdir");
    let owner_pub = dir.path().join("owner.pub");
    let regular = dir.path().join("regular.pub");
    let fifo = dir.path().join("key.fifo");
    std::fs::write(&owner_pub, owner.public_pem()).expect("write the key");
    std::fs::write(&regular, owner.public_pem()).expect("write the key");
    mkfifo(&fifo);
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!("ExternalDomain: custom-domain.com\nExternalPort: 443\nSystemAPIUsers:\n  - {OWNER}:\n      Path: owner.pub\n"),
    )
    .expect("write config");
    let server = Server::start(&config, &[]);
    assert_healthy(&server).await;

    // A FIFO and a regular file are linked over the key in turn, as fast as
    // possible, so that some reload finds a regular file when it checks and a FIFO
    // when it opens; SIGHUP after SIGHUP, every reload finishes and the server
    // answers.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (stop, owner_pub, fifo, regular) = (
            stop.clone(),
            owner_pub.clone(),
            fifo.clone(),
            regular.clone(),
        );
        thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for source in [&fifo, &regular] {
                    let tmp = owner_pub.with_file_name(format!(".swap{n}"));
                    n += 1;
                    std::fs::hard_link(source, &tmp).expect("link");
                    std::fs::rename(&tmp, &owner_pub).expect("rename over the key");
                }
            }
        })
    };
    let started = Instant::now();
    let mut hangups = 0;
    while started.elapsed() < Duration::from_secs(3) || hangups < 20 {
        sighup_and_wait(&server).await;
        assert_healthy(&server).await;
        hangups += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    swapper.join().expect("swapper");

    // The FIFO stays: a failed read of the key, the last good key kept.
    let tmp = dir.path().join(".fifo-last");
    std::fs::hard_link(&fifo, &tmp).expect("link");
    std::fs::rename(&tmp, &owner_pub).expect("FIFO over the key");
    sighup_and_wait(&server).await;
    assert!(
        server
            .stderr
            .lock()
            .expect("lock")
            .lines()
            .rev()
            .find(|l| l.contains("SIGHUP: "))
            .is_some_and(|l| l.contains("not a regular file")),
        "{}",
        server.stderr.lock().expect("lock")
    );
    assert_healthy(&server).await;
    let old_token = token(owner, OWNER, AUD);
    assert_eq!(
        server.call("POST", SEARCH, Some(&old_token)).await.status,
        200
    );

    // A good new key, then SIGHUP: in effect.
    let rotated = common::TestKey::generate();
    let staged = dir.path().join(".owner.pub.new");
    std::fs::write(&staged, rotated.public_pem()).expect("write the new key");
    std::fs::rename(&staged, &owner_pub).expect("new key over the FIFO");
    sighup_and_wait(&server).await;
    let new_token = token(&rotated, OWNER, AUD);
    assert_eq!(
        server.call("POST", SEARCH, Some(&new_token)).await.status,
        200
    );
    assert_eq!(
        server.call("POST", SEARCH, Some(&old_token)).await.status,
        401
    );
}

#[test]
fn server_warns_once_about_an_empty_system_api_users() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "ExternalDomain: custom-domain.com\nExternalPort: 443\nSystemAPIUsers: []\n",
    )
    .expect("write config");
    let server = Server::start(&config, &[]);
    // The line printed after the configuration's warnings.
    let deadline = Instant::now() + STARTUP;
    while stderr_count(&server, "system users [];") == 0 {
        assert!(
            Instant::now() < deadline,
            "{}",
            server.stderr.lock().expect("lock")
        );
        thread::sleep(Duration::from_millis(10));
    }
    let stderr = server.stderr.lock().expect("lock").clone();
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains("SystemAPIUsers is empty"))
            .count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("WARN") && l.contains("SystemAPIUsers is empty")),
        "the warning comes through tracing: {stderr}"
    );
}

/// The effective user id of this process, from `id -u`.
#[cfg(unix)]
fn euid() -> u32 {
    let out = Command::new("id").arg("-u").output().expect("run id -u");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a user id")
}

/// Sets `path`'s mode.
#[cfg(unix)]
fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[cfg(unix)]
#[tokio::test]
#[ignore = "needs root: runs the example server as nobody"]
async fn server_as_nobody_applies_a_key_change_in_a_folder_it_cannot_watch() {
    use std::os::unix::{fs::PermissionsExt as _, process::CommandExt as _};
    const NOBODY: u32 = 65534;
    assert_eq!(
        euid(),
        0,
        "this test starts the server as nobody (uid {NOBODY}), which needs root"
    );
    // The server binary and every folder above it must be reachable by nobody.
    let binary = example("server");
    for path in binary.ancestors() {
        if path.as_os_str().is_empty() {
            continue;
        }
        let mode = std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode();
        assert!(
            mode & 0o001 != 0,
            "{} (mode {mode:o}) is not traversable/executable by others",
            path.display()
        );
    }
    // root (0755) / etc (0311: nobody may traverse it, not read it, so inotify
    // refuses to watch it) / config.yaml, key.pub (0644).
    let root = tempfile::tempdir().expect("tempdir");
    chmod(root.path(), 0o755);
    let etc = root.path().join("etc");
    std::fs::create_dir(&etc).expect("etc");
    let (owner, _) = keys();
    let key = etc.join("key.pub");
    std::fs::write(&key, owner.public_pem()).expect("key");
    chmod(&key, 0o644);
    let config = etc.join("config.yaml");
    std::fs::write(
        &config,
        format!("ExternalDomain: custom-domain.com\nExternalPort: 443\nSystemAPIUsers:\n  - {OWNER}:\n      Path: key.pub\n"),
    )
    .expect("config");
    chmod(&config, 0o644);
    chmod(&etc, 0o311);

    let mut command = server_command(&config, &[], &[]);
    command.uid(NOBODY).gid(NOBODY);
    let server = Server::spawn(command);
    let old_token = token(owner, OWNER, AUD);
    assert_eq!(
        server.call("POST", SEARCH, Some(&old_token)).await.status,
        200
    );
    assert!(
        stderr_count(&server, "cannot watch") >= 1,
        "the unwatchable folder is warned about: {}",
        server.stderr.lock().expect("lock")
    );

    // Replace the key (save-by-rename, as root), readable by nobody.
    let rotated = common::TestKey::generate();
    let staged = etc.join(".key.pub.new");
    std::fs::write(&staged, rotated.public_pem()).expect("new key");
    chmod(&staged, 0o644);
    std::fs::rename(&staged, &key).expect("rename over the key");
    let new_token = token(&rotated, OWNER, AUD);
    let deadline = Instant::now() + RELOAD_WAIT;
    while server.call("POST", SEARCH, Some(&new_token)).await.status != 200 {
        assert!(
            Instant::now() < deadline,
            "the new key was not accepted within {RELOAD_WAIT:?}; stderr:\n{}",
            server.stderr.lock().expect("lock")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        server.call("POST", SEARCH, Some(&old_token)).await.status,
        401
    );
    assert_eq!(
        stderr_count(&server, "cannot watch"),
        1,
        "warned once: {}",
        server.stderr.lock().expect("lock")
    );
}

// ---- key2jwt ----

/// A config that accepts `user` with the public key at `public`, audience [`AUD`].
fn auth_for(user: &str, public: &Path) -> SystemAuth {
    SystemAuth::builder()
        .config_yaml(&common::config_with_path(user, public))
        .build()
        .expect("config")
}

fn key2jwt(key: &Path, issuer: &str, lifetime: Option<&str>) -> Finished {
    let mut command = command("key2jwt");
    command
        .args(["--audience", AUD, "--key"])
        .arg(key)
        .args(["--issuer", issuer]);
    if let Some(lifetime) = lifetime {
        command.args(["--lifetime", lifetime]);
    }
    run_to_end(command)
}

/// The user of the token a key2jwt run that succeeded printed, as `auth` verifies
/// it (`what` says which token in a failure).
fn printed_token_user(auth: &SystemAuth, finished: &Finished, what: &str) -> SystemUser {
    assert!(finished.status.success(), "{}", finished.stderr);
    auth.verify(finished.stdout.trim_end())
        .unwrap_or_else(|error| panic!("{what}: {error}"))
}

#[test]
fn key2jwt_signs_with_an_openssl_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let generated = dir.path().join("generated.pem");
    let pkcs1 = dir.path().join("system-user-1.pem");
    let public = dir.path().join("system-user-1.pub");
    let path = |p: &Path| p.to_str().expect("UTF-8 path").to_owned();
    common::openssl(&["genrsa", "-out", &path(&generated), "2048"]);
    // OpenSSL 3 writes PKCS#8 here, 1.1 PKCS#1; make sure to have both.
    let generated_text = std::fs::read_to_string(&generated).expect("read key");
    if generated_text.starts_with("-----BEGIN RSA PRIVATE KEY-----") {
        std::fs::copy(&generated, &pkcs1).expect("copy key");
    } else {
        common::openssl(&[
            "rsa",
            "-in",
            &path(&generated),
            "-traditional",
            "-out",
            &path(&pkcs1),
        ]);
    }
    let pkcs1_text = std::fs::read_to_string(&pkcs1).expect("read key");
    assert!(pkcs1_text.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    common::openssl(&[
        "rsa",
        "-in",
        &path(&pkcs1),
        "-pubout",
        "-out",
        &path(&public),
    ]);
    let auth = auth_for(OWNER, &public);

    let finished = key2jwt(&pkcs1, OWNER, None);
    assert!(finished.status.success(), "{}", finished.stderr);
    let token = finished
        .stdout
        .strip_suffix('\n')
        .expect("the token ends with a newline");
    assert!(
        !token.contains(char::is_whitespace),
        "{:?}",
        finished.stdout
    );

    let user = auth.verify(token).expect("the key2jwt token verifies");
    assert_eq!(user.user_id(), OWNER);
    let lifetime = user
        .expires_at()
        .duration_since(user.issued_at())
        .expect("exp after iat");
    assert_eq!(lifetime, Duration::from_secs(3600));

    // Header and claims as ZITADEL's key2jwt writes them.
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header = URL_SAFE_NO_PAD.decode(parts[0]).expect("base64url header");
    assert_eq!(header, br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("base64url claims"))
            .expect("JSON claims");
    assert_eq!(claims["iss"], OWNER);
    assert_eq!(claims["sub"], OWNER);
    assert_eq!(claims["aud"], AUD);
    let iat = claims["iat"].as_u64().expect("iat");
    assert!(iat.abs_diff(common::now()) < 300, "iat {iat}");

    // The key exactly as this openssl's genrsa wrote it.
    let finished = key2jwt(&generated, OWNER, None);
    let user = printed_token_user(&auth, &finished, "the token verifies");
    assert_eq!(user.user_id(), OWNER);

    // The same key as PKCS#8, with another lifetime.
    let pkcs8 = dir.path().join("pkcs8.pem");
    common::openssl(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        &path(&pkcs1),
        "-out",
        &path(&pkcs8),
    ]);
    let finished = key2jwt(&pkcs8, OWNER, Some("120"));
    let user = printed_token_user(&auth, &finished, "the PKCS#8 token verifies");
    let lifetime = user
        .expires_at()
        .duration_since(user.issued_at())
        .expect("exp after iat");
    assert_eq!(lifetime, Duration::from_secs(120));
}

/// The seed's own command line, with Go's single dash and `=`
/// (`./key2jwt -audience=... -key=... -issuer=...`), and `--output PATH` as
/// zitadel-tools' key2jwt has it: the token goes into the file, nothing to stdout.
#[test]
fn key2jwt_reads_go_style_flags_and_writes_to_a_file() {
    let key = common::key();
    let auth = auth_for(OWNER, &key.public_path());
    let dir = tempfile::tempdir().expect("tempdir");
    let key_flag = format!("-key={}", key.private_path().display());

    let mut go_style = command("key2jwt");
    go_style.args([
        &format!("-audience={AUD}"),
        key_flag.as_str(),
        &format!("-issuer={OWNER}"),
    ]);
    let finished = run_to_end(go_style);
    let user = printed_token_user(&auth, &finished, "the token from Go-style flags verifies");
    assert_eq!(user.user_id(), OWNER);

    let output = dir.path().join("token.jwt");
    let mut to_file = command("key2jwt");
    to_file
        .args([
            "-audience",
            AUD,
            key_flag.as_str(),
            "-issuer",
            OWNER,
            "--output",
        ])
        .arg(&output);
    let finished = run_to_end(to_file);
    assert!(finished.status.success(), "{}", finished.stderr);
    assert_eq!(finished.stdout, "");
    let written = std::fs::read_to_string(&output).expect("the token file");
    let user = auth
        .verify(written.trim_end())
        .expect("the token written to the file verifies");
    assert_eq!(user.user_id(), OWNER);
}

#[test]
fn key2jwt_refuses_a_bad_key() {
    let key = common::TestKey::generate();
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a key at all\n").expect("write");
    let damaged = dir.path().join("damaged.pem");
    std::fs::write(
        &damaged,
        "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
    )
    .expect("write");
    let missing = dir.path().join("missing.pem");

    for (file, expected) in [
        (&key.public_path(), "public key"),
        (&garbage, "no RSA private key"),
        (&damaged, "RSA private key"),
        (&missing, "cannot read"),
    ] {
        let finished = key2jwt(file, OWNER, None);
        assert!(
            !finished.status.success(),
            "{}: {:?}",
            file.display(),
            finished.status
        );
        assert_eq!(finished.stdout, "", "{}", file.display());
        assert!(
            finished.stderr.contains(expected),
            "{}: {}",
            file.display(),
            finished.stderr
        );
        assert!(!finished.stderr.contains("BEGIN"), "{}", finished.stderr);
    }

    // A zero lifetime is refused too.
    let finished = key2jwt(&key.private_path(), OWNER, Some("0"));
    assert!(!finished.status.success());
    assert_eq!(finished.stdout, "");
}

// ---- quickstart ----

#[test]
fn quickstart_once_succeeds() {
    let mut command = command("quickstart");
    command.arg("--once");
    let finished = run_to_end(command);
    assert!(
        finished.status.success(),
        "{:?}\nstdout:\n{}\nstderr:\n{}",
        finished.status,
        finished.stdout,
        finished.stderr
    );
    assert!(
        finished.stdout.contains("HTTP/1.1 401 Unauthorized"),
        "{}",
        finished.stdout
    );
    assert!(
        finished.stdout.contains("HTTP/1.1 200 OK"),
        "{}",
        finished.stdout
    );
    assert!(finished.stdout.contains("curl "), "{}", finished.stdout);
    assert!(
        !finished.stdout.contains("PRIVATE KEY-----"),
        "{}",
        finished.stdout
    );
}
