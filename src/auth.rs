//! [`SystemAuth`], the handle every part of the crate hangs off, and its builder.

use std::{
    fmt,
    path::PathBuf,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwap;

use crate::{
    algorithm::{Algorithm, AlgorithmSet},
    cache::{CacheLimits, ENTRY_OVERHEAD},
    config::{ConfigSource, ConfigText, EnvSource},
    error::{AuthError, ConfigError},
    layer::SystemAuthLayer,
    metrics::Metrics,
    registry::Registry,
    reload::{
        self, FolderStatus, ReloadOutcome, ReloadReport, Reloadable, Status, UserStatus, WatchHook,
        WatchMode, WatchSettings,
    },
    user::SystemUser,
    verify::{Clock, Verified, Verifier},
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
    registry: ArcSwap<Registry>,
    instance_id: Option<Arc<str>>,
    source: ConfigSource,
    cache_limits: Option<CacheLimits>,
    /// Held for the whole of a reload, so reloads never interleave. Nothing else
    /// takes it: [`SystemAuth::status`] and the reload thread read what the last
    /// reload published.
    reload: Mutex<ReloadLock>,
    /// What the last reload did, with the registry it left in place.
    published: ArcSwap<Published>,
    /// How the files are watched, as the reload thread last published it.
    watch: ArcSwap<WatchView>,
    /// Panics caught in the reload thread.
    reload_thread_panics: AtomicU64,
    /// Run at the start of every reload, with the lock held (tests only).
    reload_hook: Option<ReloadHook>,
    refusals: RefusalLog,
    metrics: Metrics,
}

/// Run at the start of every reload, with the lock held (tests only).
type ReloadHook = Arc<dyn Fn() + Send + Sync>;

/// How many refusals are logged in one second at most; the rest are counted and
/// the count is logged when the next second begins, so a flood cannot fill a disk.
pub const REFUSAL_LOGS_PER_SECOND: u32 = 20;

/// Rate-limited refusal logging, with atomics only (no lock on the request path).
#[derive(Default)]
struct RefusalLog {
    /// The second (since the epoch) the count belongs to.
    second: AtomicU64,
    /// Refusals seen in that second.
    count: AtomicU32,
}

impl RefusalLog {
    fn log(&self, error: &AuthError) {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let second = self.second.load(Ordering::Relaxed);
        if second != now
            && self
                .second
                .compare_exchange(second, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let previous = self.count.swap(0, Ordering::Relaxed);
            if previous > REFUSAL_LOGS_PER_SECOND {
                tracing::info!(
                    target: "zitadel_system_auth",
                    suppressed = previous - REFUSAL_LOGS_PER_SECOND,
                    "more system user tokens were refused than are logged"
                );
            }
        }
        if self.count.fetch_add(1, Ordering::Relaxed) < REFUSAL_LOGS_PER_SECOND {
            tracing::info!(
                target: "zitadel_system_auth",
                reason = error.reason(),
                "system user token refused: {error}"
            );
        }
    }
}

/// What only a reload in progress needs.
struct ReloadLock {
    /// The last failure logged, so one bad change is logged once.
    logged: Option<String>,
}

/// What the last reload did, for [`SystemAuth::status`]: published whole after
/// each reload, right after the registry it describes is swapped in.
struct Published {
    /// The registry in place after that reload.
    registry: Arc<Registry>,
    finished: SystemTime,
    outcome: ReloadOutcome,
    error: Option<String>,
    /// The files of the last configuration that loaded (config file and key paths).
    files: Arc<[PathBuf]>,
}

/// How the files are watched, for [`SystemAuth::status`].
struct WatchView {
    watching: WatchMode,
    folders: Vec<FolderStatus>,
}

impl fmt::Debug for SystemAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SystemAuth")
            .field("audiences", &self.inner.verifier.audiences)
            .field("generation", &self.inner.registry.load().generation())
            .finish_non_exhaustive()
    }
}

