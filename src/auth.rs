//! [`SystemAuth`], the handle every part of the crate hangs off, and its builder.

use std::{
    fmt,
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwap;

use crate::{
    config::Config,
    error::{AuthError, ConfigError},
    layer::SystemAuthLayer,
    registry::Registry,
    user::SystemUser,
    verify::{self, Algorithm, Clock, Verifier},
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
        let registry = self.inner.registry.load();
        let verified = self.inner.verifier.verify(token, &registry)?;
        Ok(SystemUser::new(
            verified.user.id.clone(),
            verified.user.memberships.clone(),
            verified.issued_at,
            verified.expires_at,
        )
        .with_context(self.inner.instance_id.clone(), None))
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

    /// The configured user ids, sorted.
    pub fn user_ids(&self) -> Vec<String> {
        let registry = self.inner.registry.load();
        let mut ids: Vec<String> = registry.users().map(|u| u.id.to_string()).collect();
        ids.sort();
        ids
    }
}

/// Where the configuration comes from.
#[derive(Debug, Clone)]
enum Source {
    File(PathBuf),
    Yaml(String),
}

/// Where ZITADEL's environment variables are read.
#[derive(Debug, Clone)]
enum Env {
    Off,
    Process,
    Vars(Vec<(String, String)>),
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
    source: Option<Source>,
    audience: Option<String>,
    additional_audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    clock_offset: Duration,
    max_token_age: Duration,
    max_token_length: usize,
    clock: Option<Clock>,
    env: Env,
    instance_id: Option<String>,
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
            env: Env::Off,
            instance_id: None,
        }
    }
}

impl fmt::Debug for SystemAuthBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SystemAuthBuilder")
            .field(
                "source",
                &self.source.as_ref().map(|s| match s {
                    Source::File(path) => path.display().to_string(),
                    Source::Yaml(_) => "<yaml text>".to_owned(),
                }),
            )
            .field("audience", &self.audience)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

impl SystemAuthBuilder {
    /// Reads ZITADEL's runtime config from this file (it may be the whole file; only
    /// `SystemAPIUsers` and `External*` are read).
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.source = Some(Source::File(path.into()));
        self
    }

    /// Reads the config from YAML text; relative key paths resolve against the
    /// current folder.
    pub fn config_yaml(mut self, yaml: &str) -> Self {
        self.source = Some(Source::Yaml(yaml.to_owned()));
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
        self.env = if enabled { Env::Process } else { Env::Off };
        self
    }

    /// Like [`env_overrides`](Self::env_overrides), with the variables given here
    /// instead of read from the process environment.
    pub fn env_overrides_from<K: Into<String>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.env = Env::Vars(
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

    /// Loads the configuration and every key. Any problem is an error that names the
    /// file, the user and the field.
    pub fn build(self) -> Result<SystemAuth, ConfigError> {
        let mut config = match &self.source {
            None => return Err(ConfigError::NoConfig),
            Some(Source::File(path)) => Config::from_file(path)?,
            Some(Source::Yaml(text)) => Config::from_yaml(text)?,
        };
        match &self.env {
            Env::Off => {}
            Env::Process => config.apply_env()?,
            Env::Vars(vars) => config.apply_env_from(|name| {
                vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
            })?,
        }
        for warning in config.warnings() {
            tracing::warn!(target: "zitadel_system_auth", "{warning}");
        }
        if self.algorithms.is_empty() {
            return Err(ConfigError::InvalidSetting(
                "at least one algorithm must be allowed",
            ));
        }
        if self.max_token_length == 0 {
            return Err(ConfigError::InvalidSetting(
                "max_token_length must be positive",
            ));
        }
        let primary = self.audience.clone().unwrap_or_else(|| config.audience());
        let audiences = std::iter::once(primary)
            .chain(self.additional_audiences.iter().cloned())
            .map(|aud| check_audience(&aud).map(|()| Arc::from(aud)))
            .collect::<Result<Box<[Arc<str>]>, _>>()?;
        let registry = Registry::load(&config, 1)?;
        let verifier = Verifier {
            audiences,
            algorithms: verify::algorithm_set(&self.algorithms),
            clock_offset: self.clock_offset,
            max_token_age: self.max_token_age,
            max_token_length: self.max_token_length,
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemTime::now)),
        };
        Ok(SystemAuth {
            inner: Arc::new(Inner {
                verifier,
                registry: ArcSwap::from_pointee(registry),
                instance_id: self.instance_id.map(Arc::from),
            }),
        })
    }
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
