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
//! Field names are case-insensitive, as in ZITADEL. Unlike ZITADEL, duplicate user
//! ids, unknown fields inside an entry and an entry without a key are errors, and
//! every error names the user, the field and the line.

use std::{
    collections::HashSet,
    fmt, io,
    path::{Path, PathBuf},
};

use base64::Engine as _;
use serde::de::{
    self, Deserialize as _, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess,
    Visitor,
};

use crate::{
    error::{ConfigError, KeyError},
    user::{MemberType, Membership},
};

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
    key: KeySource,
    memberships: Vec<Membership>,
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
        let raw: RawConfig = if text.trim().is_empty() {
            RawConfig::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| without_values(&e.to_string()))?
        };
        let mut config = Config::default();
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
            config.set_users(users, base);
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
            self.external_secure = parse_bool(secure.trim()).ok_or(ConfigError::Env {
                var: ENV_EXTERNAL_SECURE,
                message: "must be true or false".to_owned(),
            })?;
        }
        if let Some(json) = lookup(ENV_SYSTEM_API_USERS) {
            let users = parse_users_json(&json).map_err(|message| ConfigError::Env {
                var: ENV_SYSTEM_API_USERS,
                message,
            })?;
            self.users.clear();
            self.warnings.clear();
            self.set_users(users, None);
        }
        Ok(())
    }

    fn set_users(&mut self, users: Vec<RawUser>, base: Option<&Path>) {
        self.users = users
            .into_iter()
            .map(|raw| {
                if raw.has_both {
                    self.warnings.push(format!(
                        "system user `{}` has both Path and KeyData; Path is used, as ZITADEL does",
                        raw.id
                    ));
                }
                if raw.id.chars().any(char::is_uppercase) {
                    self.warnings.push(format!(
                        "system user id `{}` has capital letters: ZITADEL lowercases ids, this crate keeps them as written, so tokens must use this exact iss",
                        raw.id
                    ));
                }
                let key = match raw.key {
                    KeySource::Path(path) if path.is_relative() => match base {
                        Some(base) => KeySource::Path(base.join(path)),
                        None => KeySource::Path(path),
                    },
                    key => key,
                };
                UserConfig {
                    id: raw.id,
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

    /// Things that load but deserve attention (both `Path` and `KeyData`, capitals
    /// in a user id, no users). The builder logs them.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

impl UserConfig {
    /// The user id, exactly as written; tokens carry it in `iss` and `sub`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Where the key comes from.
    pub fn key(&self) -> &KeySource {
        &self.key
    }

    /// The memberships; ZITADEL's default (`System` with `SYSTEM_OWNER`) when none
    /// are configured.
    pub fn memberships(&self) -> Vec<Membership> {
        if self.memberships.is_empty() {
            vec![Membership::default_system_owner()]
        } else {
            self.memberships.clone()
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

/// Go's `strconv.ParseBool`.
fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn parse_users_json(json: &str) -> Result<Vec<RawUser>, String> {
    let mut de = serde_json::Deserializer::from_str(json);
    let users = Users::deserialize(&mut de).map_err(|e| without_values(&e.to_string()))?;
    de.end().map_err(|e| without_values(&e.to_string()))?;
    Ok(users.0)
}

/// Removes the string values serde quotes in its errors (`invalid type: string
/// "..."`): a value in the wrong place may be key material, and error messages are
/// logged.
fn without_values(message: &str) -> String {
    const QUOTED: &str = "string \"";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find(QUOTED) {
        out.push_str(&rest[..start]);
        out.push_str("a string");
        let value = &rest[start + QUOTED.len()..];
        // The value is Debug-quoted: skip to the first quote not escaped.
        let mut escaped = false;
        let end = value.char_indices().find_map(|(i, c)| match (c, escaped) {
            ('"', false) => Some(i + 1),
            ('\\', false) => {
                escaped = true;
                None
            }
            _ => {
                escaped = false;
                None
            }
        });
        rest = match end {
            Some(end) => &value[end..],
            None => "",
        };
    }
    out.push_str(rest);
    out
}

/// A name from the config, repeated in an error only when it looks like a name.
pub(crate) fn shown(name: &str) -> String {
    if !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        format!("`{name}`")
    } else {
        format!("({} characters, not shown)", name.chars().count())
    }
}

/// Decodes `KeyData`: PEM text as it is, or base64 of it (line breaks and spaces
/// allowed, padding optional).
fn decode_key_data(value: &str) -> Result<Vec<u8>, KeyError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(KeyError::Empty);
    }
    if trimmed.starts_with("-----BEGIN") {
        return Ok(trimmed.as_bytes().to_vec());
    }
    let compact: String = trimmed
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let decoded = engine.decode(compact).map_err(|_| KeyError::NotBase64)?;
    if decoded.iter().all(u8::is_ascii_whitespace) {
        return Err(KeyError::Empty);
    }
    Ok(decoded)
}

// ---- Deserialisation. Errors raised here get their line from serde_yaml. ----

#[derive(Default)]
struct RawConfig {
    domain: Option<String>,
    port: Option<u16>,
    secure: Option<bool>,
    users: Option<Vec<RawUser>>,
}

struct RawUser {
    id: String,
    /// `Path` when given (as ZITADEL reads it first), else the decoded `KeyData`.
    key: KeySource,
    has_both: bool,
    memberships: Vec<Membership>,
}

/// A mapping key of any scalar type, as text.
struct Key(String);

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarText("a mapping key")).map(Key)
    }
}

/// Accepts a string, a number or a bool as text (viper's weak typing).
struct ScalarText(&'static str);

impl Visitor<'_> for ScalarText {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
}

/// A setting that may be written as a string or as its own type.
struct Weak<T>(T);

/// Reads a scalar as text and parses it inside the visitor, so an error carries the
/// value's line.
struct ParsedScalar<T> {
    parse: fn(&str) -> Option<T>,
    error: &'static str,
}

impl<T> ParsedScalar<T> {
    fn finish<E: de::Error>(self, text: String) -> Result<T, E> {
        (self.parse)(text.trim()).ok_or_else(|| E::custom(self.error))
    }
}

impl<T> Visitor<'_> for ParsedScalar<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.error)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        self.finish(v.to_owned())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        self.finish(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        self.finish(v.to_string())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
        self.finish(v.to_string())
    }
}

