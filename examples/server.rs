//! A stand-in for ZITADEL's System API, protected by system user tokens.
//!
//! ```text
//! cargo run --example server -- --config config.yaml [--listen 127.0.0.1:8080]
//! ```
//!
//! `config.yaml` is ZITADEL's runtime configuration (the whole file may be given;
//! only `SystemAPIUsers`, `ExternalDomain`, `ExternalPort` and `ExternalSecure` are
//! read), and the `ZITADEL_SYSTEMAPIUSERS`, `ZITADEL_EXTERNALDOMAIN`,
//! `ZITADEL_EXTERNALPORT` and `ZITADEL_EXTERNALSECURE` environment variables
//! override it, as in ZITADEL. For example:
//!
//! ```yaml
//! ExternalDomain: localhost
//! ExternalPort: 8080
//! ExternalSecure: false
//! SystemAPIUsers:
//!   - system-user-1:
//!       Path: system-user-1.pub   # relative to this file's folder
//! ```
//!
//! Once the port is open it prints `listening on http://ADDR` (the address actually
//! bound, useful with `--listen 127.0.0.1:0`). Routes:
//!
//! - `GET /healthz`: open, answers `ok`;
//! - `POST /system/v1/instances/_search`: needs a token, answers like ZITADEL's
//!   documentation, with the configured `ExternalDomain` as the instance's domain;
//! - `GET /whoami`: needs a token, answers the user id, its memberships and the
//!   roles that apply to the request.
//!
//! Call it with a token from the `key2jwt` example:
//!
//! ```text
//! TOKEN=$(cargo run -q --example key2jwt -- --audience http://localhost:8080 \
//!     --key system-user-1.pem --issuer system-user-1)
//! curl --request POST --url http://localhost:8080/system/v1/instances/_search \
//!     --header "Authorization: Bearer $TOKEN"
//! ```
//!
//! Ctrl-C (or SIGTERM) stops it after the requests in flight are answered. A bad
//! configuration is reported on stderr with a non-zero exit status.
//!
//! Key and config files are watched and reloaded by themselves; SIGHUP reloads at
//! once (`kill -HUP <pid>`), and the outcome goes to stderr. Logs go to stderr too,
//! filtered by `RUST_LOG` (default `info`).

use std::{error::Error, io::Write as _, path::PathBuf, process::ExitCode};

use clap::Parser;
use zitadel_system_auth::{Config, SystemAuth};

#[path = "support/app.rs"]
mod app;

/// Serve a stand-in for ZITADEL's System API, protected by system user tokens.
#[derive(Parser)]
struct Args {
    /// ZITADEL's runtime configuration file (YAML) with SystemAPIUsers.
    #[arg(long, value_name = "PATH")]
    config: PathBuf,
    /// The address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Don't watch the key and config files; reload only on SIGHUP.
    #[arg(long)]
    no_watch: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The crate's errors already name their cause; no chain to print.
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let auth = SystemAuth::builder()
        .config_file(&args.config)
        .env_overrides(true)
        .watch(!args.no_watch)
        .build()?;
    // The same configuration once more, for the domain the instance search reports.
    // Its warnings were logged by `build` already.
    let mut config = Config::from_file(&args.config)?;
    config.apply_env()?;
    let audiences = auth.audiences();
    eprintln!(
        "system users {:?}; tokens must carry the audience {}",
        auth.user_ids(),
        audiences.join(" or ")
    );

    let app = app::router(&auth, config.external_domain());
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr()?;
    let shutdown = app::shutdown_signal()?;
    reload_on_sighup(auth.clone())?;
    println!("listening on http://{addr}");
    std::io::stdout().flush()?;

    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            shutdown.await;
            eprintln!("shutting down");
        })
        .await?;
    eprintln!("stopped");
    Ok(())
}

/// Reloads the keys on SIGHUP, as daemons do. The reload reads files, so it runs
/// on the blocking pool, never on the threads that answer requests.
#[cfg(unix)]
fn reload_on_sighup(auth: SystemAuth) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let auth = auth.clone();
            let Ok(result) = tokio::task::spawn_blocking(move || auth.reload()).await else {
                eprintln!("SIGHUP: the reload panicked; keeping the last good keys");
                continue;
            };
            match result {
                Ok(report) => eprintln!(
                    "SIGHUP: reloaded, generation {}{}{}",
                    report.generation,
                    if report.changed {
                        ""
                    } else {
                        " (nothing changed)"
                    },
                    if report.problems.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; kept the last good key for: {}",
                            report.problems.join("; ")
                        )
                    }
                ),
                Err(error) => {
                    eprintln!("SIGHUP: reload failed, keeping the last good keys: {error}")
                }
            }
        }
    });
    Ok(())
}

#[cfg(not(unix))]
fn reload_on_sighup(_auth: SystemAuth) -> std::io::Result<()> {
    Ok(())
}