impl SystemAuth {
    /// Starts a [`SystemAuthBuilder`].
    pub fn builder() -> SystemAuthBuilder {
        SystemAuthBuilder::default()
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
        let registry = inner.registry.load();
        inner
            .verifier
            .verify(token, &registry, &inner.metrics)
            .map(system_user)
    }

    /// Logs one decision: an acceptance at debug with the user id, a refusal at info
    /// with its reason code (never the token), at most
    /// [`REFUSAL_LOGS_PER_SECOND`] a second.
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
                self.inner.refusals.log(error);
            }
        }
    }

    /// A layer that requires a valid token on every request.
    pub fn layer(&self) -> SystemAuthLayer {
        SystemAuthLayer::new(self.clone())
    }

    /// A layer that lets requests without an `Authorization` header through (the
    /// handler sees `Option<SystemUser>` as `None`) and still refuses bad tokens.
    pub fn optional_layer(&self) -> SystemAuthLayer {
        SystemAuthLayer::new(self.clone()).optional()
    }

    /// The audiences a token may carry, the external URL first.
    pub fn audiences(&self) -> impl Iterator<Item = &str> {
        self.inner.verifier.audiences.iter().map(|a| &**a)
    }

    /// The instance id IAM memberships are matched against when a request carries
    /// no [`InstanceId`](crate::InstanceId) extension.
    pub fn instance_id(&self) -> Option<&Arc<str>> {
        self.inner.instance_id.as_ref()
    }

    /// The registry generation: 1 after build, one more with every reload.
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

    /// The registry's generation, the last reload's time, outcome and error, how
    /// changes are watched (overall and per folder), the reload thread's panics,
    /// and each user's key fingerprint (and certificate NotAfter).
    ///
    /// Never waits for a reload in progress: it reads what the last finished
    /// reload published, and the registry that reload put in place.
    pub fn status(&self) -> Status {
        let (state, registry) = self.inner.snapshot();
        let watch = self.inner.watch.load();
        let mut users: Vec<UserStatus> = registry
            .users()
            .map(|user| UserStatus {
                user_id: user.identity.id.to_string(),
                fingerprint: user.key.fingerprint_hex(),
                not_after: user.key.validity().map(|v| v.not_after_time()),
            })
            .collect();
        users.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        Status {
            generation: registry.generation(),
            last_reload: state.finished,
            last_outcome: state.outcome,
            last_error: state.error.clone(),
            watching: watch.watching,
            folders: watch.folders.clone(),
            reload_thread_panics: self.inner.reload_thread_panics.load(Ordering::Relaxed),
            users,
            cached_tokens: registry.cache().map_or(0, |cache| cache.len()),
        }
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

/// Builds a [`SystemAuth`]. Only a configuration is required.
///
/// ```
/// use std::time::Duration;
/// use zitadel_system_auth::{Algorithm, SystemAuth};
///
/// # let dir = tempfile::tempdir()?;
/// # let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)?;
/// # use aws_lc_rs::encoding::AsDer;
/// # use aws_lc_rs::signature::KeyPair;
/// # let der = key.public_key().as_der()?;
/// # let pem = pem::encode(&pem::Pem::new("PUBLIC KEY", der.as_ref().to_vec()));
/// # std::fs::write(dir.path().join("system-user-1.pub"), pem)?;
/// # std::fs::write(dir.path().join("config.yaml"), "SystemAPIUsers:\n  - system-user-1:\n      Path: system-user-1.pub\n")?;
/// # let config_path = dir.path().join("config.yaml");
/// let auth = SystemAuth::builder()
///     .config_file(&config_path)                      // relative key paths resolve next to it
///     .audience("https://custom-domain.com")          // else built from ExternalDomain/Port/Secure
///     .additional_audience("http://zitadel.internal:8080")
///     .algorithms([Algorithm::RS256])                 // default: RS256 and PS256
///     .clock_offset(Duration::from_secs(1))           // ZITADEL's default
///     .max_token_age(Duration::from_secs(3600))       // ZITADEL's default
///     .max_token_length(8 * 1024)                     // the default
///     .build()?;
/// assert_eq!(auth.user_ids(), ["system-user-1"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub struct SystemAuthBuilder {
    source: Option<ConfigText>,
    audience: Option<String>,
    additional_audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    clock_offset: Duration,
    max_token_age: Duration,
    max_token_length: usize,
    clock: Option<Clock>,
    env: EnvSource,
    instance_id: Option<String>,
    token_cache: bool,
    token_cache_capacity: usize,
    token_cache_bytes: usize,
    watch: bool,
    debounce: Duration,
    poll_interval: Option<Duration>,
    watch_hook: Option<WatchHook>,
    reload_hook: Option<ReloadHook>,
}

