//! The crate in tower-http's middleware contract: `SystemAuth` behind tower-http's
//! `AsyncRequireAuthorizationLayer` and `ValidateRequestHeaderLayer` decides and
//! answers exactly like `auth.layer()`; the layers keep the inner service's body
//! type; refusals can be shaped by a responder that never sees the token; the
//! services follow tower's conventions; and a `TraceLayer` stack records the user
//! id, never the token.

use std::{
    convert::Infallible,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use axum::{
    Router,
    body::{Body, Bytes},
    http::{Request, Response, StatusCode, header},
    routing::get,
};
use serde_json::{Value, json};
use tower::{Layer as _, Service, ServiceBuilder, ServiceExt as _};
use tower_http::{
    auth::AsyncRequireAuthorizationLayer, sensitive_headers::SetSensitiveRequestHeadersLayer,
    trace::TraceLayer, validate_request::ValidateRequestHeaderLayer,
};
use zitadel_system_auth::{
    RequireRole, RequireRoleLayer, SystemAuth, SystemAuthService, SystemUser,
    response::Refusal,
    testing::{TEST_USER, TestSystem},
    trace_span,
};

use crate::common;

async fn whoami(user: SystemUser) -> String {
    user.user_id().to_owned()
}

fn routes() -> Router {
    Router::new().route("/x", get(whoami))
}

/// Status, headers that matter, and body: what two stacks must answer alike.
#[derive(Debug, PartialEq)]
struct Answer {
    status: StatusCode,
    www_authenticate: Option<String>,
    content_type: Option<String>,
    cache_control: Option<String>,
    body: String,
}

async fn answer<B>(response: Response<B>) -> Answer
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let whole = common::answer(response).await;
    let header = |name| whole.header(name).map(str::to_owned);
    Answer {
        status: whole.status,
        www_authenticate: header(header::WWW_AUTHENTICATE.as_str()),
        content_type: header(header::CONTENT_TYPE.as_str()),
        cache_control: header(header::CACHE_CONTROL.as_str()),
        body: whole.body,
    }
}

fn request(authorization: &[&str]) -> Request<Body> {
    let mut builder = Request::get("/x");
    for value in authorization {
        builder = builder.header(header::AUTHORIZATION, *value);
    }
    builder.body(Body::empty()).expect("request")
}

#[tokio::test]
async fn tower_http_authorization_middleware_answer_like_the_layer() {
    let system = TestSystem::new();
    let auth = system.auth.clone();
    let stacks: [(&str, Router); 3] = [
        ("auth.layer()", routes().layer(auth.layer())),
        (
            "AsyncRequireAuthorizationLayer",
            routes().layer(AsyncRequireAuthorizationLayer::new(auth.clone())),
        ),
        (
            "ValidateRequestHeaderLayer::custom",
            routes().layer(ValidateRequestHeaderLayer::custom(auth.clone())),
        ),
    ];
    let valid = format!("Bearer {}", system.token().build());
    let expired = format!("Bearer {}", system.token().expired().build());
    let unknown = format!(
        "Bearer {}",
        system
            .token()
            .claim("iss", "nobody")
            .claim("sub", "nobody")
            .build()
    );
    let cases: Vec<(Vec<&str>, Answer)> = vec![
        (
            vec![&valid],
            Answer {
                status: StatusCode::OK,
                www_authenticate: None,
                content_type: Some("text/plain; charset=utf-8".to_owned()),
                cache_control: None,
                body: TEST_USER.to_owned(),
            },
        ),
        (
            vec![],
            refused(
                401,
                "Bearer",
                json!({"code": 16, "message": "a bearer token is required", "details": []}),
            ),
        ),
        (
            vec![&expired],
            refused(
                401,
                "Bearer error=\"invalid_token\", error_description=\"the token has expired\"",
                json!({"code": 16, "message": "the token has expired", "details": []}),
            ),
        ),
        (
            vec![&unknown],
            refused(
                401,
                "Bearer error=\"invalid_token\", error_description=\"the token is not signed by a valid key of a configured system user\"",
                json!({"code": 16, "message": "the token is not signed by a valid key of a configured system user", "details": []}),
            ),
        ),
        (
            vec![&valid, &valid],
            refused(
                400,
                "Bearer error=\"invalid_request\", error_description=\"exactly one Authorization header is allowed\"",
                json!({"code": 3, "message": "exactly one Authorization header is allowed", "details": []}),
            ),
        ),
    ];
    for (headers, want) in &cases {
        for (name, app) in &stacks {
            let got = answer(
                app.clone()
                    .oneshot(request(headers))
                    .await
                    .expect("infallible"),
            )
            .await;
            let got = Answer {
                body: normalize_json(&got.body),
                ..got
            };
            assert_eq!(&got, want, "{name}, {} headers", headers.len());
        }
    }
}

