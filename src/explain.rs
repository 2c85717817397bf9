//! Why a token is accepted or refused: every check in the README's order, each
//! with what was expected and what the token has, going on after a failure so that
//! every problem shows at once, and the verdict last, which is
//! [`SystemAuth::verify`]'s for the same token at the same time.
//!
//! ```
//! # let system = zitadel_system_auth::testing::TestSystem::new();
//! # let auth = system.auth.clone();
//! let token = system.token().expired().build();
//! let explanation = auth.explain(&token);
//! assert!(explanation.verdict().is_err());
//! println!("{explanation}"); // one line per check, the verdict last
//! let json = serde_json::to_value(&explanation)?; // the same, as one JSON document
//! assert_eq!(json["verdict"]["reason"], "expired");
//! # Ok::<(), serde_json::Error>(())
//! ```
//!
//! It names the precise check even where the public refusal shares one text
//! (unknown user, signature, certificate window), and says what ZITADEL would do
//! where this crate decides otherwise. It shows claim values, since whoever asks
//! holds the token, but never the signature or any key material: a key appears as
//! its fingerprint.
//!
//! An explanation is for the people who run the service, not for callers: it
//! names the precise check that failed, and for a user id that is not configured
//! it lists the ones that are, which is exactly what the layer's one public text
//! keeps from callers (so that none can probe for user ids). Show it only behind
//! the service's own operator authentication, never as the answer to a request.
//!
//! Holds the explanation only; the checks are `verify`'s and `jose`'s, run again
//! here one by one.

mod checks;
mod text;

pub use text::{Span, Time};

use std::fmt;

use serde::Serialize;

use crate::{auth::SystemAuth, error::AuthError};

/// The checks on one token and the verdict; `Display` for people, `Serialize` for
/// machines.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// What [`SystemAuth::verify`] decides.
    #[serde(rename = "verdict")]
    summary: Summary,
    #[serde(skip)]
    verdict: Result<String, AuthError>,
}

/// One check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Which check (`length`, `parts`, `header`, `payload`, `signature encoding`,
    /// `aud`, `exp`, `iat`, `nbf`, `iss = sub`, `crit`, `typ`, `alg`, `user`,
    /// `key validity`, `signature`; `claims` for the claim checks skipped at once
    /// when the token has no three parts; a caller that read the token from an
    /// `Authorization` value may put a `scheme` check first).
    pub check: &'static str,
    /// How it went.
    pub outcome: Outcome,
    /// What was expected and what the token has.
    pub detail: String,
    /// What ZITADEL would decide, where it decides otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zitadel: Option<String>,
}

/// How a check went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It passed.
    Passed,
    /// It failed.
    Failed,
    /// It could not be made (what it needs could not be read).
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
struct Summary {
    accepted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
}

impl Explanation {
    /// The verdict: the user id, or the refusal, exactly as
    /// [`SystemAuth::verify`] decides at the same time.
    pub fn verdict(&self) -> Result<&str, &AuthError> {
        self.verdict.as_deref()
    }

    /// Whether the token is accepted.
    pub fn accepted(&self) -> bool {
        self.verdict.is_ok()
    }
}

impl SystemAuth {
    /// Explains what [`verify`](Self::verify) decides for `token` now, check by
    /// check. Neither the token cache nor the metrics and logs see it.
    ///
    /// For operators only: it names the precise failed check and the configured
    /// user ids (see the [module docs](crate::explain)), so never answer a request
    /// with it.
    pub fn explain(&self, token: &str) -> Explanation {
        let (verifier, registry) = self.parts();
        let now = verifier.now();
        let checks = checks::run(verifier, &registry, now, token.as_bytes());
        let verdict = verifier
            .verify_at(token.as_bytes(), &registry, now)
            .map(|user| user.user_id().to_owned());
        let summary = match &verdict {
            Ok(user) => Summary {
                accepted: true,
                user_id: Some(user.clone()),
                reason: None,
                description: None,
            },
            Err(error) => Summary {
                accepted: false,
                user_id: None,
                reason: Some(error.reason()),
                description: Some(error.to_string()),
            },
        };
        Explanation {
            checks,
            summary,
            verdict,
        }
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for check in &self.checks {
            let outcome = match check.outcome {
                Outcome::Passed => "PASS",
                Outcome::Failed => "FAIL",
                Outcome::Skipped => "SKIP",
            };
            writeln!(f, "{outcome}  {:<18} {}", check.check, check.detail)?;
            if let Some(zitadel) = &check.zitadel {
                writeln!(f, "      {:<18} ZITADEL: {zitadel}", "")?;
            }
        }
        match &self.verdict {
            Ok(user) => write!(f, "verdict: accepted, system user {user:?}"),
            Err(error) => write!(f, "verdict: refused ({}): {error}", error.reason()),
        }
    }
}
