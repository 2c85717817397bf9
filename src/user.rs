//! The authenticated caller: [`SystemUser`], an axum extractor, and its
//! [`Membership`]s.
//!
//! ```
//! use axum::{Router, body::Body, http::Request, routing::get};
//! use tower::ServiceExt as _;
//! use zitadel_system_auth::{AuthError, SystemUser};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let system = zitadel_system_auth::testing::TestSystem::new();
//! # let auth = system.auth.clone();
//! # let token = system.token().build();
//! // The extractor: the route is only reached with a valid token.
//! async fn whoami(user: SystemUser) -> String {
//!     format!("hello {}", user.user_id())
//! }
//!
//! // Optional authentication: `None` when the request carried no token. Behind
//! // `optional_layer`, which lets such requests through but still refuses bad tokens.
//! async fn greet(user: Option<SystemUser>) -> String {
//!     match user {
//!         Some(user) => format!("hello {}", user.user_id()),
//!         None => "hello stranger".to_owned(),
//!     }
//! }
//!
//! // A role guard inside the handler: 403 with code 7 when the role is missing.
//! async fn admin(user: SystemUser) -> Result<&'static str, AuthError> {
//!     user.require_role("IAM_OWNER")?;
//!     Ok("welcome")
//! }
//!
//! let app = Router::new()
//!     .route("/whoami", get(whoami))
//!     .route("/admin", get(admin))
//!     .layer(auth.layer())
//!     .merge(Router::new().route("/greet", get(greet)).layer(auth.optional_layer()));
//!
//! let get = |path: &str, token: Option<&str>| {
//!     let request = Request::get(path);
//!     match token {
//!         Some(token) => request.header("authorization", format!("Bearer {token}")),
//!         None => request,
//!     }
//!     .body(Body::empty())
//! };
//! assert_eq!(app.clone().oneshot(get("/whoami", Some(&token))?).await?.status(), 200);
//! assert_eq!(app.clone().oneshot(get("/greet", None)?).await?.status(), 200);
//! assert_eq!(app.clone().oneshot(get("/greet", Some("junk"))?).await?.status(), 401);
//! // The default membership (System, SYSTEM_OWNER) does not grant IAM_OWNER.
//! assert_eq!(app.oneshot(get("/admin", Some(&token))?).await?.status(), 403);
//! # Ok(())
//! # }
//! ```
//!
//! Holds who the caller is and the membership rules; how a request is decided is
//! `request`'s, and the configuration's memberships are read by `config`.

use std::{
    fmt,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    extract::{FromRequestParts, OptionalFromRequestParts},
    http::request::Parts,
};
use serde::Serialize;

use crate::error::AuthError;

/// The header ZITADEL's clients use to name the organisation a request is about.
pub const ORG_ID_HEADER: &str = "x-zitadel-orgid";

/// What a membership is on: the whole system, one instance, or one organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum MemberType {
    /// The whole system: applies to every request.
    System,
    /// One instance (`AggregateID` is the instance id).
    #[serde(rename = "IAM")]
    Iam,
    /// One organisation (`AggregateID` is the organisation id).
    Organization,
}

impl MemberType {
    /// Reads ZITADEL's names (`System`, `IAM`, `Organization`), in any case.
    pub fn parse(name: &str) -> Result<MemberType, String> {
        match name.to_ascii_lowercase().as_str() {
            "system" => Ok(MemberType::System),
            "iam" => Ok(MemberType::Iam),
            "organization" => Ok(MemberType::Organization),
            "project" | "projectgrant" | "unspecified" => Err(format!(
                "membership type {} is not supported for system users (use System, IAM or Organization)",
                crate::error::shown(name)
            )),
            _ => Err(format!(
                "unknown membership type {} (use System, IAM or Organization)",
                crate::error::shown(name)
            )),
        }
    }

    /// ZITADEL's name for the type.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberType::System => "System",
            MemberType::Iam => "IAM",
            MemberType::Organization => "Organization",
        }
    }
}

impl fmt::Display for MemberType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One membership of a system user, as configured under `Memberships`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Membership {
    /// What the membership is on.
    pub member_type: MemberType,
    /// The roles it grants, e.g. `SYSTEM_OWNER`, `IAM_OWNER`, `ORG_OWNER`.
    pub roles: Vec<String>,
    /// The instance (IAM) or organisation (Organization) it is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregate_id: Option<String>,
    /// `ObjectID`, a field ZITADEL's membership has too; kept, not used in any check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
}

impl Membership {
    /// ZITADEL's default for a user with no memberships: `System`, `SYSTEM_OWNER`.
    pub fn default_system_owner() -> Membership {
        Membership {
            member_type: MemberType::System,
            roles: vec!["SYSTEM_OWNER".to_owned()],
            aggregate_id: None,
            object_id: None,
        }
    }

