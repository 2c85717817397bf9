//! A panic inside the layer's work becomes a 500 answer, not a dropped connection,
//! and is logged (issue 6).
//!
//! The panic is real: the verifier's clock (`SystemAuthBuilder::clock`) panics while
//! a flag is set, so the layer panics in the middle of checking a token.

mod common;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime},
};

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
};
use common::Captured;
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};
use tower::ServiceExt as _;
use zitadel_system_auth::testing::{TEST_USER, TestSystem};

const INTERNAL_BODY: &str = "internal error while checking the token";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let buffer = Captured::default();
    let guard = tracing::subscriber::set_default(buffer.subscriber());
    (buffer, guard)
}

/// A system whose clock panics while the returned flag is set.
fn exploding() -> (TestSystem, Arc<AtomicBool>) {
    let armed = Arc::new(AtomicBool::new(false));
    let flag = armed.clone();
    let system = TestSystem::with(move |builder| {
        builder.watch(false).clock(move || {
            if flag.load(Ordering::SeqCst) {
                panic!("the test clock exploded");
            }
            SystemTime::now()
        })
    });
    (system, armed)
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn send(app: &Router, token: Option<&str>, grpc: bool) -> Answer {
    let mut builder = Request::get("/");
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if grpc {
        builder = builder.header(header::CONTENT_TYPE, "application/grpc");
    }
    let response = app
        .clone()
        .oneshot(builder.body(Body::empty()).unwrap())
        .await
        .expect("the service answers");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

#[track_caller]
fn assert_internal(answer: &Answer) {
    assert_eq!(
        answer.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        answer.body
    );
    assert_eq!(
        serde_json::from_str::<Value>(&answer.body).expect("a JSON body"),
        json!({ "code": 13, "message": INTERNAL_BODY, "details": [] })
    );
    assert_eq!(
        answer.headers.get(header::CONTENT_TYPE).unwrap(),
        "application/json"
    );
    assert!(answer.headers.get(header::WWW_AUTHENTICATE).is_none());
}

#[track_caller]
fn assert_panic_logged(log: &str, times: usize, token: &str) {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("panic while authenticating a request"))
        .collect();
    assert_eq!(lines.len(), times, "{log}");
    assert!(lines.iter().all(|l| l.contains("ERROR")), "{log}");
    let signature = token.rsplit('.').next().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    assert!(
        !log.contains(token) && !log.contains(signature) && !log.contains(payload),
        "the token was logged:\n{log}"
    );
}

// ---------------------------------------------------------------------------
// Through the layer
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "current_thread")]
async fn a_panic_while_deciding_is_answered_500_and_logged() {
    let (log, _guard) = capture();
    let (system, armed) = exploding();
    let (app, calls) = common::counting_app(system.auth.layer());
    let token = system.token().build();

    // Control: the clock works.
    let answer = send(&app, Some(&token), false).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, TEST_USER);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // The clock panics: a valid token (now in the cache, which reads the clock
    // too), a new token, and a refused one all get 500, and the handler never runs.
    armed.store(true, Ordering::SeqCst);
    let fresh = system.token().claim("jti", "fresh").build();
    let expired = system.token().expired().build();
    for t in [&token, &fresh, &expired] {
        assert_internal(&send(&app, Some(t), false).await);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A refusal decided from the header alone needs no clock: still 401.
    let answer = send(&app, None, false).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        answer.headers.get(header::WWW_AUTHENTICATE).unwrap(),
        "Bearer"
    );

    // A gRPC caller gets INTERNAL as a trailers-only status.
    let answer = send(&app, Some(&token), true).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers.get("grpc-status").unwrap(), "13");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // The optional layer panics the same way, and answers the same way.
    let (optional, optional_calls) = common::counting_app(system.auth.optional_layer());
    assert_internal(&send(&optional, Some(&token), false).await);
    assert_eq!(optional_calls.load(Ordering::SeqCst), 0);

    // Nothing is left broken: once the clock works again, so does everything.
    armed.store(false, Ordering::SeqCst);
    for t in [&token, &fresh] {
        let answer = send(&app, Some(t), false).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    }
    assert_eq!(
        send(&app, Some(&expired), false).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    let text = log.text();
    assert_panic_logged(&text, 5, &token);
    for t in [&fresh, &expired] {
        assert_panic_logged(&text, 5, t);
    }
}

// ---------------------------------------------------------------------------
// Over TCP
// ---------------------------------------------------------------------------

/// Sends one raw HTTP/1.1 request and reads one response: status line, headers,
/// and a `content-length` body.
async fn exchange(stream: &mut TcpStream, request: &str) -> (String, String, String) {
    stream.write_all(request.as_bytes()).await.expect("write");
    let read = async {
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while buffer.len() < end + 4 + length {
                    let n = stream.read(&mut chunk).await.expect("read body");
                    assert_ne!(n, 0, "the connection closed in the body");
                    buffer.extend_from_slice(&chunk[..n]);
                }
                let body = String::from_utf8_lossy(&buffer[end + 4..end + 4 + length]).into_owned();
                let (status, headers) = head.split_once("\r\n").unwrap_or((&head, ""));
                return (status.to_owned(), headers.to_owned(), body);
            }
            let n = stream.read(&mut chunk).await.expect("read");
            assert_ne!(n, 0, "the connection was closed without an answer");
            buffer.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("an answer within 20 s")
}

fn raw_get(token: &str, close: bool) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: {}\r\n\r\n",
        if close { "close" } else { "keep-alive" }
    )
}

#[tokio::test(flavor = "current_thread")]
async fn over_tcp_the_connection_gets_a_500_and_the_server_keeps_serving() {
    let (log, _guard) = capture();
    let (system, armed) = exploding();
    let (app, calls) = common::counting_app(system.auth.layer());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let token = system.token().build();

    // One connection: the panic is answered 500, and the same connection serves
    // the next request.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    armed.store(true, Ordering::SeqCst);
    let (status, headers, body) = exchange(&mut stream, &raw_get(&token, false)).await;
    assert!(
        status.starts_with("HTTP/1.1 500"),
        "{status}\n{headers}\n{body}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({ "code": 13, "message": INTERNAL_BODY, "details": [] })
    );
    assert!(
        !headers.to_ascii_lowercase().contains("connection: close"),
        "{headers}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    armed.store(false, Ordering::SeqCst);
    let (status, _, body) = exchange(&mut stream, &raw_get(&token, false)).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status} {body}");
    assert_eq!(body, TEST_USER);

    // Several panics in a row on one connection, then a normal request.
    armed.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        let (status, _, _) = exchange(&mut stream, &raw_get(&token, false)).await;
        assert!(status.starts_with("HTTP/1.1 500"), "{status}");
    }
    armed.store(false, Ordering::SeqCst);
    let (status, _, _) = exchange(&mut stream, &raw_get(&token, true)).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");

    // New connections are served as before: a panic, then a normal request.
    armed.store(true, Ordering::SeqCst);
    let mut second = TcpStream::connect(addr).await.unwrap();
    let (status, _, _) = exchange(&mut second, &raw_get(&token, true)).await;
    assert!(status.starts_with("HTTP/1.1 500"), "{status}");
    armed.store(false, Ordering::SeqCst);
    let mut third = TcpStream::connect(addr).await.unwrap();
    let (status, _, body) = exchange(&mut third, &raw_get(&token, true)).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(body, TEST_USER);
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    assert!(!server.is_finished(), "the server stopped");
    server.abort();

    assert_panic_logged(&log.text(), 5, &token);
}
