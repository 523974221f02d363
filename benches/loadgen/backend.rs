//! `loadgen backend`: the trivial JSON backend every scenario calls, so that the figures
//! measure the gateway and not a real tool. `POST /echo` answers the request body as JSON; with
//! `--require-bearer T`, `POST /echo-authed` does the same only for `Authorization: Bearer T`,
//! which proves that a gateway injected the vaulted token (scenario 2).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use clap::Args;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Method, Request, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::BoxError;
use crate::serve::{HttpResponse, health_or_not_found, read_body, reply, serve};
use crate::tokens::bearer;

#[derive(Args)]
pub struct BackendArgs {
    #[arg(long, default_value = "127.0.0.1:18081")]
    listen: SocketAddr,
    /// Runtime worker threads (1 = current-thread runtime).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Serve `POST /echo-authed`: like `/echo`, but 401 unless `Authorization: Bearer <this>`.
    #[arg(long)]
    require_bearer: Option<String>,
}

pub async fn run(args: BackendArgs) -> Result<(), BoxError> {
    let listener = TcpListener::bind(args.listen).await?;
    println!("backend listening on {}", listener.local_addr()?);
    // The whole header value, compared as bytes on every /echo-authed request.
    let required: Option<Arc<HeaderValue>> = match &args.require_bearer {
        Some(token) => Some(Arc::new(bearer(token)?)),
        None => None,
    };
    serve(listener, "backend", move |request| {
        echo_service(request, required.clone())
    })
    .await;
    Ok(())
}

async fn echo_service(
    request: Request<Incoming>,
    required_bearer: Option<Arc<HeaderValue>>,
) -> HttpResponse {
    let echo = |request: Request<Incoming>| async move {
        match read_body(request).await {
            Ok(body) => reply(StatusCode::OK, "application/json", body),
            Err(bad) => bad,
        }
    };
    match (request.method(), request.uri().path()) {
        (&Method::POST, "/echo") => echo(request).await,
        (&Method::POST, "/echo-authed") if required_bearer.is_some() => {
            let authorized = required_bearer
                .as_deref()
                .is_some_and(|required| request.headers().get(AUTHORIZATION) == Some(required));
            if authorized {
                echo(request).await
            } else {
                let mut response = reply(
                    StatusCode::UNAUTHORIZED,
                    "text/plain",
                    Bytes::from_static(b"missing or wrong bearer token"),
                );
                response.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
                response
            }
        }
        _ => health_or_not_found(&request),
    }
}
