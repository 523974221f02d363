//! A world for per-user OAuth tests: the inbound IdP, a second real authorization server as
//! the downstream provider, a downstream API that verifies that provider's JWTs, and a gateway
//! configured with `consent_binding`, the vault and the provider.
#![allow(dead_code)]

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
use tokio::sync::Mutex;

use super::browser::Browser;
use super::gateway::{Setup, TestGateway};
use super::idp::{self, Idp};
pub use super::mcp::text_of;

/// The downstream API: accepts only RS256 JWTs from the downstream provider for its own URL.
#[derive(Clone)]
pub struct Api {
    pub public_key_pem: Arc<String>,
    pub issuer: Arc<String>,
    pub audience: Arc<Mutex<String>>,
    /// (subject, access token) of every accepted call.
    pub seen: Arc<Mutex<Vec<(String, String)>>>,
    /// Answer 401 to this many more calls (a token revoked at the provider).
    pub reject_next: Arc<Mutex<usize>>,
}

async fn me(State(api): State<Api>, headers: HeaderMap) -> impl IntoResponse {
    // RFC 6750 section 3.1, as a resource server answers a refused token.
    let challenge = |description: &str| {
        axum::response::AppendHeaders(vec![(
            "www-authenticate",
            format!("Bearer error=\"invalid_token\", error_description=\"{description}\""),
        )])
    };
    {
        let mut reject = api.reject_next.lock().await;
        if *reject > 0 {
            *reject -= 1;
            return (
                StatusCode::UNAUTHORIZED,
                challenge("token revoked"),
                Json(json!({"error": "token revoked"})),
            );
        }
    }
    let Some(token) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return (
            StatusCode::UNAUTHORIZED,
            challenge("no token"),
            Json(json!({"error": "no token"})),
        );
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
                axum::response::AppendHeaders(vec![]),
                Json(json!({"login": sub, "scope": data.claims["scope"]})),
            )
        }
        Err(e) => (
            StatusCode::UNAUTHORIZED,
            challenge("the token is not for this API"),
            Json(json!({"error": e.to_string()})),
        ),
    }
}

pub struct World {
    pub inbound: Idp,
    pub downstream: Idp,
    pub api: Api,
    pub gateway: TestGateway,
    _api_task: tokio::task::JoinHandle<()>,
}

/// The API's own identifier: what it checks `aud` against, and the RFC 8707 resource the
/// target's credential names (DESIGN 2.3). Deliberately not the API's URL.
pub const API_RESOURCE: &str = "urn:portcullis:test-api";

pub const VAULT_KEY: &str = "c2VjcmV0LXZhdWx0LWtleS0zMi1ieXRlcy1sb25nISE="; // 32 bytes, base64

pub async fn world(binding: &str) -> World {
    world_with(binding, "").await
}

/// `extra_toml` is appended to the gateway config.
pub async fn world_with(binding: &str, extra_toml: &str) -> World {
    world_full(binding, "", extra_toml, vec![]).await
}

/// `identity_extra` goes into `[identity]`, `extra_toml` at the end, `files` next to the config.
pub async fn world_full(
    binding: &str,
    identity_extra: &str,
    extra_toml: &str,
    files: Vec<(&str, String)>,
) -> World {
    world_spec(
        binding,
        identity_extra,
        extra_toml,
        files,
        Some(API_RESOURCE),
    )
    .await
}

/// A world whose target credential names no RFC 8707 resource: the provider then issues
/// tokens for its default audience, which the API refuses.
pub async fn world_without_resource(binding: &str) -> World {
    world_spec(binding, "", "", vec![], None).await
}

async fn world_spec(
    binding: &str,
    identity_extra: &str,
    extra_toml: &str,
    files: Vec<(&str, String)>,
    resource: Option<&str>,
) -> World {
    let inbound = Idp::start().await;
    let downstream = Idp::spawn(&[]).await;
    world_on(
        inbound,
        downstream,
        binding,
        identity_extra,
        extra_toml,
        files,
        resource,
        vec![],
    )
    .await
}

