//! Middleware that authenticates requests with a ZITADEL system user token.
//!
//! ```
//! use axum::{Router, body::Body, http::Request, routing::{get, post}};
//! use tower::ServiceExt as _;
//! use zitadel_system_auth::{SystemAuth, SystemUser};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let system = zitadel_system_auth::testing::TestSystem::new();
//! # let config_path = system.dir().join("config.yaml");
//! # let token = system.token().build();
//! let auth = SystemAuth::builder().config_file(config_path).build()?;
//!
//! async fn search(user: SystemUser) -> String {
//!     format!("searched as {}", user.user_id())
//! }
//! async fn health() -> &'static str {
//!     "ok"
//! }
//!
//! let app = Router::new()
//!     .route("/system/v1/instances/_search", post(search))
//!     .route_layer(auth.layer()) // protects the routes above only
//!     .route("/healthz", get(health)); // open
//!
//! let search_request = |token: Option<&str>| {
//!     let request = Request::post("/system/v1/instances/_search");
//!     match token {
//!         Some(token) => request.header("authorization", format!("Bearer {token}")),
//!         None => request,
//!     }
//!     .body(Body::empty())
//! };
//! let with_token = app.clone().oneshot(search_request(Some(&token))?).await?;
//! assert_eq!(with_token.status(), 200);
//! let without = app.clone().oneshot(search_request(None)?).await?;
//! assert_eq!(without.status(), 401);
//! assert_eq!(without.headers()["www-authenticate"], "Bearer");
//! let health = app.oneshot(Request::get("/healthz").body(Body::empty())?).await?;
//! assert_eq!(health.status(), 200);
//! # Ok(())
//! # }
//! ```
//!
//! The layer reads exactly one `Authorization: Bearer <token>` header (the scheme in
//! any case, then one or more spaces), verifies the token with
//! [`SystemAuth::verify`], and on success puts a [`SystemUser`] into the request's
//! extensions, with the request's instance (an [`InstanceId`] extension, else the
//! builder's) and organisation (the `x-zitadel-orgid` header) for membership checks.
//! A refusal never reaches the inner service: it is answered as [`AuthError`] says.

use std::{
    panic::AssertUnwindSafe,
    sync::{Arc, LazyLock},
    task::{Context, Poll},
};

use axum::{
    body::Body,
    http::{Extensions, HeaderMap, HeaderValue, Request, Response, header::AUTHORIZATION},
};
use bytes::Bytes;
use tower_layer::Layer;
use tower_service::Service;

pub use crate::response::ResponseFuture;
use crate::{
    auth::SystemAuth,
    error::{AuthError, Malformed},
    response::Protocol,
    speedup::{self, Speedup},
    user::{InstanceId, ORG_ID_HEADER, SystemUser},
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const ORG_ID: axum::http::HeaderName = axum::http::HeaderName::from_static(ORG_ID_HEADER);

/// Wraps a service with [`SystemAuthService`]. Made by [`SystemAuth::layer`] and
/// [`SystemAuth::optional_layer`].
#[derive(Clone, Debug)]
pub struct SystemAuthLayer {
    auth: SystemAuth,
    optional: bool,
}

impl SystemAuthLayer {
    /// A layer that requires a valid token.
    pub fn new(auth: SystemAuth) -> SystemAuthLayer {
        SystemAuthLayer {
            auth,
            optional: false,
        }
    }

    /// Lets requests without an `Authorization` header through unauthenticated.
    pub fn optional(mut self) -> SystemAuthLayer {
        self.optional = true;
        self
    }
}

impl SystemAuth {
    /// A layer that requires a valid token on every request.
    pub fn layer(&self) -> SystemAuthLayer {
        SystemAuthLayer::new(self.clone())
    }

    /// A layer that lets requests without an `Authorization` header through (the
    /// handler sees `Option<SystemUser>` as `None`) and still refuses bad tokens.
    pub fn optional_layer(&self) -> SystemAuthLayer {
        SystemAuthLayer::new(self.clone()).optional()
    }
}

impl<S> Layer<S> for SystemAuthLayer {
    type Service = SystemAuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SystemAuthService {
            inner,
            auth: self.auth.clone(),
            optional: self.optional,
        }
    }
}

/// The service [`SystemAuthLayer`] makes.
#[derive(Clone, Debug)]
pub struct SystemAuthService<S> {
    inner: S,
    auth: SystemAuth,
    optional: bool,
}

impl<S> SystemAuthService<S> {
    /// Decides a request: `Ok(Some(user))` to go on authenticated, `Ok(None)` to go
    /// on without a user (optional mode, no token), `Err` to refuse.
    fn authenticate<B>(&self, request: &Request<B>) -> Result<Option<SystemUser>, AuthError> {
        let headers = request.headers();
        let result = match authorization(headers).and_then(|value| self.check(value.as_bytes())) {
            Err(AuthError::MissingToken) if self.optional => return Ok(None),
            result => result,
        };
        let result = result.and_then(|user| {
            let instance = match request.extensions().get::<InstanceId>() {
                Some(InstanceId(id)) => Some(id.clone()),
                None => self.auth.instance_id().cloned(),
            };
            Ok(user.with_context(instance, organization(headers)?))
        });
        self.auth.record(&result);
        result.map(Some)
    }

