#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Lambda targets through the real aws-sdk-lambda client (DESIGN 2.3 "Lambda contract").
//!
//! The function side is a small Invoke API front that answers exactly as AWS does (200 with
//! `X-Amz-Function-Error` for function errors, `x-amzn-ErrorType` for service errors) and
//! records what arrived, because cargo-lambda drops the client context and does not shape
//! errors like AWS (RIG-NOTES). `tests/lambda_runtime.rs` covers a real `lambda_runtime`.

mod support {
    pub mod binary;
    pub mod gateway;
    pub mod idp;
    pub mod mcp;
}

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rmcp::ServiceExt;
use rmcp::model::ClientConfig;
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use support::binary::{RunningBinary, free_port};
use support::gateway::write_json;
use support::idp::Idp;
use support::mcp::call;
use support::mcp::text_of;
use tokio::sync::Mutex;

#[derive(Debug, Clone)]
struct Invocation {
    function: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Value,
}

type Seen = Arc<Mutex<Vec<Invocation>>>;

async fn invoke(
    State(seen): State<Seen>,
    Path(function): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.lock().await.push(Invocation {
        function: function.clone(),
        query,
        headers,
        body: body.clone(),
    });
    let name = function.rsplit(':').next().unwrap_or_default().to_string();
    match name.as_str() {
        "echo" | "warranty" => axum::Json(json!({"got": body})).into_response(),
        "mcp" => axum::Json(json!({"content": [
            {"type": "text", "text": "from lambda"},
            {"type": "image", "data": "aGk=", "mimeType": "image/png"}
        ]}))
        .into_response(),
        "boom" => (
            StatusCode::OK,
            [("X-Amz-Function-Error", "Unhandled")],
            axum::Json(json!({"errorMessage": "kaboom", "errorType": "Error"})),
        )
            .into_response(),
        "flaky" => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("x-amzn-ErrorType", "ServiceException")],
            axum::Json(json!({"Type": "Service", "Message": "try again later"})),
        )
            .into_response(),
        _ => (
            StatusCode::NOT_FOUND,
            [("x-amzn-ErrorType", "ResourceNotFoundException")],
            axum::Json(
                json!({"Type": "User", "Message": format!("Function not found: {function}")}),
            ),
        )
            .into_response(),
    }
}

struct World {
    idp: Idp,
    seen: Seen,
    gateway: RunningBinary,
    _dir: tempfile::TempDir,
    _api: tokio::task::JoinHandle<()>,
}

async fn world() -> World {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/2015-03-31/functions/{function}/invocations", post(invoke))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let api = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    std::fs::write(
        dir.path().join("portcullis.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"{base}\"\n[inbound]\ndiscovery_url = \"{}\"\nallowed_audiences = [\"{base}/mcp\"]\nallowed_scopes = [\"mcp\"]\n[targets]\ndir = \"targets\"\nwatch = false\n",
            idp.discovery_url()
        ),
    )
    .unwrap();
    let tool = |name: &str| json!({"name": name, "inputSchema": {"type": "object", "properties": {"serial": {"type": "string"}}}});
    let lambda = |function: &str| json!({"functionArn": function, "endpointUrl": endpoint, "timeoutMs": 10000});
    let targets = dir.path().join("targets");
    write_json(
        &targets,
        "w.json",
        &json!({"name": "w", "lambda": lambda("arn:aws:lambda:eu-west-1:123456789012:function:warranty"), "tools": [tool("check")]}),
    );
    for function in ["echo", "mcp", "boom", "missing", "flaky"] {
        let mut target =
            json!({"name": function, "lambda": lambda(function), "tools": [tool("run")]});
        target["lambda"]["region"] = json!("us-east-1");
        if function == "echo" {
            target["lambda"]["qualifier"] = json!("live");
        }
        write_json(&targets, &format!("{function}.json"), &target);
    }
    let gateway = RunningBinary::serve(
        dir.path(),
        port,
        false,
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
            ("AWS_SECRET_ACCESS_KEY", "test-secret"),
            ("AWS_REGION", "us-east-1"),
        ],
    )
    .await;
    World {
        idp,
        seen,
        gateway,
        _dir: dir,
        _api: api,
    }
}

