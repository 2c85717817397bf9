//! `serve`: the crate's verifier as an auth sidecar for services in any language,
//! behind nginx (`auth_request`), Caddy (`forward_auth`), Traefik (ForwardAuth) or
//! Envoy (external authorization over gRPC), or as a reverse proxy in front of the
//! service itself.
//!
//! Every decision goes through the library's own request decision (`SystemAuth` as
//! tower-http's `ValidateRequest`, the same code as the layer), so the sidecar's
//! verdicts are the layer's. On an accepted request the upstream learns who called
//! from two headers, [`USER_HEADER`] and [`ROLES_HEADER`]; any copies a client sent
//! are removed first.

mod admin;
mod envoy;
mod forward;
mod proxy;

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use axum::{
    Router,
    body::Body,
    http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode},
    response::IntoResponse,
};
use tower_http::validate_request::ValidateRequest as _;
use zitadel_system_auth::{AuthError, SystemAuth, SystemUser};

/// The header that names the authenticated system user to the upstream.
pub const USER_HEADER: HeaderName = HeaderName::from_static("x-zitadel-system-user");
/// The header that lists the roles of the memberships that apply, comma-separated.
pub const ROLES_HEADER: HeaderName = HeaderName::from_static("x-zitadel-system-roles");
/// Client-sent headers with this prefix never reach the upstream.
const OWN_PREFIX: &str = "x-zitadel-system-";

/// Serve as an auth sidecar: forward-auth for nginx, Caddy and Traefik, Envoy's
/// external authorization over gRPC, or a reverse proxy.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// ZITADEL's runtime configuration file (YAML) with SystemAPIUsers.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Forward every accepted request to this service (reverse-proxy mode); without
    /// it, `/auth` answers proxies' forward-auth subrequests.
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
    /// A role every request needs (repeatable).
    #[arg(long = "require-role", value_name = "ROLE")]
    pub require_roles: Vec<String>,
    /// The instance that IAM memberships are matched against.
    #[arg(long, value_name = "ID")]
    pub instance_id: Option<String>,
    /// Serve /healthz, /readyz and /metrics on this address as well.
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// Forward the Authorization header to the upstream (reverse-proxy mode).
    #[arg(long)]
    pub forward_authorization: bool,
}

/// What every request handler shares.
#[derive(Clone)]
pub struct Sidecar {
    pub auth: SystemAuth,
    /// Roles every request needs.
    pub required: Arc<[String]>,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

/// A refusal, as the crate answers it (boxed: it is the rare path).
pub type Refused = Box<Response<Body>>;

fn refused(error: AuthError) -> Refused {
    Box::new(error.into_response())
}

/// Who an accepted request is: the values of the two headers.
pub struct Caller {
    pub user_id: HeaderValue,
    pub roles: HeaderValue,
}

impl Sidecar {
    /// Decides a request from its headers (`Authorization`, `x-zitadel-orgid`) with
    /// the library's request decision, then the required roles and `extra_roles`.
    /// A refusal is the crate's answer (body, `WWW-Authenticate`).
    pub fn decide<B>(
        &self,
        request: &mut Request<B>,
        extra_roles: &[String],
    ) -> Result<Caller, Refused> {
        let mut auth = self.auth.clone();
        auth.validate(request).map_err(Box::new)?;
        let Some(user) = request.extensions().get::<SystemUser>() else {
            return Err(refused(AuthError::MissingToken));
        };
        for role in self.required.iter().chain(extra_roles) {
            user.require_role(role).map_err(refused)?;
        }
        let mut roles: Vec<&str> = Vec::new();
        for role in user.applicable_memberships().flat_map(|m| &m.roles) {
            if !roles.contains(&role.as_str()) {
                roles.push(role);
            }
        }
        let value =
            |text: &str| HeaderValue::from_str(text).map_err(|_| refused(AuthError::Internal));
        Ok(Caller {
            user_id: value(user.user_id())?,
            roles: value(&roles.join(","))?,
        })
    }
}

/// Removes every client-sent `x-zitadel-system-*` header.
pub fn strip_own_headers(headers: &mut HeaderMap) {
    let own: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with(OWN_PREFIX))
        .cloned()
        .collect();
    for name in own {
        headers.remove(name);
    }
}

/// Runs the sidecar on a multi-threaded runtime; the exit status.
pub fn main(args: ServeArgs) -> u8 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return crate::args::EXIT_REFUSED;
        }
    };
    tracing_init();
    match runtime.block_on(run(args)) {
        Ok(()) => crate::args::EXIT_OK,
        Err(error) => {
            eprintln!("error: {error}");
            crate::args::EXIT_REFUSED
        }
    }
}

/// Logs to stderr at WARN and above (refusals are counted in /metrics instead).
fn tracing_init() {
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .finish();
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// Runs the sidecar until SIGTERM or Ctrl-C.
async fn run(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    // The recorder goes in before the SystemAuth is built: it takes its handles then.
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    let mut builder = SystemAuth::builder()
        .config_file(&args.config)
        .env_overrides(true);
    if let Some(instance) = &args.instance_id {
        builder = builder.instance_id(instance.clone());
    }
    let auth = builder.build()?;
    let sidecar = Sidecar {
        auth: auth.clone(),
        required: args.require_roles.clone().into(),
        metrics: Some(metrics),
    };
    let app: Router = match &args.upstream {
        Some(upstream) => proxy::router(
            sidecar.clone(),
            proxy::Upstream::parse(upstream)?,
            args.forward_authorization,
        ),
        None => forward::router(sidecar.clone())
            .merge(admin::router(sidecar.clone()))
            .merge(envoy::router(sidecar.clone())),
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let admin = match &args.admin_listen {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .map_err(|e| format!("cannot listen on {address}: {e}"))?,
        ),
        None => None,
    };
    let shutdown = crate::signals::shutdown()?;
    crate::signals::reload_on_hangup(auth)?;
    let address = listener.local_addr()?;
    if let Some(admin) = &admin {
        println!("admin listening on http://{}", admin.local_addr()?);
    }
    println!("listening on http://{address}");
    std::io::Write::flush(&mut std::io::stdout())?;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let main = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(wait(stopped.clone()));
    let admin = admin.map(|listener| {
        axum::serve(listener, admin::router(sidecar).into_make_service())
            .with_graceful_shutdown(wait(stopped))
    });
    let signal = async move {
        shutdown.await;
        eprintln!("shutting down");
        let _ = stop.send(true);
    };
    match admin {
        Some(admin) => {
            let (main, admin, ()) = tokio::join!(main.into_future(), admin.into_future(), signal);
            main?;
            admin?;
        }
        None => {
            let (main, ()) = tokio::join!(main.into_future(), signal);
            main?;
        }
    }
    eprintln!("stopped");
    Ok(())
}

async fn wait(mut stopped: tokio::sync::watch::Receiver<bool>) {
    while !*stopped.borrow() {
        if stopped.changed().await.is_err() {
            return;
        }
    }
}

/// A forward-auth answer may only be 200, 401 or 403 (nginx turns any other status
/// into a 500): every refusal but a missing role is a 401, with the crate's body.
pub fn forward_auth_status(mut response: Response<Body>) -> Response<Body> {
    if response.status() != StatusCode::FORBIDDEN {
        *response.status_mut() = StatusCode::UNAUTHORIZED;
    }
    response
}
