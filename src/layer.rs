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
//! [`SystemAuth::verify`], and on success puts a [`SystemUser`](crate::SystemUser) into the request's
//! extensions, with the request's instance (an [`InstanceId`](crate::InstanceId)
//! extension, else the builder's) and organisation (the `x-zitadel-orgid` header)
//! for membership checks. A refusal never reaches the inner service: it is answered
//! as [`AuthError`] says, or by the layer's [`respond_with`](SystemAuthLayer::respond_with).
//! The inner service keeps its response body type: the layer's response body is
//! `Either<its body, axum::body::Body>`, the refusal being the right arm.
//!
//! tower-http's own authorization middleware take [`SystemAuth`] as it is, with the
//! same verdicts, answers and [`SystemUser`](crate::SystemUser):
//!
//! ```
//! use axum::{Router, routing::get};
//! use tower_http::{auth::AsyncRequireAuthorizationLayer, validate_request::ValidateRequestHeaderLayer};
//! use zitadel_system_auth::SystemUser;
//! # let system = zitadel_system_auth::testing::TestSystem::new();
//! # let auth = system.auth.clone();
//! async fn handler(user: SystemUser) -> String {
//!     user.user_id().to_owned()
//! }
//! let a: Router = Router::new().route("/x", get(handler)).layer(AsyncRequireAuthorizationLayer::new(auth.clone()));
//! let b: Router = Router::new().route("/x", get(handler)).layer(ValidateRequestHeaderLayer::custom(auth.clone()));
//! ```
//!
//! Holds the middleware only: reading and deciding a request is `request`'s, the
//! answers are `response`'s.

use std::{
    future::{Ready, ready},
    sync::Arc,
    task::{Context, Poll},
};

use axum::{
    body::Body,
    http::{Request, Response},
};
use http_body_util::Either;
use tower_http::{auth::AsyncAuthorizeRequest, validate_request::ValidateRequest};
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    auth::SystemAuth,
    error::AuthError,
    response::{Refusal, Responder},
};
pub use crate::{request::bearer_token, response::ResponseFuture};

/// Wraps a service with [`SystemAuthService`]. Made by [`SystemAuth::layer`] and
/// [`SystemAuth::optional_layer`].
#[derive(Clone, Debug)]
pub struct SystemAuthLayer {
    settings: Settings,
}

/// What a [`SystemAuthLayer`] decides with, shared by the clones of one service.
#[derive(Clone, Debug)]
struct Settings {
    auth: SystemAuth,
    optional: bool,
    responder: Responder,
}

impl SystemAuthLayer {
    /// A layer that requires a valid token.
    pub fn new(auth: SystemAuth) -> SystemAuthLayer {
        SystemAuthLayer {
            settings: Settings {
                auth,
                optional: false,
                responder: Responder::default(),
            },
        }
    }

    /// Lets requests without an `Authorization` header through unauthenticated.
    pub fn optional(mut self) -> SystemAuthLayer {
        self.settings.optional = true;
        self
    }

    /// Answers refusals with `respond` instead of ZITADEL's JSON error (or gRPC
    /// status). It gets the [`Refusal`]: the failed check with its fixed public
    /// description, the status, whether the request was gRPC, and the default answer
    /// ([`Refusal::default_response`]); never the token. See the
    /// [`response`](crate::response) module for an RFC 9457 example.
    pub fn respond_with(
        mut self,
        respond: impl Fn(&Refusal<'_>) -> Response<Body> + Send + Sync + 'static,
    ) -> SystemAuthLayer {
        self.settings.responder = Responder::custom(respond);
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

    /// Each service made holds the settings in an `Arc` of its own. axum clones a
    /// route's service for every request; the clone then counts on this service's
    /// reference, not on the [`SystemAuth`]'s, which every service on every route
    /// and thread would share (each route of a Router, each worker's own service,
    /// gets one of its own).
    ///
    /// Measured with `benches/compare` (a build with and one without, alternating,
    /// three interleaved passes of 100 rounds): the cached layer on 2 threads, a
    /// service each, scaled 0.99, 1.03 and 0.96 of the floor's scaling with, 0.85,
    /// 0.91 and 0.91 without (target ≥ 0.95).
    fn layer(&self, inner: S) -> Self::Service {
        SystemAuthService {
            inner,
            settings: Arc::new(self.settings.clone()),
        }
    }
}

/// The service [`SystemAuthLayer`] makes.
#[derive(Clone, Debug)]
pub struct SystemAuthService<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S> SystemAuthService<S> {
    /// `inner` behind a layer that requires a valid token.
    pub fn new(inner: S, auth: SystemAuth) -> Self {
        SystemAuthLayer::new(auth).layer(inner)
    }

    /// The layer that makes this service ([`SystemAuth::layer`]).
    pub fn layer(auth: SystemAuth) -> SystemAuthLayer {
        SystemAuthLayer::new(auth)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SystemAuthService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<Either<ResBody, Body>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let settings = &*self.settings;
        match settings.auth.decide(&mut request, settings.optional) {
            Ok(()) => ResponseFuture::inner(self.inner.call(request)),
            Err(error) => ResponseFuture::refused(settings.responder.respond(&error, &request)),
        }
    }
}

/// tower-http's `AsyncRequireAuthorizationLayer::new(auth)`: the same decision as
/// [`SystemAuth::layer`], with ZITADEL's answers.
impl<B> AsyncAuthorizeRequest<B> for SystemAuth {
    type RequestBody = B;
    type ResponseBody = Body;
    type Future = Ready<Result<Request<B>, Response<Body>>>;

    fn authorize(&mut self, mut request: Request<B>) -> Self::Future {
        ready(match self.decide(&mut request, false) {
            Ok(()) => Ok(request),
            Err(error) => Err(refusal(&error, &request)),
        })
    }
}

/// tower-http's `ValidateRequestHeaderLayer::custom(auth)`: the same decision as
/// [`SystemAuth::layer`], with ZITADEL's answers.
impl<B> ValidateRequest<B> for SystemAuth {
    type ResponseBody = Body;

    fn validate(&mut self, request: &mut Request<B>) -> Result<(), Response<Body>> {
        self.decide(request, false)
            .map_err(|error| refusal(&error, request))
    }
}

/// The layer's response around an axum service (a `Router`), with axum's body again:
/// both arms of the either-body are axum bodies, so nothing is boxed. For
/// `axum::serve` around a whole Router wrapped in the layer (a `Router::layer` or
/// `route_layer` needs nothing: axum converts the response itself).
///
/// ```no_run
/// use axum::{Router, ServiceExt, extract::Request};
/// use tower::{Layer as _, util::MapResponseLayer};
/// use zitadel_system_auth::{SystemAuth, layer::into_axum_response};
///
/// # async fn run(auth: SystemAuth, router: Router) -> std::io::Result<()> {
/// let app = MapResponseLayer::new(into_axum_response).layer(auth.layer().layer(router));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// axum::serve(listener, ServiceExt::<Request>::into_make_service(app)).await
/// # }
/// ```
pub fn into_axum_response(response: Response<Either<Body, Body>>) -> Response<Body> {
    response.map(|body| match body {
        Either::Left(body) | Either::Right(body) => body,
    })
}

fn refusal<B>(error: &AuthError, request: &Request<B>) -> Response<Body> {
    Refusal::new(error, request).default_response()
}
