//! `mint`: ZITADEL's `key2jwt`, with the library's [`mint`] function. Shared by the
//! `zitadel-system-auth` command and the `key2jwt` example (which includes this
//! file with `#[path]`, next to `args.rs`).
//!
//! Prints the token and a newline on standard output, nothing else, so that it can
//! be captured (`TOKEN=$(zitadel-system-auth mint ...)`), or writes them to
//! `--output PATH` (created with mode 0600 on Unix), as zitadel-tools' `key2jwt`
//! does. Notes go to standard error; a key that cannot sign is reported there
//! without any of its content.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    time::SystemTime,
};

use zitadel_system_auth::{
    Algorithm,
    mint::{Mint, mint},
};

use crate::args::{EXIT_OK, EXIT_REFUSED, EXIT_USAGE};

/// Mint a system user token: a JWT signed with the user's RSA private key, with
/// iss = sub = the user id, aud, iat (now) and exp (now plus the lifetime).
#[derive(Debug, Clone, clap::Args)]
pub struct MintArgs {
    /// The audience: the service's external URL, exactly (e.g.
    /// https://custom-domain.com; no trailing slash, no :443 with https).
    #[arg(long, value_name = "URL")]
    pub audience: String,
    /// The system user's RSA private key: PEM as `openssl genrsa` writes it
    /// (PKCS#1 `RSA PRIVATE KEY` or PKCS#8 `PRIVATE KEY`).
    #[arg(long, value_name = "PEM")]
    pub key: PathBuf,
    /// The system user id (the token's iss and sub).
    #[arg(long, value_name = "ID")]
    pub issuer: String,
    /// How long the token is valid, in seconds (ZITADEL refuses a token more than
    /// an hour after its iat, whatever exp says).
    #[arg(long, value_name = "SECONDS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub lifetime: u64,
    /// The signature algorithm: RS256 (key2jwt's) or PS256, the two ZITADEL
    /// accepts with an RSA key.
    #[arg(long, value_name = "ALG", default_value = "RS256", ignore_case = true,
          value_parser = ["RS256", "PS256"])]
    pub algorithm: String,
    /// Write the token (and a newline) to this file instead of standard output.
    #[arg(long, value_name = "PATH")]
    pub output: Option<PathBuf>,
}

/// Mints the token `args` describes; the exit status.
pub fn run(args: &MintArgs) -> u8 {
    let pem = match std::fs::read(&args.key) {
        Ok(pem) => pem,
        Err(error) => {
            eprintln!("error: cannot read {}: {error}", args.key.display());
            return EXIT_USAGE;
        }
    };
    let algorithm = match args.algorithm.to_ascii_uppercase().parse::<Algorithm>() {
        Ok(algorithm) => algorithm,
        Err(_) => {
            eprintln!("error: --algorithm must be RS256 or PS256");
            return EXIT_USAGE;
        }
    };
    let what = Mint {
        algorithm,
        lifetime: std::time::Duration::from_secs(args.lifetime),
        ..Mint::new(&args.issuer, &args.audience)
    };
    let token = match mint(&pem, &what, SystemTime::now()) {
        Ok(token) => token,
        Err(error) => {
            eprintln!("error: {}: {error}", args.key.display());
            return EXIT_REFUSED;
        }
    };
    if args.lifetime > 3600 {
        eprintln!(
            "note: ZITADEL refuses tokens issued more than 1 hour ago, \
             so this token works for 1 hour at most"
        );
    }
    if let Some(note) = audience_note(&args.audience) {
        eprintln!("note: {note}");
    }
    let written = match &args.output {
        Some(path) => write_private(path, &token),
        None => writeln!(std::io::stdout(), "{token}"),
    };
    match written {
        Ok(()) => EXIT_OK,
        Err(error) => {
            let target = args
                .output
                .as_deref()
                .map_or("standard output".to_owned(), |p| p.display().to_string());
            eprintln!("error: cannot write the token to {target}: {error}");
            EXIT_USAGE
        }
    }
}

/// What ZITADEL's exact audience comparison will make of `audience`, when it is
/// not what `BuildHTTP` ever builds.
fn audience_note(audience: &str) -> Option<String> {
    let trimmed = audience.trim_end_matches('/');
    if trimmed != audience && trimmed.contains("://") && !trimmed.ends_with(':') {
        return Some(format!(
            "the audience ends with '/': the service's audience never does, and aud is \
             compared exactly; did you mean {trimmed}?"
        ));
    }
    for (scheme, port) in [("https://", ":443"), ("http://", ":80")] {
        if let Some(host) = audience
            .strip_prefix(scheme)
            .and_then(|rest| rest.strip_suffix(port))
        {
            return Some(format!(
                "ZITADEL leaves the default port out of the audience ({scheme}{host}), \
                 and aud is compared exactly; did you mean {scheme}{host}?"
            ));
        }
    }
    None
}

/// Writes `token` and a newline to `path`, readable by its owner only on Unix (a
/// token is a credential).
fn write_private(path: &Path, token: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    writeln!(file, "{token}")?;
    file.sync_all()
}
