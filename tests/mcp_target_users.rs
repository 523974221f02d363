#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `mcp` targets with each user's own credential (DESIGN 2.8, issue 11): an upstream MCP
//! server (rmcp's) that accepts only RS256 JWTs of the downstream provider whose `aud` is its
//! own URL, the real gateway with its vault and consent flow, two real authorization servers
//! (the corporate IdP and the downstream provider), rmcp's client as alice and bob.

mod support {
    pub mod binary;
    pub mod browser;
    pub mod downstream;
    pub mod gateway;
    pub mod idp;
    pub mod mcp;
    pub mod upstream_mcp;
}

use serde_json::{Value, json};
use support::downstream::{API_RESOURCE, Client, World, call, consent_url, world_on};
use support::idp::{Idp, decode_unverified};
use support::mcp::text_of;
use support::upstream_mcp::{RequireToken, Upstream};

const TOOL: &str = "notes___whoami";

async fn world() -> (World, Upstream) {
    let inbound = Idp::start().await;
    let downstream = Idp::spawn(&[]).await;
    let upstream = Upstream::start(Some(RequireToken {
        public_key_pem: downstream.public_key_pem(),
        issuer: downstream.issuer.clone(),
    }))
    .await;
    // No `resource` in the credential: the RFC 8707 resource is the server's URL.
    let target = json!({
        "name": "notes",
        "mcp": {"url": upstream.url},
        "credentials": {"oauth": {"provider": "downstream", "grantType": "AUTHORIZATION_CODE", "scopes": ["tools.read"]}},
        "tools": [{"name": "whoami", "description": "Who is calling", "inputSchema": {"type": "object"}}]
    });
    let world = world_on(
        inbound,
        downstream,
        "login",
        "",
        "",
        vec![],
        Some(API_RESOURCE),
        vec![("notes.json", target)],
    )
    .await;
    (world, upstream)
}

/// `user`'s client after they linked `account` through the consent URL their first call got.
async fn linked(world: &World, user: &str, account: &str) -> Client {
    let client = world.client(user).await;
    let url = consent_url(&call(&client, TOOL).await, &world.gateway);
    assert_eq!(world.browser(user, account).get(&url).await.status, 200);
    client
}

/// (sub, session) as the upstream saw the call.
async fn whoami(client: &Client) -> (String, String) {
    let result = call(client, TOOL).await;
    assert_ne!(result.is_error, Some(true), "{}", text_of(&result));
    let seen = result.structured_content.unwrap();
    (
        seen["sub"].as_str().unwrap().to_string(),
        seen["session"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_reaches_the_server_as_themselves_on_their_own_session() {
    let (world, upstream) = world().await;
    let alice = linked(&world, "alice", "alice-gh").await;
    let (sub, alice_session) = whoami(&alice).await;
    assert_eq!(sub, "alice-gh");

    // Bob is asked for his own consent: alice's link is not his.
    let bob = world.client("bob").await;
    let first = call(&bob, TOOL).await;
    let bob_url = consent_url(&first, &world.gateway);
    assert_eq!(
        world.browser("bob", "bob-gh").get(&bob_url).await.status,
        200
    );
    let (sub, bob_session) = whoami(&bob).await;
    assert_eq!(sub, "bob-gh");
    assert_ne!(bob_session, alice_session, "sessions are never shared");

    // Alice's next call reuses her session.
    assert_eq!(whoami(&alice).await, ("alice-gh".into(), alice_session));

    // Every credential the server ever saw is the downstream provider's, for its own URL:
    // never a corporate token (DESIGN 3.2 invariant 2).
    let seen = upstream.seen.lock().await.clone();
    assert!(!seen.is_empty());
    for request in &seen {
        let Some(authorization) = &request.authorization else {
            continue;
        };
        let (_, claims) = decode_unverified(authorization.strip_prefix("Bearer ").unwrap());
        assert_eq!(
            claims["iss"],
            Value::String(world.downstream.issuer.clone())
        );
        assert_ne!(claims["iss"], Value::String(world.inbound.issuer.clone()));
        assert_eq!(claims["aud"], Value::String(upstream.url.clone()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_401_refreshes_once_and_the_call_succeeds_on_a_new_session() {
    let (world, upstream) = world().await;
    let alice = linked(&world, "alice", "alice-gh").await;
    let (_, before) = whoami(&alice).await;
    let tokens_before: Vec<String> = authorizations(&upstream).await;

    *upstream.reject_next.lock().await = 1;
    let (sub, after) = whoami(&alice).await;
    assert_eq!(sub, "alice-gh");
    assert_ne!(after, before, "the refreshed token opened a new session");
    let tokens_after = authorizations(&upstream).await;
    let fresh: Vec<&String> = tokens_after
        .iter()
        .filter(|t| !tokens_before.contains(t))
        .collect();
    assert!(!fresh.is_empty(), "the retry carried a refreshed token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_the_server_keeps_refusing_ends_in_an_explanation_not_a_consent_loop() {
    let (world, upstream) = world().await;
    let alice = linked(&world, "alice", "alice-gh").await;
    whoami(&alice).await;
    *upstream.reject_next.lock().await = 100;
    let result = call(&alice, TOOL).await;
    assert_eq!(result.is_error, Some(true));
    let text = text_of(&result);
    assert!(
        text.contains("HTTP 401") && !text.contains("/oauth2/connect/"),
        "{text}"
    );
}

/// Every distinct `Authorization` value the server received.
async fn authorizations(upstream: &Upstream) -> Vec<String> {
    let mut all: Vec<String> = upstream
        .seen
        .lock()
        .await
        .iter()
        .filter_map(|s| s.authorization.clone())
        .collect();
    all.sort();
    all.dedup();
    all
}
