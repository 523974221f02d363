#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Legacy MCP sessions (`Mcp-Session-Id`, 2025-11-25) across replicas on one PostgreSQL
//! database (DESIGN 2.9, `mcp::shared_sessions`): a session issued by one replica is served by
//! the others, only for its owner (DESIGN 3.2 invariant 8), and ends everywhere on `DELETE`.

mod support {
    pub mod browser;
    pub mod downstream;
    pub mod gateway;
    pub mod idp;
    pub mod mcp;
    pub mod proxy;
    pub mod replicas;
}

use std::collections::BTreeSet;

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use support::downstream::text_of;
use support::gateway::{in_session, initialize_body, message_of, post_mcp};
use support::replicas::{Replicas, replicas};

async fn token(world: &Replicas, user: &str) -> String {
    world
        .inbound
        .user_token(user, "mcp", &format!("{}/mcp", world.proxy.base))
        .await
}

/// `initialize` on replica `index` as `token`; the session id.
async fn open_session(world: &Replicas, index: usize, token: &str) -> String {
    let response = post_mcp(
        &world.gateways[index].mcp_url(),
        Some(token),
        &initialize_body(),
    )
    .await;
    assert_eq!(response.status().as_u16(), 200);
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let _ = response.text().await.unwrap();
    session
}

fn tools_list(id: u64) -> Option<Value> {
    Some(json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rmcp_client_keeps_one_session_while_every_request_goes_to_another_replica() {
    let world = replicas(3).await;
    let token = token(&world, "alice").await;
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", world.proxy.base))
            .auth_header(token),
    );
    let client = ClientConfig::default().serve(transport).await.unwrap();
    for round in 0..6 {
        let tools = client.list_all_tools().await.unwrap();
        assert!(
            tools.iter().any(|t| t.name == "open___ping"),
            "round {round}"
        );
        let result = client
            .call_tool(CallToolRequestParams::new("open___ping").with_arguments(Default::default()))
            .await
            .unwrap();
        assert_ne!(
            result.is_error,
            Some(true),
            "round {round}: {}",
            text_of(&result)
        );
    }
    let served = world.proxy.served.lock().clone();
    let replicas: BTreeSet<usize> = served.iter().map(|(_, r)| *r).collect();
    assert_eq!(replicas, BTreeSet::from([0, 1, 2]), "{served:?}");
    assert!(served.len() >= 13, "initialize and 12 requests: {served:?}");
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_replica_serves_a_session_to_its_owner_only_and_forgets_it_after_delete() {
    // Replica 3 is only asked after the DELETE: it never held the session in memory.
    let world = replicas(4).await;
    let alice = token(&world, "alice").await;
    let bob = token(&world, "bob").await;
    let session = open_session(&world, 0, &alice).await;
    let on = |index: usize| world.gateways[index].mcp_url();

    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let (status, body) = in_session(
        &on(1),
        &alice,
        &session,
        reqwest::Method::POST,
        Some(initialized),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = in_session(
        &on(1),
        &alice,
        &session,
        reqwest::Method::POST,
        tools_list(2),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(message_of(&body)["result"]["tools"].is_array(), "{body}");

    // Bob holds a valid token and alice's id: a replica that never saw the session answers
    // him as for a session that does not exist.
    let made_up = uuid::Uuid::new_v4().to_string();
    let unknown = in_session(&on(2), &bob, &made_up, reqwest::Method::POST, tools_list(3)).await;
    assert_eq!(unknown.0, 404);
    let stolen = in_session(&on(2), &bob, &session, reqwest::Method::POST, tools_list(3)).await;
    assert_eq!(stolen, unknown);
    let stolen_delete = in_session(&on(2), &bob, &session, reqwest::Method::DELETE, None).await;
    assert_eq!(stolen_delete.0, 404);
    // ...and it is still alice's, on replica 2 too.
    let (status, body) = in_session(
        &on(2),
        &alice,
        &session,
        reqwest::Method::POST,
        tools_list(4),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Alice ends it on replica 1: the record is gone, so a replica that does not hold the
    // session in memory no longer takes it over.
    let (status, body) = in_session(&on(1), &alice, &session, reqwest::Method::DELETE, None).await;
    assert!(status == 200 || status == 202, "{status} {body}");
    let (status, _) = in_session(
        &on(1),
        &alice,
        &session,
        reqwest::Method::POST,
        tools_list(5),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = in_session(
        &on(3),
        &alice,
        &session,
        reqwest::Method::POST,
        tools_list(6),
    )
    .await;
    assert_eq!(status, 404);
}
