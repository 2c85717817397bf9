//! [`SystemAuthBuilder`]: the settings of a [`SystemAuth`], checked and loaded once.
//!
//! Holds settings and their checks only; the first load is `reload`'s, the handle is
//! `auth`'s.

use std::{
    fmt,
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use crate::{
    algorithm::{Algorithm, AlgorithmSet},
    auth::SystemAuth,
    cache::{CacheLimits, ENTRY_OVERHEAD},
    config::{ConfigSource, ConfigText, EnvSource},
    error::ConfigError,
    registry::AudienceRule,
    reload::{self, ReloadHook, Reloader, WatchHook, WatchSettings},
    verify::{Clock, Verifier},
};

impl SystemAuth {
    /// Starts a [`SystemAuthBuilder`].
    pub fn builder() -> SystemAuthBuilder {
        SystemAuthBuilder::default()
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
    /// still checked on every use, and a reload empties the cache. In front of it,
    /// each thread keeps the last four tokens it was answered for, which a reload
    /// retires just the same.
    pub fn token_cache(mut self, enabled: bool) -> Self {
        self.token_cache = enabled;
        self
    }

    /// How many verified tokens the cache holds at most (default 10,000), beside
    /// the four each thread keeps (see [`token_cache`](Self::token_cache)).
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
        let algorithms: AlgorithmSet = self.algorithms.iter().copied().collect();
        self.check_settings(algorithms)?;
        let source = ConfigSource {
            text: self.source.ok_or(ConfigError::NoConfig)?,
            env: self.env,
        };
        let audiences = AudienceRule {
            fixed: self.audience,
            additional: self.additional_audiences,
        };
        let cache_limits = self.token_cache.then_some(CacheLimits {
            entries: self.token_cache_capacity,
            bytes: self.token_cache_bytes,
        });
        let (reloader, registry) =
            Reloader::load(source, audiences, cache_limits, self.reload_hook)?;
        let verifier = Verifier {
            algorithms,
            clock_offset: self.clock_offset,
            max_token_age: self.max_token_age,
            max_token_length: self.max_token_length,
            clock: self.clock,
        };
        let watch = (self.watch && reloader.has_files()).then_some(WatchSettings {
            debounce: self.debounce,
            poll_interval: self.poll_interval,
            watch_hook: self.watch_hook,
        });
        Ok(SystemAuth::start(
            verifier,
            registry,
            reloader,
            self.instance_id.map(Arc::from),
            watch,
        ))
    }

    /// The settings that can be wrong whatever the configuration says.
    fn check_settings(&self, algorithms: AlgorithmSet) -> Result<(), ConfigError> {
        let refuse = |reason| Err(ConfigError::InvalidSetting(reason));
        if algorithms.is_empty() {
            return refuse("at least one algorithm must be allowed");
        }
        if self.max_token_length == 0 {
            return refuse("max_token_length must be positive");
        }
        if self.token_cache && self.token_cache_capacity == 0 {
            return refuse("token_cache_capacity must be positive (or turn the cache off)");
        }
        if self.token_cache && self.token_cache_bytes < ENTRY_OVERHEAD + self.max_token_length {
            return refuse(
                "token_cache_max_bytes must hold at least one token of max_token_length (or turn the cache off)",
            );
        }
        if self.poll_interval.is_some_and(|i| i.is_zero()) {
            return refuse("poll_interval must be positive");
        }
        if self
            .poll_interval
            .is_some_and(|i| i > reload::MAX_POLL_INTERVAL)
        {
            return refuse(
                "poll_interval must be at most one day (a longer one would leave removed users and replaced keys in place that long)",
            );
        }
        if self.debounce > reload::MAX_DEBOUNCE {
            return refuse(
                "debounce must be at most one minute (a longer one would leave removed users and replaced keys in place that long)",
            );
        }
        Ok(())
    }
}