impl Default for SystemAuthBuilder {
    fn default() -> Self {
        SystemAuthBuilder {
            source: None,
            audience: None,
            additional_audiences: Vec::new(),
            algorithms: Algorithm::DEFAULT.to_vec(),
            clock_offset: Duration::from_secs(1),
            max_token_age: Duration::from_secs(3600),
            max_token_length: 8 * 1024,
            clock: None,
            env: EnvSource::Off,
            instance_id: None,
            token_cache: true,
            token_cache_capacity: 10_000,
            token_cache_bytes: 16 * 1024 * 1024,
            watch: true,
            debounce: Duration::from_millis(50),
            poll_interval: None,
            watch_hook: None,
            reload_hook: None,
        }
    }
}

impl fmt::Debug for SystemAuthBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SystemAuthBuilder")
            .field("source", &self.source)
            .field("audience", &self.audience)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

impl SystemAuthBuilder {
    /// Reads ZITADEL's runtime config from this file (it may be the whole file; only
    /// `SystemAPIUsers` and `External*` are read).
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.source = Some(ConfigText::File(path.into()));
        self
    }

    /// Reads the config from YAML text; relative key paths resolve against the
    /// current folder.
    pub fn config_yaml(mut self, yaml: &str) -> Self {
        self.source = Some(ConfigText::Yaml(yaml.to_owned()));
        self
    }

    /// The audience tokens must carry, instead of the one built from
    /// `ExternalDomain`, `ExternalPort` and `ExternalSecure`. Compared exactly.
    pub fn audience(mut self, url: impl Into<String>) -> Self {
        self.audience = Some(url.into());
        self
    }

    /// A further accepted audience (an internal URL beside the external one).
    /// Compared exactly.
    pub fn additional_audience(mut self, url: impl Into<String>) -> Self {
        self.additional_audiences.push(url.into());
        self
    }

    /// The allowed signature algorithms (default RS256 and PS256).
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// The clock offset ZITADEL adds to the current time in the `exp`, `iat` and
    /// `nbf` checks (default 1 s).
    pub fn clock_offset(mut self, offset: Duration) -> Self {
        self.clock_offset = offset;
        self
    }

    /// How old `iat` may be (default 1 h); `Duration::ZERO` turns the check off, as
    /// in ZITADEL.
    pub fn max_token_age(mut self, age: Duration) -> Self {
        self.max_token_age = age;
        self
    }

    /// The longest token accepted, in bytes (default 8 KiB); longer ones are refused
    /// before any parsing.
    pub fn max_token_length(mut self, bytes: usize) -> Self {
        self.max_token_length = bytes;
        self
    }

    /// Where the current time comes from (default `SystemTime::now`); for tests.
    pub fn clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Lets `ZITADEL_SYSTEMAPIUSERS`, `ZITADEL_EXTERNALDOMAIN`,
    /// `ZITADEL_EXTERNALPORT` and `ZITADEL_EXTERNALSECURE` from the process
    /// environment override the file, as ZITADEL does (off by default).
    pub fn env_overrides(mut self, enabled: bool) -> Self {
        self.env = if enabled {
            EnvSource::Process
        } else {
            EnvSource::Off
        };
        self
    }

    /// Like [`env_overrides`](Self::env_overrides), with the variables given here
    /// instead of read from the process environment.
    pub fn env_overrides_from<K: Into<String>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.env = EnvSource::Vars(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }

    /// The instance IAM memberships are matched against, for requests that carry no
    /// [`InstanceId`](crate::InstanceId) extension.
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = Some(id.into());
        self
    }

    /// Turns the verified-token cache on or off (default on). A repeated token is
    /// then answered without the RSA operation; its times and the key's validity are
    /// still checked on every use, and a reload empties the cache.
    pub fn token_cache(mut self, enabled: bool) -> Self {
        self.token_cache = enabled;
        self
    }

    /// How many verified tokens the cache holds at most (default 10,000).
    pub fn token_cache_capacity(mut self, entries: usize) -> Self {
        self.token_cache_capacity = entries;
        self
    }

    /// How much memory the cache's tokens may take at most, in bytes (default
    /// 16 MiB): each entry counts its token's length and a fixed overhead of about
    /// 200 bytes. A full cache evicts the least recently used entries first.
    pub fn token_cache_max_bytes(mut self, bytes: usize) -> Self {
        self.token_cache_bytes = bytes;
        self
    }

    /// Watches the config file and the key files and reloads on a change (default
    /// on). See [`reload`](crate::reload) for what is watched.
    pub fn watch(mut self, enabled: bool) -> Self {
        self.watch = enabled;
        self
    }

    /// How long the files must be quiet after a change before they are read
    /// (default 50 ms), so a burst of changes is one reload; a burst that goes on
    /// is read at the latest ten of them after it began. At most one minute:
    /// [`build`](Self::build) refuses a longer one, which would hold back a
    /// removed user or a replaced key for that long.
    pub fn debounce(mut self, quiet: Duration) -> Self {
        self.debounce = quiet;
        self
    }

    /// Reads the files at this interval and compares them, instead of waiting for
    /// file system events (for network file systems and mounts that give none).
    /// Positive and at most one day, or [`build`](Self::build) refuses it.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = Some(interval);
        self
    }

    /// Tests only: called by the reload thread before each watch of a folder; an
    /// `Err` makes that watch fail as if the watcher refused it, and a panic is a
    /// panic in the reload thread.
    #[cfg(feature = "testing")]
    #[doc(hidden)]
    pub fn watch_hook(
        mut self,
        hook: impl Fn(&std::path::Path) -> std::io::Result<()> + Send + Sync + 'static,
    ) -> Self {
        self.watch_hook = Some(Arc::new(hook));
        self
    }

    /// Tests only: called at the start of every reload, while the reload holds its
    /// lock (so a test can hold a reload in progress).
    #[cfg(feature = "testing")]
    #[doc(hidden)]
    pub fn reload_hook(mut self, hook: impl Fn() + Send + Sync + 'static) -> Self {
        self.reload_hook = Some(Arc::new(hook));
        self
    }

    /// Loads the configuration and every key. Any problem is an error that names the
    /// file, the user and the field; then, unless turned off, starts watching the
    /// files.
    pub fn build(self) -> Result<SystemAuth, ConfigError> {
        let source = ConfigSource {
            text: self.source.ok_or(ConfigError::NoConfig)?,
            env: self.env,
        };
        let config = source.load()?;
        for warning in config.warnings() {
            tracing::warn!(target: "zitadel_system_auth", "{warning}");
        }
        let algorithms: AlgorithmSet = self.algorithms.iter().copied().collect();
        if algorithms.is_empty() {
            return Err(ConfigError::InvalidSetting(
                "at least one algorithm must be allowed",
            ));
        }
        if self.max_token_length == 0 {
            return Err(ConfigError::InvalidSetting(
                "max_token_length must be positive",
            ));
        }
        if self.token_cache && self.token_cache_capacity == 0 {
            return Err(ConfigError::InvalidSetting(
                "token_cache_capacity must be positive (or turn the cache off)",
            ));
        }
        if self.token_cache && self.token_cache_bytes < ENTRY_OVERHEAD + self.max_token_length {
            return Err(ConfigError::InvalidSetting(
                "token_cache_max_bytes must hold at least one token of max_token_length (or turn the cache off)",
            ));
        }
        if self.poll_interval.is_some_and(|i| i.is_zero()) {
            return Err(ConfigError::InvalidSetting(
                "poll_interval must be positive",
            ));
        }
        if self
            .poll_interval
            .is_some_and(|i| i > reload::MAX_POLL_INTERVAL)
        {
            return Err(ConfigError::InvalidSetting(
                "poll_interval must be at most one day (a longer one would leave removed users and replaced keys in place that long)",
            ));
        }
        if self.debounce > reload::MAX_DEBOUNCE {
            return Err(ConfigError::InvalidSetting(
                "debounce must be at most one minute (a longer one would leave removed users and replaced keys in place that long)",
            ));
        }
        let primary = self.audience.unwrap_or_else(|| config.audience());
        let audiences = std::iter::once(primary)
            .chain(self.additional_audiences)
            .map(|aud| check_audience(&aud).map(|()| Arc::from(aud)))
            .collect::<Result<Box<[Arc<str>]>, _>>()?;
        let cache_limits = self.token_cache.then_some(CacheLimits {
            entries: self.token_cache_capacity,
            bytes: self.token_cache_bytes,
        });
        let (registry, mut problems) = Registry::load(&config, None, 1, cache_limits);
        if !problems.is_empty() {
            return Err(problems.swap_remove(0));
        }
        let files: Arc<[PathBuf]> = source.files(&config).into();
        let watched = !files.is_empty() && self.watch;
        let registry = Arc::new(registry);
        let inner = Arc::new(Inner {
            verifier: Verifier {
                audiences,
                algorithms,
                clock_offset: self.clock_offset,
                max_token_age: self.max_token_age,
                max_token_length: self.max_token_length,
                clock: self.clock,
            },
            registry: ArcSwap::new(registry.clone()),
            instance_id: self.instance_id.map(Arc::from),
            source,
            cache_limits,
            refusals: RefusalLog::default(),
            metrics: Metrics::new(),
            reload: Mutex::new(ReloadLock { logged: None }),
            published: ArcSwap::from_pointee(Published {
                registry,
                finished: SystemTime::now(),
                outcome: ReloadOutcome::Initial,
                error: None,
                files,
            }),
            watch: ArcSwap::from_pointee(WatchView {
                watching: WatchMode::Off,
                folders: Vec::new(),
            }),
            reload_thread_panics: AtomicU64::new(0),
            reload_hook: self.reload_hook,
        });
        if watched {
            let settings = WatchSettings {
                debounce: self.debounce,
                poll_interval: self.poll_interval,
                watch_hook: self.watch_hook,
            };
            match reload::spawn(&inner, settings) {
                Ok(()) => {}
                Err(error) => tracing::warn!(
                    target: "zitadel_system_auth",
                    "cannot start the reload thread ({error}); call SystemAuth::reload to reload"
                ),
            }
        }
        Ok(SystemAuth { inner })
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, ReloadLock> {
        // A panic during a reload leaves nothing half-done in the lock's data.
        self.reload.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The last published reload and the registry it put in place, without
    /// waiting for a reload in progress. A reload swaps its registry in and
    /// publishes itself right after, with nothing in between; a call that comes
    /// between the two stores tries again until the reload is published (a
    /// preempted thread needs a time slice, no file is read meanwhile). Should the
    /// two ever disagree for a second, the registry in place wins.
    fn snapshot(&self) -> (Arc<Published>, Arc<Registry>) {
        let mut started = None;
        loop {
            let published = self.published.load_full();
            let registry = self.registry.load_full();
            if Arc::ptr_eq(&published.registry, &registry) {
                return (published, registry);
            }
            let started = *started.get_or_insert_with(std::time::Instant::now);
            if started.elapsed() > Duration::from_secs(1) {
                return (published, registry);
            }
            std::thread::yield_now();
        }
    }

    /// Reads the configuration and every key again, and swaps in a new registry if
    /// anything changed. Holds the reload lock throughout.
    fn reload(&self) -> Result<ReloadReport, ConfigError> {
        let _span = tracing::info_span!(target: "zitadel_system_auth", "reload").entered();
        let mut lock = self.lock();
        if let Some(hook) = &self.reload_hook {
            hook();
        }
        let result = self.reload_locked();
        match &result {
            Ok(report) if report.changed => tracing::info!(
                target: "zitadel_system_auth",
                generation = report.generation,
                "reloaded the system user keys"
            ),
            _ => {}
        }
        // A failure is logged once per change, not once per attempt.
        match self.published.load().error.clone() {
            Some(error) if lock.logged.as_ref() != Some(&error) => {
                tracing::warn!(
                    target: "zitadel_system_auth",
                    "reload kept the last good keys: {error}"
                );
                lock.logged = Some(error);
            }
            Some(_) => {}
            None => lock.logged = None,
        }
        result
    }

    /// The reload itself; the caller holds the lock.
    fn reload_locked(&self) -> Result<ReloadReport, ConfigError> {
        let current = self.registry.load_full();
        let previous_files = self.published.load().files.clone();
        let result = self.source.load().map(|config| {
            let files: Arc<[PathBuf]> = self.source.files(&config).into();
            let loaded = Registry::load(
                &config,
                Some(&current),
                current.generation() + 1,
                self.cache_limits,
            );
            (loaded, files)
        });
        let finished = SystemTime::now();
        match result {
            Err(error) => {
                self.published.store(Arc::new(Published {
                    registry: current.clone(),
                    finished,
                    outcome: ReloadOutcome::Failed,
                    error: Some(error.to_string()),
                    files: previous_files,
                }));
                self.metrics.reload("failed", current.generation(), false);
                Err(error)
            }
            Ok(((next, problems), files)) => {
                let changed = !next.same_as(&current);
                let registry = if changed { Arc::new(next) } else { current };
                let generation = registry.generation();
                let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
                let outcome = match (problems.is_empty(), changed) {
                    (false, _) => ReloadOutcome::Partial,
                    (true, true) => ReloadOutcome::Changed,
                    (true, false) => ReloadOutcome::Unchanged,
                };
                let published = Arc::new(Published {
                    registry: registry.clone(),
                    finished,
                    outcome,
                    error: (!problems.is_empty()).then(|| problems.join("; ")),
                    files,
                });
                // Nothing between the two stores: `snapshot` pairs them.
                if changed {
                    self.registry.store(registry);
                }
                self.published.store(published);
                let label = match outcome {
                    ReloadOutcome::Partial => "partial",
                    ReloadOutcome::Changed => "changed",
                    _ => "unchanged",
                };
                self.metrics.reload(label, generation, problems.is_empty());
                Ok(ReloadReport {
                    generation,
                    changed,
                    problems,
                })
            }
        }
    }
}

impl Reloadable for Inner {
    fn reload_after_change(&self) {
        // The outcome is logged and recorded in the status by `reload` itself.
        let _ = self.reload();
    }

    fn watched_files(&self) -> Vec<PathBuf> {
        self.published.load().files.to_vec()
    }

    fn publish_watch(&self, watching: WatchMode, folders: Vec<FolderStatus>) {
        self.watch.store(Arc::new(WatchView { watching, folders }));
    }

    fn reload_thread_panicked(&self) {
        self.metrics.reload_thread_panic();
        self.reload_thread_panics.fetch_add(1, Ordering::Relaxed);
    }
}

/// The user a verified token names, without a request context.
fn system_user(verified: Verified) -> SystemUser {
    SystemUser::new(verified.identity, verified.issued_at, verified.expires_at)
}

fn check_audience(audience: &str) -> Result<(), ConfigError> {
    if audience.is_empty() {
        return Err(ConfigError::InvalidAudience(
            "an audience is empty".to_owned(),
        ));
    }
    if !audience.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ConfigError::InvalidAudience(format!(
            "{audience:?} must be visible ASCII without spaces"
        )));
    }
    Ok(())
}
