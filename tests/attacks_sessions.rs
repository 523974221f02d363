#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Issue 9 item 5, DESIGN 3.2 invariant 8: an `Mcp-Session-Id` is bound to the caller it was
//! issued to. Bob holds a valid token of his own (from the real IdP) and Alice's session id;
//! nothing he does with it reaches or ends her session, and every refusal looks exactly like
//! the answer for a session that does not exist.

mod support {
    pub mod gateway;
    pub mod idp;
    pub mod slow_backend;
}

use serde_json::{Value, json};
use support::gateway::{Setup, TestGateway, message_of};
use support::idp::Idp;

const VERSION: &str = support::gateway::SESSION_VERSION;

struct World {
    _idp: Idp,
    gateway: TestGateway,
    alice: String,
    bob: String,
}

async fn world() -> World {
    let idp = Idp::start().await;
    let gateway = TestGateway::start(&idp, Setup::default()).await;
    let alice = idp.user_token("alice", "mcp", &gateway.mcp_url()).await;
    let bob = idp.user_token("bob", "mcp", &gateway.mcp_url()).await;
    World {
        _idp: idp,
        gateway,
        alice,
        bob,
    }
}

/// `initialize` + `notifications/initialized` as `token`; returns the session id.
async fn open_session(gateway: &TestGateway, token: &str) -> String {
    support::gateway::open_session(&gateway.mcp_url(), token).await
}

/// One request to `gateway` carrying `Mcp-Session-Id: session`: (status, body).
async fn in_session(
    gateway: &TestGateway,
    token: &str,
    session: &str,
    method: reqwest::Method,
    body: Option<Value>,
) -> (u16, String) {
    support::gateway::in_session(&gateway.mcp_url(), token, session, method, body).await
}

