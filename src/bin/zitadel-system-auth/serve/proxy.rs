//! Reverse-proxy mode (`--upstream URL`): every request is decided first; an
//! accepted one is forwarded with the caller's two headers (client-sent
//! `x-zitadel-system-*` headers removed first, `Authorization` only with
//! `--forward-authorization`, hop-by-hop headers dropped both ways), and its body
//! streamed both ways. A refusal never reaches the upstream.

use std::net::SocketAddr;

use axum::{
    Router,
    body::Body,
    extract::{ConnectInfo, Request, State},
    http::{
        HeaderMap, HeaderName, HeaderValue, Response, StatusCode, Uri,
        header::{self, AUTHORIZATION},
        uri::{Authority, PathAndQuery, Scheme},
    },
    response::IntoResponse,
};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

use super::{ROLES_HEADER, Sidecar, USER_HEADER, strip_own_headers};

/// Where accepted requests go: `http://host:port` and an optional path prefix.
#[derive(Clone, Debug)]
pub struct Upstream {
    scheme: Scheme,
    authority: Authority,
    prefix: String,
}

impl Upstream {
    pub fn parse(url: &str) -> Result<Upstream, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("--upstream {url:?} is not a URL: {e}"))?;
        let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTP);
        if scheme != Scheme::HTTP {
            return Err(format!(
                "--upstream {url:?}: only http:// upstreams are supported (the sidecar runs beside the service)"
            ));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("--upstream {url:?} names no host"))?;
        let prefix = uri.path().trim_end_matches('/').to_owned();
        Ok(Upstream {
            scheme,
            authority,
            prefix,
        })
    }

    fn uri(&self, original: &Uri) -> Result<Uri, axum::http::Error> {
        let path = original.path_and_query().map_or("/", PathAndQuery::as_str);
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(format!("{}{path}", self.prefix))
            .build()
    }
}

#[derive(Clone)]
struct Proxy {
    sidecar: Sidecar,
    upstream: Upstream,
    forward_authorization: bool,
    client: Client<HttpConnector, Body>,
}

pub fn router(sidecar: Sidecar, upstream: Upstream, forward_authorization: bool) -> Router {
    let client = Client::builder(TokioExecutor::new()).build_http();
    Router::new().fallback(forward).with_state(Proxy {
        sidecar,
        upstream,
        forward_authorization,
        client,
    })
}

/// Headers that concern one connection only (RFC 9110, section 7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&listed) {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

async fn forward(
    State(proxy): State<Proxy>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    mut request: Request,
) -> Response<Body> {
    let caller = match proxy.sidecar.decide(&mut request, &[]) {
        Ok(caller) => caller,
        Err(refusal) => return *refusal,
    };
    let (mut parts, body) = request.into_parts();
    let uri = match proxy.upstream.uri(&parts.uri) {
        Ok(uri) => uri,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    let headers = &mut parts.headers;
    remove_hop_by_hop(headers);
    strip_own_headers(headers);
    if !proxy.forward_authorization {
        headers.remove(AUTHORIZATION);
    }
    headers.insert(USER_HEADER, caller.user_id);
    headers.insert(ROLES_HEADER, caller.roles);
    if let Some(host) = headers.remove(header::HOST) {
        headers.insert(HeaderName::from_static("x-forwarded-host"), host);
    }
    if let Ok(address) = HeaderValue::from_str(&client.ip().to_string()) {
        headers.append(HeaderName::from_static("x-forwarded-for"), address);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("http"),
    );
    parts.uri = uri;
    parts.extensions = Default::default();
    let upstream = Request::from_parts(parts, body);
    match proxy.client.request(upstream).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            remove_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Body::new(body))
        }
        Err(error) => {
            tracing::warn!(target: "zitadel_system_auth", "the upstream did not answer: {error}");
            (StatusCode::BAD_GATEWAY, "the upstream did not answer\n").into_response()
        }
    }
}
