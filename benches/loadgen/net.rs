//! One keep-alive HTTP/1.1 exchange on a hyper client connection, with a timeout. Hyper's
//! low-level client (no pool, no redirects) keeps the load generator's own cost per call small
//! and lets each load connection be exactly one TCP connection.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::BoxError;
use crate::outcome::{Failure, err, excerpt};

/// Per-request timeout; a request that takes longer counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The sending half of one client connection.
pub type Sender = SendRequest<Full<Bytes>>;

/// Where requests go: address for the TCP connect, Host header and path.
#[derive(Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub host: HeaderValue,
    pub path: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, BoxError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or("only http:// URLs are supported")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr: SocketAddr = authority
            .parse()
            .map_err(|_| format!("{authority:?} is not an IP:port address"))?;
        Ok(Endpoint {
            addr,
            host: HeaderValue::from_str(authority)?,
            path: path.to_string(),
        })
    }

    /// A request to `path` on this host (the Host header set), to which headers can still be
    /// added.
    pub fn request(&self, method: Method, path: &str) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.host.clone())
    }
}

pub async fn connect(addr: SocketAddr) -> Result<Sender, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// A whole answer: what the verification needs and nothing more.
pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub session: Option<HeaderValue>,
    pub body: Bytes,
}

impl Reply {
    /// Anything but 200 is an error of kind `http-<status>`.
    pub fn expect_ok(&self) -> Result<(), Failure> {
        if self.status == StatusCode::OK {
            Ok(())
        } else {
            Err(err(
                &format!("http-{}", self.status.as_u16()),
                excerpt(&self.body),
            ))
        }
    }
}

/// Sends one request (keep-alive) and reads the whole body, with a timeout.
pub async fn exchange(
    sender: &mut Sender,
    request: Request<Full<Bytes>>,
) -> Result<Reply, Failure> {
    let work = async {
        sender
            .ready()
            .await
            .map_err(|e| err("transport", e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| err("transport", e.to_string()))?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let session = response.headers().get("mcp-session-id").cloned();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| err("transport", e.to_string()))?
            .to_bytes();
        Ok(Reply {
            status,
            content_type,
            session,
            body,
        })
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, work).await {
        Ok(result) => result,
        Err(_) => Err(err(
            "timeout",
            format!("no answer within {REQUEST_TIMEOUT:?}"),
        )),
    }
}
