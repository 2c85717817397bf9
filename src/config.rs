//! ZITADEL's runtime configuration: `SystemAPIUsers` and the external URL.
//!
//! ```
//! use zitadel_system_auth::Config;
//!
//! let config = Config::from_yaml(
//!     r#"
//! ExternalDomain: custom-domain.com
//! ExternalPort: 443
//! ExternalSecure: true
//! Database: { postgres: { Host: db } }   # other keys of ZITADEL's config are ignored
//! SystemAPIUsers:
//!   - system-user-1:
//!       Path: /keys/system-user-1.pub
//! "#,
//! )?;
//! assert_eq!(config.audience(), "https://custom-domain.com");
//! assert_eq!(config.users()[0].id(), "system-user-1");
//! # Ok::<(), zitadel_system_auth::ConfigError>(())
//! ```
//!
//! `SystemAPIUsers` is accepted in the three shapes found in the wild: a list of
//! one-key maps (ZITADEL's documented form), a plain map, and a string holding JSON.
//! Field names are case-insensitive, and ids in the list and map forms are
//! lowercased, as ZITADEL's loader does. An unknown field is a warning, as ZITADEL
//! ignores it; duplicate user ids, an entry without a key and an empty `Memberships`
//! are errors, and every error names the user, the field and the line.
//!
//! Holds what the configuration says and where it is read from; it knows nothing of
//! keys' contents (see `key`) or of tokens.

mod scalar;
mod yaml;

use std::{
    fmt, io,
    path::{Path, PathBuf},
};

use crate::{error::ConfigError, user::Membership};

/// The environment variables ZITADEL reads, which override the file.
pub const ENV_SYSTEM_API_USERS: &str = "ZITADEL_SYSTEMAPIUSERS";
/// See [`ENV_SYSTEM_API_USERS`].
pub const ENV_EXTERNAL_DOMAIN: &str = "ZITADEL_EXTERNALDOMAIN";
/// See [`ENV_SYSTEM_API_USERS`].
pub const ENV_EXTERNAL_PORT: &str = "ZITADEL_EXTERNALPORT";
/// See [`ENV_SYSTEM_API_USERS`].
pub const ENV_EXTERNAL_SECURE: &str = "ZITADEL_EXTERNALSECURE";

/// The parts of ZITADEL's runtime configuration this crate reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    external_domain: String,
    external_port: u16,
    external_secure: bool,
    users: Vec<UserConfig>,
    warnings: Vec<String>,
}

/// One entry of `SystemAPIUsers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserConfig {
    id: String,
    written_id: Option<String>,
    key: KeySource,
    memberships: Option<Vec<Membership>>,
}

/// Where a user's key comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A file (`Path`), already resolved against the config file's folder.
    Path(PathBuf),
    /// Inline PEM text (`KeyData`, base64-decoded when it was base64).
    Data(Vec<u8>),
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Path(path) => f.debug_tuple("Path").field(path).finish(),
            KeySource::Data(data) => write!(f, "Data({} bytes)", data.len()),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            external_domain: "localhost".to_owned(),
            external_port: 8080,
            external_secure: true,
            users: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

