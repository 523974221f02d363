#![allow(clippy::unwrap_used, clippy::expect_used)]
//! How each MCP revision learns the consent URL (DESIGN 2.6), and the per-call consent rules:
//! `-32042` + `notifications/elicitation/complete` for 2025-11-25 clients with URL elicitation,
//! `input_required` for 2026-07-28, `forceAuthentication`, and a downstream 401.

mod support {
    pub mod browser;
    pub mod downstream;
    pub mod gateway;
    pub mod idp;
    pub mod mcp;
}

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, CustomNotification,
    ElicitRequestParams, ElicitResult, ElicitationAction, ElicitationCapability, ErrorCode,
    Implementation, ProtocolVersion, UrlElicitationCapability,
};
use rmcp::service::{
    ClientLifecycleMode, ClientServiceExt, NotificationContext, RequestContext, RoleClient,
    ServiceError,
};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, ErrorData, ServiceExt};
use serde_json::{Value, json};
use support::browser::Browser;
use support::downstream::{World, call, consent_url, text_of, world};
use tokio::sync::{Mutex, mpsc};

/// A client that supports URL elicitation: it "opens" URLs in a scripted browser and reports
/// `notifications/elicitation/complete`.
#[derive(Clone)]
struct UrlCapableClient {
    browser: Arc<Mutex<Browser>>,
    opened: mpsc::UnboundedSender<String>,
    completed: mpsc::UnboundedSender<String>,
}

impl ClientHandler for UrlCapableClient {
    fn get_info(&self) -> ClientConfig {
        let capabilities = ClientCapabilities::builder()
            .enable_elicitation_with(
                ElicitationCapability::new().with_url(UrlElicitationCapability::new()),
            )
            .build();
        ClientConfig::new(capabilities, Implementation::new("url-client", "1"))
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let ElicitRequestParams::UrlElicitationParams { url, .. } = request else {
            return Err(ErrorData::invalid_params("only URL mode", None));
        };
        let page = self.browser.lock().await.get(&url).await;
        let _ = self.opened.send(url);
        let action = if page.status == 200 {
            ElicitationAction::Accept
        } else {
            ElicitationAction::Decline
        };
        Ok(ElicitResult::new(action))
    }

    async fn on_custom_notification(
        &self,
        notification: CustomNotification,
        _context: NotificationContext<RoleClient>,
    ) {
        if notification.method == "notifications/elicitation/complete"
            && let Some(id) = notification
                .params
                .as_ref()
                .and_then(|p| p["elicitationId"].as_str())
        {
            let _ = self.completed.send(id.to_string());
        }
    }
}

struct Channels {
    opened: mpsc::UnboundedReceiver<String>,
    completed: mpsc::UnboundedReceiver<String>,
}

fn url_client(world: &World, user: &str, account: &str) -> (UrlCapableClient, Channels) {
    let (opened_tx, opened) = mpsc::unbounded_channel();
    let (completed_tx, completed) = mpsc::unbounded_channel();
    (
        UrlCapableClient {
            browser: Arc::new(Mutex::new(world.browser(user, account))),
            opened: opened_tx,
            completed: completed_tx,
        },
        Channels { opened, completed },
    )
}

