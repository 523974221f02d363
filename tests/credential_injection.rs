#![allow(clippy::unwrap_used, clippy::expect_used)]
//! How credentials reach targets: API keys in a header (with prefix) or the query, a
//! client-credentials (M2M) token cached until shortly before expiry, and for Lambda targets
//! the credential in the client context (something AgentCore cannot do).

mod support {
    pub mod backend;
    pub mod binary;
    pub mod gateway;
    pub mod idp;
    pub mod mcp;
}

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use base64::Engine;
use rmcp::ServiceExt;
use rmcp::model::ClientConfig;
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use support::backend::Backend;
use support::gateway::{Setup, TestGateway};
use support::idp::{self, Idp};
use support::mcp::call;
use tokio::sync::Mutex;

const API_KEY: &str = "wk-9f8e7d6c5b4a";

type Seen = Arc<Mutex<Vec<HeaderMap>>>;

async fn lambda_invoke(
    State(seen): State<Seen>,
    headers: HeaderMap,
    _body: Bytes,
) -> axum::Json<Value> {
    seen.lock().await.push(headers);
    axum::Json(json!({"ok": true}))
}

struct World {
    idp: Idp,
    downstream: Idp,
    backend: Backend,
    gateway: TestGateway,
}

fn downstream_toml(downstream: &Idp) -> String {
    format!(
        "[vault]\npath = \"vault\"\nkey_file = \"vault.key\"\n[identity]\nconsent_binding = \"app\"\n\
         [api_keys.weather]\nkey_file = \"weather.key\"\n\
         [providers.downstream]\nvendor = \"custom\"\ndiscovery_url = \"{}\"\nclient_id = \"{}\"\n\
         client_secret_file = \"downstream.secret\"\ntoken_auth_method = \"client_secret_post\"\n",
        downstream.discovery_url(),
        idp::DOWNSTREAM_CLIENT
    )
}

fn secret_files() -> Vec<(&'static str, String)> {
    vec![
        ("weather.key", API_KEY.to_string()),
        (
            "downstream.secret",
            idp::DOWNSTREAM_CLIENT_SECRET.to_string(),
        ),
        (
            "vault.key",
            "c2VjcmV0LXZhdWx0LWtleS0zMi1ieXRlcy1sb25nISE=".to_string(),
        ),
    ]
}

/// The API's own identifier, named as the credential's RFC 8707 resource (DESIGN 2.3).
const M2M_RESOURCE: &str = "urn:portcullis:m2m-api";
const M2M: &str = r#"{"oauth": {"provider": "downstream", "grantType": "CLIENT_CREDENTIALS", "scopes": ["tools.read"], "resource": "urn:portcullis:m2m-api"}}"#;

async fn world() -> World {
    let idp = Idp::start().await;
    let downstream = Idp::spawn(&[]).await;
    let backend = Backend::start().await;
    let with_credentials = |name: &str, credentials: Value| {
        let mut target = backend.target(name);
        target["credentials"] = credentials;
        target
    };
    let targets = vec![
        (
            "keyh.json",
            with_credentials(
                "keyh",
                json!({"apiKey": {"provider": "weather", "location": "HEADER", "parameterName": "X-Api-Key", "prefix": "Key "}}),
            ),
        ),
        (
            "keyq.json",
            with_credentials(
                "keyq",
                json!({"apiKey": {"provider": "weather", "location": "QUERY_PARAMETER", "parameterName": "appid"}}),
            ),
        ),
        (
            "m2m.json",
            with_credentials("m2m", serde_json::from_str(M2M).unwrap()),
        ),
    ];
    let extra = downstream_toml(&downstream);
    let gateway = TestGateway::start(
        &idp,
        Setup {
            targets,
            extra: &extra,
            files: secret_files(),
            ..Setup::default()
        },
    )
    .await;
    World {
        idp,
        downstream,
        backend,
        gateway,
    }
}

