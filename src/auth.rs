//! [`SystemAuth`], the handle every part of the crate hangs off: it verifies a
//! token, records the decision (a log event, limited for refusals, and the
//! metrics), and tells the registry's state.
//!
//! Holds the handle and the decision log only: the checks are `verify`'s, loading
//! and reloading is `reload`'s, the settings are `builder`'s.

use std::{fmt, sync::Arc};

use crate::{
    error::{AuthError, ConfigError},
    metrics::Metrics,
    refusal_log::RefusalLog,
    registry::{InPlace, Registry},
    reload::{
        self, FolderStatus, ReloadReport, Reloadable, Reloader, Status, WatchMode, WatchSettings,
    },
    user::SystemUser,
    verify::Verifier,
};

/// Verifies ZITADEL system user tokens against the configured keys.
///
/// Cheap to clone (one `Arc`); every clone shares the same key registry.
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use zitadel_system_auth::{SystemAuth, SystemUser};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let auth = SystemAuth::builder()
///     .config_file("config.yaml")
///     .audience("https://custom-domain.com")
///     .build()?;
///
/// // Without HTTP:
/// # let token = "";
/// let user: SystemUser = auth.verify(token)?;
/// assert_eq!(user.user_id(), "system-user-1");
///
/// // As a layer:
/// async fn handler(user: SystemUser) -> String {
///     user.user_id().to_owned()
/// }
/// let app: Router = Router::new().route("/x", get(handler)).layer(auth.layer());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SystemAuth {
    inner: Arc<Inner>,
}

struct Inner {
    verifier: Verifier,
    registry: InPlace,
    reloader: Reloader,
    instance_id: Option<Arc<str>>,
    refusals: RefusalLog,
    metrics: Metrics,
}

impl fmt::Debug for SystemAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let registry = self.inner.registry.load();
        f.debug_struct("SystemAuth")
            .field("audiences", &registry.audiences())
            .field("generation", &registry.generation())
            .finish_non_exhaustive()
    }
}

impl SystemAuth {
    /// The handle over a loaded registry; starts the reload thread when `watch`
    /// says how to watch the files.
    pub(crate) fn start(
        verifier: Verifier,
        registry: Arc<Registry>,
        reloader: Reloader,
        instance_id: Option<Arc<str>>,
        watch: Option<WatchSettings>,
    ) -> SystemAuth {
        let inner = Arc::new(Inner {
            verifier,
            registry: InPlace::new(registry),
            reloader,
            instance_id,
            refusals: RefusalLog::new("system user tokens were refused"),
            metrics: Metrics::new(),
        });
        if let Some(settings) = watch
            && let Err(error) = reload::spawn(&inner, settings)
        {
            tracing::warn!(
                target: "zitadel_system_auth",
                "cannot start the reload thread ({error}); call SystemAuth::reload to reload"
            );
        }
        SystemAuth { inner }
    }

    /// Verifies a token (the part after `Bearer `), with no HTTP involved.
    ///
    /// The returned user's request context holds the builder's instance id, if any,
    /// and no organisation.
    pub fn verify(&self, token: &str) -> Result<SystemUser, AuthError> {
        let result = self
            .check(token.as_bytes())
            .map(|user| user.with_context(self.inner.instance_id.clone(), None));
        self.record(&result);
        result
    }

    /// [`verify`](Self::verify) without the decision's log event and without a
    /// request context (the caller sets it). The token is bytes: a cached token is
    /// found by them, and the checks only let base64url and dots pass.
    pub(crate) fn check(&self, token: &[u8]) -> Result<SystemUser, AuthError> {
        let inner = &*self.inner;
        let (verdict, cache) = inner.verifier.verify(token, &inner.registry);
        inner.metrics.cache(cache);
        verdict
    }

    /// Logs one decision: an acceptance at debug with the user id, a refusal at info
    /// with its reason code (never the token), at most
    /// [`REFUSAL_LOGS_PER_SECOND`](crate::REFUSAL_LOGS_PER_SECOND) a second.
    pub(crate) fn record(&self, result: &Result<SystemUser, AuthError>) {
        match result {
            Ok(user) => {
                self.inner.metrics.accepted();
                tracing::debug!(
                    target: "zitadel_system_auth",
                    user_id = user.user_id(),
                    "system user token accepted"
                );
            }
            Err(error) => {
                self.inner.metrics.refused(error.reason());
                self.inner.refusals.log(|| {
                    tracing::info!(
                        target: "zitadel_system_auth",
                        reason = error.reason(),
                        "system user token refused: {error}"
                    );
                });
            }
        }
    }

    /// The verifier and the registry in place, for checks run outside `verify`.
    pub(crate) fn parts(&self) -> (&Verifier, arc_swap::Guard<Arc<Registry>>) {
        (&self.inner.verifier, self.inner.registry.load())
    }

    /// The audiences a token may carry now, the external URL first. Unless the
    /// builder fixed the audience, the first one is built again from
    /// `ExternalDomain`, `ExternalPort` and `ExternalSecure` at every reload.
    pub fn audiences(&self) -> Vec<String> {
        let registry = self.inner.registry.load();
        registry.audiences().iter().map(|a| a.to_string()).collect()
    }

    /// The instance id IAM memberships are matched against when a request carries
    /// no [`InstanceId`](crate::InstanceId) extension.
    pub fn instance_id(&self) -> Option<&Arc<str>> {
        self.inner.instance_id.as_ref()
    }

    /// The registry generation: 1 after build, one more with every reload that
    /// changed a key, a user, a membership or an audience.
    pub fn generation(&self) -> u64 {
        self.inner.registry.load().generation()
    }

    /// Reads the configuration and every key again now, and swaps in a new registry
    /// if anything changed.
    ///
    /// `Err` when the configuration itself cannot be loaded: everything stays as it
    /// was. A user whose key cannot be loaded keeps its last good key and is listed
    /// in [`ReloadReport::problems`].
    pub fn reload(&self) -> Result<ReloadReport, ConfigError> {
        self.inner.reload()
    }

    /// The registry's generation and audiences, the last reload's time, outcome
    /// and error, how changes are watched (overall and per folder), the reload
    /// thread's panics, and each user's key fingerprint, format (and certificate
    /// NotAfter).
    ///
    /// Never waits for a reload in progress: it reads what the last finished
    /// reload published, and the registry that reload put in place.
    pub fn status(&self) -> Status {
        self.inner.reloader.status(&self.inner.registry)
    }

    /// The configured user ids, sorted.
    pub fn user_ids(&self) -> Vec<String> {
        let registry = self.inner.registry.load();
        let mut ids: Vec<String> = registry
            .users()
            .map(|u| u.identity.id.to_string())
            .collect();
        ids.sort();
        ids
    }
}

impl Inner {
    fn reload(&self) -> Result<ReloadReport, ConfigError> {
        self.reloader.reload(&self.registry, &self.metrics)
    }
}

impl Reloadable for Inner {
    fn reload_after_change(&self) {
        // The outcome is logged and recorded in the status by the reload itself.
        let _ = self.reload();
    }

    fn watched_files(&self) -> Vec<std::path::PathBuf> {
        self.reloader.watched_files()
    }

    fn publish_watch(&self, watching: WatchMode, folders: Vec<FolderStatus>) {
        self.reloader.publish_watch(watching, folders);
    }

    fn reload_thread_panicked(&self) {
        self.reloader.count_panic(&self.metrics);
    }
}