    /// The verdict on the value of the `Authorization` header, read as bytes.
    ///
    /// [`bearer_token`] first checks that the header is ASCII; here that check is
    /// only needed for a refusal. Only a token of base64url and dots passes the
    /// checks (a cached one passed them before), so an accepted header was ASCII,
    /// and a refused one that was not is refused for its encoding, as
    /// [`bearer_token`] refuses it.
    fn check(&self, value: &[u8]) -> Result<SystemUser, AuthError> {
        token_in(value)
            .and_then(|token| self.auth.check(token))
            .map_err(|error| {
                if value.is_ascii() {
                    error
                } else {
                    AuthError::Malformed(Malformed::HeaderEncoding)
                }
            })
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SystemAuthService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // A panic while deciding becomes a 500 answer, not a dropped connection.
        let decision = std::panic::catch_unwind(AssertUnwindSafe(|| self.authenticate(&request)))
            .unwrap_or_else(|_| {
                tracing::error!(
                    target: "zitadel_system_auth",
                    "panic while authenticating a request; answered 500"
                );
                Err(AuthError::Internal)
            });
        match decision {
            Ok(Some(user)) => {
                let extensions = request.extensions_mut();
                if extensions.is_empty() && speedup::on(Speedup::RoomyExtensions) {
                    *extensions = ROOMY_EXTENSIONS.clone();
                }
                extensions.insert(user);
                ResponseFuture::inner(self.inner.call(request))
            }
            Ok(None) => {
                // Let through unauthenticated: nothing set before this layer may pass
                // for the layer's verdict.
                request.extensions_mut().remove::<SystemUser>();
                ResponseFuture::inner(self.inner.call(request))
            }
            Err(error) => ResponseFuture::refused(error, Protocol::of(&request)),
        }
    }
}

/// An empty extension map with room for seven extensions, to clone for a request
/// that has none yet.
///
/// A request a server has just parsed carries no extensions. Around a Router, the
/// layer adds the [`SystemUser`] and axum then adds three of its own (the original
/// URI, the matched path, the path parameters): four, one more than a map's first
/// allocation holds, so the map would be allocated twice and rehashed on every
/// request. A clone of this map keeps its room and allocates once. (Were a clone
/// ever to drop the spare room, the map would only grow as before.)
static ROOMY_EXTENSIONS: LazyLock<Extensions> = LazyLock::new(|| {
    #[derive(Clone)]
    struct Room<const N: usize>;
    let mut extensions = Extensions::new();
    extensions.insert(Room::<0>);
    extensions.insert(Room::<1>);
    extensions.insert(Room::<2>);
    extensions.insert(Room::<3>);
    extensions.clear();
    extensions
});

/// Reads the token from exactly one `Authorization: Bearer <token>` header.
///
/// A missing header or another scheme is [`AuthError::MissingToken`]; several
/// headers are [`AuthError::MultipleAuthorizationHeaders`].
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let value = authorization(headers)?.as_bytes();
    // A header value holds no control characters, so ASCII here means visible ASCII
    // (and tabs), as `HeaderValue::to_str` checks, a word at a time rather than a byte.
    if !value.is_ascii() {
        return Err(AuthError::Malformed(Malformed::HeaderEncoding));
    }
    let token = token_in(value)?;
    std::str::from_utf8(token).map_err(|_| AuthError::Malformed(Malformed::HeaderEncoding))
}

/// The one `Authorization` header.
fn authorization(headers: &HeaderMap) -> Result<&HeaderValue, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(AuthError::MissingToken)?;
    if values.next().is_some() {
        return Err(AuthError::MultipleAuthorizationHeaders);
    }
    Ok(value)
}

/// The organisation the request is about: the one `x-zitadel-orgid` header, if any
/// (an empty or non-text one is none). Several are refused, never first-one-wins.
fn organization(headers: &HeaderMap) -> Result<Option<Arc<str>>, AuthError> {
    let mut values = headers.get_all(&ORG_ID).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(AuthError::MultipleOrganizationHeaders);
    }
    Ok(first
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(Arc::from))
}

/// The token in `Bearer <token>`: the scheme in any case, one or more spaces, then
/// the token.
fn token_in(value: &[u8]) -> Result<&[u8], AuthError> {
    let (scheme, rest) = match value.iter().position(|&b| b == b' ') {
        Some(space) => (&value[..space], &value[space + 1..]),
        None => (value, &b""[..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(AuthError::MissingToken);
    }
    match rest.iter().position(|&b| b != b' ') {
        None => Err(AuthError::Malformed(Malformed::EmptyToken)),
        Some(start) => Ok(&rest[start..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_roomy_extensions_are_empty_and_stay_so() {
        assert!(ROOMY_EXTENSIONS.is_empty());
        let mut extensions = ROOMY_EXTENSIONS.clone();
        assert_eq!(extensions.len(), 0);
        extensions.insert(7u8);
        assert_eq!(extensions.get::<u8>(), Some(&7));
        assert!(ROOMY_EXTENSIONS.is_empty());
    }
}