impl Config {
    /// Reads a config file; a relative key `Path` resolves against the file's folder.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = read_file(path, MAX_CONFIG_BYTES)
            .and_then(|bytes| {
                String::from_utf8(bytes)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
            })
            .map_err(|source| ConfigError::Io {
                path: path.to_owned(),
                source,
            })?;
        if text.trim().is_empty() {
            // An empty file is a mistake or a write in progress, never "no users".
            return Err(ConfigError::Yaml {
                path: Some(path.to_owned()),
                message: "the config file is empty".to_owned(),
            });
        }
        let base = path.parent().filter(|p| !p.as_os_str().is_empty());
        Config::parse(&text, base).map_err(|message| ConfigError::Yaml {
            path: Some(path.to_owned()),
            message,
        })
    }

    /// Reads config text; a relative key `Path` resolves against the current folder.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, None).map_err(|message| ConfigError::Yaml {
            path: None,
            message,
        })
    }

    fn parse(text: &str, base: Option<&Path>) -> Result<Config, String> {
        let mut config = Config::default();
        if text.trim().is_empty() {
            return Ok(config);
        }
        let yaml::Parsed {
            value: raw,
            warnings,
        } = yaml::parse_config(text)?;
        if let Some(domain) = raw.domain {
            config.external_domain = domain;
        }
        if let Some(port) = raw.port {
            config.external_port = port;
        }
        if let Some(secure) = raw.secure {
            config.external_secure = secure;
        }
        if let Some(users) = raw.users {
            config.set_users(users, warnings, base);
        }
        Ok(config)
    }

    /// Applies ZITADEL's environment variables from the process environment.
    pub fn apply_env(&mut self) -> Result<(), ConfigError> {
        self.apply_env_from(|name| std::env::var(name).ok())
    }

    /// Applies ZITADEL's environment variables, read through `lookup`
    /// (for tests and for services with their own settings source).
    ///
    /// `ZITADEL_SYSTEMAPIUSERS` holds JSON (`{"user": {"path": "..."}}`) and replaces
    /// the file's users; relative paths in it resolve against the current folder.
    pub fn apply_env_from(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        if let Some(domain) = lookup(ENV_EXTERNAL_DOMAIN) {
            self.external_domain = domain;
        }
        if let Some(port) = lookup(ENV_EXTERNAL_PORT) {
            self.external_port = port.trim().parse().map_err(|_| ConfigError::Env {
                var: ENV_EXTERNAL_PORT,
                message: "must be a port number from 0 to 65535".to_owned(),
            })?;
        }
        if let Some(secure) = lookup(ENV_EXTERNAL_SECURE) {
            self.external_secure = scalar::parse_bool(secure.trim()).ok_or(ConfigError::Env {
                var: ENV_EXTERNAL_SECURE,
                message: "must be true or false".to_owned(),
            })?;
        }
        if let Some(json) = lookup(ENV_SYSTEM_API_USERS) {
            let parsed = yaml::parse_users_json(&json).map_err(|message| ConfigError::Env {
                var: ENV_SYSTEM_API_USERS,
                message,
            })?;
            let warnings = parsed
                .warnings
                .into_iter()
                .map(|warning| format!("{ENV_SYSTEM_API_USERS}: {warning}"))
                .collect();
            self.set_users(parsed.value, warnings, None);
        }
        Ok(())
    }

    /// Takes `users` (and the warnings read with them) in place of any users before.
    fn set_users(&mut self, users: Vec<yaml::RawUser>, warnings: Vec<String>, base: Option<&Path>) {
        self.warnings = warnings;
        self.users = users
            .into_iter()
            .map(|raw| {
                let key = match raw.key {
                    KeySource::Path(path) if path.is_relative() => match base {
                        Some(base) => KeySource::Path(base.join(path)),
                        None => KeySource::Path(path),
                    },
                    key => key,
                };
                UserConfig {
                    id: raw.id,
                    written_id: raw.written_id,
                    key,
                    memberships: raw.memberships,
                }
            })
            .collect();
        if self.users.is_empty() {
            self.warnings
                .push("SystemAPIUsers is empty: every token will be refused".to_owned());
        }
    }

    /// The audience tokens must carry: ZITADEL's `BuildHTTP(ExternalDomain,
    /// ExternalPort, ExternalSecure)`.
    ///
    /// The port is left out when it is 0, or 443 with https, or 80 with http.
    pub fn audience(&self) -> String {
        let scheme = if self.external_secure {
            "https"
        } else {
            "http"
        };
        match (self.external_port, self.external_secure) {
            (0, _) | (443, true) | (80, false) => format!("{scheme}://{}", self.external_domain),
            (port, _) => format!("{scheme}://{}:{port}", self.external_domain),
        }
    }

    /// `ExternalDomain` (default `localhost`).
    pub fn external_domain(&self) -> &str {
        &self.external_domain
    }

    /// `ExternalPort` (default `8080`).
    pub fn external_port(&self) -> u16 {
        self.external_port
    }

    /// `ExternalSecure` (default `true`).
    pub fn external_secure(&self) -> bool {
        self.external_secure
    }

    /// The configured system users, in the order written.
    pub fn users(&self) -> &[UserConfig] {
        &self.users
    }

    /// Things that load but deserve attention, each saying what to do: a user id
    /// that was lowercased, both `Path` and `KeyData`, an unknown field (with its
    /// line and the nearest known name), `NotBefore`/`NotAfter` (never enforced), no
    /// users. The builder logs them.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

