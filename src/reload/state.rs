//! One reload, and what the last one published: the configuration and every key read
//! again, a new registry swapped in when something changed, the outcome published
//! for [`SystemAuth::status`](crate::SystemAuth::status).
//!
//! Reloads never interleave (one lock), and nothing but a reload takes that lock:
//! the status and the watcher thread read what the last reload published.

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use arc_swap::ArcSwap;

use super::{FolderStatus, ReloadOutcome, ReloadReport, Status, UserStatus, WatchMode};
use crate::{
    cache::CacheLimits,
    config::{Config, ConfigSource},
    error::ConfigError,
    metrics::Metrics,
    registry::{AudienceRule, InPlace, Registry},
};

/// Run at the start of every reload, with the lock held (tests only).
pub(crate) type ReloadHook = Arc<dyn Fn() + Send + Sync>;

/// Everything a reload reads and everything it publishes.
pub(crate) struct Reloader {
    source: ConfigSource,
    audiences: AudienceRule,
    cache_limits: Option<CacheLimits>,
    /// Held for the whole of a reload; the last failure logged, so one bad change
    /// is logged once.
    lock: Mutex<Option<String>>,
    /// What the last reload did, with the registry it left in place.
    published: ArcSwap<Published>,
    /// How the files are watched, as the reload thread last published it.
    watch: ArcSwap<WatchView>,
    /// Panics caught in the reload thread.
    panics: AtomicU64,
    hook: Option<ReloadHook>,
}

/// What the last reload did: published whole after each reload, right after the
/// registry it describes is swapped in.
struct Published {
    /// The registry in place after that reload.
    registry: Arc<Registry>,
    finished: SystemTime,
    outcome: ReloadOutcome,
    error: Option<String>,
    /// The files of the last configuration that loaded (config file and key paths).
    files: Arc<[PathBuf]>,
}

/// How the files are watched.
struct WatchView {
    watching: WatchMode,
    folders: Vec<FolderStatus>,
}

impl Reloader {
    /// The first load: the registry of generation 1, and the reloader that will
    /// replace it. Any problem with a key is an error here.
    pub fn load(
        source: ConfigSource,
        audiences: AudienceRule,
        cache_limits: Option<CacheLimits>,
        hook: Option<ReloadHook>,
    ) -> Result<(Reloader, Arc<Registry>), ConfigError> {
        let config = source.load()?;
        for warning in config.warnings() {
            tracing::warn!(target: "zitadel_system_auth", "{warning}");
        }
        let (registry, mut problems) = Registry::load(
            &config,
            audiences.audiences(&config)?,
            None,
            1,
            cache_limits,
        );
        if !problems.is_empty() {
            return Err(problems.swap_remove(0));
        }
        let registry = Arc::new(registry);
        let published = Published {
            registry: registry.clone(),
            finished: SystemTime::now(),
            outcome: ReloadOutcome::Initial,
            error: None,
            files: source.files(&config).into(),
        };
        let reloader = Reloader {
            source,
            audiences,
            cache_limits,
            lock: Mutex::new(None),
            published: ArcSwap::from_pointee(published),
            watch: ArcSwap::from_pointee(WatchView {
                watching: WatchMode::Off,
                folders: Vec::new(),
            }),
            panics: AtomicU64::new(0),
            hook,
        };
        Ok((reloader, registry))
    }

    /// Reads the configuration and every key again, and swaps a new registry into
    /// `registry` if anything changed. Holds the reload lock throughout; logs a
    /// change, and a failure once per change.
    pub fn reload(
        &self,
        registry: &InPlace,
        metrics: &Metrics,
    ) -> Result<ReloadReport, ConfigError> {
        let _span = tracing::info_span!(target: "zitadel_system_auth", "reload").entered();
        // A panic during a reload leaves nothing half-done in the lock's data.
        let mut logged = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(hook) = &self.hook {
            hook();
        }
        let result = self.reload_locked(registry, metrics);
        if let Ok(report) = &result
            && report.changed
        {
            tracing::info!(
                target: "zitadel_system_auth",
                generation = report.generation,
                "reloaded the system user keys"
            );
        }
        match self.published.load().error.clone() {
            Some(error) if logged.as_ref() != Some(&error) => {
                tracing::warn!(
                    target: "zitadel_system_auth",
                    "reload kept the last good keys: {error}"
                );
                *logged = Some(error);
            }
            Some(_) => {}
            None => *logged = None,
        }
        result
    }

