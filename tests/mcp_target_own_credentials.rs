#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `mcp` targets with the gateway's own credential and with `passthrough` (DESIGN 2.8, issue
//! 11): a real rmcp upstream that accepts only RS256 JWTs of a given issuer whose `aud` is its
//! own URL, the real gateway, two real authorization servers (the corporate IdP and the
//! downstream provider), rmcp's client as alice.

mod support {
    pub mod binary;
    pub mod browser;
    pub mod downstream;
    pub mod gateway;
    pub mod idp;
    pub mod mcp;
    pub mod upstream_mcp;
}

use rmcp::ServiceExt;
use rmcp::model::ClientConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use support::downstream::{API_RESOURCE, Client, World, call, world_on};
use support::idp::{Idp, decode_unverified};
use support::mcp::text_of;
use support::upstream_mcp::{RequireToken, Upstream};

const WHOAMI: &str =
    r#"[{"name": "whoami", "description": "Who is calling", "inputSchema": {"type": "object"}}]"#;

async fn world(targets: Vec<(&str, Value)>) -> World {
    let inbound = Idp::start().await;
    let downstream = Idp::spawn(&[]).await;
    world_on(
        inbound,
        downstream,
        "login",
        "",
        "",
        vec![],
        Some(API_RESOURCE),
        targets,
    )
    .await
}

/// The claims of every bearer token `upstream` received.
async fn tokens_seen(upstream: &Upstream) -> Vec<Value> {
    upstream
        .seen
        .lock()
        .await
        .iter()
        .filter_map(|s| s.authorization.as_deref())
        .map(|a| decode_unverified(a.strip_prefix("Bearer ").unwrap()).1)
        .collect()
}

/// A client of the gateway as `user`, with the token it sends.
async fn client_with_token(world: &World, user: &str) -> (Client, String) {
    let token = world
        .inbound
        .user_token(user, "mcp", &world.gateway.mcp_url())
        .await;
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(world.gateway.mcp_url())
            .auth_header(token.clone()),
    );
    (
        ClientConfig::default().serve(transport).await.unwrap(),
        token,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_needs_client_credentials_is_discovered_and_called_with_the_gateways_own_token()
 {
    // The upstream takes only the downstream provider's tokens for its own URL; the gateway
    // must fetch its tools/list with a client-credentials token before any user calls.
    let downstream = Idp::spawn(&[]).await;
    let upstream = Upstream::start(Some(RequireToken {
        public_key_pem: downstream.public_key_pem(),
        issuer: downstream.issuer.clone(),
    }))
    .await;
    let target = json!({
        "name": "svc",
        "mcp": {"url": upstream.url},
        "credentials": {"oauth": {"provider": "downstream", "grantType": "CLIENT_CREDENTIALS", "scopes": ["tools.read"]}}
    });
    let world = world_on(
        Idp::start().await,
        downstream,
        "login",
        "",
        "",
        vec![],
        Some(API_RESOURCE),
        vec![("svc.json", target)],
    )
    .await;
    let alice = world.client("alice").await;
    let names: Vec<String> = alice
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(names.contains(&"svc___whoami".to_string()), "{names:?}");
    let result = call(&alice, "svc___whoami").await;
    assert_ne!(result.is_error, Some(true), "{}", text_of(&result));

    // Listing and the call carried the provider's token for the server's URL (RFC 8707), the
    // gateway's own (no user's subject), never a corporate token.
    let seen = tokens_seen(&upstream).await;
    assert!(!seen.is_empty());
    for claims in &seen {
        assert_eq!(
            claims["iss"],
            Value::String(world.downstream.issuer.clone())
        );
        assert_eq!(claims["aud"], Value::String(upstream.url.clone()));
        assert_ne!(claims["sub"], json!("alice"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_passthrough_target_forwards_the_callers_own_token() {
    let upstream = Upstream::start(None).await;
    let tools: Value = serde_json::from_str(WHOAMI).unwrap();
    let world = world(vec![
        (
            "open.json",
            json!({"name": "open", "mcp": {"url": upstream.url, "passthrough": true}, "tools": tools}),
        ),
        (
            "closed.json",
            json!({"name": "closed", "mcp": {"url": upstream.url}, "tools": tools}),
        ),
    ])
    .await;
    let (alice, token) = client_with_token(&world, "alice").await;

    let result = call(&alice, "closed___whoami").await;
    assert_ne!(result.is_error, Some(true), "{}", text_of(&result));
    assert_eq!(result.structured_content.unwrap()["sub"], Value::Null);
    assert!(
        upstream
            .seen
            .lock()
            .await
            .iter()
            .all(|s| s.authorization.is_none()),
        "a target without passthrough forwarded a token (DESIGN 3.2 invariant 2)"
    );

    let result = call(&alice, "open___whoami").await;
    assert_ne!(result.is_error, Some(true), "{}", text_of(&result));
    assert_eq!(result.structured_content.unwrap()["sub"], json!("alice"));
    let forwarded: Vec<String> = upstream
        .seen
        .lock()
        .await
        .iter()
        .filter_map(|s| s.authorization.clone())
        .collect();
    assert!(!forwarded.is_empty());
    assert!(
        forwarded.iter().all(|a| *a == format!("Bearer {token}")),
        "the passthrough target sent something other than alice's own token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passed_through_token_the_server_refuses_is_explained_without_a_consent() {
    // A server that checks `aud` against its own URL refuses a token meant for the gateway:
    // the caller is told, nothing is refreshed and no consent is asked.
    let inbound = Idp::start().await;
    let upstream = Upstream::start(Some(RequireToken {
        public_key_pem: inbound.public_key_pem(),
        issuer: inbound.issuer.clone(),
    }))
    .await;
    let tools: Value = serde_json::from_str(WHOAMI).unwrap();
    let world = world_on(
        inbound,
        Idp::spawn(&[]).await,
        "login",
        "",
        "",
        vec![],
        Some(API_RESOURCE),
        vec![(
            "open.json",
            json!({"name": "open", "mcp": {"url": upstream.url, "passthrough": true}, "tools": tools}),
        )],
    )
    .await;
    let alice = world.client("alice").await;
    let result = call(&alice, "open___whoami").await;
    assert_eq!(result.is_error, Some(true));
    let text = text_of(&result);
    assert!(
        text.contains("HTTP 401") && !text.contains("/oauth2/connect/"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_together_with_credentials_is_refused_at_load_with_its_pointer() {
    let upstream = Upstream::start(None).await;
    let tools: Value = serde_json::from_str(WHOAMI).unwrap();
    let world = world(vec![(
        "both.json",
        json!({
            "name": "both",
            "mcp": {"url": upstream.url, "passthrough": true},
            "credentials": {"oauth": {"provider": "downstream", "grantType": "AUTHORIZATION_CODE"}},
            "tools": tools
        }),
    )])
    .await;
    let (catalog, problems) = portcullis::load_catalog(
        &world.gateway.state.config,
        &portcullis::catalog::Catalog::default(),
        &world.gateway.state.transport,
    )
    .await;
    assert!(catalog.get("both___whoami").is_none());
    let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("both.json at /mcp/passthrough") && p.contains("credentials")),
        "{problems:?}"
    );
}
