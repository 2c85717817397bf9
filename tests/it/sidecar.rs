//! The sidecar (`zitadel-system-auth serve`), run as the built binary over TCP on
//! loopback: forward-auth behind real nginx (`auth_request`) and real Caddy
//! (`forward_auth`) in front of an upstream that echoes the headers it got, Envoy's
//! gRPC `Check` called with a tonic client, the reverse-proxy mode, and the admin
//! endpoints. The nginx and Caddy tests need both packages (`.ci/run` installs them
//! and runs these tests with `--ignored`).

use std::{
    io::{BufRead as _, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::Request,
    http::{HeaderMap, StatusCode},
    response::Json,
    routing::any,
};
use http_body_util::{BodyExt as _, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use serde_json::{Value, json};
use zitadel_system_auth::testing::TestKey;

use crate::common::{self, Answer};

/// How long any positive wait may take before a test fails.
const TIMEOUT: Duration = Duration::from_secs(20);
const AUDIENCE: &str = "http://127.0.0.1:8080";

/// A temp folder with a config (two users: an owner with the default membership and
/// a viewer without IAM_OWNER), their keys, and whatever the test writes there.
struct World {
    dir: tempfile::TempDir,
    owner: TestKey,
    iam: TestKey,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let owner = TestKey::generate();
        let iam = TestKey::generate();
        let world = World { dir, owner, iam };
        world.write_key("owner.pub", &world.owner);
        world.write_key("iam.pub", &world.iam);
        std::fs::write(
            world.path("config.yaml"),
            "ExternalDomain: 127.0.0.1\nExternalPort: 8080\nExternalSecure: false\nSystemAPIUsers:\n  - owner:\n      Path: owner.pub\n  - iam-admin:\n      Path: iam.pub\n      Memberships:\n        - MemberType: IAM\n          Roles: [IAM_OWNER, IAM_ORG_MANAGER]\n          AggregateID: \"42\"\n",
        )
        .expect("write config");
        world
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Replaces a key file by save-by-rename, as an editor or a deployment does.
    fn write_key(&self, name: &str, key: &TestKey) {
        let staging = self.path(&format!(".{name}.tmp"));
        std::fs::write(&staging, key.public_pem()).expect("write key");
        std::fs::rename(&staging, self.path(name)).expect("rename key");
    }

    fn token(&self, key: &TestKey, user: &str) -> String {
        key.token(user, AUDIENCE).build()
    }
}

/// A child process that is stopped when the test ends: asked with SIGTERM first, so
/// that nginx's master stops its workers (a SIGKILL would leave them running), then
/// killed if it has not stopped within a few seconds.
struct Running {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let asked = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .is_ok_and(|status| status.success());
        let deadline = Instant::now() + Duration::from_secs(5);
        while asked && Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the sidecar and waits for its `listening on http://ADDR` line.
fn sidecar(world: &World, args: &[&str]) -> (Running, SocketAddr) {
    sidecar_with_env(world, args, &[])
}

/// [`sidecar`] with ZITADEL's environment variables `env` set (and no others).
fn sidecar_with_env(world: &World, args: &[&str], env: &[(&str, &str)]) -> (Running, SocketAddr) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_zitadel-system-auth"));
    for name in [
        "ZITADEL_SYSTEMAPIUSERS",
        "ZITADEL_EXTERNALDOMAIN",
        "ZITADEL_EXTERNALPORT",
        "ZITADEL_EXTERNALSECURE",
    ] {
        command.env_remove(name);
    }
    let mut child = command
        .envs(env.iter().copied())
        .arg("serve")
        .arg("--config")
        .arg(world.path("config.yaml"))
        .args(["--listen", "127.0.0.1:0", "--instance-id", "42"])
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the sidecar");
    let stderr = Arc::new(Mutex::new(String::new()));
    let sink = stderr.clone();
    let pipe = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            sink.lock().expect("lock").push_str(&format!("{line}\n"));
        }
    });
    let stdout = child.stdout.take().expect("stdout");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let running = Running { child, stderr };
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match receiver.recv_timeout(left) {
            Ok(line) => {
                if let Some(address) = line.strip_prefix("listening on http://") {
                    let address = address.parse().expect("an address");
                    return (running, address);
                }
            }
            Err(_) => panic!(
                "the sidecar did not start; stderr:\n{}",
                running.stderr.lock().expect("lock")
            ),
        }
    }
}