fn refused(status: u16, www_authenticate: &str, body: Value) -> Answer {
    Answer {
        status: StatusCode::from_u16(status).expect("status"),
        www_authenticate: Some(www_authenticate.to_owned()),
        content_type: Some("application/json".to_owned()),
        cache_control: Some("no-store".to_owned()),
        body: body.to_string(),
    }
}

/// JSON bodies compared as values; other bodies as they are.
fn normalize_json(body: &str) -> String {
    serde_json::from_str::<Value>(body).map_or_else(|_| body.to_owned(), |v| v.to_string())
}

/// A body type of the inner service's own, which the layer must hand back as it is
/// (the left arm of its either-body), never boxed into axum's body.
#[derive(Debug)]
struct Marked(&'static str);

impl http_body::Body for Marked {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        let text = std::mem::take(&mut self.get_mut().0);
        Poll::Ready((!text.is_empty()).then(|| Ok(http_body::Frame::data(Bytes::from(text)))))
    }
}

#[tokio::test]
async fn the_layers_keep_the_inner_body_type() {
    let system = TestSystem::new();
    let inner = tower::service_fn(|_: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Marked("inner body")))
    });
    let service = ServiceBuilder::new()
        .layer(system.auth.layer())
        .layer(RequireRoleLayer::new("SYSTEM_OWNER"))
        .service(inner);
    let token = format!("Bearer {}", system.token().build());
    let response = service
        .clone()
        .oneshot(request(&[&token]))
        .await
        .expect("infallible");
    // The type says it: the inner body on the left of both layers' either-bodies.
    let http_body_util::Either::Left(http_body_util::Either::Left(Marked(text))) =
        response.into_body()
    else {
        panic!("an accepted request's body is not the inner service's own");
    };
    assert_eq!(text, "inner body");
    let refusal = service.oneshot(request(&[])).await.expect("infallible");
    assert!(matches!(
        refusal.into_body(),
        http_body_util::Either::Right(_)
    ));
}

fn plain_text(refusal: &Refusal<'_>) -> Response<Body> {
    let mut response = Response::new(Body::from(format!(
        "refused: {} ({})",
        refusal.description(),
        refusal.error().reason()
    )));
    *response.status_mut() = refusal.status();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, "text/plain".parse().expect("header"));
    response
}

fn problem_json(refusal: &Refusal<'_>) -> Response<Body> {
    let body = json!({
        "type": "about:blank",
        "title": refusal.status().canonical_reason(),
        "status": refusal.status().as_u16(),
        "detail": refusal.description(),
    });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = refusal.status();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        "application/problem+json".parse().expect("header"),
    );
    if let Some(challenge) = refusal.www_authenticate() {
        headers.insert(header::WWW_AUTHENTICATE, challenge.parse().expect("header"));
    }
    response
}

#[tokio::test]
async fn refusals_can_be_shaped_and_never_carry_the_token() {
    let system = TestSystem::new();
    let expired = system.token().expired().build();
    let bearer = format!("Bearer {expired}");
    let signature = expired.rsplit('.').next().expect("three parts").to_owned();

    let app = routes().layer(system.auth.layer().respond_with(plain_text));
    let got = answer(app.oneshot(request(&[&bearer])).await.expect("infallible")).await;
    assert_eq!(got.status, StatusCode::UNAUTHORIZED);
    assert_eq!(got.body, "refused: the token has expired (expired)");
    assert_eq!(got.content_type.as_deref(), Some("text/plain"));

    let app = routes().layer(system.auth.layer().respond_with(problem_json));
    let got = answer(app.oneshot(request(&[&bearer])).await.expect("infallible")).await;
    assert_eq!(got.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        serde_json::from_str::<Value>(&got.body).expect("JSON"),
        json!({
            "type": "about:blank",
            "title": "Unauthorized",
            "status": 401,
            "detail": "the token has expired",
        })
    );
    assert_eq!(
        got.content_type.as_deref(),
        Some("application/problem+json")
    );
    assert_eq!(
        got.www_authenticate.as_deref(),
        Some("Bearer error=\"invalid_token\", error_description=\"the token has expired\"")
    );
    for text in [&got.body, got.www_authenticate.as_deref().unwrap_or("")] {
        assert!(!text.contains(&signature), "the answer repeats the token");
    }

    // The role layer takes a responder too; an accepted request never reaches it.
    let app = routes()
        .route_layer(RequireRoleLayer::new("IAM_OWNER").respond_with(problem_json))
        .route_layer(system.auth.layer());
    let valid = format!("Bearer {}", system.token().build());
    let got = answer(app.oneshot(request(&[&valid])).await.expect("infallible")).await;
    assert_eq!(got.status, StatusCode::FORBIDDEN);
    assert_eq!(
        serde_json::from_str::<Value>(&got.body).expect("JSON")["detail"],
        "the system user lacks the role IAM_OWNER here"
    );
}

