//! Mints a ZITADEL system user token, like ZITADEL's `key2jwt` tool.
//!
//! ```text
//! cargo run -q --example key2jwt -- --audience https://custom-domain.com \
//!     --key system-user-1.pem --issuer system-user-1 [--lifetime 3600]
//! ```
//!
//! Prints the token and a newline on stdout, nothing else, so it can be captured:
//! `TOKEN=$(cargo run -q --example key2jwt -- ...)`. The token has the header
//! `{"alg":"RS256","typ":"JWT"}` and the claims `iss` and `sub` (the issuer),
//! `aud` (the audience), `iat` (now) and `exp` (now plus the lifetime, in seconds),
//! signed with the private key: PEM as `openssl genrsa -out system-user-1.pem 2048`
//! writes it, PKCS#1 (`RSA PRIVATE KEY`) or PKCS#8 (`PRIVATE KEY`).
//!
//! The audience must be exactly the service's external URL (`BuildHTTP` of
//! `ExternalDomain`, `ExternalPort`, `ExternalSecure`): `https://custom-domain.com`,
//! or `http://localhost:8080` without TLS on port 8080. No trailing slash.
//!
//! A key that cannot sign (a public key, an encrypted or non-RSA key, a damaged
//! file) is reported on stderr, without any of its content, with a non-zero exit
//! status.

use std::{io::Write as _, path::PathBuf, process::ExitCode};

use clap::Parser;

#[path = "support/token.rs"]
mod token;

/// Mint a ZITADEL system user token (an RS256 JWT signed with the user's key).
#[derive(Parser)]
struct Args {
    /// The audience: the service's external URL, e.g. https://custom-domain.com.
    #[arg(long, value_name = "URL")]
    audience: String,
    /// The system user's RSA private key (PEM, PKCS#1 or PKCS#8).
    #[arg(long, value_name = "PEM")]
    key: PathBuf,
    /// The system user id (the token's iss and sub).
    #[arg(long, value_name = "ID")]
    issuer: String,
    /// How long the token is valid, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    lifetime: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let pem = match std::fs::read(&args.key) {
        Ok(pem) => pem,
        Err(error) => {
            eprintln!("error: cannot read {}: {error}", args.key.display());
            return ExitCode::FAILURE;
        }
    };
    match token::mint(&pem, &args.issuer, &args.audience, args.lifetime) {
        Ok(token) => {
            if args.lifetime > 3600 {
                eprintln!(
                    "note: ZITADEL refuses tokens issued more than 1 hour ago, \
                     so this token works for 1 hour at most"
                );
            }
            match writeln!(std::io::stdout(), "{token}") {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("error: cannot write the token: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(error) => {
            eprintln!("error: {}: {error}", args.key.display());
            ExitCode::FAILURE
        }
    }
}
