#![allow(clippy::unwrap_used, clippy::expect_used)]
//! DESIGN 3.2 invariant 9 and issue 12 ("sessions that cost little"): a legacy MCP session
//! with nothing open is closed in memory after `server.mcp_session_idle_seconds`, and one with
//! a call in flight is not, however long the call takes. With a vault the closed session comes
//! back from its record on its next request, still its owner's only; without one the client
//! is told to initialize again (404).

mod support {
    pub mod gateway;
    pub mod idp;
    pub mod slow_backend;
}

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::gateway::{Setup, TestGateway, in_session, message_of, open_session};
use support::idp::Idp;
use support::slow_backend::SlowBackend;

/// 32 bytes, base64.
const VAULT_KEY: &str = "c2VjcmV0LXZhdWx0LWtleS0zMi1ieXRlcy1sb25nISE=";

fn slow_target(backend: &SlowBackend) -> Value {
    json!({
        "name": "slow", "http": {"baseUrl": backend.url},
        "tools": [{"name": "wait", "inputSchema": {"type": "object"}, "http": {"method": "POST", "path": "/slow"}}]
    })
}

/// A gateway closing sessions after one idle second; `vault`: with a sled vault (opened
/// because an API key is configured).
async fn gateway(idp: &Idp, backend: &SlowBackend, vault: bool) -> TestGateway {
    let extra = if vault {
        "[vault]\npath = \"vault\"\nkey_file = \"vault.key\"\n[api_keys.weather]\nkey_file = \"weather.key\"\n"
    } else {
        ""
    };
    TestGateway::start(
        idp,
        Setup {
            targets: vec![("slow.json", slow_target(backend))],
            server_extra: "mcp_session_idle_seconds = 1",
            extra,
            files: vec![
                ("vault.key", VAULT_KEY.to_string()),
                ("weather.key", "weather-api-key".to_string()),
            ],
            ..Setup::default()
        },
    )
    .await
}

/// Waits until the gateway reports `closed` sessions closed idle so far and `count` held in
/// memory.
async fn until_sessions(gateway: &TestGateway, closed: usize, count: usize) {
    let wanted = [
        format!("portcullis_mcp_sessions_closed_idle_total {closed}\n"),
        format!("portcullis_mcp_sessions_in_memory {count}\n"),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = reqwest::get(format!("{}/metrics", gateway.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if wanted.iter().all(|line| metrics.contains(line)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never {closed} closed and {count} in memory:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn tools_list(id: u64) -> Option<Value> {
    Some(json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"}))
}

/// Starts `slow___wait` in `session`; the answer (status, body) once the backend lets go.
fn start_slow_call(
    gateway: &TestGateway,
    token: &str,
    session: &str,
) -> tokio::task::JoinHandle<(u16, String)> {
    let (url, token, session) = (gateway.mcp_url(), token.to_string(), session.to_string());
    tokio::spawn(async move {
        let call = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                          "params": {"name": "slow___wait", "arguments": {}}});
        in_session(&url, &token, &session, reqwest::Method::POST, Some(call)).await
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_leaves_memory_a_busy_one_stays_and_the_vault_brings_the_idle_one_back() {
    let idp = Idp::start().await;
    let backend = SlowBackend::start().await;
    let gateway = gateway(&idp, &backend, true).await;
    let alice = idp.user_token("alice", "mcp", &gateway.mcp_url()).await;
    let bob = idp.user_token("bob", "mcp", &gateway.mcp_url()).await;
    let busy = open_session(&gateway.mcp_url(), &alice).await;
    let idle = open_session(&gateway.mcp_url(), &alice).await;

    let call = start_slow_call(&gateway, &alice, &busy);
    backend.received.notified().await;
    // The idle session is closed; the one whose call is at the backend is not, although the
    // call has now been quiet for longer than the idle time.
    until_sessions(&gateway, 1, 1).await;
    backend.release.notify_one();
    let (status, body) = call.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        message_of(&body)["result"]["structuredContent"]["ok"],
        true,
        "{body}"
    );

    // Bob, holding the closed session's id, gets what an unknown id gets; Alice's next request
    // is served in it, restored from the vault.
    let (status, _) = in_session(
        &gateway.mcp_url(),
        &bob,
        &idle,
        reqwest::Method::POST,
        tools_list(2),
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = in_session(
        &gateway.mcp_url(),
        &alice,
        &idle,
        reqwest::Method::POST,
        tools_list(3),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let tools = &message_of(&body)["result"]["tools"];
    assert_eq!(tools[0]["name"], "slow___wait", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_vault_an_idle_session_is_gone_and_the_client_initializes_again() {
    let idp = Idp::start().await;
    let backend = SlowBackend::start().await;
    let gateway = gateway(&idp, &backend, false).await;
    let alice = idp.user_token("alice", "mcp", &gateway.mcp_url()).await;
    let session = open_session(&gateway.mcp_url(), &alice).await;
    until_sessions(&gateway, 1, 0).await;
    let (status, body) = in_session(
        &gateway.mcp_url(),
        &alice,
        &session,
        reqwest::Method::POST,
        tools_list(2),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let again = open_session(&gateway.mcp_url(), &alice).await;
    assert_ne!(again, session);
}
