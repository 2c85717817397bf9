//! The examples' HTTP client: one request, its whole answer, through hyper-util's
//! client (HTTP/1.1 over a real TCP connection).
//!
//! Included with `#[path = "support/http.rs"] mod http;` (from `tests/it/`:
//! `#[path = "../../examples/support/http.rs"]`).

use std::{io, net::SocketAddr, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

/// How long one exchange may take, connect to last byte.
const TIMEOUT: Duration = Duration::from_secs(30);

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    /// The status line, e.g. `HTTP/1.1 401 Unauthorized`.
    pub status_line: String,
    /// The status code.
    pub status: u16,
    /// The header fields, names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body, as text.
    pub body: String,
}

impl Reply {
    /// The first value of the header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request with an empty body to `http://addr/path` and reads the whole
/// answer. `headers` are sent as given (e.g. `("Authorization", "Bearer ...")`).
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> io::Result<Reply> {
    tokio::time::timeout(TIMEOUT, exchange(addr, method, path, headers))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer in time"))?
}

async fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> io::Result<Reply> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Empty::new()).map_err(io::Error::other)?;
    let response = client.request(request).await.map_err(io::Error::other)?;
    let status = response.status();
    // `HTTP/1.1 401 Unauthorized`: the version, the code and its standard reason.
    let status_line = format!("{:?} {status}", response.version());
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value)
        })
        .collect();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(io::Error::other)?
        .to_bytes();
    Ok(Reply {
        status_line,
        status: status.as_u16(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