impl<'de> de::Deserialize<'de> for Weak<String> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarText("a string")).map(Weak)
    }
}

impl<'de> de::Deserialize<'de> for Weak<u16> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ParsedScalar {
            parse: |text| text.parse().ok(),
            error: "ExternalPort must be a port number from 0 to 65535",
        })
        .map(Weak)
    }
}

impl<'de> de::Deserialize<'de> for Weak<bool> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ParsedScalar {
            parse: parse_bool,
            error: "ExternalSecure must be true or false",
        })
        .map(Weak)
    }
}

/// Takes a field's value once; a second occurrence is an error.
fn set_once<'de, A: MapAccess<'de>, T: de::Deserialize<'de>>(
    map: &mut A,
    slot: &mut Option<T>,
    what: &dyn fmt::Display,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(de::Error::custom(format_args!("{what} is given twice")));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

impl<'de> de::Deserialize<'de> for RawConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawConfig;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("ZITADEL's runtime configuration (a mapping)")
            }
            fn visit_unit<E: de::Error>(self) -> Result<RawConfig, E> {
                Ok(RawConfig::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawConfig, A::Error> {
                let mut raw = RawConfig::default();
                let (mut domain, mut port, mut secure) = (None, None, None);
                while let Some(Key(key)) = map.next_key()? {
                    match key.to_ascii_lowercase().as_str() {
                        "externaldomain" => set_once(&mut map, &mut domain, &"ExternalDomain")?,
                        "externalport" => set_once(&mut map, &mut port, &"ExternalPort")?,
                        "externalsecure" => set_once(&mut map, &mut secure, &"ExternalSecure")?,
                        "systemapiusers" => {
                            let mut users: Option<Users> = None;
                            if raw.users.is_some() {
                                return Err(de::Error::custom("SystemAPIUsers is given twice"));
                            }
                            set_once(&mut map, &mut users, &"SystemAPIUsers")?;
                            raw.users = users.map(|u| u.0);
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                raw.domain = domain.map(|Weak(v): Weak<String>| v);
                raw.port = port.map(|Weak(v): Weak<u16>| v);
                raw.secure = secure.map(|Weak(v): Weak<bool>| v);
                Ok(raw)
            }
        }
        d.deserialize_any(V)
    }
}

/// `SystemAPIUsers` in any of its three shapes.
struct Users(Vec<RawUser>);

impl<'de> de::Deserialize<'de> for Users {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Users;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("SystemAPIUsers as a list of `user-id: {Path|KeyData}` entries, a mapping, or JSON text")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Users, E> {
                Ok(Users(Vec::new()))
            }
            fn visit_none<E: de::Error>(self) -> Result<Users, E> {
                Ok(Users(Vec::new()))
            }
            fn visit_str<E: de::Error>(self, json: &str) -> Result<Users, E> {
                if json.trim().is_empty() {
                    return Ok(Users(Vec::new()));
                }
                parse_users_json(json)
                    .map(Users)
                    .map_err(|e| E::custom(format_args!("the JSON text is invalid: {e}")))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Users, A::Error> {
                let mut users = UserMap::default();
                while seq.next_element_seed(&mut users)?.is_some() {}
                Ok(Users(users.users))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Users, A::Error> {
                let mut users = UserMap::default();
                (&mut users).visit_map(map)?;
                Ok(Users(users.users))
            }
        }
        d.deserialize_any(V)
    }
}

/// The users read so far; each mapping of user ids to entries adds to them (one
/// for the map shape, one per list item for the list shape).
#[derive(Default)]
struct UserMap {
    users: Vec<RawUser>,
    seen: HashSet<String>,
}

impl<'de> DeserializeSeed<'de> for &mut UserMap {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for &mut UserMap {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping of system user ids to {Path|KeyData, Memberships}")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(id)) = map.next_key()? {
            if id.is_empty() {
                return Err(de::Error::custom("a system user id is empty"));
            }
            if !self.seen.insert(id.clone()) {
                return Err(de::Error::custom(format_args!(
                    "system user `{id}` is configured twice"
                )));
            }
            let user = map.next_value_seed(Entry { id: &id })?;
            self.users.push(user);
        }
        Ok(())
    }
}

/// One user's entry, which knows the user id for its error messages.
struct Entry<'a> {
    id: &'a str,
}

