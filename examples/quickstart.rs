//! The whole System API user flow in one command, on a fresh machine (no openssl,
//! no ZITADEL):
//!
//! ```text
//! cargo run --example quickstart            # walk through, then keep serving until Ctrl-C
//! cargo run --example quickstart -- --once  # walk through and exit (status 0 when all went as expected)
//! ```
//!
//! It does what ZITADEL's "Access ZITADEL System API" guide asks for, in a
//! temporary folder that is removed on exit:
//!
//! 1. makes an RSA 2048 key pair for the system user `system-user-1`;
//! 2. writes ZITADEL's runtime configuration with the public key under
//!    `SystemAPIUsers` (`ExternalDomain: localhost`, `ExternalSecure: false` and the
//!    free port it found as `ExternalPort`, so tokens must carry the audience
//!    `http://localhost:PORT`);
//! 3. serves the `server` example's routes on `127.0.0.1:PORT`;
//! 4. calls `POST /system/v1/instances/_search` without a token (401), then with a
//!    token signed by the private key (200), over real TCP, and prints both answers
//!    and a `curl` line to repeat the call.
//!
//! With `--once` the exit status is 0 only when the call without a token got 401
//! and the call with one got 200.

use std::{
    error::Error,
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::ExitCode,
};

use aws_lc_rs::{
    encoding::{AsDer, Pkcs8V1Der},
    rsa::{KeyPair as RsaKeyPair, KeySize},
    signature::KeyPair as _,
};
use clap::Parser;
use zitadel_system_auth::{
    SystemAuth,
    mint::{Mint, mint},
};

#[path = "support/app.rs"]
mod app;
#[path = "support/http.rs"]
mod http;

type BoxError = Box<dyn Error + Send + Sync>;

/// The system user the walkthrough configures.
const USER: &str = "system-user-1";
/// The System API call of ZITADEL's guide.
const SEARCH: &str = "/system/v1/instances/_search";

/// Walk through ZITADEL System API user authentication against a local service.
#[derive(Parser)]
struct Args {
    /// Exit after the walkthrough instead of serving until Ctrl-C; the exit status is
    /// 0 only when the call without a token got 401 and the call with one got 200.
    #[arg(long)]
    once: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args.once).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("error: the service did not answer 401 without a token and 200 with one");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the walkthrough; `Ok(true)` when both calls were answered as expected.
async fn run(once: bool) -> Result<bool, BoxError> {
    // Ctrl-C from here on stops the service and removes the temporary folder.
    let ctrl_c = app::shutdown_signal()?;
    let dir = tempfile::Builder::new()
        .prefix("zitadel-system-auth-quickstart-")
        .tempdir()?;

    // 1. The system user's key pair.
    let (private_pem, private_path) = make_key_pair(dir.path())?;

    // 2. A free port first: the audience tokens must carry includes it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let config_path = write_config(dir.path(), addr.port())?;
    let auth = SystemAuth::builder().config_file(&config_path).build()?;
    let audience = auth
        .audiences()
        .into_iter()
        .next()
        .ok_or("the service has no audience")?;
    println!("   so tokens must carry the audience {audience}");

    // 3. The service, as the `server` example runs it.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = app::router(&auth, "localhost");
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    println!();
    println!("3. The service listens on http://{addr}");

    // 4. The System API call, first without a token, then with one.
    let json = ("Content-Type", "application/json");
    let without = http::request(addr, "POST", SEARCH, &[json]).await?;
    println!();
    println!("4. POST {SEARCH} without a token:");
    show(&without);

    let token = mint(
        private_pem.as_bytes(),
        &Mint::new(USER, &audience),
        std::time::SystemTime::now(),
    )?;
    let bearer = format!("Bearer {token}");
    let with = http::request(addr, "POST", SEARCH, &[("Authorization", &bearer), json]).await?;
    println!();
    println!(
        "5. Signed a token with the private key (RS256; iss = sub = {USER}, \
         aud = {audience}, valid 1 hour) and called again:"
    );
    show(&with);

    let passed = without.status == 401 && with.status == 200;
    explain(&audience, &token, &without, &with);

    if once {
        println!();
        println!(
            "{}",
            if passed {
                "All as expected."
            } else {
                "NOT as expected."
            }
        );
    } else {
        println!();
        println!("Mint a fresh token:");
        println!(
            "  cargo run -q --example key2jwt -- --audience {audience} --key {} --issuer {USER}",
            private_path.display()
        );
        println!();
        println!("Serving until Ctrl-C (the temporary folder is removed then).");
        std::io::stdout().flush()?;
        ctrl_c.await;
    }

    let _ = stop.send(());
    server.await??;
    dir.close()?;
    Ok(passed)
}

