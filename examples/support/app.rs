//! The demo service shared by the `server` and `quickstart` examples: a stand-in for
//! ZITADEL's System API with one open and three protected routes, and the signal that
//! stops it.
//!
//! Included with `#[path = "support/app.rs"] mod app;`.

use std::{future::Future, io, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header::AUTHORIZATION},
    routing::{get, post},
};
use serde_json::{Value, json};
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer, limit::RequestBodyLimitLayer,
    sensitive_headers::SetSensitiveRequestHeadersLayer, timeout::TimeoutLayer, trace::TraceLayer,
};
use zitadel_system_auth::{SystemAuth, SystemUser, trace_span};

/// The one instance the demo service knows (the id from ZITADEL's documentation).
const INSTANCE_ID: &str = "172698969497928101";

/// The routes: `POST /system/v1/instances/_search`, `GET /whoami` and
/// `GET /system/healthz` (the same answer as `/healthz`, for load tests that compare
/// a route with and without the layer) need a system user token, `GET /healthz` is
/// open. `external_domain` is the domain the instance search answers with
/// (ZITADEL's `ExternalDomain`).
///
/// The layer is added with `route_layer`, so it runs only for matched routes and
/// unknown paths still answer 404 rather than 401. Around the routes, the stack a
/// production service runs, outermost first: a panic anywhere is a 500
/// (`CatchPanicLayer`); the `Authorization` header is marked sensitive, so no trace
/// ever prints it; every request is traced in a span that records the authenticated
/// user's id (`trace_span`); a request takes at most ten seconds; a request body is
/// at most 64 KiB.
pub fn router(auth: &SystemAuth, external_domain: &str) -> Router {
    Router::new()
        .route("/system/v1/instances/_search", post(search_instances))
        .route("/whoami", get(whoami))
        .route("/system/healthz", get(healthz))
        .route_layer(auth.layer())
        .route("/healthz", get(healthz))
        .with_state(Arc::<str>::from(external_domain))
        .layer(
            ServiceBuilder::new()
                .layer(CatchPanicLayer::new())
                .layer(SetSensitiveRequestHeadersLayer::new([AUTHORIZATION]))
                .layer(TraceLayer::new_for_http().make_span_with(trace_span))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    Duration::from_secs(10),
                ))
                .layer(RequestBodyLimitLayer::new(64 * 1024)),
        )
}

async fn healthz() -> &'static str {
    "ok"
}

/// ZITADEL's answer to `ListInstances`, shaped like the one in its documentation,
/// with the configured domain as the primary domain.
async fn search_instances(State(domain): State<Arc<str>>, _user: SystemUser) -> Json<Value> {
    let details = |sequence: &str| {
        json!({
            "sequence": sequence,
            "creationDate": "2022-08-02T09:30:10.781068Z",
            "changeDate": "2022-08-02T09:30:10.781068Z",
            "resourceOwner": INSTANCE_ID,
        })
    };
    Json(json!({
        "details": { "totalResult": "1" },
        "result": [{
            "id": INSTANCE_ID,
            "details": details("102"),
            "state": "STATE_RUNNING",
            "name": "ZITADEL",
            "domains": [{
                "details": details("108"),
                "domain": &*domain,
                "primary": true,
            }],
        }],
    }))
}

/// Who called: the user id, every configured membership, and the roles granted by
/// the memberships that apply to this request (every `System` membership; an
/// `Organization` one when the `x-zitadel-orgid` header names its organisation).
async fn whoami(user: SystemUser) -> Json<Value> {
    let mut roles: Vec<&str> = Vec::new();
    for role in user.applicable_memberships().flat_map(|m| &m.roles) {
        if !roles.contains(&role.as_str()) {
            roles.push(role);
        }
    }
    Json(json!({
        "userId": user.user_id(),
        "memberships": user.memberships(),
        "roles": roles,
    }))
}

/// Starts listening for Ctrl-C (and SIGTERM on Unix) at once, so that a signal
/// arriving before the server runs is not lost; the future resolves on the first.
pub fn shutdown_signal() -> io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(windows)]
    {
        let mut ctrl_c = tokio::signal::windows::ctrl_c()?;
        Ok(async move {
            ctrl_c.recv().await;
        })
    }
    #[cfg(not(any(unix, windows)))]
    {
        Ok(async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}
