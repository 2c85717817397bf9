//! How a refusal is answered: ZITADEL's REST error (status, JSON body, RFC 6750
//! `WWW-Authenticate`), or a gRPC status for a gRPC request, and the response future
//! the middleware return.
//!
//! One [`IntoResponse`] implementation turns an [`AuthError`] into ZITADEL's REST
//! answer: 401 with the JSON body `{"code":16,"message":"...","details":[]}` and an
//! RFC 6750 `WWW-Authenticate` header, 403 with code 7 for a missing role, 400 for
//! several `Authorization` or `x-zitadel-orgid` headers; every refusal also says
//! `Cache-Control: no-store`. Holds rendering only: which check failed is decided
//! elsewhere, and the text comes from the error's `Display`.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use axum::{
    body::Body,
    http::{HeaderValue, Request, Response, header},
    response::IntoResponse,
};
use bytes::Bytes;
use pin_project_lite::pin_project;

use crate::error::AuthError;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a refusal is answered: ZITADEL's REST error, or a gRPC status for a gRPC
/// request (`content-type: application/grpc...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Rest,
    Grpc,
}

impl Protocol {
    /// The protocol `request` speaks.
    pub(crate) fn of<B>(request: &Request<B>) -> Protocol {
        let grpc = request
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        if grpc { Protocol::Grpc } else { Protocol::Rest }
    }
}

impl AuthError {
    /// The `WWW-Authenticate` value for this refusal (RFC 6750 section 3); none for
    /// an internal error.
    pub fn www_authenticate(&self) -> Option<String> {
        let code = match self {
            AuthError::MissingToken => return Some("Bearer".to_owned()),
            AuthError::MultipleAuthorizationHeaders | AuthError::MultipleOrganizationHeaders => {
                "invalid_request"
            }
            AuthError::MissingRole { .. } => "insufficient_scope",
            AuthError::Internal => return None,
            _ => "invalid_token",
        };
        let description = quoted_string_safe(&self.to_string());
        Some(format!(
            "Bearer error=\"{code}\", error_description=\"{description}\""
        ))
    }
}

/// Keeps only characters allowed in an RFC 6750 `error_description`
/// (visible ASCII and space, without `"` and `\`).
fn quoted_string_safe(text: &str) -> String {
    text.chars()
        .filter(|c| matches!(c, ' '..='~') && *c != '"' && *c != '\\')
        .collect()
}

impl IntoResponse for AuthError {
    fn into_response(self) -> axum::response::Response {
        let body = serde_json::json!({
            "code": self.grpc_code(),
            "message": self.to_string(),
            "details": [],
        });
        let mut response = (self.status(), body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(Ok(value)) = self.www_authenticate().map(|v| HeaderValue::from_str(&v)) {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

impl AuthError {
    /// The refusal as a gRPC trailers-only response: HTTP 200 with `grpc-status`
    /// (16 UNAUTHENTICATED, 7 PERMISSION_DENIED, 3 INVALID_ARGUMENT, 13 INTERNAL)
    /// and `grpc-message` in the headers, and no body. The layer answers a request
    /// with `content-type: application/grpc` this way.
    pub fn into_grpc_response(self) -> axum::response::Response {
        let mut response = Response::new(axum::body::Body::empty());
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert("grpc-status", HeaderValue::from(self.grpc_code()));
        if let Ok(message) = HeaderValue::from_str(&grpc_percent_encode(&self.to_string())) {
            headers.insert("grpc-message", message);
        }
        response
    }
}

/// gRPC's `grpc-message` encoding: `%` and bytes outside space..`~` as `%XX`.
fn grpc_percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (b' '..=b'~').contains(&byte) && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

pin_project! {
    /// The response future of [`SystemAuthService`] and
    /// [`RequireRole`](crate::role::RequireRole): the inner service's answer, or the
    /// refusal.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F },
        Refused { error: Option<AuthError>, protocol: Protocol },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn inner(future: F) -> Self {
        ResponseFuture {
            kind: Kind::Inner { future },
        }
    }

    pub(crate) fn refused(error: AuthError, protocol: Protocol) -> Self {
        ResponseFuture {
            kind: Kind::Refused {
                error: Some(error),
                protocol,
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(response.map(Body::new)))
            }
            KindProj::Refused { error, protocol } => {
                let response = match (error.take(), protocol) {
                    (Some(error), Protocol::Rest) => error.into_response(),
                    (Some(error), Protocol::Grpc) => error.into_grpc_response(),
                    // Polled again after it was ready: the refusal is gone.
                    (None, _) => AuthError::Internal.into_response(),
                };
                Poll::Ready(Ok(response))
            }
        }
    }
}
