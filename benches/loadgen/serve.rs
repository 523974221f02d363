//! The server side shared by `backend` and `oauth-provider`: one accept loop and the few
//! plain replies both give, so that each server's file holds only what it answers.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Every answer of the bench servers: small, whole bodies.
pub type HttpResponse = Response<Full<Bytes>>;

/// Accepts connections forever and answers each request with `handler` (HTTP/1.1 keep-alive,
/// TCP_NODELAY so that small answers leave at once). `who` prefixes accept errors.
pub async fn serve<H, F>(listener: TcpListener, who: &'static str, handler: H)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + 'static,
    F: Future<Output = HttpResponse> + Send + 'static,
{
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("{who}: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let answer = handler(request);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A response with this status, content type and body.
pub fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> HttpResponse {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The whole request body, or the 400 answer when it cannot be read.
pub async fn read_body(request: Request<Incoming>) -> Result<Bytes, HttpResponse> {
    match request.into_body().collect().await {
        Ok(body) => Ok(body.to_bytes()),
        Err(_) => Err(reply(
            StatusCode::BAD_REQUEST,
            "text/plain",
            Bytes::from_static(b"bad body"),
        )),
    }
}

/// What every bench server answers outside its own routes: `GET /healthz` (bench/run waits for
/// it) and 404 for anything else.
pub fn health_or_not_found(request: &Request<Incoming>) -> HttpResponse {
    if request.method() == Method::GET && request.uri().path() == "/healthz" {
        reply(StatusCode::OK, "text/plain", Bytes::from_static(b"ok"))
    } else {
        reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not found"),
        )
    }
}
