#![allow(clippy::unwrap_used, clippy::expect_used)]
//! HTTP targets end to end (DESIGN 2.3 "HTTP mapping"): a real MCP client, a real IdP token and
//! a real backend. Each test names the mapping rule it checks.

mod support {
    pub mod backend;
    pub mod gateway;
    pub mod idp;
    pub mod mcp;
}

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use support::backend::Backend;
use support::gateway::{Setup, TestGateway};
use support::idp::Idp;
use support::mcp::text_of;

struct World {
    _idp: Idp,
    backend: Backend,
    _gateway: TestGateway,
    client: RunningService<RoleClient, ClientConfig>,
}

async fn world() -> World {
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
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(gateway.mcp_url())
            .auth_header(gateway.token(&idp).await),
    );
    let client = ClientConfig::default().serve(transport).await.unwrap();
    World {
        _idp: idp,
        backend,
        _gateway: gateway,
        client,
    }
}

impl World {
    async fn call(&self, tool: &str, arguments: Value) -> CallToolResult {
        self.client
            .call_tool(
                CallToolRequestParams::new(format!("shop___{tool}"))
                    .with_arguments(arguments.as_object().unwrap().clone()),
            )
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_parameters_arrive_as_one_decoded_segment() {
    let world = world().await;
    let result = world.call("get_item", json!({"id": "a b?#%ü"})).await;
    assert_ne!(result.is_error, Some(true), "{}", text_of(&result));
    assert_eq!(result.structured_content.unwrap()["id"], "a b?#%ü");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_traversal_never_leaves_the_declared_route() {
    let world = world().await;
    for id in ["..", "../status/500", "a/b", "."] {
        let result = world.call("get_item", json!({"id": id})).await;
        assert_eq!(result.is_error, Some(true), "{id:?} was sent");
        assert!(
            text_of(&result).contains("single path segment"),
            "{}",
            text_of(&result)
        );
    }
    assert!(world.backend.seen.requests.lock().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_arguments_repeat_for_arrays() {
    let world = world().await;
    let result = world
        .call("get_item", json!({"id": "x", "tag": ["red", "blue green"]}))
        .await;
    assert_eq!(
        result.structured_content.unwrap()["query"],
        json!([["tag", "red"], ["tag", "blue green"]])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_arguments_become_headers_and_the_rest_is_the_body() {
    let world = world().await;
    let result = world
        .call("echo", json!({"text": "hi", "trace": "abc-123"}))
        .await;
    let structured = result.structured_content.unwrap();
    assert_eq!(
        structured["received"],
        json!({"text": "hi"}),
        "header args are not in the body"
    );
    assert_eq!(structured["headers"]["trace"], "abc-123");
    assert_eq!(structured["headers"]["content-type"], "application/json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_status_becomes_an_error_result_with_a_bounded_excerpt() {
    let world = world().await;
    let result = world.call("status", json!({"code": 503})).await;
    assert_eq!(result.is_error, Some(true));
    let text = text_of(&result);
    assert!(
        text.starts_with("HTTP 503 Service Unavailable: backend says 503"),
        "{text}"
    );
    assert!(
        text.len() < 2600,
        "excerpt is bounded: {} bytes",
        text.len()
    );
    assert!(text.contains("bytes in all"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_responses_are_refused() {
    let world = world().await;
    let result = world.call("big", json!({})).await;
    assert_eq!(result.is_error, Some(true));
    assert!(
        text_of(&result).contains("exceeded 65536 bytes"),
        "{}",
        text_of(&result)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_target_times_out_as_an_error_result() {
    let world = world().await;
    let result = world.call("hang", json!({})).await;
    assert_eq!(result.is_error, Some(true));
    assert!(
        text_of(&result).contains("did not answer within 2000 ms"),
        "{}",
        text_of(&result)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_object_json_and_text_are_text_content() {
    let world = world().await;
    let array = world.call("array", json!({})).await;
    assert_eq!(text_of(&array), "[1,2,3]");
    assert!(
        array.structured_content.is_none(),
        "only objects are structuredContent"
    );
    let text = world.call("text", json!({})).await;
    assert_eq!(text_of(&text), "plain words");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_is_an_error_result() {
    let idp = Idp::start().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let target = json!({
        "name": "dead", "http": {"baseUrl": dead},
        "tools": [{"name": "ping", "inputSchema": {"type": "object"}, "http": {"method": "GET", "path": "/"}}]
    });
    let gateway = TestGateway::start(
        &idp,
        Setup {
            targets: vec![("dead.json", target)],
            ..Setup::default()
        },
    )
    .await;
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(gateway.mcp_url())
            .auth_header(gateway.token(&idp).await),
    );
    let client = ClientConfig::default().serve(transport).await.unwrap();
    let result = client
        .call_tool(CallToolRequestParams::new("dead___ping").with_arguments(Default::default()))
        .await
        .unwrap();
    assert_eq!(result.is_error, Some(true));
    assert!(
        text_of(&result).contains("could not be reached"),
        "{}",
        text_of(&result)
    );
}