fn tools_list() -> Option<Value> {
    Some(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
}

/// What anyone gets for a session id that does not exist.
async fn unknown_session_answer(world: &World) -> (u16, String) {
    let made_up = uuid::Uuid::new_v4().to_string();
    in_session(
        &world.gateway,
        &world.bob,
        &made_up,
        reqwest::Method::POST,
        tools_list(),
    )
    .await
}

async fn assert_alice_session_answers(world: &World, session: &str) {
    let (status, body) = in_session(
        &world.gateway,
        &world.alice,
        session,
        reqwest::Method::POST,
        tools_list(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(message_of(&body)["result"]["tools"].is_array(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bob_cannot_use_alices_session_id() {
    let world = world().await;
    let session = open_session(&world.gateway, &world.alice).await;

    let (status, body) = in_session(
        &world.gateway,
        &world.bob,
        &session,
        reqwest::Method::POST,
        tools_list(),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    // Indistinguishable from a session that does not exist: a leaked id tells Bob nothing.
    let unknown = unknown_session_answer(&world).await;
    assert_eq!((status, body.clone()), unknown);
    let error = message_of(&body);
    assert_eq!(error["jsonrpc"], "2.0", "{body}");
    assert_eq!(error["error"]["code"], -32600, "{body}");
    assert!(error.get("result").is_none(), "{body}");

    // Notifications are refused the same way, and Alice's session is unharmed.
    let (status, _) = in_session(
        &world.gateway,
        &world.bob,
        &session,
        reqwest::Method::POST,
        Some(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})),
    )
    .await;
    assert_eq!(status, 404);
    assert_alice_session_answers(&world, &session).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bob_cannot_delete_alices_session() {
    let world = world().await;
    let session = open_session(&world.gateway, &world.alice).await;

    let refused = in_session(
        &world.gateway,
        &world.bob,
        &session,
        reqwest::Method::DELETE,
        None,
    )
    .await;
    assert_eq!(refused.0, 404, "{}", refused.1);
    assert_eq!(refused, unknown_session_answer(&world).await);
    assert_alice_session_answers(&world, &session).await;

    // Alice can end her own session; afterwards it is gone for her too.
    let (status, body) = in_session(
        &world.gateway,
        &world.alice,
        &session,
        reqwest::Method::DELETE,
        None,
    )
    .await;
    assert!((200..300).contains(&status), "{status} {body}");
    let (status, body) = in_session(
        &world.gateway,
        &world.alice,
        &session,
        reqwest::Method::POST,
        tools_list(),
    )
    .await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bob_cannot_open_alices_event_stream() {
    let world = world().await;
    let session = open_session(&world.gateway, &world.alice).await;
    // GET opens the session's server-to-client SSE stream (where its notifications go).
    let response = reqwest::Client::new()
        .get(world.gateway.mcp_url())
        .bearer_auth(&world.bob)
        .header("accept", "text/event-stream")
        .header("mcp-protocol-version", VERSION)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    // Alice's own GET opens it (the stream stays open: only the status is read).
    let response = reqwest::Client::new()
        .get(world.gateway.mcp_url())
        .bearer_auth(&world.alice)
        .header("accept", "text/event-stream")
        .header("mcp-protocol-version", VERSION)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    drop(response);
    assert_alice_session_answers(&world, &session).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_keeps_her_session_with_a_fresh_token() {
    // The binding is to the user (issuer + subject), not to one token: a refreshed token works.
    let idp = Idp::start().await;
    let gateway = TestGateway::start(&idp, Setup::default()).await;
    let first = idp.user_token("alice", "mcp", &gateway.mcp_url()).await;
    let session = open_session(&gateway, &first).await;
    let second = idp.user_token("alice", "mcp", &gateway.mcp_url()).await;
    assert_ne!(first, second);
    let (status, body) = in_session(
        &gateway,
        &second,
        &session,
        reqwest::Method::POST,
        tools_list(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// MCP forbids reusing an id in flight in a session, and rmcp would park the earlier request
/// for good (RMCP-SESSIONS.md section 1): the reuse is answered at once with a JSON-RPC error,
/// the first call still gets its own answer, and the id is free again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_reused_while_in_flight_is_refused_at_once_and_the_first_call_is_answered() {
    let idp = Idp::start().await;
    let backend = support::slow_backend::SlowBackend::start().await;
    let target = json!({
        "name": "slow", "http": {"baseUrl": backend.url},
        "tools": [{"name": "wait", "inputSchema": {"type": "object"}, "http": {"method": "POST", "path": "/slow"}}]
    });
    let gateway = TestGateway::start(
        &idp,
        Setup {
            targets: vec![("slow.json", target)],
            ..Setup::default()
        },
    )
    .await;
    let alice = idp.user_token("alice", "mcp", &gateway.mcp_url()).await;
    let session = open_session(&gateway, &alice).await;
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                      "params": {"name": "slow___wait", "arguments": {}}});

    let first = {
        let (gateway_url, alice, session, call) = (
            gateway.mcp_url(),
            alice.clone(),
            session.clone(),
            call.clone(),
        );
        tokio::spawn(async move {
            let response = reqwest::Client::new()
                .post(gateway_url)
                .bearer_auth(alice)
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", VERSION)
                .header("mcp-session-id", session)
                .json(&call)
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        })
    };
    // The first call is at the backend: id 7 is in flight.
    backend.received.notified().await;
    let (status, body) = in_session(
        &gateway,
        &alice,
        &session,
        reqwest::Method::POST,
        Some(call.clone()),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["id"], 7, "{body}");
    assert_eq!(error["error"]["code"], -32600, "{body}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already in use"),
        "{body}"
    );

    backend.release.notify_one();
    let (status, body) = first.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(message_of(&body)["id"], 7, "{body}");
    assert!(
        message_of(&body)["result"]["structuredContent"]["ok"] == true,
        "{body}"
    );

    // Answered: the id may be used again.
    backend.release.notify_one();
    let (status, body) = in_session(
        &gateway,
        &alice,
        &session,
        reqwest::Method::POST,
        Some(call),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(message_of(&body)["id"], 7, "{body}");
}
