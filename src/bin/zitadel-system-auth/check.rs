//! `check`: loads a config exactly as the layer does (through the builder, whose
//! verdict decides the exit status), then prints what it holds: the audience and
//! how it was built, one line per user (the id, where the key came from, its kind,
//! bits, fingerprint, a certificate's window, the memberships), the warnings and
//! the errors, each saying what to do.
//!
//! The details come from [`Config`] (ids, key sources, memberships, warnings) and
//! from [`SystemAuth::status`] (each key's fingerprint, format, bits and window).
//! When the config does not load because of a key, every user's key is read once
//! more on its own, so that every bad key shows at once, not only the first.

use std::path::PathBuf;

use serde::Serialize;
use zitadel_system_auth::{
    Config, ConfigError, Membership, SystemAuth, UserStatus,
    config::{
        ENV_EXTERNAL_DOMAIN, ENV_EXTERNAL_PORT, ENV_EXTERNAL_SECURE, ENV_SYSTEM_API_USERS,
        KeySource, UserConfig,
    },
    error::{KeyError, KeyOrigin},
    key::{KeyFormat, PublicKey},
};

use crate::{
    args::{EXIT_OK, EXIT_REFUSED, EXIT_USAGE},
    format::{now_secs, rfc3339, secs, span},
};

/// Load a config as the layer does and print what it holds.
///
/// Prints the expected audience (and how it was built from ExternalDomain,
/// ExternalPort and ExternalSecure), one line per user (id, key source, key kind,
/// bits, SHA-256 fingerprint of the SubjectPublicKeyInfo, a certificate's window,
/// memberships), then the warnings and the errors. Exit status 0 when the config
/// loads (warnings included), 1 when it does not, 2 when the file cannot be read.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// ZITADEL's runtime config file (it may be the whole file: only
    /// SystemAPIUsers and ExternalDomain/Port/Secure are read).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Let ZITADEL's environment variables override the file, as ZITADEL does
    /// (ZITADEL_SYSTEMAPIUSERS, ZITADEL_EXTERNALDOMAIN, ZITADEL_EXTERNALPORT,
    /// ZITADEL_EXTERNALSECURE).
    #[arg(long)]
    pub env: bool,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    /// Judge the certificates' windows at this time (seconds since 1970) instead of
    /// now: to see which will have expired, or will be within 30 days of it, by then.
    #[arg(long, value_name = "UNIX_SECONDS")]
    pub now: Option<u64>,
}

/// A certificate expiring within this many days is a warning.
const EXPIRY_WARNING_DAYS: u64 = 30;
const DAY: u64 = 86_400;

/// Everything `check` prints, as text or as one JSON document.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    config: PathBuf,
    env: bool,
    /// Whether the config loads as the layer loads it.
    loads: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    audience: Option<Audience>,
    users: Vec<User>,
    warnings: Vec<String>,
    errors: Vec<String>,
    /// The time the certificates were compared with.
    #[serde(skip)]
    now: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Audience {
    /// What tokens must carry in `aud`, exactly.
    url: String,
    external_domain: String,
    external_port: u16,
    external_secure: bool,
    /// How the URL was built from the three.
    built: String,
    /// The settings an environment variable gave (with `--env`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    from_environment: Vec<&'static str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct User {
    id: String,
    /// The id as written, when ZITADEL's loader lowercased it.
    #[serde(skip_serializing_if = "Option::is_none")]
    written_id: Option<String>,
    /// `Path` or `KeyData`.
    key_from: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<Key>,
    /// Why the key was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    memberships: Vec<Membership>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Key {
    /// `PKIX`, `PKCS#1` or `certificate`.
    format: &'static str,
    bits: usize,
    /// SHA-256 of the SubjectPublicKeyInfo, lower-case hex.
    fingerprint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_after: Option<String>,
    /// Whole days until NotAfter (negative once it has passed).
    #[serde(skip_serializing_if = "Option::is_none")]
    days_left: Option<i64>,
    /// Whether ZITADEL itself can read this key.
    zitadel_reads_it: bool,
    /// NotBefore and NotAfter in seconds since 1970.
    #[serde(skip)]
    window: Option<(u64, u64)>,
}

