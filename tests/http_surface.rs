#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The HTTP edge: Origin and size limits, malformed JSON-RPC, health, readiness and metrics.

mod support {
    pub mod backend;
    pub mod gateway;
    pub mod idp;
}

use serde_json::Value;
use support::backend::Backend;
use support::gateway::{Setup, TestGateway, initialize_body, post_mcp};
use support::idp::Idp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn setup() -> (Idp, Backend, TestGateway) {
    let idp = Idp::start().await;
    let backend = Backend::start().await;
    let gateway = TestGateway::start(
        &idp,
        Setup {
            targets: vec![("shop.json", backend.target("shop"))],
            extra: "",
            ..Setup::default()
        },
    )
    .await;
    (idp, backend, gateway)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_browser_origin_is_forbidden() {
    let (idp, _backend, gateway) = setup().await;
    let token = gateway.token(&idp).await;
    let response = reqwest::Client::new()
        .post(gateway.mcp_url())
        .bearer_auth(&token)
        .header("origin", "https://evil.example.com")
        .header("accept", "application/json, text/event-stream")
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let same_origin = reqwest::Client::new()
        .post(gateway.mcp_url())
        .bearer_auth(&token)
        .header("origin", &gateway.base)
        .header("accept", "application/json, text/event-stream")
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(same_origin.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_refused() {
    let idp = Idp::start().await;
    let gateway = TestGateway::start(
        &idp,
        Setup {
            extra: "",
            ..Setup::default()
        },
    )
    .await;
    let token = gateway.token(&idp).await;
    // Raw HTTP, announcing a 5 MiB body and sending none of it: the refusal must come from the
    // declared length alone. (Writing the whole body raced the gateway's early 413 and close:
    // the client could see a broken pipe instead of the answer.)
    let authority = gateway
        .mcp_url()
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_string();
    let mut stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\n\r\n",
        5 * 1024 * 1024
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 64];
    let read = stream.read(&mut answer).await.unwrap();
    let status_line = String::from_utf8_lossy(&answer[..read]).to_string();
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_rpc_gets_a_json_rpc_error() {
    let (idp, _backend, gateway) = setup().await;
    let token = gateway.token(&idp).await;
    let response = reqwest::Client::new()
        .post(gateway.mcp_url())
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body("{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": ")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert!((400..500).contains(&status), "{status} {text}");
    let error: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error["error"]["code"], -32700, "{text}");
    assert_eq!(error["id"], Value::Null);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 1 column"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness() {
    let (_idp, _backend, gateway) = setup().await;
    let health = reqwest::get(format!("{}/healthz", gateway.base))
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let ready: Value = reqwest::get(format!("{}/readyz", gateway.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["inbound_keys_loaded"], true);
    assert_eq!(ready["targets"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_while_the_idp_keys_cannot_be_loaded() {
    let idp = Idp::start().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("targets")).unwrap();
    let toml = format!(
        "[server]\npublic_url = \"{base}\"\n[inbound]\ndiscovery_url = \"{dead_url}/.well-known/openid-configuration\"\nallowed_audiences = [\"http://127.0.0.1:9/x\"]\n[targets]\ndir = \"targets\"\nwatch = false\n"
    );
    let config = portcullis::config::Config::from_toml(
        &toml,
        std::path::Path::new("t.toml"),
        dir.path(),
        false,
    )
    .unwrap();
    let gateway = portcullis::Gateway::build(config).await.unwrap();
    let error = gateway.state.keys.refresh().await.unwrap_err().to_string();
    assert!(error.contains("fetching"), "{error}");
    tokio::spawn(gateway.serve(listener, std::future::pending()));
    let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    // Requests get 503 with Retry-After rather than a misleading 401.
    let token = idp
        .client_credentials_token(
            "mcp-client",
            "mcp-client-secret",
            "mcp",
            "http://127.0.0.1:9/x",
        )
        .await;
    let refused = post_mcp(&format!("{base}/mcp"), Some(&token), &initialize_body()).await;
    assert_eq!(refused.status().as_u16(), 503);
    assert!(refused.headers().contains_key("retry-after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_routes_do_not_exist_outside_dev_mode() {
    let (_idp, _backend, gateway) = setup().await;
    for path in ["/dev/jwks.json", "/dev/.well-known/openid-configuration"] {
        let response = reqwest::get(format!("{}{path}", gateway.base))
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 404, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_calls_and_refusals_without_identities_or_tokens() {
    let (idp, _backend, gateway) = setup().await;
    let token = gateway.token(&idp).await;
    let _ = post_mcp(&gateway.mcp_url(), Some("garbage"), &initialize_body()).await;
    let init = post_mcp(&gateway.mcp_url(), Some(&token), &initialize_body()).await;
    assert_eq!(init.status().as_u16(), 200);
    let metrics = reqwest::get(format!("{}/metrics", gateway.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("portcullis_auth_refused_total{reason=\"invalid_token\"}"),
        "{metrics}"
    );
    assert!(
        !metrics.contains(&token),
        "metrics must never contain tokens"
    );
    assert!(
        !metrics.contains("mcp-client"),
        "metrics must not name callers"
    );
}
