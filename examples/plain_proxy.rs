//! A plain reverse proxy on hyper, with no authentication: the yardstick the
//! sidecar's reverse-proxy mode is measured against (`scripts/sidecar_load.sh`).
//!
//! ```text
//! cargo run --release --example plain_proxy -- --listen 127.0.0.1:0 --upstream http://127.0.0.1:3000
//! ```
//!
//! It forwards every request to the upstream with the same client the sidecar uses
//! (hyper-util's), drops hop-by-hop headers both ways, and prints
//! `listening on http://ADDR` once it accepts connections.

use std::{convert::Infallible, net::SocketAddr};

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use clap::Parser;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

/// Forward every request to an upstream, unauthenticated.
#[derive(Parser)]
struct Args {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The upstream, e.g. http://127.0.0.1:3000.
    #[arg(long)]
    upstream: Uri,
}

#[derive(Clone)]
struct Proxy {
    upstream: Uri,
    client: Client<HttpConnector, Body>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let proxy = Proxy {
        upstream: args.upstream,
        client: Client::builder(TokioExecutor::new()).build_http(),
    };
    let app = Router::new().fallback(forward).with_state(proxy);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

fn drop_hop_by_hop(headers: &mut HeaderMap) {
    for name in [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
    ] {
        headers.remove(name);
    }
}

async fn forward(State(proxy): State<Proxy>, request: Request) -> Result<Response, Infallible> {
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut uri = proxy.upstream.clone().into_parts();
    uri.path_and_query = path.parse().ok();
    let Ok(uri) = Uri::from_parts(uri) else {
        return Ok(StatusCode::BAD_REQUEST.into_response());
    };
    parts.uri = uri;
    drop_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::HOST);
    match proxy.client.request(Request::from_parts(parts, body)).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            drop_hop_by_hop(&mut parts.headers);
            Ok(Response::from_parts(parts, Body::new(body)))
        }
        Err(_) => Ok(StatusCode::BAD_GATEWAY.into_response()),
    }
}