/// Checks the config `args` names; prints the report; the exit status.
pub fn run(args: &CheckArgs) -> u8 {
    let now = now_secs(args.now);
    let built = SystemAuth::builder()
        .config_file(&args.config)
        .env_overrides(args.env)
        .watch(false)
        .token_cache(false)
        .build();
    let config = Config::from_file(&args.config).and_then(|mut config| {
        if args.env {
            config.apply_env()?;
        }
        Ok(config)
    });
    let mut report = Report {
        config: args.config.clone(),
        env: args.env,
        loads: built.is_ok(),
        audience: None,
        users: Vec::new(),
        warnings: Vec::new(),
        errors: Vec::new(),
        now,
    };
    let unreadable = matches!(built, Err(ConfigError::Io { .. }));
    if let Err(error) = &built {
        report.errors.push(with_hint(error));
    }
    if let Ok(config) = &config {
        report.audience = Some(audience(config, args.env));
        report.warnings.extend(config.warnings().iter().cloned());
        report.warnings.extend(audience_warnings(config));
        let status = built.as_ref().ok().map(SystemAuth::status);
        for user in config.users() {
            let loaded = status
                .as_ref()
                .and_then(|s| s.users.iter().find(|u| u.user_id == user.id()));
            let entry = describe(user, loaded, now);
            if let Some(error) = &entry.error
                && !report.errors.contains(error)
            {
                report.errors.push(error.clone());
            }
            report.warnings.extend(key_warnings(&entry, now));
            report.users.push(entry);
        }
    }
    if !args.env {
        report.warnings.extend(unread_environment());
    }
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(error) => {
                eprintln!("error: cannot write the report as JSON: {error}");
                return EXIT_USAGE;
            }
        }
    } else {
        print_text(&report);
    }
    if unreadable {
        EXIT_USAGE
    } else if report.loads {
        EXIT_OK
    } else {
        EXIT_REFUSED
    }
}

/// The audience and how `BuildHTTP` made it.
fn audience(config: &Config, env: bool) -> Audience {
    let (domain, port, secure) = (
        config.external_domain(),
        config.external_port(),
        config.external_secure(),
    );
    let scheme = if secure { "https" } else { "http" };
    let port_part = match (port, secure) {
        (0, _) => "ExternalPort 0 (no port)".to_owned(),
        (443, true) | (80, false) => {
            format!("ExternalPort {port} (left out: the default port of {scheme})")
        }
        (port, _) => format!("ExternalPort {port}"),
    };
    let from_environment = if env {
        [
            (ENV_EXTERNAL_DOMAIN, "ExternalDomain"),
            (ENV_EXTERNAL_PORT, "ExternalPort"),
            (ENV_EXTERNAL_SECURE, "ExternalSecure"),
            (ENV_SYSTEM_API_USERS, "SystemAPIUsers"),
        ]
        .into_iter()
        .filter(|(var, _)| std::env::var_os(var).is_some())
        .map(|(_, setting)| setting)
        .collect()
    } else {
        Vec::new()
    };
    Audience {
        url: config.audience(),
        external_domain: domain.to_owned(),
        external_port: port,
        external_secure: secure,
        built: format!(
            "ExternalDomain {domain}, {port_part}, ExternalSecure {secure} ({scheme}), \
             as ZITADEL's BuildHTTP builds it"
        ),
        from_environment,
    }
}

/// An audience that trips people up: a port ZITADEL leaves out, a domain that
/// holds a scheme or a port.
fn audience_warnings(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    let (domain, port, secure) = (
        config.external_domain(),
        config.external_port(),
        config.external_secure(),
    );
    let url = config.audience();
    if matches!((port, secure), (443, true) | (80, false)) {
        warnings.push(format!(
            "ExternalPort {port} is left out of the audience, as ZITADEL leaves out the \
             default port: tokens must carry aud {url} exactly; one minted for {url}:{port} \
             is refused here and by ZITADEL (mint with -audience={url})"
        ));
    }
    if domain.contains("://") {
        warnings.push(format!(
            "ExternalDomain {domain:?} holds a scheme, so the audience is {url}; set \
             ExternalDomain to the host name alone and ExternalSecure for the scheme"
        ));
    } else if domain.contains(':') || domain.contains('/') {
        warnings.push(format!(
            "ExternalDomain {domain:?} holds a port or a path, so the audience is {url}; set \
             ExternalDomain to the host name alone and ExternalPort for the port"
        ));
    }
    warnings
}

