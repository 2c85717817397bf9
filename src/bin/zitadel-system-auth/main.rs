//! `zitadel-system-auth`: an operator's command for ZITADEL System API users (feature
//! `cli`). Checks a config as the layer loads it, explains why a token is accepted
//! or refused, mints a token as ZITADEL's `key2jwt` does, measures how many
//! verifications per second a core takes, and serves as an auth sidecar for
//! services in any language (`serve`).
//!
//! Exit status: 0 success (the token is accepted, the config loads), 1 refused or
//! invalid (the config does not load), 2 a usage error or a file that cannot be
//! read.

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};

mod args;
mod bench;
mod check;
mod explain;
mod format;
mod mint;
mod serve;
mod signals;

/// Check a ZITADEL SystemAPIUsers config, explain a token's verdict, mint a token,
/// measure verification speed.
///
/// Options also take Go's single dash, as ZITADEL's own tools are invoked
/// (`-audience=URL`). Exit status: 0 success (token accepted, config loads), 1
/// refused or invalid, 2 usage error or a file that cannot be read.
#[derive(Debug, Parser)]
#[command(name = "zitadel-system-auth", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load a config as the layer does; print the audience, each user's key, the
    /// warnings and the errors.
    Check(check::CheckArgs),
    /// Run every check on a token, say what was expected and what it has, and give
    /// `verify`'s verdict.
    Explain(explain::ExplainArgs),
    /// Mint a token as ZITADEL's key2jwt does.
    Mint(mint::MintArgs),
    /// Measure verifications per second per core on this machine.
    Bench(bench::BenchArgs),
    /// Serve as an auth sidecar: forward-auth for nginx, Caddy and Traefik (`/auth`),
    /// Envoy's external authorization over gRPC, or a reverse proxy (`--upstream`).
    Serve(serve::ServeArgs),
    /// Print a shell completion script (e.g. `zitadel-system-auth completions bash
    /// > /etc/bash_completion.d/zitadel-system-auth`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let argv = args::go_style(std::env::args_os(), &Cli::command());
    let cli = Cli::parse_from(argv);
    let status = match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Explain(args) => explain::run(&args),
        Command::Mint(args) => mint::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Serve(args) => serve::main(args),
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(
                shell,
                &mut command,
                "zitadel-system-auth",
                &mut std::io::stdout(),
            );
            args::EXIT_OK
        }
    };
    ExitCode::from(status)
}
