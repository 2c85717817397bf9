//! A panic inside the layer's work becomes a 500 answer, not a dropped connection,
//! and is logged.
//!
//! The panic is real: the verifier's clock (`SystemAuthBuilder::clock`) panics while
//! a flag is set, so the layer panics in the middle of checking a token.

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
use bytes::Bytes;
use http_body_util::BodyExt as _;
use http_body_util::Empty;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt as _;
use zitadel_system_auth::testing::{TEST_USER, TestSystem};

use crate::common::{self, Captured};

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

/// One HTTP/1.1 connection to `addr` (hyper's client connection): its requests go
/// one after another over the same TCP connection.
async fn connect(addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    // Drives the connection until either side closes it.
    tokio::spawn(connection);
    sender
}

/// `GET /` with the token over `connection` (asking to keep it open, or to close
/// it after this answer): the status, the headers and the body.
async fn exchange(
    connection: &mut SendRequest<Empty<Bytes>>,
    token: &str,
    close: bool,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let request = Request::get("/")
        .header(header::HOST, "127.0.0.1")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(
            header::CONNECTION,
            if close { "close" } else { "keep-alive" },
        )
        .body(Empty::new())
        .expect("request");
    let answer = async {
        connection
            .ready()
            .await
            .expect("the connection is still open");
        let response = connection
            .send_request(request)
            .await
            .expect("an answer on this connection");
        assert_eq!(response.version(), axum::http::Version::HTTP_11);
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.expect("body");
        (
            status,
            headers,
            String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        )
    };
    tokio::time::timeout(Duration::from_secs(20), answer)
        .await
        .expect("an answer within 20 s")
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
    let mut connection = connect(addr).await;
    armed.store(true, Ordering::SeqCst);
    let (status, headers, body) = exchange(&mut connection, &token, false).await;
    assert_eq!(
        status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{headers:?}\n{body}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({ "code": 13, "message": INTERNAL_BODY, "details": [] })
    );
    assert!(
        headers
            .get(header::CONNECTION)
            .is_none_or(|v| !v.as_bytes().eq_ignore_ascii_case(b"close")),
        "{headers:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    armed.store(false, Ordering::SeqCst);
    let (status, _, body) = exchange(&mut connection, &token, false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, TEST_USER);

    // Several panics in a row on one connection, then a normal request.
    armed.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        let (status, _, _) = exchange(&mut connection, &token, false).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    }
    armed.store(false, Ordering::SeqCst);
    let (status, _, _) = exchange(&mut connection, &token, true).await;
    assert_eq!(status, StatusCode::OK);

    // New connections are served as before: a panic, then a normal request.
    armed.store(true, Ordering::SeqCst);
    let (status, _, _) = exchange(&mut connect(addr).await, &token, true).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    armed.store(false, Ordering::SeqCst);
    let (status, _, body) = exchange(&mut connect(addr).await, &token, true).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, TEST_USER);
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    assert!(!server.is_finished(), "the server stopped");
    server.abort();

    assert_panic_logged(&log.text(), 5, &token);
}