/// What the upstream saw: every request's headers, in order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<HeaderMap>>>);

impl Seen {
    fn count(&self) -> usize {
        self.0.lock().expect("lock").len()
    }
    fn last(&self) -> HeaderMap {
        self.0
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("a request")
    }
}

/// An upstream that answers 200 with the headers it got as JSON, and echoes a body.
async fn upstream() -> (SocketAddr, Seen) {
    let seen = Seen::default();
    let record = seen.clone();
    let app = Router::new().fallback(any(move |request: Request| {
        let record = record.clone();
        async move {
            let headers = request.headers().clone();
            record.0.lock().expect("lock").push(headers.clone());
            let body = request
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let headers: serde_json::Map<String, Value> = headers
                .iter()
                .map(|(name, value)| (name.to_string(), Value::from(value.to_str().unwrap_or("?"))))
                .collect();
            Json(json!({ "headers": headers, "body_length": body.len() }))
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (address, seen)
}

async fn send(url: &str, headers: &[(&str, &str)]) -> Answer {
    send_with_body(url, "GET", headers, Bytes::new()).await
}

async fn send_with_body(url: &str, method: &str, headers: &[(&str, &str)], body: Bytes) -> Answer {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = axum::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = tokio::time::timeout(
        TIMEOUT,
        client.request(request.body(Full::new(body)).expect("request")),
    )
    .await
    .expect("an answer in time")
    .expect("an answer");
    common::answer(response).await
}

/// The crate's refusal body for an expired token, written out here.
fn expired_body() -> Value {
    json!({"code": 16, "message": "the token has expired", "details": []})
}

/// Waits until `check` passes.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Waits until something accepts connections on `port`.
async fn listening(port: u16, process: &Running) {
    let deadline = Instant::now() + TIMEOUT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "nothing listens on {port}; stderr:\n{}",
            process.stderr.lock().expect("lock")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The behaviour every proxy in front of the sidecar must show, on `base`
/// (`/` needs a system user, `/admin` needs IAM_OWNER too).
async fn behind_a_proxy(world: &World, base: &str, seen: &Seen, body_on_refusal: bool) {
    let owner = world.token(&world.owner, "owner");
    let iam = world.token(&world.iam, "iam-admin");

    // A valid token passes; the upstream sees the user id and the roles.
    let answer = send(
        &format!("{base}/x"),
        &[("authorization", &format!("Bearer {owner}"))],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let headers = &answer.json()["headers"];
    assert_eq!(headers["x-zitadel-system-user"], "owner");
    assert_eq!(headers["x-zitadel-system-roles"], "SYSTEM_OWNER");

    // A client-sent user header never reaches the upstream.
    let before = seen.count();
    let answer = send(
        &format!("{base}/x"),
        &[
            ("authorization", &format!("Bearer {iam}")),
            ("x-zitadel-system-user", "owner"),
            ("x-zitadel-system-roles", "SYSTEM_OWNER"),
        ],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(seen.count(), before + 1);
    let last = seen.last();
    assert_eq!(last.get_all("x-zitadel-system-user").iter().count(), 1);
    assert_eq!(last["x-zitadel-system-user"], "iam-admin");
    assert_eq!(last["x-zitadel-system-roles"], "IAM_OWNER,IAM_ORG_MANAGER");

    // No token, a bad token: refused with the crate's answer, never upstream.
    let before = seen.count();
    let answer = send(&format!("{base}/x"), &[]).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    assert_eq!(answer.header("www-authenticate"), Some("Bearer"));
    if body_on_refusal {
        assert_eq!(answer.json()["code"], 16);
    }
    let expired = world.owner.token("owner", AUDIENCE).expired().build();
    let answer = send(
        &format!("{base}/x"),
        &[("authorization", &format!("Bearer {expired}"))],
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    assert_eq!(
        answer.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\", error_description=\"the token has expired\"")
    );
    if body_on_refusal {
        assert_eq!(answer.json(), expired_body());
    }
    let tampered = format!("{}x", &owner[..owner.len() - 1]);
    let answer = send(
        &format!("{base}/x"),
        &[("authorization", &format!("Bearer {tampered}"))],
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    assert_eq!(
        seen.count(),
        before,
        "a refused request reached the upstream"
    );

    // A missing role: 403 with code 7; the role holder passes.
    let answer = send(
        &format!("{base}/admin"),
        &[("authorization", &format!("Bearer {owner}"))],
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{answer:?}");
    if body_on_refusal {
        assert_eq!(answer.json()["code"], 7);
    }
    assert_eq!(
        seen.count(),
        before,
        "a refused request reached the upstream"
    );
    let answer = send(
        &format!("{base}/admin"),
        &[("authorization", &format!("Bearer {iam}"))],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");

    // A key rotated on disk takes effect through the proxy.
    let rotated = TestKey::generate();
    world.write_key("owner.pub", &rotated);
    let fresh = world.token(&rotated, "owner");
    eventually("the rotated key", async || {
        send(
            &format!("{base}/x"),
            &[("authorization", &format!("Bearer {fresh}"))],
        )
        .await
        .status
            == StatusCode::OK
    })
    .await;
    let answer = send(
        &format!("{base}/x"),
        &[("authorization", &format!("Bearer {owner}"))],
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::UNAUTHORIZED,
        "the old key still works"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs nginx and caddy"]
async fn nginx_auth_request_in_front_of_the_sidecar() {
    let world = World::new();
    let (upstream, seen) = upstream().await;
    let (_sidecar, side) = sidecar(&world, &[]);
    let port = free_port();
    let dir = world.dir.path();
    for temp in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        std::fs::create_dir_all(dir.join(temp)).expect("nginx temp dir");
    }
    let config = world.path("nginx.conf");
    std::fs::write(&config, nginx_config(dir, port, side, upstream)).expect("write nginx.conf");
    let nginx = spawn_logged(
        Command::new("nginx")
            .arg("-c")
            .arg(&config)
            .arg("-p")
            .arg(dir)
            .args(["-g", "daemon off;"]),
    );
    listening(port, &nginx).await;
    behind_a_proxy(&world, &format!("http://127.0.0.1:{port}"), &seen, true).await;
}

/// nginx: `auth_request` asks the sidecar; `auth_request_set` hands its headers on;
/// `error_page` answers a refusal with the sidecar's own body (nginx keeps only
/// `WWW-Authenticate` from an auth subrequest).
fn nginx_config(dir: &Path, port: u16, side: SocketAddr, upstream: SocketAddr) -> String {
    let dir = dir.display();
    format!(
        r#"pid {dir}/nginx.pid;
error_log {dir}/error.log;
worker_processes 1;
events {{}}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};

        location = /_auth {{
            internal;
            proxy_pass http://{side}/auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }}
        location = /_auth_admin {{
            internal;
            proxy_pass http://{side}/auth?role=IAM_OWNER;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }}
        # The refusals again, with their body: nginx passes only WWW-Authenticate
        # on from an auth subrequest.
        location = /_refused {{
            internal;
            proxy_pass http://{side}/auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }}
        location = /_refused_admin {{
            internal;
            proxy_pass http://{side}/auth?role=IAM_OWNER;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }}

        location / {{
            auth_request /_auth;
            auth_request_set $system_user $upstream_http_x_zitadel_system_user;
            auth_request_set $system_roles $upstream_http_x_zitadel_system_roles;
            proxy_set_header x-zitadel-system-user $system_user;
            proxy_set_header x-zitadel-system-roles $system_roles;
            error_page 401 403 = /_refused;
            proxy_pass http://{upstream};
        }}
        location /admin {{
            auth_request /_auth_admin;
            auth_request_set $system_user $upstream_http_x_zitadel_system_user;
            auth_request_set $system_roles $upstream_http_x_zitadel_system_roles;
            proxy_set_header x-zitadel-system-user $system_user;
            proxy_set_header x-zitadel-system-roles $system_roles;
            error_page 401 403 = /_refused_admin;
            proxy_pass http://{upstream};
        }}
    }}
}}
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs nginx and caddy"]
async fn caddy_forward_auth_in_front_of_the_sidecar() {
    let world = World::new();
    let (upstream, seen) = upstream().await;
    let (_sidecar, side) = sidecar(&world, &[]);
    let port = free_port();
    let config = world.path("Caddyfile");
    std::fs::write(&config, caddy_config(port, side, upstream)).expect("write Caddyfile");
    let caddy = spawn_logged(
        Command::new("caddy")
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&config)
            .env("HOME", world.dir.path())
            .env("XDG_DATA_HOME", world.dir.path())
            .env("XDG_CONFIG_HOME", world.dir.path()),
    );
    listening(port, &caddy).await;
    behind_a_proxy(&world, &format!("http://127.0.0.1:{port}"), &seen, true).await;
}

/// Caddy: `forward_auth` asks the sidecar, copies its headers on 2xx, and hands its
/// whole answer (status, headers, body) to the client otherwise.
fn caddy_config(port: u16, side: SocketAddr, upstream: SocketAddr) -> String {
    format!(
        r#"{{
    admin off
    auto_https off
}}
http://127.0.0.1:{port} {{
    route /admin* {{
        forward_auth {side} {{
            uri /auth?role=IAM_OWNER
            copy_headers X-Zitadel-System-User X-Zitadel-System-Roles
        }}
        reverse_proxy {upstream}
    }}
    route {{
        forward_auth {side} {{
            uri /auth
            copy_headers X-Zitadel-System-User X-Zitadel-System-Roles
        }}
        reverse_proxy {upstream}
    }}
}}
"#
    )
}

fn spawn_logged(command: &mut Command) -> Running {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let stderr = Arc::new(Mutex::new(String::new()));
    let sink = stderr.clone();
    let pipe = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            sink.lock().expect("lock").push_str(&format!("{line}\n"));
        }
    });
    Running { child, stderr }
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_auth_answers_200_401_or_403_only() {
    let world = World::new();
    let (_sidecar, side) = sidecar(&world, &[]);
    let base = format!("http://{side}");
    let owner = world.token(&world.owner, "owner");
    let answer = send(
        &format!("{base}/auth"),
        &[("authorization", &format!("Bearer {owner}"))],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("x-zitadel-system-user"), Some("owner"));
    assert_eq!(
        answer.header("x-zitadel-system-roles"),
        Some("SYSTEM_OWNER")
    );
    // Any method.
    let answer = send_with_body(
        &format!("{base}/auth"),
        "POST",
        &[("authorization", &format!("Bearer {owner}"))],
        Bytes::new(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    // Several Authorization headers are a 401 here (nginx turns a 400 into a 500).
    let answer = send(
        &format!("{base}/auth"),
        &[
            ("authorization", &format!("Bearer {owner}")),
            ("authorization", &format!("Bearer {owner}")),
        ],
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.json()["code"], 3);
    // The organisation header decides Organization memberships; several are a 401.
    let answer = send(
        &format!("{base}/auth"),
        &[
            ("authorization", &format!("Bearer {owner}")),
            ("x-zitadel-orgid", "1"),
            ("x-zitadel-orgid", "2"),
        ],
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    // A required role per location.
    let answer = send(
        &format!("{base}/auth?role=IAM_OWNER"),
        &[("authorization", &format!("Bearer {owner}"))],
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.json()["code"], 7);
    // The instance from --instance-id makes the IAM membership apply.
    let iam = world.token(&world.iam, "iam-admin");
    let answer = send(
        &format!("{base}/auth?role=IAM_OWNER"),
        &[("authorization", &format!("Bearer {iam}"))],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.header("x-zitadel-system-roles"),
        Some("IAM_OWNER,IAM_ORG_MANAGER")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn require_role_applies_to_every_request() {
    let world = World::new();
    let (_sidecar, side) = sidecar(&world, &["--require-role", "IAM_OWNER"]);
    let base = format!("http://{side}");
    let owner = world.token(&world.owner, "owner");
    let iam = world.token(&world.iam, "iam-admin");
    let answer = send(
        &format!("{base}/auth"),
        &[("authorization", &format!("Bearer {owner}"))],
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    let answer = send(
        &format!("{base}/auth"),
        &[("authorization", &format!("Bearer {iam}"))],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_check_over_grpc() {
    use envoy_types::pb::envoy::service::auth::v3::{
        AttributeContext, CheckRequest,
        attribute_context::{HttpRequest, Request as AttributeRequest},
        authorization_client::AuthorizationClient,
        check_response::HttpResponse,
    };
    let world = World::new();
    let (_sidecar, side) = sidecar(&world, &[]);
    let mut client = AuthorizationClient::connect(format!("http://{side}"))
        .await
        .expect("connect over h2c");
    let check = |headers: &[(&str, &str)], role: Option<&str>| {
        let mut attributes = AttributeContext {
            request: Some(AttributeRequest {
                http: Some(HttpRequest {
                    method: "GET".to_owned(),
                    path: "/x".to_owned(),
                    headers: headers
                        .iter()
                        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                        .collect(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        if let Some(role) = role {
            attributes
                .context_extensions
                .insert("role".to_owned(), role.to_owned());
        }
        CheckRequest {
            attributes: Some(attributes),
        }
    };
    let owner = world.token(&world.owner, "owner");
    let bearer = format!("Bearer {owner}");
    let response = client
        .check(check(
            &[
                ("authorization", &bearer),
                ("x-zitadel-system-user", "forged"),
            ],
            None,
        ))
        .await
        .expect("check")
        .into_inner();
    assert_eq!(response.status.as_ref().map(|s| s.code), Some(0));
    let Some(HttpResponse::OkResponse(ok)) = response.http_response else {
        panic!("no OK response: {response:?}");
    };
    let set: Vec<(String, String)> = ok
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref().map(|h| (h.key.clone(), h.value.clone())))
        .collect();
    assert!(
        set.contains(&("x-zitadel-system-user".to_owned(), "owner".to_owned())),
        "{set:?}"
    );
    assert!(
        set.contains(&(
            "x-zitadel-system-roles".to_owned(),
            "SYSTEM_OWNER".to_owned()
        )),
        "{set:?}"
    );
    assert!(
        ok.headers_to_remove
            .contains(&"x-zitadel-system-user".to_owned())
    );

    let expired = world.owner.token("owner", AUDIENCE).expired().build();
    let bearer = format!("Bearer {expired}");
    let response = client
        .check(check(&[("authorization", &bearer)], None))
        .await
        .expect("check")
        .into_inner();
    assert_eq!(response.status.as_ref().map(|s| s.code), Some(16));
    let Some(HttpResponse::DeniedResponse(denied)) = response.http_response else {
        panic!("no denied response: {response:?}");
    };
    assert_eq!(denied.status.map(|s| s.code), Some(401));
    assert_eq!(
        serde_json::from_str::<Value>(&denied.body).expect("JSON"),
        expired_body()
    );
    assert!(denied.headers.iter().any(|h| {
        h.header.as_ref().is_some_and(|h| {
            h.key == "www-authenticate"
                && h.value
                    == "Bearer error=\"invalid_token\", error_description=\"the token has expired\""
        })
    }));

    let bearer = format!("Bearer {owner}");
    let response = client
        .check(check(&[("authorization", &bearer)], Some("IAM_OWNER")))
        .await
        .expect("check")
        .into_inner();
    let Some(HttpResponse::DeniedResponse(denied)) = response.http_response else {
        panic!("no denied response: {response:?}");
    };
    assert_eq!(denied.status.map(|s| s.code), Some(403));
}

#[tokio::test(flavor = "multi_thread")]
async fn reverse_proxy_mode() {
    let world = World::new();
    let (upstream, seen) = upstream().await;
    let target = format!("http://{upstream}");
    let (_sidecar, side) = sidecar(&world, &["--upstream", &target]);
    let base = format!("http://{side}");
    let owner = world.token(&world.owner, "owner");
    let bearer = format!("Bearer {owner}");

    // Accepted: forwarded with the caller's headers, without Authorization, with
    // client-sent x-zitadel-system-* headers removed, the body streamed.
    let body = Bytes::from(vec![b'x'; 3 * 1024 * 1024]);
    let answer = send_with_body(
        &format!("{base}/upload?q=1"),
        "POST",
        &[
            ("authorization", &bearer),
            ("x-zitadel-system-admin", "yes"),
            ("connection", "x-hop"),
            ("x-hop", "1"),
        ],
        body,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let json = answer.json();
    assert_eq!(json["body_length"], 3 * 1024 * 1024);
    let headers = &json["headers"];
    assert_eq!(headers["x-zitadel-system-user"], "owner");
    assert_eq!(headers["x-zitadel-system-roles"], "SYSTEM_OWNER");
    assert!(headers.get("authorization").is_none(), "{headers}");
    assert!(headers.get("x-zitadel-system-admin").is_none(), "{headers}");
    assert!(headers.get("x-hop").is_none(), "{headers}");

    // Refused: the crate's answer, and the upstream never sees it.
    let before = seen.count();
    let answer = send(&format!("{base}/x"), &[]).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.header("www-authenticate"), Some("Bearer"));
    let two = send(
        &format!("{base}/x"),
        &[("authorization", &bearer), ("authorization", &bearer)],
    )
    .await;
    assert_eq!(two.status, StatusCode::BAD_REQUEST);
    assert_eq!(seen.count(), before);

    // --forward-authorization hands the Authorization header on.
    let (_forwarding, side) = sidecar(&world, &["--upstream", &target, "--forward-authorization"]);
    let answer = send(&format!("http://{side}/x"), &[("authorization", &bearer)]).await;
    assert_eq!(answer.json()["headers"]["authorization"], bearer.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_endpoints() {
    let world = World::new();
    let (_sidecar, side) = sidecar(&world, &["--admin-listen", "127.0.0.1:0"]);
    let base = format!("http://{side}");
    assert_eq!(
        send(&format!("{base}/healthz"), &[]).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(&format!("{base}/readyz"), &[]).await.status,
        StatusCode::OK
    );
    let owner = world.token(&world.owner, "owner");
    send(
        &format!("{base}/auth"),
        &[("authorization", &format!("Bearer {owner}"))],
    )
    .await;
    send(&format!("{base}/auth"), &[]).await;
    let metrics = send(&format!("{base}/metrics"), &[]).await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics
            .body
            .contains("zitadel_system_auth_requests_total{outcome=\"accepted\"} 1"),
        "{}",
        metrics.body
    );
    assert!(
        metrics.body.contains("reason=\"missing_token\""),
        "{}",
        metrics.body
    );
    assert!(
        !metrics.body.contains(&owner[..20]),
        "the metrics hold a token"
    );

    // A config that no longer loads: the last good keys stay, and /readyz says so.
    std::fs::write(world.path("config.yaml"), "SystemAPIUsers: [broken\n").expect("write");
    eventually("/readyz to fail", async || {
        send(&format!("{base}/readyz"), &[]).await.status == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    let answer = send(
        &format!("{base}/auth"),
        &[("authorization", &format!("Bearer {owner}"))],
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "the last good keys were lost"
    );
}

/// ZITADEL's `ZITADEL_EXTERNAL*` variables override the file's external URL, as
/// ZITADEL reads them; SIGHUP reloads and says so on stderr, and a config that no
/// longer loads at a SIGHUP is reported while the last good keys stay.
#[tokio::test(flavor = "multi_thread")]
async fn environment_overrides_and_sighup_reloads() {
    let world = World::new();
    let (sidecar, side) = sidecar_with_env(
        &world,
        &[],
        &[
            ("ZITADEL_EXTERNALDOMAIN", "auth.example.com"),
            ("ZITADEL_EXTERNALPORT", "443"),
            ("ZITADEL_EXTERNALSECURE", "true"),
        ],
    );
    let auth = format!("http://{side}/auth");
    let bearer = |token: &str| format!("Bearer {token}");
    // The file says http://127.0.0.1:8080; the environment https://auth.example.com.
    let for_the_file = world.token(&world.owner, "owner");
    let for_the_environment = world
        .owner
        .token("owner", "https://auth.example.com")
        .build();
    let answer = send(&auth, &[("authorization", &bearer(&for_the_file))]).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    let answer = send(&auth, &[("authorization", &bearer(&for_the_environment))]).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");

    let stderr = || sidecar.stderr.lock().expect("lock").clone();
    signal(&sidecar, "-HUP");
    eventually("the SIGHUP reload to be reported", async || {
        stderr().contains("SIGHUP: reloaded, generation 1 (nothing changed)")
    })
    .await;

    std::fs::write(world.path("config.yaml"), "SystemAPIUsers: [broken\n").expect("write");
    signal(&sidecar, "-HUP");
    eventually("the failed SIGHUP reload to be reported", async || {
        stderr().contains("SIGHUP: reload failed, keeping the last good keys")
    })
    .await;
    let answer = send(&auth, &[("authorization", &bearer(&for_the_environment))]).await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "the last good keys were lost"
    );
    let (_, signature) = for_the_environment.rsplit_once('.').expect("three parts");
    assert!(!stderr().contains(signature), "stderr holds a token");
}

/// Sends `signal` (`-HUP`, `-TERM`) to the sidecar.
fn signal(sidecar: &Running, signal: &str) {
    let pid = sidecar.child.id().to_string();
    let status = Command::new("kill")
        .args([signal, &pid])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Stops on SIGTERM after the requests in flight.
#[test]
fn stops_on_sigterm() {
    let world = World::new();
    let (mut sidecar, _) = sidecar(&world, &[]);
    signal(&sidecar, "-TERM");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = sidecar.child.try_wait().expect("wait") {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the sidecar did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        sidecar
            .stderr
            .lock()
            .expect("lock")
            .contains("shutting down")
    );
}
