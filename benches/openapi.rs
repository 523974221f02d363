//! OpenAPI targets (issue 11, DESIGN 2.8): `cargo bench --bench openapi`.
//!
//! Prints, from one run:
//! - loading a 1,000-operation document (JSON, every operation with a path parameter, query
//!   parameters and, for half, a `$ref`'d request body) into the catalog, median of several
//!   loads; goal <= 200 ms. Beside it, the same 1,000 tools written by hand as an HTTP target,
//!   loaded the same way: the ratio is what reading the document costs on top.
//! - one call of an OpenAPI tool vs the same call of a hand-mapped HTTP tool, both to one local
//!   HTTP server, interleaved rounds: calls/s, p50 and the ratio; goal: within noise (an OpenAPI
//!   target is compiled into an HTTP target, so the ratio should be ~1.0).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use portcullis::catalog::Catalog;
use portcullis::targets::{ToolCall, Transport};
use serde_json::{Map, Value, json};

const OPERATIONS: usize = 1_000;
const LOADS: usize = 7;
const ROUNDS: usize = 3;
const CALLS_PER_ROUND: usize = 3_000;

fn document(base: &str) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for i in 0..50 {
        schemas.insert(
            format!("Item{i}"),
            json!({"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string"}, "count": {"type": "integer", "minimum": 0},
                "tags": {"type": "array", "items": {"type": "string"}},
                "owner": {"$ref": "#/components/schemas/Owner"},
            }}),
        );
    }
    schemas.insert(
        "Owner".into(),
        json!({"type": "object", "properties": {"id": {"type": "string"}}}),
    );
    for i in 0..OPERATIONS / 2 {
        let id =
            json!({"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}});
        paths.insert(
            format!("/items{i}/{{id}}"),
            json!({
                "get": {"operationId": format!("getItem{i}"), "summary": format!("Item {i}"),
                        "parameters": [id, {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                                       {"name": "tags", "in": "query", "schema": {"type": "array", "items": {"type": "string"}}}]},
                "put": {"operationId": format!("putItem{i}"), "parameters": [id],
                        "requestBody": {"required": true, "content": {"application/json": {
                            "schema": {"$ref": format!("#/components/schemas/Item{}", i % 50)}}}}},
            }),
        );
    }
    json!({
        "openapi": "3.1.0", "info": {"title": "bench", "version": "1"},
        "servers": [{"url": base}], "paths": paths, "components": {"schemas": schemas},
    })
}

/// The GET half of [`document`]'s tools, written by hand, plus as many PUTs.
fn hand_written(base: &str) -> Value {
    let mut tools = Vec::new();
    for i in 0..OPERATIONS / 2 {
        tools.push(json!({
            "name": format!("getItem{i}"), "description": format!("Item {i}"),
            "inputSchema": {"type": "object", "required": ["id"], "properties": {
                "id": {"type": "integer"}, "limit": {"type": "integer"},
                "tags": {"type": "array", "items": {"type": "string"}}}},
            "http": {"method": "GET", "path": format!("/items{i}/{{id}}"), "query": ["limit", "tags"]},
        }));
        tools.push(json!({
            "name": format!("putItem{i}"),
            "inputSchema": {"type": "object", "required": ["id", "name"], "properties": {
                "id": {"type": "integer"}, "name": {"type": "string"},
                "count": {"type": "integer", "minimum": 0},
                "tags": {"type": "array", "items": {"type": "string"}},
                "owner": {"type": "object", "properties": {"id": {"type": "string"}}}}},
            "http": {"method": "PUT", "path": format!("/items{i}/{{id}}")},
        }));
    }
    json!({"name": "hand", "http": {"baseUrl": base}, "tools": tools})
}

fn write(dir: &Path, name: &str, value: &Value) {
    std::fs::write(dir.join(name), serde_json::to_vec(value).unwrap()).unwrap();
}

async fn median_load(dir: &Path, transport: &Transport) -> (Duration, Catalog) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..LOADS {
        let started = Instant::now();
        let (catalog, problems) = Catalog::load(dir, &Catalog::default(), transport).await;
        times.push(started.elapsed());
        assert!(problems.is_empty(), "{:?}", problems.first());
        last = Some(catalog);
    }
    times.sort();
    (times[LOADS / 2], last.unwrap())
}

async fn echo_server() -> String {
    let app = axum::Router::new().fallback(|| async { axum::Json(json!({"ok": true})) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// `CALLS_PER_ROUND` sequential calls of `name`; the per-call times.
async fn calls(catalog: &Catalog, name: &str, args: &Map<String, Value>) -> Vec<Duration> {
    let tool = catalog.get(name).unwrap();
    let mut times = Vec::with_capacity(CALLS_PER_ROUND);
    for i in 0..CALLS_PER_ROUND {
        let message_id = i.to_string();
        let call = ToolCall {
            tool: tool.index,
            qualified_name: &tool.qualified_name,
            target_name: &tool.target.name,
            gateway_id: "bench",
            message_id: &message_id,
            user_id: "https://idp.example.com#alice",
            args,
            progress: None,
            elicitation: None,
        };
        let started = Instant::now();
        let result = tool.target.runtime.invoke(&call, None).await;
        times.push(started.elapsed());
        assert!(result.is_ok(), "{name}: {result:?}");
    }
    times
}

fn p50(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let base = echo_server().await;
    let transport = Transport::new().unwrap();
    let root = tempfile::tempdir().unwrap();
    let (openapi_dir, hand_dir) = (root.path().join("openapi"), root.path().join("hand"));
    std::fs::create_dir_all(openapi_dir.join("specs")).unwrap();
    std::fs::create_dir_all(&hand_dir).unwrap();
    write(&openapi_dir.join("specs"), "bench.json", &document(&base));
    write(
        &openapi_dir,
        "api.json",
        &json!({"name": "api", "openapi": {"specFile": "specs/bench.json"}}),
    );
    write(&hand_dir, "hand.json", &hand_written(&base));

    let (openapi_load, openapi) = median_load(&openapi_dir, &transport).await;
    let (hand_load, hand) = median_load(&hand_dir, &transport).await;
    assert_eq!(openapi.tools().count(), OPERATIONS);
    assert_eq!(hand.tools().count(), OPERATIONS);
    println!("load, median of {LOADS}, {OPERATIONS} tools:");
    println!(
        "  OpenAPI document  {:>8.1} ms   (goal <= 200 ms: {})",
        openapi_load.as_secs_f64() * 1e3,
        if openapi_load <= Duration::from_millis(200) {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "  hand-written HTTP {:>8.1} ms   ratio OpenAPI / hand-written {:.2}",
        hand_load.as_secs_f64() * 1e3,
        openapi_load.as_secs_f64() / hand_load.as_secs_f64()
    );

    let Value::Object(args) = json!({"id": 7, "limit": 10, "tags": ["a", "b"]}) else {
        unreachable!()
    };
    // Warm both connection pools.
    calls(&openapi, "api___getItem3", &args).await;
    calls(&hand, "hand___getItem3", &args).await;
    let (mut openapi_times, mut hand_times) = (Vec::new(), Vec::new());
    let (mut openapi_total, mut hand_total) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        openapi_times.extend(calls(&openapi, "api___getItem3", &args).await);
        openapi_total += started.elapsed();
        let started = Instant::now();
        hand_times.extend(calls(&hand, "hand___getItem3", &args).await);
        hand_total += started.elapsed();
    }
    let count = (ROUNDS * CALLS_PER_ROUND) as f64;
    let (openapi_rate, hand_rate) = (
        count / openapi_total.as_secs_f64(),
        count / hand_total.as_secs_f64(),
    );
    println!(
        "one call (GET, path + query array), {ROUNDS} interleaved rounds of {CALLS_PER_ROUND}:"
    );
    println!(
        "  OpenAPI tool      {openapi_rate:>8.0} calls/s   p50 {:>6.1} us",
        p50(&mut openapi_times).as_secs_f64() * 1e6
    );
    println!(
        "  hand-mapped HTTP  {hand_rate:>8.0} calls/s   p50 {:>6.1} us",
        p50(&mut hand_times).as_secs_f64() * 1e6
    );
    println!(
        "  ratio OpenAPI / hand-mapped {:.3} (goal: within noise, ~1.0)",
        openapi_rate / hand_rate
    );
}