impl UserConfig {
    /// The user id tokens carry in `iss` and `sub`: lowercased in the list and map
    /// forms of `SystemAPIUsers`, as ZITADEL's loader does, and as written in the
    /// JSON form.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The id as the config wrote it, when lowercasing changed it.
    pub fn written_id(&self) -> Option<&str> {
        self.written_id.as_deref()
    }

    /// Where the key comes from.
    pub fn key(&self) -> &KeySource {
        &self.key
    }

    /// The memberships; ZITADEL's default (`System` with `SYSTEM_OWNER`) when the
    /// entry has no `Memberships` field (an empty one does not load).
    pub fn memberships(&self) -> Vec<Membership> {
        match &self.memberships {
            Some(memberships) => memberships.clone(),
            None => vec![Membership::default_system_owner()],
        }
    }
}

/// Where a [`SystemAuth`](crate::SystemAuth) reads its configuration from, again at
/// every reload.
#[derive(Debug, Clone)]
pub(crate) struct ConfigSource {
    pub text: ConfigText,
    pub env: EnvSource,
}

/// The config file, or config text given to the builder.
#[derive(Clone)]
pub(crate) enum ConfigText {
    File(PathBuf),
    Yaml(String),
}

impl fmt::Debug for ConfigText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigText::File(path) => f.debug_tuple("File").field(path).finish(),
            ConfigText::Yaml(_) => f.write_str("Yaml(..)"),
        }
    }
}

/// Where ZITADEL's environment variables are read.
#[derive(Clone)]
pub(crate) enum EnvSource {
    Off,
    Process,
    Vars(Vec<(String, String)>),
}

impl fmt::Debug for EnvSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EnvSource::Off => "Off",
            EnvSource::Process => "Process",
            EnvSource::Vars(_) => "Vars(..)",
        })
    }
}

impl ConfigSource {
    /// Reads the configuration as it is now.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut config = match &self.text {
            ConfigText::File(path) => Config::from_file(path)?,
            ConfigText::Yaml(text) => Config::from_yaml(text)?,
        };
        match &self.env {
            EnvSource::Off => {}
            EnvSource::Process => config.apply_env()?,
            EnvSource::Vars(vars) => config.apply_env_from(|name| {
                vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
            })?,
        }
        Ok(config)
    }

    /// The files a change of which can change the configuration: the config file
    /// and every key `Path`.
    pub fn files(&self, config: &Config) -> Vec<PathBuf> {
        let file = match &self.text {
            ConfigText::File(path) => Some(path.clone()),
            ConfigText::Yaml(_) => None,
        };
        file.into_iter()
            .chain(config.users().iter().filter_map(|user| match user.key() {
                KeySource::Path(path) => Some(path.clone()),
                KeySource::Data(_) => None,
            }))
            .collect()
    }
}

/// The largest config file read (ZITADEL's whole runtime config is far smaller).
pub(crate) const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;
/// The largest key file read (an 8192-bit certificate is a few KiB).
pub(crate) const MAX_KEY_BYTES: u64 = 64 * 1024;

/// Reads a regular file of at most `limit` bytes: `/dev/zero`, a FIFO or a huge
/// file named by mistake is an error, not a hang or an exhausted memory.
///
/// Nothing here can block: the file is opened without blocking (a FIFO or a device
/// swapped in after any earlier check opens at once instead of waiting for a
/// writer), then its type and size are checked on the open handle, and at most
/// `limit + 1` bytes are read.
pub(crate) fn read_file(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    let file = open_nonblocking(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    if metadata.len() > limit {
        return Err(too_large(limit));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(limit));
    }
    Ok(bytes)
}

fn too_large(limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("larger than {limit} bytes"),
    )
}

/// Opens `path` for reading without waiting: `O_NONBLOCK` (a FIFO with no writer
/// opens at once; on a regular file the flag changes nothing) and `O_NOCTTY`.
#[cfg(unix)]
fn open_nonblocking(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> io::Result<std::fs::File> {
    std::fs::File::open(path)
}
