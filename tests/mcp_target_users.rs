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
    pub mod upstream_python;
}

use serde_json::{Value, json};
use support::downstream::{API_RESOURCE, Client, World, call, consent_url, world_on};
use support::idp::{Idp, decode_unverified};
use support::mcp::text_of;
use support::upstream_mcp::{RequireToken, Upstream};
use support::upstream_python::PythonUpstream;

const TOOL: &str = "notes___whoami";

async fn world() -> (World, Upstream) {
    let inbound = Idp::start().await;
    let downstream = Idp::spawn(&[]).await;
    let upstream = upstream_checking(&downstream).await;
    let url = upstream.url.clone();
    (world_for(inbound, downstream, &url).await, upstream)
}

/// An rmcp upstream that accepts only `downstream`'s tokens for its own URL.
async fn upstream_checking(downstream: &Idp) -> Upstream {
    Upstream::start(Some(RequireToken {
        public_key_pem: downstream.public_key_pem(),
        issuer: downstream.issuer.clone(),
    }))
    .await
}

/// The gateway with the `notes` target on the upstream at `url`.
async fn world_for(inbound: Idp, downstream: Idp, url: &str) -> World {
    // No `resource` in the credential: the RFC 8707 resource is the server's URL.
    let target = json!({
        "name": "notes",
        "mcp": {"url": url},
        "credentials": {"oauth": {"provider": "downstream", "grantType": "AUTHORIZATION_CODE", "scopes": ["tools.read"]}},
        "tools": [{"name": "whoami", "description": "Who is calling", "inputSchema": {"type": "object"}}]
    });
    world_on(
        inbound,
        downstream,
        "login",
        "",
        "",
        vec![],
        Some(API_RESOURCE),
        vec![("notes.json", target)],
    )
    .await
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_sdk_server_sees_each_user_as_themselves() {
    let inbound = Idp::start().await;
    let downstream = Idp::spawn(&[]).await;
    let upstream = PythonUpstream::start(&downstream.issuer, &downstream.public_key_pem()).await;
    let world = world_for(inbound, downstream, &upstream.url).await;
    let seen = |result: &rmcp::model::CallToolResult| {
        assert_ne!(result.is_error, Some(true), "{}", text_of(result));
        result.structured_content.clone().unwrap()
    };
    let alice = linked(&world, "alice", "alice-gh").await;
    let bob = linked(&world, "bob", "bob-gh").await;
    let first = seen(&call(&alice, TOOL).await);
    let of_bob = seen(&call(&bob, TOOL).await);
    let again = seen(&call(&alice, TOOL).await);
    assert_eq!(first["sub"], "alice-gh");
    assert_eq!(of_bob["sub"], "bob-gh");
    for token in [&first, &of_bob] {
        assert_eq!(token["iss"], Value::String(world.downstream.issuer.clone()));
        assert_eq!(token["aud"], Value::String(upstream.url.clone()));
    }
    assert!(first["session"].is_string(), "{first}");
    assert_ne!(first["session"], of_bob["session"]);
    assert_eq!(first["session"], again["session"]);
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

/// The gateway with `notes` on the upstream at `url`, its provider configured by nothing but
/// the server's URL (`protected_resource`), the client id and secret.
async fn world_by_metadata(inbound: Idp, downstream: Idp, url: &str) -> World {
    let target = json!({
        "name": "notes",
        "mcp": {"url": url},
        "credentials": {"oauth": {"provider": "notes_as", "grantType": "AUTHORIZATION_CODE"}},
        "tools": [{"name": "whoami", "description": "Who is calling", "inputSchema": {"type": "object"}}]
    });
    let provider = format!(
        "\n[providers.notes_as]\nvendor = \"custom\"\nprotected_resource = \"{url}\"\n\
         client_id = \"{}\"\nclient_secret_file = \"downstream.secret\"\n\
         token_auth_method = \"client_secret_post\"\n",
        support::idp::DOWNSTREAM_CLIENT
    );
    world_on(
        inbound,
        downstream,
        "login",
        "",
        &provider,
        vec![],
        Some(API_RESOURCE),
        vec![("notes.json", target)],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_publishes_its_metadata_needs_no_hand_written_provider_endpoints() {
    let inbound = Idp::start().await;
    let downstream = Idp::spawn(&[]).await;
    let upstream = upstream_checking(&downstream).await;
    let world = world_by_metadata(inbound, downstream, &upstream.url).await;

    // The connect page sends the browser to the authorization server the server's metadata
    // names, for the scope it suggests, and the grant is for the server's own URL.
    let alice = linked(&world, "alice", "alice-gh").await;
    let (sub, _) = whoami(&alice).await;
    assert_eq!(sub, "alice-gh");
    let tokens = authorizations(&upstream).await;
    assert!(!tokens.is_empty());
    for token in tokens {
        let (_, claims) = decode_unverified(token.strip_prefix("Bearer ").unwrap());
        assert_eq!(
            claims["iss"],
            Value::String(world.downstream.issuer.clone())
        );
        assert_eq!(claims["aud"], Value::String(upstream.url.clone()));
        assert_eq!(claims["scope"], "tools.read", "{claims}");
    }

    // Bob still gives his own consent.
    let bob = world.client("bob").await;
    consent_url(&call(&bob, TOOL).await, &world.gateway);
}

/// A server whose metadata describes another resource (RFC 9728 section 3.3: what an
/// impostor, or a server relaying someone else's metadata, would publish).
async fn impostor(claimed: &'static str, issuer: String) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let metadata = json!({"resource": claimed, "authorization_servers": [issuer]});
    let app = axum::Router::new()
        .route(
            "/mcp",
            axum::routing::post(|| async { axum::http::StatusCode::UNAUTHORIZED }),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            axum::routing::get(move || async move { axum::Json(metadata) }),
        );
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_for_another_resource_is_refused_and_no_consent_is_offered() {
    let inbound = Idp::start().await;
    let downstream = Idp::spawn(&[]).await;
    let (url, _server) =
        impostor("https://mcp.victim.example/mcp", downstream.issuer.clone()).await;
    let world = world_by_metadata(inbound, downstream, &url).await;
    let alice = world.client("alice").await;
    let result = call(&alice, TOOL).await;
    assert_eq!(result.is_error, Some(true));
    let text = text_of(&result);
    assert!(
        text.contains("RFC 9728 section 3.3") && !text.contains("/oauth2/connect/"),
        "{text}"
    );
}