/// The line for one user: from the loaded registry when the config loaded, else
/// from its key read on its own.
fn describe(user: &UserConfig, loaded: Option<&UserStatus>, now: u64) -> User {
    let (key_from, path) = match user.key() {
        KeySource::Path(path) => ("Path", Some(path.clone())),
        KeySource::Data(_) => ("KeyData", None),
    };
    let (key, error) = match loaded {
        Some(status) => (
            Some(key_details(
                status.key_format,
                status.bits,
                status.fingerprint.clone(),
                status.not_before.map(secs),
                status.not_after.map(secs),
                now,
            )),
            None,
        ),
        None => match read_key(user) {
            Ok(public) => {
                let validity = public.validity();
                (
                    Some(key_details(
                        public.format(),
                        public.bits(),
                        public.fingerprint_hex(),
                        validity.map(|v| v.not_before),
                        validity.map(|v| v.not_after),
                        now,
                    )),
                    None,
                )
            }
            Err(error) => (None, Some(with_hint(&error))),
        },
    };
    User {
        id: user.id().to_owned(),
        written_id: user.written_id().map(str::to_owned),
        key_from,
        path,
        key,
        error,
        memberships: user.memberships(),
    }
}

fn key_details(
    format: KeyFormat,
    bits: usize,
    fingerprint: String,
    not_before: Option<u64>,
    not_after: Option<u64>,
    now: u64,
) -> Key {
    Key {
        format: format.name(),
        bits,
        fingerprint,
        not_before: not_before.map(rfc3339),
        not_after: not_after.map(rfc3339),
        days_left: not_after.map(|end| (end as i64 - now as i64).div_euclid(DAY as i64)),
        zitadel_reads_it: format.zitadel_reads_it(),
        window: not_before.zip(not_after),
    }
}

/// The user's key, read as the registry reads it, with the registry's errors.
fn read_key(user: &UserConfig) -> Result<PublicKey, ConfigError> {
    let (text, origin) = match user.key() {
        KeySource::Path(path) => {
            let text = read_small_file(path).map_err(|source| ConfigError::KeyFile {
                user: user.id().to_owned(),
                path: path.clone(),
                source,
            })?;
            (text, KeyOrigin::Path(path.clone()))
        }
        KeySource::Data(data) => (data.clone(), KeyOrigin::KeyData),
    };
    PublicKey::from_pem(&text).map_err(|source| ConfigError::Key {
        user: user.id().to_owned(),
        origin,
        source,
    })
}

/// A regular file of at most 64 KiB (a FIFO or a device named by mistake is an
/// error, not a hang).
fn read_small_file(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    let metadata = std::fs::metadata(path)?;
    if !metadata.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    if metadata.len() > 64 * 1024 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "larger than 64 KiB",
        ));
    }
    std::fs::read(path)
}

/// A key ZITADEL cannot read; a certificate outside its window or near its end.
fn key_warnings(user: &User, now: u64) -> Vec<String> {
    let mut warnings = Vec::new();
    let Some(key) = &user.key else {
        return warnings;
    };
    let origin = match &user.path {
        Some(path) => format!("Path {}", path.display()),
        None => "KeyData".to_owned(),
    };
    if !key.zitadel_reads_it {
        let input = user
            .path
            .as_ref()
            .map_or("key.pub".to_owned(), |p| p.display().to_string());
        let output = match input.strip_suffix(".pub") {
            Some(stem) => format!("{stem}.pkix.pub"),
            None => format!("{input}.pkix"),
        };
        warnings.push(format!(
            "system user `{}`, {origin}: the key is PKCS#1, which this crate reads but \
             ZITADEL cannot; convert it with `openssl rsa -RSAPublicKey_in -in {input} -pubout \
             -out {output}` and configure the result",
            user.id
        ));
    }
    if let Some((not_before, not_after)) = key.window {
        let (from, until) = (rfc3339(not_before), rfc3339(not_after));
        if now > not_after {
            warnings.push(format!(
                "system user `{}`, {origin}: the certificate expired at {until} ({} ago): \
                 every token of this user is refused; configure a renewed certificate",
                user.id,
                span(now - not_after)
            ));
        } else if not_after - now < EXPIRY_WARNING_DAYS * DAY {
            warnings.push(format!(
                "system user `{}`, {origin}: the certificate expires at {until} (in {}): \
                 configure a renewed certificate before then; tokens are refused from \
                 NotAfter on",
                user.id,
                span(not_after - now)
            ));
        }
        if now < not_before {
            warnings.push(format!(
                "system user `{}`, {origin}: the certificate is not valid before {from} (in \
                 {}): tokens of this user are refused until then",
                user.id,
                span(not_before - now)
            ));
        }
    }
    warnings
}

