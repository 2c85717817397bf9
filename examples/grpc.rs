//! A gRPC service (tonic) protected by system user tokens, as ZITADEL's own System
//! API is gRPC.
//!
//! ```text
//! cargo run --example grpc -- --config config.yaml [--listen 127.0.0.1:8081]
//! ```
//!
//! It serves the standard gRPC health service (`grpc.health.v1.Health`) as a stand-in
//! for a System API, behind [`SystemAuth::layer`] and a
//! [`RequireRoleLayer`] for `SYSTEM_OWNER`. A client sends the token as
//! `authorization: Bearer <token>` metadata. A gRPC request that is refused gets a
//! gRPC status in a trailers-only response: `grpc-status: 16` (UNAUTHENTICATED) for a
//! missing or bad token, `7` (PERMISSION_DENIED) for a missing role, with
//! `grpc-message` saying which check failed. For example, with
//! [grpcurl](https://github.com/fullstorydev/grpcurl):
//!
//! ```text
//! grpcurl -plaintext -H "authorization: Bearer $TOKEN" \
//!     127.0.0.1:8081 grpc.health.v1.Health/Check
//! ```
//!
//! It prints `listening on http://ADDR` once the port is open.

use std::{error::Error, io::Write as _, net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::Parser;
use tokio::net::TcpListener;
use zitadel_system_auth::SystemAuth;

#[path = "support/grpc.rs"]
mod grpc;

/// Serve a gRPC health service protected by system user tokens.
#[derive(Parser)]
struct Args {
    /// ZITADEL's runtime configuration file (YAML) with SystemAPIUsers.
    #[arg(long, value_name = "PATH")]
    config: PathBuf,
    /// The address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn Error>> {
    let auth = SystemAuth::builder()
        .config_file(&args.config)
        .env_overrides(true)
        .build()?;
    let listener = TcpListener::bind(args.listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    grpc::serve(auth, listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