async fn client(world: &World) -> RunningService<RoleClient, ClientConfig> {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(world.gateway.mcp_url())
            .auth_header(world.gateway.token(&world.idp).await),
    );
    ClientConfig::default().serve(transport).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_go_in_a_header_with_prefix_or_in_the_query() {
    let world = world().await;
    let client = client(&world).await;
    let header = call(&client, "keyh___echo", json!({"text": "x"})).await;
    assert_eq!(
        header.structured_content.unwrap()["headers"]["x-api-key"],
        format!("Key {API_KEY}")
    );
    let query = call(&client, "keyq___get_item", json!({"id": "1"})).await;
    let query = query.structured_content.unwrap()["query"].clone();
    assert_eq!(query, json!([["appid", API_KEY]]));
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_tokens_are_fetched_once_and_cached() {
    let world = world().await;
    let client = client(&world).await;
    for _ in 0..3 {
        let result = call(&client, "m2m___echo", json!({"text": "x"})).await;
        assert_ne!(result.is_error, Some(true));
    }
    let seen = world.backend.seen.requests.lock().await;
    let tokens: std::collections::BTreeSet<String> = seen
        .iter()
        .map(|h| h["authorization"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(tokens.len(), 1, "one token for all three calls");
    let token = tokens.into_iter().next().unwrap();
    let (header, claims) = idp::decode_unverified(token.strip_prefix("Bearer ").unwrap());
    assert_eq!(header["kid"], world.downstream.kid);
    assert_eq!(claims["client_id"], idp::DOWNSTREAM_CLIENT);
    assert_eq!(claims["scope"], "tools.read");
    // RFC 8707: the token is for the resource the credential names, not for anything else.
    assert_eq!(claims["aud"], M2M_RESOURCE);
    client.cancel().await.unwrap();
}

/// The gateway binary with AWS credentials in its environment, a fake Invoke API recording
/// what arrives, and an M2M credential on the Lambda target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_targets_receive_the_credential_in_the_client_context() {
    let idp = Idp::start().await;
    let downstream = Idp::spawn(&[]).await;
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route(
            "/2015-03-31/functions/{f}/invocations",
            axum::routing::post(lambda_invoke),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lambda_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let port = support::binary::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[inbound]\ndiscovery_url = \"{}\"\nallowed_audiences = [\"{base}/mcp\"]\n\
         [targets]\ndir = \"targets\"\nwatch = false\n{}",
        idp.discovery_url(),
        downstream_toml(&downstream)
    );
    std::fs::write(dir.path().join("portcullis.toml"), config).unwrap();
    for (name, content) in secret_files() {
        support::gateway::write_private(&dir.path().join(name), &content);
    }
    support::gateway::write_json(
        &dir.path().join("targets"),
        "fn.json",
        &json!({"name": "fn", "lambda": {"functionArn": "fn", "endpointUrl": lambda_url, "region": "us-east-1"},
                "credentials": serde_json::from_str::<Value>(M2M).unwrap(),
                "tools": [{"name": "run", "inputSchema": {"type": "object"}}]}),
    );
    let gateway = support::binary::RunningBinary::serve(
        dir.path(),
        port,
        false,
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
        ],
    )
    .await;
    let token = idp
        .client_credentials_token(
            idp::MCP_CLIENT,
            idp::MCP_CLIENT_SECRET,
            "mcp",
            &gateway.mcp_url(),
        )
        .await;
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(gateway.mcp_url()).auth_header(token),
    );
    let client = ClientConfig::default().serve(transport).await.unwrap();
    let result = call(&client, "fn___run", json!({})).await;
    assert_ne!(
        result.is_error,
        Some(true),
        "{result:?}\n{}",
        gateway.log_text()
    );
    let seen = seen.lock().await;
    let context = base64::engine::general_purpose::STANDARD
        .decode(seen[0]["x-amz-client-context"].as_bytes())
        .unwrap();
    let context: Value = serde_json::from_slice(&context).unwrap();
    let credential = &context["custom"]["portcullisCredential"];
    assert_eq!(credential["type"], "oauth2");
    let (_, claims) = idp::decode_unverified(credential["accessToken"].as_str().unwrap());
    assert_eq!(claims["client_id"], idp::DOWNSTREAM_CLIENT);
    // SigV4 still authenticates the Invoke call itself; the credential never replaces it.
    assert!(
        seen[0]["authorization"]
            .to_str()
            .unwrap()
            .starts_with("AWS4-HMAC-SHA256")
    );
    client.cancel().await.unwrap();
}
