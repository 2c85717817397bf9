//! Middleware that requires a role of the authenticated system user.
//!
//! ```
//! use axum::{Router, body::Body, http::Request, routing::post};
//! use tower::ServiceExt as _;
//! use zitadel_system_auth::{RequireRoleLayer, SystemAuth};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let system = zitadel_system_auth::testing::TestSystem::new();
//! # let auth = system.auth.clone();
//! # let token = system.token().build();
//! async fn create_instance() -> &'static str {
//!     "created"
//! }
//!
//! // Layers run outside-in: authenticate first, then check the role.
//! let app = |role: &'static str| {
//!     Router::new()
//!         .route("/system/v1/instances", post(create_instance))
//!         .route_layer(RequireRoleLayer::new(role))
//!         .route_layer(auth.layer())
//! };
//! let request = || {
//!     Request::post("/system/v1/instances")
//!         .header("authorization", format!("Bearer {token}"))
//!         .body(Body::empty())
//! };
//! // The user has ZITADEL's default membership: System with SYSTEM_OWNER.
//! let allowed = app("SYSTEM_OWNER").oneshot(request()?).await?;
//! assert_eq!(allowed.status(), 200);
//! let denied = app("IAM_OWNER").oneshot(request()?).await?;
//! assert_eq!(denied.status(), 403); // body: {"code":7,...}
//! # Ok(())
//! # }
//! ```
//!
//! A caller without a membership that applies to the request and grants the role
//! gets 403 with code 7 (PERMISSION_DENIED); a request that reached this layer without
//! a [`SystemUser`] (no [`SystemAuthLayer`](crate::SystemAuthLayer) outside it, or an
//! optional one without a token) gets 401. Each refusal is logged at info with its
//! reason, the user id and the role (at most
//! [`REFUSAL_LOGS_PER_SECOND`](crate::REFUSAL_LOGS_PER_SECOND) lines a second per
//! layer), and counted in `zitadel_system_auth_role_refusals_total` (feature
//! `metrics`): the authentication layer before it logged and counted the request as
//! accepted. Like the authentication layer, it keeps the inner service's body type
//! and can answer refusals its own way ([`RequireRoleLayer::respond_with`]).
//!
//! Holds the role middleware only: who the caller is comes from the extensions the
//! authentication layer set, the answers from `response`.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use axum::{
    body::Body,
    http::{Request, Response},
};
use http_body_util::Either;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    error::AuthError,
    metrics,
    refusal_log::RefusalLog,
    response::{Refusal, Responder, ResponseFuture},
    user::SystemUser,
};

/// Wraps a service with [`RequireRole`].
#[derive(Clone, Debug)]
pub struct RequireRoleLayer {
    check: Arc<RoleCheck>,
    responder: Responder,
}

/// The role a layer requires, and the log of its refusals, shared by every service
/// the layer makes (one reference count for a clone).
#[derive(Debug)]
struct RoleCheck {
    role: Arc<str>,
    refusals: RefusalLog,
}

impl RequireRoleLayer {
    /// Requires `role` (e.g. `SYSTEM_OWNER`, `IAM_OWNER`, `ORG_OWNER`).
    pub fn new(role: impl Into<Arc<str>>) -> RequireRoleLayer {
        RequireRoleLayer {
            check: Arc::new(RoleCheck {
                role: role.into(),
                refusals: RefusalLog::new("requests were refused by a role check"),
            }),
            responder: Responder::default(),
        }
    }

    /// Answers refusals with `respond` instead of ZITADEL's JSON error (or gRPC
    /// status); see [`SystemAuthLayer::respond_with`](crate::SystemAuthLayer::respond_with).
    pub fn respond_with(
        mut self,
        respond: impl Fn(&Refusal<'_>) -> Response<Body> + Send + Sync + 'static,
    ) -> RequireRoleLayer {
        self.responder = Responder::custom(respond);
        self
    }
}

impl<S> Layer<S> for RequireRoleLayer {
    type Service = RequireRole<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireRole {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`RequireRoleLayer`] makes.
#[derive(Clone, Debug)]
pub struct RequireRole<S> {
    inner: S,
    layer: RequireRoleLayer,
}

impl<S> RequireRole<S> {
    /// `inner`, requiring `role`.
    pub fn new(inner: S, role: impl Into<Arc<str>>) -> Self {
        RequireRoleLayer::new(role).layer(inner)
    }

    /// The layer that makes this service.
    pub fn layer(role: impl Into<Arc<str>>) -> RequireRoleLayer {
        RequireRoleLayer::new(role)
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

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireRole<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<Either<ResBody, Body>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let role = &self.layer.check.role;
        let user = request.extensions().get::<SystemUser>();
        let verdict = match user {
            None => Err(AuthError::MissingToken),
            Some(user) if user.has_role(role) => Ok(()),
            Some(_) => Err(AuthError::MissingRole { role: role.clone() }),
        };
        match verdict {
            Ok(()) => ResponseFuture::inner(self.inner.call(request)),
            Err(error) => {
                self.layer.check.record(&error, user);
                ResponseFuture::refused(self.layer.responder.respond(&error, &request))
            }
        }
    }
}

impl RoleCheck {
    /// Logs and counts one refusal: the reason, the user id and the role (never
    /// anything of the token, which this layer does not read).
    fn record(&self, error: &AuthError, user: Option<&SystemUser>) {
        metrics::role_refused(error.reason());
        self.refusals.log(|| {
            tracing::info!(
                target: "zitadel_system_auth",
                reason = error.reason(),
                user_id = user.map(SystemUser::user_id),
                role = &*self.role,
                "request refused by the route's role check: {error}"
            );
        });
    }
}
