//! A real HTTP API on a loopback port, playing the downstream service behind HTTP targets.
//! It records the headers of every request so tests can check what the gateway forwarded.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::Mutex;

#[derive(Clone, Default)]
pub struct Seen {
    pub requests: Arc<Mutex<Vec<HeaderMap>>>,
}

pub struct Backend {
    pub url: String,
    pub seen: Seen,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn headers_json(headers: &HeaderMap) -> Value {
    let map: Map<String, Value> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                Value::String(v.to_str().unwrap_or("").to_string()),
            )
        })
        .collect();
    Value::Object(map)
}

async fn echo(
    State(seen): State<Seen>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> impl IntoResponse {
    seen.requests.lock().await.push(headers.clone());
    Json(json!({"received": body, "headers": headers_json(&headers)}))
}

async fn item(
    State(seen): State<Seen>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> impl IntoResponse {
    seen.requests.lock().await.push(headers.clone());
    Json(json!({"id": id, "query": query, "headers": headers_json(&headers)}))
}

async fn status(Path(code): Path<u16>) -> impl IntoResponse {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        format!("backend says {code}: {}", "detail ".repeat(1000)),
    )
}

async fn big() -> impl IntoResponse {
    "x".repeat(2 * 1024 * 1024)
}

async fn hang() -> impl IntoResponse {
    std::future::pending::<()>().await;
    "never"
}

async fn array() -> impl IntoResponse {
    Json(json!([1, 2, 3]))
}

async fn text() -> impl IntoResponse {
    "plain words"
}

async fn sum(Query(q): Query<HashMap<String, String>>) -> impl IntoResponse {
    let a: i64 = q.get("a").and_then(|v| v.parse().ok()).unwrap_or(0);
    let b: i64 = q.get("b").and_then(|v| v.parse().ok()).unwrap_or(0);
    Json(json!({"sum": a + b}))
}

impl Backend {
    pub async fn start() -> Backend {
        let seen = Seen::default();
        let app = Router::new()
            .route("/api/echo", post(echo))
            .route("/api/items/{id}", get(item))
            .route("/api/status/{code}", get(status))
            .route("/api/big", get(big))
            .route("/api/hang", get(hang))
            .route("/api/array", get(array))
            .route("/api/text", get(text))
            .route("/api/sum", get(sum))
            .with_state(seen.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/api", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Backend { url, seen, task }
    }

    /// A target file exposing the backend's routes as tools.
    pub fn target(&self, name: &str) -> Value {
        let obj = |props: Value, required: Value| json!({"type": "object", "properties": props, "required": required});
        json!({
            "name": name,
            "description": "test backend",
            "http": {"baseUrl": self.url, "headers": {"X-Static": "from-target"}, "timeoutMs": 2000, "maxResponseBytes": 65536},
            "tools": [
                {"name": "echo", "description": "echo the body",
                 "inputSchema": obj(json!({"text": {"type": "string"}, "count": {"type": "integer", "minimum": 1}, "trace": {"type": "string"}}), json!(["text"])),
                 "http": {"method": "POST", "path": "/echo", "headers": ["trace"]}},
                {"name": "get_item", "description": "one item",
                 "inputSchema": obj(json!({"id": {"type": "string"}, "tag": {"type": "array", "items": {"type": "string"}}}), json!(["id"])),
                 "http": {"method": "GET", "path": "/items/{id}", "query": ["tag"]}},
                {"name": "status", "inputSchema": obj(json!({"code": {"type": "integer"}}), json!(["code"])),
                 "http": {"method": "GET", "path": "/status/{code}"}},
                {"name": "big", "inputSchema": obj(json!({}), json!([])), "http": {"method": "GET", "path": "/big"}},
                {"name": "hang", "inputSchema": obj(json!({}), json!([])), "http": {"method": "GET", "path": "/hang"}},
                {"name": "array", "inputSchema": obj(json!({}), json!([])), "http": {"method": "GET", "path": "/array"}},
                {"name": "text", "inputSchema": obj(json!({}), json!([])), "http": {"method": "GET", "path": "/text"}},
                {"name": "sum", "inputSchema": obj(json!({"a": {"type": "integer"}, "b": {"type": "integer"}}), json!(["a", "b"])),
                 "http": {"method": "GET", "path": "/sum", "query": ["a", "b"]}}
            ]
        })
    }
}
