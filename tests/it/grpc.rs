//! The layer in front of a tonic service, called with a tonic client over TCP:
//! refusals are gRPC statuses (trailers-only), not HTTP 401s.

use std::time::Duration;

use tokio::net::TcpListener;
use tonic::{Code, Request, metadata::MetadataValue};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use zitadel_system_auth::{
    SystemAuth,
    testing::{KeyForm, TEST_AUDIENCE, TEST_USER, TestKey, write_config},
};

#[path = "../../examples/support/grpc.rs"]
mod example;

/// Starts the example's gRPC service for `auth` and returns its address.
async fn start(auth: SystemAuth) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        if let Err(error) = example::serve(auth, listener, std::future::pending()).await {
            panic!("the gRPC server failed: {error}");
        }
    });
    format!("http://{addr}")
}

/// Calls `Health/Check` with `authorization` metadata, if given.
async fn check(url: &str, authorization: Option<&str>) -> Result<i32, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .expect("url")
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("connect");
    let mut client = HealthClient::new(channel);
    let mut request = Request::new(HealthCheckRequest {
        service: String::new(),
    });
    if let Some(value) = authorization {
        request.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(value).expect("ASCII metadata"),
        );
    }
    client.check(request).await.map(|r| r.into_inner().status)
}

/// A system with `system-user-1` (default SYSTEM_OWNER) and `viewer` (another role).
fn system(dir: &std::path::Path, owner: &TestKey, viewer: &TestKey) -> SystemAuth {
    let config = write_config(
        dir,
        "custom-domain.com",
        &[(TEST_USER, owner), ("viewer", viewer)],
        KeyForm::KeyData,
    )
    .expect("config");
    let mut yaml = std::fs::read_to_string(&config).expect("read config");
    yaml.push_str("      Memberships:\n        - MemberType: System\n          Roles: [SYSTEM_OWNER_VIEWER]\n");
    SystemAuth::builder()
        .config_yaml(&yaml)
        .build()
        .expect("config loads")
}

#[tokio::test]
async fn a_tonic_service_behind_the_layer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (owner, viewer) = (TestKey::generate(), TestKey::generate());
    let url = start(system(dir.path(), &owner, &viewer)).await;

    // A valid token reaches the service.
    let token = owner.token(TEST_USER, TEST_AUDIENCE).build();
    let serving = check(&url, Some(&format!("Bearer {token}"))).await;
    assert_eq!(serving.expect("the call with a token succeeds"), 1);

    // No token: UNAUTHENTICATED, not an HTTP 401.
    let status = check(&url, None).await.expect_err("refused");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(status.message(), "a bearer token is required");

    // A bad token: UNAUTHENTICATED with the failed check, never the token.
    let expired = owner.token(TEST_USER, TEST_AUDIENCE).expired().build();
    let status = check(&url, Some(&format!("Bearer {expired}")))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "the token has expired");
    assert!(!status.message().contains(&expired[..20]));

    let wrong_aud = owner.token(TEST_USER, "https://other.example").build();
    let status = check(&url, Some(&format!("Bearer {wrong_aud}")))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains(TEST_AUDIENCE), "{status:?}");

    // Authenticated without the role: PERMISSION_DENIED.
    let token = viewer.token("viewer", TEST_AUDIENCE).build();
    let status = check(&url, Some(&format!("Bearer {token}")))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains(example::ROLE));
}

#[tokio::test]
async fn a_grpc_refusal_is_trailers_only() {
    use axum::{body::Body, http::Request};
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    let system = zitadel_system_auth::testing::TestSystem::new();
    let app = axum::Router::new()
        .route(
            "/grpc.health.v1.Health/Check",
            axum::routing::post(|| async { "unreachable" }),
        )
        .layer(system.auth.layer());
    let request = Request::post("/grpc.health.v1.Health/Check")
        .header("content-type", "application/grpc")
        .header("authorization", "Bearer not.a.token")
        .body(Body::empty())
        .expect("request");
    let response = app.oneshot(request).await.expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/grpc");
    assert_eq!(response.headers()["grpc-status"], "16");
    assert_eq!(
        response.headers()["grpc-message"],
        "the token header is not unpadded base64url"
    );
    assert!(response.headers().get("www-authenticate").is_none());
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert!(body.is_empty());
}