impl World {
    async fn client(&self, sub: &str) -> RunningService<RoleClient, ClientConfig> {
        let token = self
            .idp
            .user_token(sub, "mcp", &self.gateway.mcp_url())
            .await;
        let transport = StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(self.gateway.mcp_url())
                .auth_header(token),
        );
        ClientConfig::default().serve(transport).await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_is_the_arguments_and_client_context_carries_the_agentcore_fields() {
    let world = world().await;
    let client = world.client("alice").await;
    let result = call(&client, "w___check", json!({"serial": "SN-1"})).await;
    assert_ne!(
        result.is_error,
        Some(true),
        "{}\n{}",
        text_of(&result),
        world.gateway.log_text()
    );
    assert_eq!(
        result.structured_content,
        Some(json!({"got": {"serial": "SN-1"}}))
    );

    let seen = world.seen.lock().await;
    let invocation = &seen[0];
    assert_eq!(
        invocation.function,
        "arn:aws:lambda:eu-west-1:123456789012:function:warranty"
    );
    assert_eq!(invocation.body, json!({"serial": "SN-1"}));
    let context = invocation.headers["x-amz-client-context"].to_str().unwrap();
    let context: Value = serde_json::from_slice(&STANDARD.decode(context).unwrap()).unwrap();
    let custom = &context["custom"];
    assert_eq!(custom["bedrockAgentCoreToolName"], "w___check");
    assert_eq!(custom["bedrockAgentCoreMessageVersion"], "1.0");
    assert_eq!(custom["bedrockAgentCoreGatewayId"], "portcullis");
    assert_eq!(custom["bedrockAgentCoreTargetId"], "w");
    assert!(
        custom["bedrockAgentCoreMcpMessageId"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    assert_eq!(
        custom["portcullisUserId"],
        json!(format!("{}#alice", world.idp.issuer))
    );
    assert!(
        custom.get("credential").is_none(),
        "no credential unless the target declares one"
    );

    // SigV4 with the region from the ARN, never the caller's bearer (invariant 2).
    let authorization = invocation.headers["authorization"].to_str().unwrap();
    assert!(
        authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/"),
        "{authorization}"
    );
    assert!(
        authorization.contains("/eu-west-1/lambda/aws4_request"),
        "{authorization}"
    );
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_caller_is_named_in_the_client_context() {
    let world = world().await;
    for user in ["alice", "bob"] {
        let client = world.client(user).await;
        call(&client, "echo___run", json!({})).await;
        client.cancel().await.unwrap();
    }
    let seen = world.seen.lock().await;
    let users: Vec<String> = seen
        .iter()
        .map(|i| {
            let context = STANDARD
                .decode(i.headers["x-amz-client-context"].as_bytes())
                .unwrap();
            serde_json::from_slice::<Value>(&context).unwrap()["custom"]["portcullisUserId"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        users,
        [
            format!("{}#alice", world.idp.issuer),
            format!("{}#bob", world.idp.issuer)
        ]
    );
    assert_eq!(seen[0].query.as_deref(), Some("Qualifier=live"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_shaped_results_pass_through_unchanged() {
    let world = world().await;
    let client = world.client("alice").await;
    let result = call(&client, "mcp___run", json!({})).await;
    let raw = serde_json::to_value(&result).unwrap();
    assert_eq!(
        raw["content"][0],
        json!({"type": "text", "text": "from lambda"})
    );
    assert_eq!(
        raw["content"][1],
        json!({"type": "image", "data": "aGk=", "mimeType": "image/png"})
    );
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_errors_and_service_errors_are_error_results() {
    let world = world().await;
    let client = world.client("alice").await;
    let failed = call(&client, "boom___run", json!({})).await;
    assert_eq!(failed.is_error, Some(true));
    assert!(
        text_of(&failed).contains("function error (Unhandled)"),
        "{}",
        text_of(&failed)
    );
    assert!(text_of(&failed).contains("kaboom"), "{}", text_of(&failed));

    let missing = call(&client, "missing___run", json!({})).await;
    assert_eq!(missing.is_error, Some(true));
    assert!(
        text_of(&missing).contains("ResourceNotFoundException"),
        "{}",
        text_of(&missing)
    );
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_arguments_never_invoke_the_function() {
    let world = world().await;
    let client = world.client("alice").await;
    let result = call(&client, "w___check", json!({"serial": 42})).await;
    assert_eq!(result.is_error, Some(true));
    assert!(
        text_of(&result).contains("/serial: type:"),
        "{}",
        text_of(&result)
    );
    assert!(world.seen.lock().await.is_empty());
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_error_is_not_retried_behind_the_callers_back() {
    let world = world().await;
    let client = world.client("alice").await;
    let result = call(&client, "flaky___run", json!({})).await;
    assert_eq!(result.is_error, Some(true));
    let text = text_of(&result);
    assert!(
        text.contains("ServiceException (HTTP 500): try again later"),
        "{text}"
    );
    assert!(
        !text.contains("x-amzn"),
        "no raw SDK dump reaches the client: {text}"
    );
    // A tool may have side effects: one call, one invocation.
    assert_eq!(world.seen.lock().await.len(), 1);
    client.cancel().await.unwrap();
}
