//! Mints a ZITADEL system user token, like ZITADEL's `key2jwt` tool.
//!
//! ```text
//! cargo run -q --example key2jwt -- --audience https://custom-domain.com \
//!     --key system-user-1.pem --issuer system-user-1 [--lifetime 3600] \
//!     [--algorithm RS256|PS256] [--output PATH]
//! ```
//!
//! The flags are also read the way ZITADEL's tools are invoked, with Go's single
//! dash: `-audience=https://custom-domain.com -key=system-user-1.pem
//! -issuer=system-user-1`.
//!
//! Prints the token and a newline on stdout, nothing else, so it can be captured:
//! `TOKEN=$(cargo run -q --example key2jwt -- ...)`; `--output PATH` writes them to a
//! file instead. The token has the header `{"alg":"RS256","typ":"JWT"}` and the
//! claims `iss` and `sub` (the issuer), `aud` (the audience), `iat` (now) and `exp`
//! (now plus the lifetime, in seconds), signed with the private key: PEM as
//! `openssl genrsa -out system-user-1.pem 2048` writes it, PKCS#1
//! (`RSA PRIVATE KEY`) or PKCS#8 (`PRIVATE KEY`).
//!
//! The audience must be exactly the service's external URL (`BuildHTTP` of
//! `ExternalDomain`, `ExternalPort`, `ExternalSecure`): `https://custom-domain.com`,
//! or `http://localhost:8080` without TLS on port 8080. No trailing slash.
//!
//! A key that cannot sign (a public key, an encrypted or non-RSA key, a damaged
//! file) is reported on stderr, without any of its content, with a non-zero exit
//! status. This is the `mint` subcommand of the `zitadel-system-auth` command
//! (feature `cli`), whose code it shares, on the library's `mint` module.

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser};

#[path = "../src/bin/zitadel-system-auth/args.rs"]
mod args;
#[path = "../src/bin/zitadel-system-auth/mint.rs"]
mod mint;

/// Mint a ZITADEL system user token (a JWT signed with the user's RSA key), as
/// ZITADEL's key2jwt does.
#[derive(Parser)]
#[command(name = "key2jwt")]
struct Cli {
    #[command(flatten)]
    mint: mint::MintArgs,
}

fn main() -> ExitCode {
    let argv = args::go_style(std::env::args_os(), &Cli::command());
    ExitCode::from(mint::run(&Cli::parse_from(argv).mint))
}
