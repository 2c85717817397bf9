//! How a refusal is answered: ZITADEL's REST error (status, JSON body, RFC 6750
//! `WWW-Authenticate`), or a gRPC status for a gRPC request; a [`Refusal`] handed to
//! a custom responder; and the response future the middleware return, whose body is
//! the inner service's own or the refusal's.
//!
//! One [`IntoResponse`] implementation turns an [`AuthError`] into ZITADEL's REST
//! answer: 401 with the JSON body `{"code":16,"message":"...","details":[]}` and an
//! RFC 6750 `WWW-Authenticate` header, 403 with code 7 for a missing role, 400 for
//! several `Authorization` or `x-zitadel-orgid` headers; every refusal also says
//! `Cache-Control: no-store`. Holds rendering only: which check failed is decided
//! elsewhere, and the text comes from the error's `Display`.
//!
//! A layer can answer refusals its own way
//! ([`SystemAuthLayer::respond_with`](crate::SystemAuthLayer::respond_with),
//! [`RequireRoleLayer::respond_with`](crate::RequireRoleLayer::respond_with)): the
//! responder gets a [`Refusal`], which holds the failed check and its fixed public
//! description, never the token.
//!
//! ```
//! use axum::{body::Body, http::{Response, header}};
//! use zitadel_system_auth::response::Refusal;
//!
//! // RFC 9457 problem details instead of ZITADEL's JSON.
//! fn problem(refusal: &Refusal<'_>) -> Response<Body> {
//!     let body = serde_json::json!({
//!         "type": "about:blank",
//!         "title": refusal.status().canonical_reason(),
//!         "status": refusal.status().as_u16(),
//!         "detail": refusal.description(),
//!     });
//!     let mut response = Response::new(Body::from(body.to_string()));
//!     *response.status_mut() = refusal.status();
//!     let headers = response.headers_mut();
//!     headers.insert(header::CONTENT_TYPE, "application/problem+json".parse().unwrap());
//!     if let Some(challenge) = refusal.www_authenticate() {
//!         headers.insert(header::WWW_AUTHENTICATE, challenge.parse().unwrap());
//!     }
//!     response
//! }
//! # let system = zitadel_system_auth::testing::TestSystem::new();
//! let layer = system.auth.layer().respond_with(problem);
//! ```

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use axum::{
    body::Body,
    http::{HeaderValue, Request, Response, StatusCode, header},
    response::IntoResponse,
};
use http_body_util::Either;
use pin_project_lite::pin_project;

use crate::error::AuthError;

/// A refused request, as a custom responder sees it: which check failed (with its
/// fixed public description, never the token) and whether the request was gRPC.
#[derive(Debug, Clone, Copy)]
pub struct Refusal<'a> {
    error: &'a AuthError,
    grpc: bool,
}

impl<'a> Refusal<'a> {
    /// The refusal of `request` for `error`.
    pub fn new<B>(error: &'a AuthError, request: &Request<B>) -> Refusal<'a> {
        let grpc = request
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        Refusal { error, grpc }
    }

    /// The failed check.
    pub fn error(&self) -> &'a AuthError {
        self.error
    }

    /// The HTTP status of the default answer (401, 403, 400, or 500).
    pub fn status(&self) -> StatusCode {
        self.error.status()
    }

    /// The fixed public description of the failed check (what the default answer's
    /// `message` says).
    pub fn description(&self) -> String {
        self.error.to_string()
    }

    /// The RFC 6750 `WWW-Authenticate` value of the default answer, if any.
    pub fn www_authenticate(&self) -> Option<String> {
        self.error.www_authenticate()
    }

    /// Whether the request was gRPC (`content-type: application/grpc...`).
    pub fn is_grpc(&self) -> bool {
        self.grpc
    }

    /// The default answer: ZITADEL's REST error, or a gRPC status for gRPC.
    pub fn default_response(&self) -> Response<Body> {
        if self.grpc {
            self.error.clone().into_grpc_response()
        } else {
            self.error.clone().into_response()
        }
    }
}

/// How a layer answers a refusal; the default renders ZITADEL's answer
/// ([`Refusal::default_response`]).
#[derive(Clone, Default)]
pub(crate) struct Responder(Option<Arc<RespondFn>>);

/// A custom responder.
type RespondFn = dyn Fn(&Refusal<'_>) -> Response<Body> + Send + Sync;

impl Responder {
    pub fn custom(
        respond: impl Fn(&Refusal<'_>) -> Response<Body> + Send + Sync + 'static,
    ) -> Self {
        Responder(Some(Arc::new(respond)))
    }

    /// The answer to `request`, refused for `error`.
    pub fn respond<B>(&self, error: &AuthError, request: &Request<B>) -> Response<Body> {
        let refusal = Refusal::new(error, request);
        match &self.0 {
            Some(respond) => respond(&refusal),
            None => refusal.default_response(),
        }
    }
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Responder(custom)"
        } else {
            "Responder(default)"
        })
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
    /// The response future of [`SystemAuthService`](crate::SystemAuthService) and
    /// [`RequireRole`](crate::RequireRole): the inner service's answer with its own
    /// body, or the refusal.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F },
        Refused { response: Option<Response<Body>> },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn inner(future: F) -> Self {
        ResponseFuture {
            kind: Kind::Inner { future },
        }
    }

    pub(crate) fn refused(response: Response<Body>) -> Self {
        ResponseFuture {
            kind: Kind::Refused {
                response: Some(response),
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<Either<B, Body>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(response.map(Either::Left)))
            }
            KindProj::Refused { response } => {
                // Polled again after it was ready: the refusal is gone.
                let response = response
                    .take()
                    .unwrap_or_else(|| AuthError::Internal.into_response());
                Poll::Ready(Ok(response.map(Either::Right)))
            }
        }
    }
}