    /// Whether this membership applies to a request about `instance_id` and
    /// `org_id`, by ZITADEL's rule: every System membership; an IAM one on the
    /// request's instance; an Organization one on the request's organisation.
    pub fn applies_to(&self, instance_id: Option<&str>, org_id: Option<&str>) -> bool {
        match self.member_type {
            MemberType::System => true,
            MemberType::Iam => matches!(
                (self.aggregate_id.as_deref(), instance_id),
                (Some(a), Some(i)) if a == i
            ),
            MemberType::Organization => matches!(
                (self.aggregate_id.as_deref(), org_id),
                (Some(a), Some(o)) if a == o
            ),
        }
    }
}

/// The instance a request is about, for IAM memberships.
///
/// ZITADEL knows the instance from the request's domain; a service embedding this
/// crate inserts this into the request's extensions (before [`SystemAuthLayer`]
/// runs) or sets a fixed one with [`SystemAuthBuilder::instance_id`].
///
/// [`SystemAuthLayer`]: crate::SystemAuthLayer
/// [`SystemAuthBuilder::instance_id`]: crate::SystemAuthBuilder::instance_id
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceId(pub Arc<str>);

/// Who a configured system user is: the part of a registry entry a request sees.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    pub id: Box<str>,
    pub memberships: Box<[Membership]>,
}

/// An authenticated ZITADEL system user, put on the request by
/// [`SystemAuthLayer`](crate::SystemAuthLayer).
///
/// As an extractor it refuses the request with 401 when there is none (a route
/// behind [`SystemAuth::optional_layer`](crate::SystemAuth::optional_layer) without a
/// token); `Option<SystemUser>` never refuses.
#[derive(Clone, PartialEq, Eq)]
pub struct SystemUser {
    identity: Arc<Identity>,
    issued_at: u64,
    expires_at: u64,
    instance_id: Option<Arc<str>>,
    org_id: Option<Arc<str>>,
}

impl fmt::Debug for SystemUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SystemUser")
            .field("user_id", &self.identity.id)
            .field("memberships", &self.identity.memberships)
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .field("instance_id", &self.instance_id)
            .field("org_id", &self.org_id)
            .finish()
    }
}

impl SystemUser {
    pub(crate) fn new(identity: Arc<Identity>, issued_at: u64, expires_at: u64) -> SystemUser {
        SystemUser {
            identity,
            issued_at,
            expires_at,
            instance_id: None,
            org_id: None,
        }
    }

    /// The same user with an identity of its own: a copy, whose reference count
    /// no other thread writes (see `cache::local`).
    pub(crate) fn with_own_identity(&self) -> SystemUser {
        SystemUser {
            identity: Arc::new(Identity {
                id: self.identity.id.clone(),
                memberships: self.identity.memberships.clone(),
            }),
            issued_at: self.issued_at,
            expires_at: self.expires_at,
            instance_id: self.instance_id.clone(),
            org_id: self.org_id.clone(),
        }
    }

    pub(crate) fn with_context(
        mut self,
        instance_id: Option<Arc<str>>,
        org_id: Option<Arc<str>>,
    ) -> SystemUser {
        self.instance_id = instance_id;
        self.org_id = org_id;
        self
    }

    /// The user id (the token's `iss` and `sub`).
    pub fn user_id(&self) -> &str {
        &self.identity.id
    }

    /// When the token was issued (`iat`).
    pub fn issued_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.issued_at)
    }

    /// When the token expires (`exp`).
    pub fn expires_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.expires_at)
    }

    /// Every membership the user has, as configured (ZITADEL's default
    /// `System`/`SYSTEM_OWNER` when none was configured).
    pub fn memberships(&self) -> &[Membership] {
        &self.identity.memberships
    }

    /// The instance this request is about, if the service named one.
    pub fn instance_id(&self) -> Option<&str> {
        self.instance_id.as_deref()
    }

    /// The organisation this request is about (the `x-zitadel-orgid` header).
    pub fn org_id(&self) -> Option<&str> {
        self.org_id.as_deref()
    }

    /// The memberships that apply to this request, by ZITADEL's rule (see
    /// [`Membership::applies_to`]).
    pub fn applicable_memberships(&self) -> impl Iterator<Item = &Membership> {
        self.identity
            .memberships
            .iter()
            .filter(|m| m.applies_to(self.instance_id(), self.org_id()))
    }

    /// Whether a membership that applies to this request grants `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.applicable_memberships()
            .any(|m| m.roles.iter().any(|r| r == role))
    }

    /// `Ok` when [`has_role`](Self::has_role), else [`AuthError::MissingRole`],
    /// which answers 403 with code 7.
    pub fn require_role(&self, role: &str) -> Result<(), AuthError> {
        if self.has_role(role) {
            Ok(())
        } else {
            Err(AuthError::MissingRole { role: role.into() })
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SystemUser {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<SystemUser>()
            .cloned()
            .ok_or(AuthError::MissingToken)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for SystemUser {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<SystemUser>().cloned())
    }
}
