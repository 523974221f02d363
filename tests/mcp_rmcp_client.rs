#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The MCP surface through rmcp's own Streamable HTTP client, with a real IdP token and a real
//! HTTP backend: session-based (2025-11-25 `initialize`) and stateless (2026-07-28 discover).

mod support {
    pub mod backend;
    pub mod gateway;
    pub mod idp;
    pub mod mcp;
}

use rmcp::ServiceExt;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientConfig, ErrorCode, ProtocolVersion,
};
use rmcp::service::{
    ClientLifecycleMode, ClientServiceExt, RoleClient, RunningService, ServiceError,
};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use support::backend::Backend;
use support::gateway::{Setup, TestGateway};
use support::idp::Idp;
use support::mcp::text_of;

type Client = RunningService<RoleClient, ClientConfig>;

async fn connect(gateway: &TestGateway, token: &str) -> Client {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(gateway.mcp_url())
            .auth_header(token.to_string()),
    );
    ClientConfig::default().serve(transport).await.unwrap()
}

async fn connect_stateless(gateway: &TestGateway, token: &str) -> Client {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(gateway.mcp_url())
            .auth_header(token.to_string()),
    );
    ClientConfig::default()
        .serve_with_lifecycle(
            transport,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .unwrap()
}

fn args(value: Value) -> serde_json::Map<String, Value> {
    value.as_object().unwrap().clone()
}

async fn call(
    client: &Client,
    name: &str,
    arguments: Value,
) -> Result<CallToolResult, ServiceError> {
    client
        .call_tool(CallToolRequestParams::new(name.to_string()).with_arguments(args(arguments)))
        .await
}

async fn setup() -> (Idp, Backend, TestGateway) {
    let idp = Idp::start().await;
    let backend = Backend::start().await;
    let gateway = TestGateway::start(
        &idp,
        Setup {
            targets: vec![("shop.json", backend.target("shop"))],
            ..Setup::default()
        },
    )
    .await;
    (idp, backend, gateway)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_client_initializes_lists_and_calls() {
    let (idp, backend, gateway) = setup().await;
    let client = connect(&gateway, &gateway.token(&idp).await).await;
    let info = client.peer_info().unwrap();
    assert_eq!(info.server_info.as_ref().unwrap().name, "portcullis");
    assert_eq!(info.protocol_version, ProtocolVersion::V_2025_11_25);
    assert!(info.capabilities.tools.as_ref().unwrap().list_changed == Some(true));

    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert!(names.contains(&"shop___echo"), "{names:?}");
    let echo = tools.iter().find(|t| t.name == "shop___echo").unwrap();
    assert_eq!(echo.input_schema["required"], json!(["text"]));

    let result = call(&client, "shop___echo", json!({"text": "hello", "count": 2}))
        .await
        .unwrap();
    assert_ne!(result.is_error, Some(true), "{}", text_of(&result));
    let structured = result.structured_content.clone().unwrap();
    assert_eq!(structured["received"], json!({"text": "hello", "count": 2}));
    assert!(text_of(&result).contains("hello"));

    // DESIGN 3.2 invariant 2: the caller's token never reaches the target.
    let seen = backend.seen.requests.lock().await;
    assert!(seen.iter().all(|h| !h.contains_key("authorization")));
    assert_eq!(seen[0]["x-static"], "from-target");
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_2026_client_discovers_lists_and_calls() {
    let (idp, _backend, gateway) = setup().await;
    let client = connect_stateless(&gateway, &gateway.token(&idp).await).await;
    assert_eq!(
        client.peer_info().unwrap().protocol_version,
        ProtocolVersion::V_2026_07_28
    );
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "shop___sum"));
    let result = call(&client, "shop___sum", json!({"a": 2, "b": 40}))
        .await
        .unwrap();
    assert_eq!(result.structured_content, Some(json!({"sum": 42})));
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_arguments_name_every_failing_pointer_and_keyword() {
    let (idp, backend, gateway) = setup().await;
    let client = connect(&gateway, &gateway.token(&idp).await).await;
    let result = call(&client, "shop___echo", json!({"count": 0}))
        .await
        .unwrap();
    assert_eq!(result.is_error, Some(true));
    let text = text_of(&result);
    assert!(text.contains("/: required:"), "{text}");
    assert!(text.contains("\"text\""), "{text}");
    assert!(text.contains("/count: minimum:"), "{text}");
    assert!(
        backend.seen.requests.lock().await.is_empty(),
        "nothing runs on invalid arguments"
    );
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tool_is_invalid_params() {
    let (idp, _backend, gateway) = setup().await;
    let client = connect(&gateway, &gateway.token(&idp).await).await;
    match call(&client, "shop___nope", json!({})).await {
        Err(ServiceError::McpError(error)) => {
            assert_eq!(error.code, ErrorCode::INVALID_PARAMS);
            assert!(error.message.contains("shop___nope"), "{}", error.message);
        }
        other => panic!("expected -32602, got {other:?}"),
    }
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_list_pages_through_a_large_catalog_in_order() {
    let idp = Idp::start().await;
    let backend = Backend::start().await;
    let mut targets = Vec::new();
    let names: Vec<String> = (0..9).map(|i| format!("t{i}.json")).collect();
    for (i, file) in names.iter().enumerate() {
        let mut target = backend.target(&format!("shop{i}"));
        let template = target["tools"][7].clone();
        let tools = target["tools"].as_array_mut().unwrap();
        for n in 0..50 {
            let mut tool = template.clone();
            tool["name"] = json!(format!("extra_{n:02}"));
            tools.push(tool);
        }
        targets.push((file.as_str(), target));
    }
    let gateway = TestGateway::start(
        &idp,
        Setup {
            targets,
            ..Setup::default()
        },
    )
    .await;
    let client = connect(&gateway, &gateway.token(&idp).await).await;
    let first = client.list_tools(None).await.unwrap();
    assert_eq!(first.tools.len(), portcullis::catalog::PAGE_SIZE);
    assert!(first.next_cursor.is_some());
    let all = client.list_all_tools().await.unwrap();
    assert_eq!(all.len(), 9 * 58);
    let listed: Vec<String> = all.iter().map(|t| t.name.to_string()).collect();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted, "deterministic order");
    sorted.dedup();
    assert_eq!(sorted.len(), listed.len(), "no tool listed twice");
    client.cancel().await.unwrap();
}