/// Makes the system user's RSA 2048 key pair in `dir`: the private key stays with
/// the caller, the public key goes into the service's configuration. Returns the
/// private key's PEM text and path.
fn make_key_pair(dir: &Path) -> Result<(String, PathBuf), BoxError> {
    let pair = RsaKeyPair::generate(KeySize::Rsa2048)?;
    let private_der = AsDer::<Pkcs8V1Der>::as_der(&pair)?;
    let private_pem = pem::encode(&pem::Pem::new("PRIVATE KEY", private_der.as_ref()));
    let public_der = pair.public_key().as_der()?;
    let public_pem = pem::encode(&pem::Pem::new("PUBLIC KEY", public_der.as_ref()));
    let private_path = dir.join(format!("{USER}.pem"));
    let public_path = dir.join(format!("{USER}.pub"));
    write_private(&private_path, &private_pem)?;
    fs::write(&public_path, public_pem)?;
    println!("1. Made an RSA 2048 key pair for the system user `{USER}`:");
    println!(
        "     private key (stays with the caller): {}",
        private_path.display()
    );
    println!(
        "     public key (goes to the service):    {}",
        public_path.display()
    );
    Ok((private_pem, private_path))
}

/// Writes ZITADEL's runtime configuration for `http://localhost:PORT` into `dir`
/// and returns its path.
fn write_config(dir: &Path, port: u16) -> Result<PathBuf, BoxError> {
    let path = dir.join("config.yaml");
    let config = format!(
        "ExternalDomain: localhost\n\
         ExternalPort: {port}\n\
         ExternalSecure: false\n\
         SystemAPIUsers:\n  \
         - {USER}:\n      \
         Path: {USER}.pub\n"
    );
    fs::write(&path, &config)?;
    println!();
    println!(
        "2. Wrote ZITADEL's runtime configuration to {}:",
        path.display()
    );
    for line in config.lines() {
        println!("     {line}");
    }
    Ok(path)
}

/// Says what happened and how to repeat the call.
fn explain(audience: &str, token: &str, without: &http::Reply, with: &http::Reply) {
    println!();
    println!("What happened:");
    println!("  - The service read `{USER}`'s public key from the SystemAPIUsers configuration.");
    println!(
        "  - Without a token it answered {} (code 16, UNAUTHENTICATED, as ZITADEL does).",
        without.status
    );
    println!(
        "  - The token is a JWT the caller signs itself; the service checked the signature \
         with the public key, the audience ({audience}) and the times, and answered {}.",
        with.status
    );
    println!();
    println!("Repeat the call (the token is valid for 1 hour):");
    println!(
        "  curl --request POST --url {audience}{SEARCH} \\\n    \
         --header 'Authorization: Bearer {token}' \\\n    \
         --header 'Content-Type: application/json'"
    );
}

/// Writes the private key readable by its owner only (where the platform allows).
fn write_private(path: &Path, pem: &str) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(pem.as_bytes())
}

/// Prints an answer: status line, `WWW-Authenticate` when present, and the body.
fn show(reply: &http::Reply) {
    println!("     {}", reply.status_line);
    if let Some(challenge) = reply.header("www-authenticate") {
        println!("     WWW-Authenticate: {challenge}");
    }
    let body = match serde_json::from_str::<serde_json::Value>(&reply.body) {
        Ok(json) => serde_json::to_string_pretty(&json).unwrap_or_else(|_| reply.body.clone()),
        Err(_) => reply.body.clone(),
    };
    for line in body.lines() {
        println!("     {line}");
    }
}
