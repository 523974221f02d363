#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Per-user OAuth end to end (DESIGN 2.6, 3.2): a real inbound IdP, a second real
//! authorization server playing the downstream provider (rotating refresh tokens), a downstream
//! API that verifies the provider's JWTs, rmcp clients, and a scripted browser that walks the
//! consent URL with cookies and redirects.

mod support {
    pub mod browser;
    pub mod gateway;
    pub mod idp;
}

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use support::browser::Browser;
use support::gateway::{Setup, TestGateway};
use support::idp::{self, Idp};
use tokio::sync::Mutex;

/// The downstream API: accepts only RS256 JWTs from the downstream provider for its own URL.
#[derive(Clone)]
struct Api {
    public_key_pem: Arc<String>,
    issuer: Arc<String>,
    audience: Arc<Mutex<String>>,
    /// (subject, access token) of every accepted call.
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

async fn me(State(api): State<Api>, headers: HeaderMap) -> impl IntoResponse {
    let Some(token) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "no token"})));
    };
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(api.public_key_pem.as_bytes()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_issuer(&[api.issuer.as_str()]);
    let audience = api.audience.lock().await.clone();
    validation.set_audience(&[audience.as_str()]);
    match jsonwebtoken::decode::<Value>(token, &key, &validation) {
        Ok(data) => {
            let sub = data.claims["sub"].as_str().unwrap_or_default().to_string();
            api.seen.lock().await.push((sub.clone(), token.to_string()));
            (
                StatusCode::OK,
                Json(json!({"login": sub, "scope": data.claims["scope"]})),
            )
        }
        Err(e) => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": e.to_string()})),
        ),
    }
}

struct World {
    inbound: Idp,
    downstream: Idp,
    api: Api,
    gateway: TestGateway,
    _api_task: tokio::task::JoinHandle<()>,
}

const VAULT_KEY: &str = "c2VjcmV0LXZhdWx0LWtleS0zMi1ieXRlcy1sb25nISE="; // 32 bytes, base64

async fn world(binding: &str) -> World {
    let inbound = Idp::start().await;
    let downstream = Idp::spawn(&[]).await;
    let api = Api {
        public_key_pem: Arc::new(downstream.public_key_pem()),
        issuer: Arc::new(downstream.issuer.clone()),
        audience: Arc::default(),
        seen: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/api/me", axum::routing::get(me))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_url = format!("http://{}/api", listener.local_addr().unwrap());
    *api.audience.lock().await = api_url.clone();
    let api_task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let target = json!({
        "name": "acct", "http": {"baseUrl": api_url},
        "credentials": {"oauth": {"provider": "downstream", "grantType": "AUTHORIZATION_CODE", "scopes": ["tools.read"]}},
        "tools": [
            {"name": "me", "inputSchema": {"type": "object"}, "http": {"method": "GET", "path": "/me"}},
            {"name": "me_write", "inputSchema": {"type": "object"}, "http": {"method": "GET", "path": "/me"}, "scopes": ["tools.write"]}
        ]
    });
    let gateway = TestGateway::start(
        &inbound,
        Setup {
            targets: vec![("acct.json", target)],
            inbound_extra: &format!(
                "[inbound.login]\nclient_id = \"{}\"\nclient_secret_file = \"login.secret\"\n",
                idp::PORTCULLIS_CLIENT
            ),
            extra: &format!(
                "[vault]\npath = \"vault\"\nkey_file = \"vault.key\"\n\
                 [identity]\nconsent_binding = \"{binding}\"\n\
                 [providers.downstream]\nvendor = \"custom\"\ndiscovery_url = \"{}\"\nclient_id = \"{}\"\n\
                 client_secret_file = \"downstream.secret\"\ntoken_auth_method = \"client_secret_post\"\n",
                downstream.discovery_url(),
                idp::DOWNSTREAM_CLIENT
            ),
            files: vec![
                ("login.secret", idp::PORTCULLIS_CLIENT_SECRET.to_string()),
                ("downstream.secret", idp::DOWNSTREAM_CLIENT_SECRET.to_string()),
                ("vault.key", VAULT_KEY.to_string()),
            ],
            ..Setup::default()
        },
    )
    .await;
    World {
        inbound,
        downstream,
        api,
        gateway,
        _api_task: api_task,
    }
}

type Client = RunningService<RoleClient, ClientConfig>;

impl World {
    async fn client(&self, user: &str) -> Client {
        let token = self
            .inbound
            .user_token(user, "mcp", &self.gateway.mcp_url())
            .await;
        let transport = StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(self.gateway.mcp_url())
                .auth_header(token),
        );
        ClientConfig::default().serve(transport).await.unwrap()
    }

    /// A browser signed in as `user` at the inbound IdP and as `account` at the provider.
    fn browser(&self, user: &str, account: &str) -> Browser {
        Browser::new()
            .account(&self.inbound.issuer, user)
            .account(&self.downstream.issuer, account)
    }
}

