//! A round-robin HTTP reverse proxy in front of gateway replicas: every request (not every
//! connection) goes to the next replica, so consecutive steps of one flow land on different
//! replicas, as behind a load balancer without sticky sessions. Bodies stream both ways (SSE
//! answers pass through as they come). Records which replica served each request.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

pub struct Proxy {
    /// `http://127.0.0.1:<port>`: the replicas' `public_url`.
    pub base: String,
    /// `(path, replica index)` of every request forwarded, in order.
    pub served: Arc<parking_lot::Mutex<Vec<(String, usize)>>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Shared {
    replicas: Arc<Vec<String>>,
    next: Arc<AtomicUsize>,
    served: Arc<parking_lot::Mutex<Vec<(String, usize)>>>,
}

/// A listener for the proxy, bound first so that the replicas can be told its URL.
pub async fn bind() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    (listener, base)
}

impl Proxy {
    /// Serves `listener`, forwarding to `replicas` (`host:port` each) in turn.
    pub fn start(listener: TcpListener, replicas: Vec<String>) -> Proxy {
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shared = Shared {
            replicas: Arc::new(replicas),
            next: Arc::default(),
            served: Arc::default(),
        };
        let served = shared.served.clone();
        let app = axum::Router::new().fallback(forward).with_state(shared);
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Proxy { base, served, task }
    }

    /// Which replicas served requests whose path starts with `prefix`.
    pub fn replicas_for(&self, prefix: &str) -> Vec<usize> {
        self.served
            .lock()
            .iter()
            .filter(|(path, _)| path.starts_with(prefix))
            .map(|(_, replica)| *replica)
            .collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(State(shared): State<Shared>, mut request: Request) -> Response {
    let index = shared.next.fetch_add(1, Ordering::Relaxed) % shared.replicas.len();
    let replica = &shared.replicas[index];
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    shared.served.lock().push((path.clone(), index));
    *request.uri_mut() = path.parse().unwrap();
    // The replica sees the Host the client used, as behind a real load balancer.
    let stream = match TcpStream::connect(replica.as_str()).await {
        Ok(stream) => stream,
        Err(e) => {
            return (StatusCode::BAD_GATEWAY, format!("replica {index}: {e}")).into_response();
        }
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    match sender.send_request(request).await {
        Ok(response) => response.map(Body::new),
        Err(e) => (StatusCode::BAD_GATEWAY, format!("replica {index}: {e}")).into_response(),
    }
}