/// The same world on IdPs the caller started, with more target files (`extra_targets`): for
/// targets that need the downstream provider before the gateway starts (an upstream MCP server
/// that checks the provider's tokens).
#[allow(clippy::too_many_arguments)]
pub async fn world_on(
    inbound: Idp,
    downstream: Idp,
    binding: &str,
    identity_extra: &str,
    extra_toml: &str,
    files: Vec<(&str, String)>,
    resource: Option<&str>,
    extra_targets: Vec<(&str, Value)>,
) -> World {
    let (api, api_url, api_task) = start_api(&downstream).await;
    let config = OauthConfig::new(&downstream, binding, identity_extra, extra_toml, SLED_VAULT);
    let gateway = TestGateway::start(
        &inbound,
        config.setup(
            [("acct.json", acct_target(&api_url, resource))]
                .into_iter()
                .chain(extra_targets)
                .collect(),
            files,
        ),
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

/// The `[vault]` section of a single gateway: sled in its folder.
pub const SLED_VAULT: &str = "[vault]\npath = \"vault\"\nkey_file = \"vault.key\"\n";

/// The downstream API on a loopback port, and its base URL (`.../api`).
pub async fn start_api(downstream: &Idp) -> (Api, String, tokio::task::JoinHandle<()>) {
    let api = Api {
        public_key_pem: Arc::new(downstream.public_key_pem()),
        issuer: Arc::new(downstream.issuer.clone()),
        audience: Arc::new(Mutex::new(API_RESOURCE.to_string())),
        seen: Arc::default(),
        reject_next: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/api/me", axum::routing::get(me))
        // Needs no credential: what a tool without one reaches.
        .route(
            "/api/ping",
            axum::routing::get(|| async { Json(json!({"pong": true})) }),
        )
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_url = format!("http://{}/api", listener.local_addr().unwrap());
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (api, api_url, task)
}

/// The `acct` target: the API's `me` tools with the downstream provider's credential.
pub fn acct_target(api_url: &str, resource: Option<&str>) -> Value {
    let mut oauth = json!({"provider": "downstream", "grantType": "AUTHORIZATION_CODE", "scopes": ["tools.read"]});
    if let Some(resource) = resource {
        oauth["resource"] = json!(resource);
    }
    json!({
        "name": "acct", "http": {"baseUrl": api_url},
        "credentials": {"oauth": oauth},
        "tools": [
            {"name": "me", "inputSchema": {"type": "object"}, "http": {"method": "GET", "path": "/me"}},
            {"name": "me_write", "inputSchema": {"type": "object"}, "http": {"method": "GET", "path": "/me"}, "scopes": ["tools.write"]}
        ]
    })
}

/// The config of a gateway with the sign-in client, a vault and the downstream provider.
pub struct OauthConfig {
    inbound_extra: String,
    extra: String,
}

impl OauthConfig {
    /// `vault` is the `[vault]` section ([`SLED_VAULT`], or a shared database's).
    pub fn new(
        downstream: &Idp,
        binding: &str,
        identity_extra: &str,
        extra_toml: &str,
        vault: &str,
    ) -> OauthConfig {
        OauthConfig {
            inbound_extra: format!(
                "[inbound.login]\nclient_id = \"{}\"\nclient_secret_file = \"login.secret\"\n",
                idp::PORTCULLIS_CLIENT
            ),
            extra: format!(
                "{vault}\
                 [identity]\nconsent_binding = \"{binding}\"\n{identity_extra}\n\
                 [providers.downstream]\nvendor = \"custom\"\ndiscovery_url = \"{}\"\nclient_id = \"{}\"\n\
                 client_secret_file = \"downstream.secret\"\ntoken_auth_method = \"client_secret_post\"\n{extra_toml}",
                downstream.discovery_url(),
                idp::DOWNSTREAM_CLIENT
            ),
        }
    }

    /// The gateway's setup: these targets, the secrets and vault key, and `files`.
    pub fn setup<'a>(
        &'a self,
        targets: Vec<(&'a str, Value)>,
        files: Vec<(&'a str, String)>,
    ) -> Setup<'a> {
        Setup {
            targets,
            inbound_extra: &self.inbound_extra,
            extra: &self.extra,
            files: [
                ("login.secret", idp::PORTCULLIS_CLIENT_SECRET.to_string()),
                (
                    "downstream.secret",
                    idp::DOWNSTREAM_CLIENT_SECRET.to_string(),
                ),
                ("vault.key", VAULT_KEY.to_string()),
            ]
            .into_iter()
            .chain(files)
            .collect(),
            ..Setup::default()
        }
    }
}

pub type Client = RunningService<RoleClient, ClientConfig>;

impl World {
    pub async fn client(&self, user: &str) -> Client {
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

    /// Alice's client after she linked her provider account (`alice-gh`) through the consent
    /// URL her first call returned; also that URL.
    pub async fn linked_alice(&self) -> (Client, String) {
        let alice = self.client("alice").await;
        let url = consent_url(&call(&alice, "acct___me").await, &self.gateway);
        assert_eq!(
            self.browser("alice", "alice-gh").get(&url).await.status,
            200
        );
        (alice, url)
    }

    /// The gateway's vault.
    pub fn store(&self) -> Arc<dyn portcullis::vault::Store> {
        self.gateway
            .state
            .identity
            .as_ref()
            .unwrap()
            .store()
            .clone()
    }

    /// A browser signed in as `user` at the inbound IdP and as `account` at the provider.
    pub fn browser(&self, user: &str, account: &str) -> Browser {
        Browser::new()
            .account(&self.inbound.issuer, user)
            .account(&self.downstream.issuer, account)
    }
}

pub async fn call(client: &Client, tool: &str) -> CallToolResult {
    client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(Default::default()))
        .await
        .unwrap()
}

/// The consent URL in an `isError` result (clients without URL elicitation).
pub fn consent_url(result: &CallToolResult, gateway: &TestGateway) -> String {
    assert_eq!(result.is_error, Some(true), "{}", text_of(result));
    let text = text_of(result);
    let start = text
        .find(&format!("{}/oauth2/connect/", gateway.base))
        .unwrap_or_else(|| panic!("no consent URL in {text}"));
    text[start..].split_whitespace().next().unwrap().to_string()
}
