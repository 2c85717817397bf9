//! Accept ZITADEL "System API user" tokens in axum and tower services.
//!
//! A system user holds an RSA private key and signs a short-lived JWT with it; the
//! service knows the users' public keys from ZITADEL's own `SystemAPIUsers`
//! configuration. [`SystemAuth`] verifies such tokens exactly as ZITADEL does, and
//! [`SystemAuthLayer`] puts the caller on the request as a [`SystemUser`].
//!
//! ```
//! use axum::{Router, body::Body, http::Request, routing::get};
//! use tower::ServiceExt;
//! use zitadel_system_auth::{SystemAuth, SystemUser};
//! # use aws_lc_rs::{encoding::AsDer, rsa::{KeyPair as RsaKeyPair, KeySize}, signature::KeyPair};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let pair = RsaKeyPair::generate(KeySize::Rsa2048)?;
//! # let public_pem = pem::encode(&pem::Pem::new("PUBLIC KEY", pair.public_key().as_der()?.as_ref().to_vec()));
//! # let private_pem = pem::encode(&pem::Pem::new("PRIVATE KEY", AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair)?.as_ref().to_vec()));
//! # use base64::Engine;
//! # let key_data = base64::engine::general_purpose::STANDARD.encode(&public_pem);
//! // ZITADEL's runtime configuration, as it is.
//! let config = format!(
//!     "ExternalDomain: custom-domain.com\n\
//!      ExternalPort: 443\n\
//!      SystemAPIUsers:\n  - system-user-1:\n      KeyData: {key_data}\n"
//! );
//! let auth = SystemAuth::builder().config_yaml(&config).build()?;
//!
//! async fn handler(user: SystemUser) -> String {
//!     format!("hello {}", user.user_id())
//! }
//! let app = Router::new().route("/", get(handler)).layer(auth.layer());
//!
//! // What a system user sends (ZITADEL's key2jwt tool makes the same token).
//! let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
//! let claims = serde_json::json!({
//!     "iss": "system-user-1", "sub": "system-user-1",
//!     "aud": "https://custom-domain.com", "iat": now, "exp": now + 3600,
//! });
//! let token = jsonwebtoken::encode(
//!     &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
//!     &claims,
//!     &jsonwebtoken::EncodingKey::from_rsa_pem(private_pem.as_bytes())?,
//! )?;
//!
//! let request = Request::get("/").header("authorization", format!("Bearer {token}")).body(Body::empty())?;
//! let response = app.clone().oneshot(request).await?;
//! assert_eq!(response.status(), 200);
//!
//! let response = app.oneshot(Request::get("/").body(Body::empty())?).await?;
//! assert_eq!(response.status(), 401);
//! # Ok(())
//! # }
//! ```
//!
//! The modules hold one piece each and read bottom-up (no module imports one above
//! it):
//!
//! - [`algorithm`](crate::Algorithm), `jose` (token bytes to a header and claims,
//!   strictly), [`key`] (public keys and the RSA operation), `cache` (verified
//!   tokens), `registry` (one generation of users, keys and audiences);
//! - [`verify`]: the checks, in ZITADEL's order; [`explain`]: the same checks one
//!   by one, for people;
//! - [`config`]: ZITADEL's configuration as ZITADEL reads it; [`reload`]: loading,
//!   reloading, watching files, and the status;
//! - `builder` ([`SystemAuthBuilder`]) and `auth` ([`SystemAuth`], the handle);
//! - `request` (reading and deciding a request), [`response`] (the answers to
//!   refusals), [`layer`] and [`role`] (the middleware), [`user`] (the extractor);
//! - [`error`]: every error; [`metrics`]: what is counted (feature `metrics`);
//!   [`mint`]: signing a token, like ZITADEL's `key2jwt`.
//!
//! The feature `testing` adds the `testing` module: keys, configs and tokens for
//! tests. The feature `cli` builds the `zitadel-system-auth` command.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod algorithm;
mod auth;
mod builder;
mod cache;
pub mod config;
pub mod error;
pub mod explain;
mod jose;
pub mod key;
pub mod layer;
pub mod metrics;
pub mod mint;
mod refusal_log;
mod registry;
pub mod reload;
mod request;
pub mod response;
pub mod role;
#[doc(hidden)]
pub mod speedup;
#[cfg(feature = "testing")]
pub mod testing;
pub mod user;
pub mod verify;

pub use algorithm::Algorithm;
pub use auth::SystemAuth;
pub use builder::SystemAuthBuilder;
pub use config::Config;
pub use error::{AuthError, ConfigError, KeyError};
pub use explain::Explanation;
pub use layer::{SystemAuthLayer, SystemAuthService};
pub use refusal_log::REFUSAL_LOGS_PER_SECOND;
pub use reload::{
    FolderStatus, FolderWatch, ReloadOutcome, ReloadReport, Status, UserStatus, WatchMode,
};
pub use request::trace_span;
pub use role::{RequireRole, RequireRoleLayer};
pub use user::{InstanceId, MemberType, Membership, SystemUser};

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
