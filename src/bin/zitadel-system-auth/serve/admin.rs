//! `/healthz` (alive), `/readyz` (a registry is loaded and the last reload did not
//! fail) and `/metrics` (Prometheus text, from the crate's metrics).

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use zitadel_system_auth::ReloadOutcome;

use super::Sidecar;

pub fn router(sidecar: Sidecar) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(sidecar)
}

async fn readyz(State(sidecar): State<Sidecar>) -> impl IntoResponse {
    let status = sidecar.auth.status();
    if status.last_outcome == ReloadOutcome::Failed {
        let error = status.last_error.unwrap_or_default();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the last reload failed (the last good keys are in use): {error}\n"),
        )
    } else {
        (
            StatusCode::OK,
            format!(
                "ready: generation {}, {} users\n",
                status.generation,
                status.users.len()
            ),
        )
    }
}

async fn metrics(State(sidecar): State<Sidecar>) -> impl IntoResponse {
    let text = sidecar
        .metrics
        .as_ref()
        .map(|handle| handle.render())
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