impl<'de> DeserializeSeed<'de> for Entry<'_> {
    type Value = RawUser;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawUser, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Entry<'_> {
    type Value = RawUser;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "system user `{}`: a mapping with Path or KeyData",
            self.id
        )
    }
    fn visit_unit<E: de::Error>(self) -> Result<RawUser, E> {
        Err(E::custom(format_args!(
            "system user `{}`: neither Path nor KeyData is set",
            self.id
        )))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<RawUser, E> {
        Err(E::custom(format_args!(
            "system user `{}`: found a plain value where Path or KeyData belongs (did you forget `KeyData:`?)",
            self.id
        )))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawUser, A::Error> {
        let id = self.id;
        let (mut path, mut key_data, mut memberships) = (None, None, None);
        while let Some(Key(field)) = map.next_key()? {
            let what = format_args!("system user `{id}`: {field}").to_string();
            match field.to_ascii_lowercase().as_str() {
                "path" => set_once::<_, Option<String>>(&mut map, &mut path, &what)?,
                "keydata" => set_once::<_, Option<String>>(&mut map, &mut key_data, &what)?,
                "memberships" => {
                    set_once::<_, Option<Vec<Membership>>>(&mut map, &mut memberships, &what)?
                }
                _ => {
                    return Err(de::Error::custom(format_args!(
                        "system user `{id}`: unknown field {} (expected Path, KeyData or Memberships)",
                        shown(&field)
                    )));
                }
            }
        }
        let path = path.flatten().filter(|p| !p.is_empty());
        let key_data = key_data.flatten();
        let has_both = path.is_some() && key_data.is_some();
        let key = match (path, key_data) {
            (Some(path), _) => KeySource::Path(PathBuf::from(path)),
            (None, Some(text)) => KeySource::Data(decode_key_data(&text).map_err(|e| {
                de::Error::custom(format_args!("system user `{id}`, KeyData: {e}"))
            })?),
            (None, None) => {
                return Err(de::Error::custom(format_args!(
                    "system user `{id}`: neither Path nor KeyData is set"
                )));
            }
        };
        Ok(RawUser {
            id: id.to_owned(),
            key,
            has_both,
            memberships: memberships.flatten().unwrap_or_default(),
        })
    }
}

impl<'de> de::Deserialize<'de> for Membership {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Membership;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a membership {MemberType, Roles, AggregateID}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Membership, A::Error> {
                let (mut kind, mut roles, mut aggregate) = (None, None, None);
                while let Some(Key(field)) = map.next_key()? {
                    match field.to_ascii_lowercase().as_str() {
                        "membertype" => {
                            set_once::<_, Weak<String>>(&mut map, &mut kind, &"MemberType")?
                        }
                        "roles" => set_once::<_, Option<Vec<Weak<String>>>>(
                            &mut map, &mut roles, &"Roles",
                        )?,
                        "aggregateid" => set_once::<_, Option<Weak<String>>>(
                            &mut map,
                            &mut aggregate,
                            &"AggregateID",
                        )?,
                        _ => {
                            return Err(de::Error::custom(format_args!(
                                "unknown membership field {} (expected MemberType, Roles or AggregateID)",
                                shown(&field)
                            )));
                        }
                    }
                }
                let Some(Weak(kind)) = kind else {
                    return Err(de::Error::custom(
                        "a membership needs a MemberType (System, IAM or Organization)",
                    ));
                };
                let member_type = MemberType::parse(&kind).map_err(de::Error::custom)?;
                Ok(Membership {
                    member_type,
                    roles: roles
                        .flatten()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|Weak(r)| r)
                        .collect(),
                    aggregate_id: aggregate
                        .flatten()
                        .map(|Weak(a)| a)
                        .filter(|a| !a.is_empty()),
                })
            }
        }
        d.deserialize_map(V)
    }
}