async fn call(client: &Client, tool: &str) -> CallToolResult {
    client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(Default::default()))
        .await
        .unwrap()
}

fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The consent URL in an `isError` result (clients without URL elicitation).
fn consent_url(result: &CallToolResult, gateway: &TestGateway) -> String {
    assert_eq!(result.is_error, Some(true), "{}", text_of(result));
    let text = text_of(result);
    let start = text
        .find(&format!("{}/oauth2/connect/", gateway.base))
        .unwrap_or_else(|| panic!("no consent URL in {text}"));
    text[start..].split_whitespace().next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_links_her_account_and_the_retried_call_succeeds() {
    let world = world("login").await;
    let alice = world.client("alice").await;
    let first = call(&alice, "acct___me").await;
    let url = consent_url(&first, &world.gateway);
    assert!(
        world.api.seen.lock().await.is_empty(),
        "nothing reaches the API without a token"
    );

    let mut browser = world.browser("alice", "alice-at-provider");
    let page = browser.get(&url).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("Your downstream account is connected"),
        "{}",
        page.body
    );
    // The browser was signed in at the inbound IdP, then sent to the provider.
    assert!(
        page.trail
            .iter()
            .any(|u| u.as_str().starts_with(&world.inbound.issuer))
    );
    assert!(
        page.trail
            .iter()
            .any(|u| u.as_str().starts_with(&world.downstream.issuer))
    );

    let retried = call(&alice, "acct___me").await;
    assert_ne!(retried.is_error, Some(true), "{}", text_of(&retried));
    assert_eq!(
        retried.structured_content.unwrap()["login"],
        "alice-at-provider"
    );
    // Invariant 2: the inbound token never reached the API; the provider's did.
    let seen = world.api.seen.lock().await;
    assert_eq!(seen.len(), 1);
    let (header, _) = idp::decode_unverified(&seen[0].1);
    assert_eq!(header["kid"], world.downstream.kid);
    alice.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bob_cannot_complete_alices_consent_and_nothing_is_stored() {
    let world = world("login").await;
    let alice = world.client("alice").await;
    let url = consent_url(&call(&alice, "acct___me").await, &world.gateway);

    let mut bobs_browser = world.browser("bob", "bob-at-provider");
    let page = bobs_browser.get(&url).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(
        page.body.contains("belongs to another user"),
        "{}",
        page.body
    );
    assert!(
        !page
            .trail
            .iter()
            .any(|u| u.as_str().starts_with(&world.downstream.issuer)),
        "bob never reaches the provider"
    );
    let store = world.gateway.state.identity.as_ref().unwrap().store();
    assert!(
        store.list_tokens(None).await.unwrap().is_empty(),
        "nothing stored on refusal"
    );

    // Bob's own calls never use anything of alice's: he is asked for his own consent.
    let bob = world.client("bob").await;
    let bobs = call(&bob, "acct___me").await;
    assert_ne!(consent_url(&bobs, &world.gateway), url);

    // Alice can still complete her link afterwards.
    let page = world.browser("alice", "alice-at-provider").get(&url).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let links = store.list_tokens(None).await.unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].0.user, format!("{}#alice", world.inbound.issuer));
    alice.cancel().await.unwrap();
    bob.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_url_cannot_be_replayed_and_a_tampered_state_is_refused() {
    let world = world("login").await;
    let alice = world.client("alice").await;
    let url = consent_url(&call(&alice, "acct___me").await, &world.gateway);
    let mut browser = world.browser("alice", "alice-at-provider");
    let page = browser.get(&url).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let callback = page
        .trail
        .iter()
        .find(|u| u.path() == "/oauth2/callback")
        .unwrap()
        .clone();

    // The same consent URL again: single use.
    let again = browser.get(&url).await;
    assert_eq!(again.status, 410, "{}", again.body);
    // The provider's answer replayed: the state is spent.
    let replay = browser.get(callback.as_str()).await;
    assert_eq!(replay.status, 400, "{}", replay.body);
    // A forged state.
    let mut forged = callback.clone();
    forged.set_query(Some("state=forged&code=abc"));
    let page = browser.get(forged.as_str()).await;
    assert_eq!(page.status, 400, "{}", page.body);
    let store = world.gateway.state.identity.as_ref().unwrap().store();
    assert_eq!(
        store.list_tokens(None).await.unwrap().len(),
        1,
        "only the one real link"
    );
    alice.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_delivered_by_another_browser_is_refused() {
    let world = world("login").await;
    let alice = world.client("alice").await;
    let url = consent_url(&call(&alice, "acct___me").await, &world.gateway);
    let mut alices = world.browser("alice", "alice-gh");
    let callback = alices.get_until(&url, "/oauth2/callback").await;

    // OAuth 2.0 Security BCP 4.7: an attacker who obtains the provider's answer (or injects
    // their own code) cannot complete the consent from a browser that did not start it.
    let mut attacker = Browser::new();
    let refused = attacker.get(callback.as_str()).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let store = world.gateway.state.identity.as_ref().unwrap().store();
    assert!(store.list_tokens(None).await.unwrap().is_empty());

    // The refusal did not burn the session: alice's own browser still completes it.
    let page = alices.get(callback.as_str()).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(store.list_tokens(None).await.unwrap().len(), 1);
    alice.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_scopes_ask_for_consent_to_the_union() {
    let world = world("login").await;
    let alice = world.client("alice").await;
    let url = consent_url(&call(&alice, "acct___me").await, &world.gateway);
    assert_eq!(
        world.browser("alice", "alice-gh").get(&url).await.status,
        200
    );
    assert_ne!(call(&alice, "acct___me").await.is_error, Some(true));

    let second = call(&alice, "acct___me_write").await;
    let url = consent_url(&second, &world.gateway);
    let page = world.browser("alice", "alice-gh").get(&url).await;
    let authorize = page
        .trail
        .iter()
        .find(|u| u.as_str().starts_with(&world.downstream.issuer) && u.path().ends_with("/auth"))
        .unwrap();
    let scope = authorize
        .query_pairs()
        .find(|(k, _)| k == "scope")
        .unwrap()
        .1
        .to_string();
    let mut scopes: Vec<&str> = scope.split(' ').collect();
    scopes.sort();
    assert_eq!(scopes, ["tools.read", "tools.write"]);
    let result = call(&alice, "acct___me_write").await;
    assert_ne!(result.is_error, Some(true), "{}", text_of(&result));
    alice.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_refreshes_once_under_200_concurrent_calls() {
    let world = world("login").await;
    let alice = world.client("alice").await;
    let url = consent_url(&call(&alice, "acct___me").await, &world.gateway);
    assert_eq!(
        world.browser("alice", "alice-gh").get(&url).await.status,
        200
    );

    // Age the stored access token past its expiry (the refresh token stays valid).
    let store = world
        .gateway
        .state
        .identity
        .as_ref()
        .unwrap()
        .store()
        .clone();
    let (key, _) = store.list_tokens(None).await.unwrap().remove(0);
    let mut record = store.get_token(&key).await.unwrap().unwrap();
    let old_access = record.access_token.expose().to_string();
    record.expires_at = Some(1);
    store.put_token(&key, &record).await.unwrap();
    world.api.seen.lock().await.clear();

    let alice = Arc::new(alice);
    let calls = (0..200).map(|_| {
        let alice = alice.clone();
        tokio::spawn(async move { call(&alice, "acct___me").await })
    });
    let results = futures::future::join_all(calls).await;
    for result in &results {
        let result = result.as_ref().unwrap();
        assert_ne!(
            result.is_error,
            Some(true),
            "nobody is logged out: {}",
            text_of(result)
        );
    }
    let seen = world.api.seen.lock().await;
    let tokens: std::collections::BTreeSet<&String> = seen.iter().map(|(_, t)| t).collect();
    assert_eq!(seen.len(), 200);
    assert_eq!(
        tokens.len(),
        1,
        "exactly one refresh: every call used the same new token"
    );
    assert!(!tokens.contains(&old_access));
    let metrics = reqwest::get(format!("{}/metrics", world.gateway.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains("portcullis_token_refresh_total{provider=\"downstream\",outcome=\"ok\"} 1"),
        "{metrics}"
    );
    // The rotated refresh token was stored: refreshing again works.
    let record = store.get_token(&key).await.unwrap().unwrap();
    assert_ne!(record.access_token.expose(), old_access);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_grant_asks_for_consent_again() {
    let world = world("login").await;
    let alice = world.client("alice").await;
    let url = consent_url(&call(&alice, "acct___me").await, &world.gateway);
    assert_eq!(
        world.browser("alice", "alice-gh").get(&url).await.status,
        200
    );
    let store = world
        .gateway
        .state
        .identity
        .as_ref()
        .unwrap()
        .store()
        .clone();
    let (key, _) = store.list_tokens(None).await.unwrap().remove(0);
    let mut record = store.get_token(&key).await.unwrap().unwrap();
    // The provider revoked the grant: its refresh token no longer works.
    let status = world
        .downstream
        .revoke(
            idp::DOWNSTREAM_CLIENT,
            idp::DOWNSTREAM_CLIENT_SECRET,
            record.refresh_token.as_ref().unwrap().expose(),
        )
        .await;
    assert_eq!(status, 200);
    record.expires_at = Some(1);
    store.put_token(&key, &record).await.unwrap();
    let result = call(&alice, "acct___me").await;
    consent_url(&result, &world.gateway);
    assert!(
        store.get_token(&key).await.unwrap().is_none(),
        "the dead link is dropped"
    );
    alice.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_page_lists_and_revokes_links() {
    let world = world("login").await;
    let alice = world.client("alice").await;
    let url = consent_url(&call(&alice, "acct___me").await, &world.gateway);
    let mut browser = world.browser("alice", "alice-gh");
    assert_eq!(browser.get(&url).await.status, 200);
    let page = browser
        .get(&format!("{}/connections", world.gateway.base))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("downstream"), "{}", page.body);
    assert!(page.body.contains("tools.read"), "{}", page.body);
    let csrf = page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();

    let forged = browser
        .post_form(
            &format!("{}/connections/revoke", world.gateway.base),
            &[("provider", "downstream"), ("csrf", "wrong")],
        )
        .await;
    assert_eq!(forged.status, 403);
    let page = browser
        .post_form(
            &format!("{}/connections/revoke", world.gateway.base),
            &[("provider", "downstream"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("No accounts are linked"),
        "{}",
        page.body
    );
    consent_url(&call(&alice, "acct___me").await, &world.gateway);
    alice.cancel().await.unwrap();
}