    /// The reload itself; the caller holds the lock.
    fn reload_locked(
        &self,
        registry: &InPlace,
        metrics: &Metrics,
    ) -> Result<ReloadReport, ConfigError> {
        let current = registry.load_full();
        let previous_files = self.published.load().files.clone();
        let result = self.source.load().and_then(|config| {
            let next = self.next_registry(&config, &current)?;
            Ok((next, self.source.files(&config).into()))
        });
        let finished = SystemTime::now();
        let ((next, problems), files) = match result {
            Ok(loaded) => loaded,
            Err(error) => {
                self.published.store(Arc::new(Published {
                    registry: current.clone(),
                    finished,
                    outcome: ReloadOutcome::Failed,
                    error: Some(error.to_string()),
                    files: previous_files,
                }));
                metrics.reload("failed", current.generation(), false);
                return Err(error);
            }
        };
        let changed = !next.same_as(&current);
        let in_place = if changed { Arc::new(next) } else { current };
        let generation = in_place.generation();
        let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
        let outcome = match (problems.is_empty(), changed) {
            (false, _) => ReloadOutcome::Partial,
            (true, true) => ReloadOutcome::Changed,
            (true, false) => ReloadOutcome::Unchanged,
        };
        let published = Arc::new(Published {
            registry: in_place.clone(),
            finished,
            outcome,
            error: (!problems.is_empty()).then(|| problems.join("; ")),
            files,
        });
        // Nothing between the two stores: `snapshot` pairs them.
        if changed {
            registry.store(in_place);
        }
        self.published.store(published);
        let label = match outcome {
            ReloadOutcome::Partial => "partial",
            ReloadOutcome::Changed => "changed",
            _ => "unchanged",
        };
        metrics.reload(label, generation, problems.is_empty());
        Ok(ReloadReport {
            generation,
            changed,
            problems,
        })
    }

    /// The registry `config` describes, keys unchanged since `current` reused. The
    /// audiences are worked out again (from `ExternalDomain`, `ExternalPort` and
    /// `ExternalSecure` as they are now, unless the builder fixed the audience); a
    /// changed audience is a new registry like a changed key.
    fn next_registry(
        &self,
        config: &Config,
        current: &Registry,
    ) -> Result<(Registry, Vec<ConfigError>), ConfigError> {
        Ok(Registry::load(
            config,
            self.audiences.audiences(config)?,
            Some(current),
            current.generation() + 1,
            self.cache_limits,
        ))
    }

    /// The last published reload and the registry it put in place, without
    /// waiting for a reload in progress. A reload swaps its registry in and
    /// publishes itself right after, with nothing in between; a call that comes
    /// between the two stores tries again until the reload is published (a
    /// preempted thread needs a time slice, no file is read meanwhile). Should the
    /// two ever disagree for a second, the registry in place wins.
    fn snapshot(&self, registry: &InPlace) -> (Arc<Published>, Arc<Registry>) {
        let mut started = None;
        loop {
            let published = self.published.load_full();
            let in_place = registry.load_full();
            if Arc::ptr_eq(&published.registry, &in_place) {
                return (published, in_place);
            }
            let started = *started.get_or_insert_with(Instant::now);
            if started.elapsed() > Duration::from_secs(1) {
                return (published, in_place);
            }
            std::thread::yield_now();
        }
    }

    /// The state for [`SystemAuth::status`](crate::SystemAuth::status).
    pub fn status(&self, registry: &InPlace) -> Status {
        let (state, registry) = self.snapshot(registry);
        let watch = self.watch.load();
        let mut users: Vec<UserStatus> = registry
            .users()
            .map(|user| UserStatus {
                user_id: user.identity.id.to_string(),
                fingerprint: user.key.fingerprint_hex(),
                not_before: user.key.validity().map(|v| v.not_before_time()),
                not_after: user.key.validity().map(|v| v.not_after_time()),
                bits: user.key.bits(),
                key_format: user.key.format(),
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
            reload_thread_panics: self.panics.load(Ordering::Relaxed),
            audiences: registry.audiences().iter().map(|a| a.to_string()).collect(),
            users,
            cached_tokens: registry.cache().map_or(0, |cache| cache.len()),
        }
    }

    /// The files whose change can change the registry (never waits for a reload).
    pub fn watched_files(&self) -> Vec<PathBuf> {
        self.published.load().files.to_vec()
    }

    /// Whether any file is to be watched.
    pub fn has_files(&self) -> bool {
        !self.published.load().files.is_empty()
    }

    /// Publishes how the files are watched now, for the status.
    pub fn publish_watch(&self, watching: WatchMode, folders: Vec<FolderStatus>) {
        self.watch.store(Arc::new(WatchView { watching, folders }));
    }

    /// Counts a panic caught in the reload thread.
    pub fn count_panic(&self, metrics: &Metrics) {
        metrics.reload_thread_panic();
        self.panics.fetch_add(1, Ordering::Relaxed);
    }
}