async fn transport(world: &World, user: &str) -> StreamableHttpClientTransport<reqwest::Client> {
    let token = world
        .inbound
        .user_token(user, "mcp", &world.gateway.mcp_url())
        .await;
    StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(world.gateway.mcp_url()).auth_header(token),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2025_11_25_client_with_url_elicitation_gets_32042_then_completion() {
    let world = world("login").await;
    let (handler, mut channels) = url_client(&world, "alice", "alice-gh");
    let client = handler
        .clone()
        .serve(transport(&world, "alice").await)
        .await
        .unwrap();
    assert_eq!(
        client.peer_info().unwrap().protocol_version,
        ProtocolVersion::V_2025_11_25
    );

    let error = match client
        .call_tool(CallToolRequestParams::new("acct___me").with_arguments(Default::default()))
        .await
    {
        Err(ServiceError::McpError(error)) => error,
        other => panic!("expected -32042, got {other:?}"),
    };
    assert_eq!(error.code, ErrorCode(-32042));
    let elicitation = &error.data.as_ref().unwrap()["elicitations"][0];
    assert_eq!(elicitation["mode"], "url");
    let url = elicitation["url"].as_str().unwrap().to_string();
    let id = elicitation["elicitationId"].as_str().unwrap().to_string();
    assert!(
        url.starts_with(&format!("{}/oauth2/connect/", world.gateway.base)),
        "{url}"
    );
    assert!(url.ends_with(&id));
    assert!(
        elicitation["message"]
            .as_str()
            .unwrap()
            .contains("downstream")
    );

    // The user opens the URL; the session hears that the elicitation completed.
    let page = handler.browser.lock().await.get(&url).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let completed = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        channels.completed.recv(),
    )
    .await
    .expect("no elicitation/complete")
    .unwrap();
    assert_eq!(completed, id);
    let retried = client
        .call_tool(CallToolRequestParams::new("acct___me").with_arguments(Default::default()))
        .await
        .unwrap();
    assert_ne!(retried.is_error, Some(true), "{}", text_of(&retried));
    assert!(
        channels.opened.try_recv().is_err(),
        "-32042 is shown by the client, not a server request"
    );
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2026_07_28_client_gets_input_required_and_the_retried_call_succeeds() {
    let world = world("login").await;
    let (handler, mut channels) = url_client(&world, "alice", "alice-gh");
    let client = handler
        .serve_with_lifecycle(
            transport(&world, "alice").await,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .unwrap();
    assert_eq!(
        client.peer_info().unwrap().protocol_version,
        ProtocolVersion::V_2026_07_28
    );

    // rmcp drives MRTR: input_required -> our handler opens the URL -> retry -> result.
    let result = client
        .call_tool(CallToolRequestParams::new("acct___me").with_arguments(Default::default()))
        .await
        .unwrap();
    assert_ne!(result.is_error, Some(true), "{}", text_of(&result));
    assert_eq!(result.structured_content.unwrap()["login"], "alice-gh");
    let opened = channels
        .opened
        .try_recv()
        .expect("the URL was handed to the client");
    assert!(opened.starts_with(&format!("{}/oauth2/connect/", world.gateway.base)));
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_authentication_asks_again_even_with_a_token() {
    let world = world("login").await;
    let (alice, url) = world.linked_alice().await;
    assert_ne!(call(&alice, "acct___me").await.is_error, Some(true));

    let mut params = CallToolRequestParams::new("acct___me").with_arguments(Default::default());
    let meta: serde_json::Map<String, Value> = json!({"portcullis/forceAuthentication": true})
        .as_object()
        .unwrap()
        .clone();
    params.meta = Some(serde_json::from_value(Value::Object(meta)).unwrap());
    let forced = alice.call_tool(params).await.unwrap();
    let second = consent_url(&forced, &world.gateway);
    assert_ne!(second, url, "a fresh consent session");
    alice.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downstream_401_refreshes_once_and_retries() {
    let world = world("login").await;
    let (alice, _) = world.linked_alice().await;
    assert_ne!(call(&alice, "acct___me").await.is_error, Some(true));
    let first_token = world.api.seen.lock().await[0].1.clone();

    // The provider revoked the access token: the API says 401 once.
    *world.api.reject_next.lock().await = 1;
    let result = call(&alice, "acct___me").await;
    assert_ne!(result.is_error, Some(true), "{}", text_of(&result));
    let seen = world.api.seen.lock().await;
    assert_eq!(seen.len(), 2);
    assert_ne!(seen[1].1, first_token, "the retry used a refreshed token");

    // A 401 that persists after the refresh is explained, with the API's challenge, instead of
    // asking for a consent that would only produce another refused token.
    drop(seen);
    *world.api.reject_next.lock().await = 2;
    let result = call(&alice, "acct___me").await;
    assert_eq!(result.is_error, Some(true));
    let text = text_of(&result);
    assert!(text.contains("HTTP 401"), "{text}");
    assert!(text.contains("error=\"invalid_token\""), "{text}");
    assert!(!text.contains("/oauth2/connect/"), "{text}");
    alice.cancel().await.unwrap();
}

/// DESIGN 2.6: a 2026-07-28 request whose client capabilities do not declare `elicitation.url`
/// gets the `isError` form with the URL, never an `input_required` it cannot answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2026_07_28_client_without_url_elicitation_gets_the_url_as_a_tool_error() {
    let world = world("login").await;
    let client = ClientConfig::default()
        .serve_with_lifecycle(
            transport(&world, "alice").await,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .unwrap();
    assert_eq!(
        client.peer_info().unwrap().protocol_version,
        ProtocolVersion::V_2026_07_28
    );
    let result = client
        .call_tool(CallToolRequestParams::new("acct___me").with_arguments(Default::default()))
        .await
        .unwrap();
    let url = consent_url(&result, &world.gateway);
    // The URL works: after the user links the account, the retried call succeeds.
    assert_eq!(
        world.browser("alice", "alice-gh").get(&url).await.status,
        200
    );
    let retried = client
        .call_tool(CallToolRequestParams::new("acct___me").with_arguments(Default::default()))
        .await
        .unwrap();
    assert_ne!(retried.is_error, Some(true), "{}", text_of(&retried));
    client.cancel().await.unwrap();
}