/// ZITADEL's variables set in this environment while `--env` was not given.
fn unread_environment() -> Vec<String> {
    [
        ENV_SYSTEM_API_USERS,
        ENV_EXTERNAL_DOMAIN,
        ENV_EXTERNAL_PORT,
        ENV_EXTERNAL_SECURE,
    ]
    .into_iter()
    .filter(|var| std::env::var_os(var).is_some())
    .map(|var| {
        format!(
            "{var} is set in this environment but not read; ZITADEL reads it: run with --env \
             to check what ZITADEL sees"
        )
    })
    .collect()
}

/// The error's message, and what to do where the message does not say it.
fn with_hint(error: &ConfigError) -> String {
    let hint = match error {
        ConfigError::Io { .. } => Some("check the path given to --config and its permissions"),
        ConfigError::KeyFile { .. } => Some(
            "check that it exists and is readable: a relative Path resolves next to the config \
             file, and in ZITADEL_SYSTEMAPIUSERS against the current folder",
        ),
        ConfigError::Key { source, .. } => match source {
            KeyError::Empty | KeyError::BadPem(_) | KeyError::BadDer { .. } => {
                Some("export the public key again: `openssl rsa -in key.pem -pubout -out key.pub`")
            }
            KeyError::TooLarge { .. } => Some("use a key of 2048 to 8192 bits"),
            _ => None,
        },
        ConfigError::InvalidAudience(_) => Some(
            "set ExternalDomain to the host name alone, ExternalPort and ExternalSecure for the rest",
        ),
        _ => None,
    };
    match hint {
        Some(hint) => format!("{error}; {hint}"),
        None => error.to_string(),
    }
}

fn print_text(report: &Report) {
    let env = if report.env {
        "with ZITADEL's environment variables"
    } else {
        "without ZITADEL's environment variables (--env reads them)"
    };
    println!("config: {}, {env}", report.config.display());
    if let Some(audience) = &report.audience {
        println!("audience: {}", audience.url);
        println!("  built from {}", audience.built);
        if !audience.from_environment.is_empty() {
            println!(
                "  from the environment: {}",
                audience.from_environment.join(", ")
            );
        }
    }
    if report.audience.is_some() {
        println!("users: {}", report.users.len());
    }
    for user in &report.users {
        println!("  {}", user_line(user, report.now));
    }
    print_list("warnings", &report.warnings);
    print_list("errors", &report.errors);
    let count = |n: usize, one: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {one}s")
        }
    };
    if report.loads {
        println!(
            "result: the config loads ({}, {})",
            count(report.users.len(), "user"),
            count(report.warnings.len(), "warning")
        );
    } else {
        println!(
            "result: the config does not load ({}); the layer refuses to start with it",
            count(report.errors.len(), "error")
        );
    }
}

fn print_list(title: &str, items: &[String]) {
    if items.is_empty() {
        println!("{title}: none");
    } else {
        println!("{title}: {}", items.len());
        for item in items {
            println!("  - {item}");
        }
    }
}

/// `id (written Id): Path p, PKIX, 2048 bits, sha256 ..., memberships ...`.
fn user_line(user: &User, now: u64) -> String {
    let mut parts = Vec::new();
    let mut id = user.id.clone();
    if let Some(written) = &user.written_id {
        id.push_str(&format!(" (written {written})"));
    }
    parts.push(match &user.path {
        Some(path) => format!("Path {}", path.display()),
        None => user.key_from.to_owned(),
    });
    if let Some(key) = &user.key {
        parts.push(key.format.to_owned());
        parts.push(format!("{} bits", key.bits));
        parts.push(format!("sha256 {}", key.fingerprint));
        if let Some((not_before, not_after)) = key.window {
            let left = if now > not_after {
                format!("expired {} ago", span(now - not_after))
            } else if now < not_before {
                format!("not valid for {} yet", span(not_before - now))
            } else {
                format!("{} left", span(not_after - now))
            };
            parts.push(format!(
                "certificate valid {} to {} ({left})",
                rfc3339(not_before),
                rfc3339(not_after)
            ));
        }
    }
    if user.error.is_some() {
        parts.push("key NOT LOADED (see the errors)".to_owned());
    }
    let memberships: Vec<String> = user.memberships.iter().map(membership).collect();
    parts.push(format!("memberships {}", memberships.join("; ")));
    format!("{id}: {}", parts.join(", "))
}

/// `System: SYSTEM_OWNER`, `IAM 123: IAM_OWNER`.
fn membership(membership: &Membership) -> String {
    let on = membership
        .aggregate_id
        .as_deref()
        .map_or(String::new(), |id| format!(" {id}"));
    let roles = if membership.roles.is_empty() {
        "no roles".to_owned()
    } else {
        membership.roles.join(", ")
    };
    format!("{}{on}: {roles}", membership.member_type)
}