#[tokio::test]
async fn a_responder_sees_grpc_requests_as_grpc() {
    let system = TestSystem::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = routes().layer(system.auth.layer().respond_with(move |refusal| {
        record.lock().expect("lock").push(refusal.is_grpc());
        refusal.default_response()
    }));
    let mut grpc = request(&[]);
    grpc.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/grpc+proto".parse().expect("header"),
    );
    let response = app.clone().oneshot(grpc).await.expect("infallible");
    assert_eq!(response.headers()["grpc-status"], "16");
    let response = app.oneshot(request(&[])).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(*seen.lock().expect("lock"), [true, false]);
}

#[tokio::test]
async fn the_services_follow_towers_conventions() {
    let system = TestSystem::new();
    let mut service = SystemAuthService::new(routes(), system.auth.clone());
    let _: &Router = service.get_ref();
    let _: &mut Router = service.get_mut();
    let token = format!("Bearer {}", system.token().build());
    let response = service
        .clone()
        .oneshot(request(&[&token]))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let _: Router = service.into_inner();
    let layered = SystemAuthService::<Router>::layer(system.auth.clone()).layer(routes());
    let response = layered.oneshot(request(&[])).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let role = RequireRole::new(routes(), "SYSTEM_OWNER");
    assert!(role.get_ref().clone().oneshot(request(&[])).await.is_ok());
    let service = system.auth.layer().layer(role.into_inner());
    let response = service
        .oneshot(request(&[&token]))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let mut role = RequireRole::<Router>::layer("IAM_OWNER").layer(routes());
    let _: &mut Router = role.get_mut();
    let service = system.auth.layer().layer(role);
    let response = service
        .oneshot(request(&[&token]))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

/// Log output captured in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_trace_layer_stack_records_the_user_id_and_never_the_token() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let system = TestSystem::new();
    // The stack of the README and the example server: the Authorization header is
    // marked sensitive, and TraceLayer's span is `trace_span`, which the layer fills
    // with the user id. Headers are printed too, to see that the token is not.
    let app = routes().layer(system.auth.layer()).layer(
        ServiceBuilder::new()
            .layer(SetSensitiveRequestHeadersLayer::new([
                header::AUTHORIZATION,
            ]))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(trace_span)
                    .on_request(|request: &Request<Body>, _: &tracing::Span| {
                        tracing::info!(headers = ?request.headers(), "started");
                    })
                    .on_response(
                        |response: &Response<Body>, _: std::time::Duration, _: &tracing::Span| {
                            tracing::info!(status = %response.status(), "finished");
                        },
                    ),
            ),
    );
    let token = system.token().build();
    let bearer = format!("Bearer {token}");
    let response = app
        .clone()
        .oneshot(request(&[&bearer]))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let log = String::from_utf8_lossy(&captured.0.lock().expect("lock")).into_owned();
    let finished = log
        .lines()
        .find(|line| line.contains("finished"))
        .unwrap_or_else(|| panic!("no response event in {log}"));
    assert!(
        finished.contains(&format!("user_id={TEST_USER}")),
        "the request span lacks the user id: {finished}"
    );
    assert!(log.contains("\"authorization\": Sensitive"), "{log}");
    for (i, part) in token.split('.').enumerate() {
        assert!(
            !log.contains(part),
            "part {i} of the token is in the log:\n{log}"
        );
    }

    // A refused request's span has no user id.
    let refused = app
        .oneshot(request(&["Bearer x.y.z"]))
        .await
        .expect("infallible");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let log = String::from_utf8_lossy(&captured.0.lock().expect("lock")).into_owned();
    let last = log
        .lines()
        .rfind(|line| line.contains("finished"))
        .expect("a response event");
    assert!(!last.contains("user_id="), "{last}");
}

/// The layer keeps a plain tower service's own future and error type: it only
/// needs `Service<Request<B>, Response = Response<R>>`.
#[allow(dead_code)]
fn the_layer_takes_any_http_service() {
    fn is_service<S: Service<Request<Body>>>(_: &S) {}
    let system = TestSystem::new();
    let inner = tower::service_fn(|_: Request<Body>| async {
        Ok::<_, std::io::Error>(Response::new(Marked("x")))
    });
    let service: SystemAuthService<_> = system.auth.layer().layer(inner);
    is_service(&service);
    let _: &SystemAuth = &system.auth;
}
