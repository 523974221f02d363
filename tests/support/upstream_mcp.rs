//! A real upstream MCP server for `mcp` target tests: rmcp's Streamable HTTP server (stateful
//! sessions) behind axum, optionally requiring a bearer JWT from a given issuer whose `aud` is
//! the server's own URL (MCP authorization: tokens are bound to the resource, RFC 8707).
//!
//! It records the `Authorization` header and `Mcp-Session-Id` of every HTTP request, so tests
//! can assert what reached it (never the caller's token to the gateway, one session per user).
#![allow(dead_code)]

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::handler::server::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorCode, ErrorData,
    InitializeResult, ListToolsResult, PaginatedRequestParams, ServerCapabilities, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;

/// One HTTP request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub authorization: Option<String>,
    pub session: Option<String>,
}

/// What a bearer check accepts: RS256 JWTs of `issuer` with `aud` = the server's URL.
#[derive(Clone)]
pub struct RequireToken {
    pub public_key_pem: String,
    pub issuer: String,
}

pub struct Upstream {
    /// The MCP endpoint, `http://127.0.0.1:<port>/mcp`.
    pub url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Answer 401 to this many more requests (a token revoked at the provider).
    pub reject_next: Arc<Mutex<usize>>,
    added: Arc<Mutex<Vec<Tool>>>,
    peers: Peers,
    /// What became of `hang` calls.
    pub hang: HangSignals,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Tools per `tools/list` page: small, so that discovery must follow cursors.
const PAGE: usize = 2;

fn object(value: Value) -> Arc<Map<String, Value>> {
    match value {
        Value::Object(map) => Arc::new(map),
        _ => unreachable!(),
    }
}

fn tools() -> Vec<Tool> {
    vec![
        Tool::new_with_raw(
            "whoami",
            Some("Who the server thinks is calling, and on which session.".into()),
            object(json!({"type": "object", "properties": {}})),
        )
        .with_raw_output_schema(object(json!({
            "type": "object",
            "properties": {"sub": {"type": ["string", "null"]}, "session": {"type": ["string", "null"]}}
        }))),
        Tool::new_with_raw(
            "fail",
            Some("Answers with a tool error carrying structured content.".into()),
            object(json!({"type": "object", "properties": {"why": {"type": "string"}}, "required": ["why"]})),
        ),
        Tool::new_with_raw(
            "boom",
            Some("Answers with a JSON-RPC error.".into()),
            object(json!({"type": "object"})),
        ),
        Tool::new_with_raw(
            "hang",
            Some("Never answers.".into()),
            object(json!({"type": "object"})),
        ),
        Tool::new_with_raw(
            "bad name!",
            Some("A name the gateway cannot serve: skipped and reported.".into()),
            object(json!({"type": "object"})),
        ),
        Tool::new_with_raw(
            "progress",
            Some("Reports three steps of progress on the call's token, then answers.".into()),
            object(json!({"type": "object"})),
        ),
        Tool::new_with_raw(
            "ask",
            Some("Asks the client for a colour (elicitation/create) and answers with the reply.".into()),
            object(json!({"type": "object"})),
        ),
    ]
}

/// The server's tools beyond the fixed ones; a test may add one (and the server then sends
/// `notifications/tools/list_changed` nowhere: the gateway finds out by listing again).
#[derive(Clone, Default)]
struct Handler {
    added: Arc<Mutex<Vec<Tool>>>,
    peers: Peers,
    hang: HangSignals,
}

/// A count that can be awaited: how many times something happened.
#[derive(Default)]
pub struct Signal {
    count: std::sync::atomic::AtomicUsize,
    notify: tokio::sync::Notify,
}

impl Signal {
    fn fire(&self) {
        self.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Waits until it happened `count` times (event-driven; the caller bounds it).
    pub async fn reached(&self, count: usize) {
        loop {
            let fired = self.notify.notified();
            if self.count.load(std::sync::atomic::Ordering::SeqCst) >= count {
                return;
            }
            fired.await;
        }
    }
}

/// The `hang` tool's calls: started, and cancelled by the client (`notifications/cancelled`).
#[derive(Clone, Default)]
pub struct HangSignals {
    pub started: Arc<Signal>,
    pub cancelled: Arc<Signal>,
}

/// Every initialised session's peer, and a signal when one more is there.
#[derive(Clone, Default)]
struct Peers {
    list: Arc<parking_lot::Mutex<Vec<rmcp::Peer<RoleServer>>>>,
    joined: Arc<tokio::sync::Notify>,
}

fn header(context: &RequestContext<RoleServer>, name: &str) -> Option<String> {
    context
        .extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| parts.headers.get(name))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The `sub` of the bearer JWT (already verified by the middleware when required).
fn subject(context: &RequestContext<RoleServer>) -> Option<String> {
    let token = header(context, "authorization")?;
    let jwt = token.strip_prefix("Bearer ")?;
    let payload = jwt.split('.').nth(1)?;
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims["sub"].as_str().map(str::to_string)
}

impl ServerHandler for Handler {
    fn get_info(&self) -> InitializeResult {
        InitializeResult::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
    }

    async fn on_initialized(&self, context: rmcp::service::NotificationContext<RoleServer>) {
        self.peers.list.lock().push(context.peer);
        self.peers.joined.notify_waiters();
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let start: usize = request
            .and_then(|r| r.cursor)
            .map_or(0, |c| c.parse().unwrap());
        let mut all = tools();
        all.extend(self.added.lock().await.iter().cloned());
        let end = (start + PAGE).min(all.len());
        let mut result = ListToolsResult::with_all_items(all[start..end].to_vec());
        result.next_cursor = (end < all.len()).then(|| end.to_string());
        Ok(result)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let result = match request.name.as_ref() {
            "whoami" => CallToolResult::structured(json!({
                "sub": subject(&context),
                "session": header(&context, "mcp-session-id"),
            })),
            "fail" => {
                let why = request
                    .arguments
                    .as_ref()
                    .and_then(|a| a.get("why"))
                    .cloned()
                    .unwrap_or(Value::Null);
                let mut result = CallToolResult::error(vec![ContentBlock::text("it failed")]);
                result.structured_content = Some(json!({"why": why, "code": 17}));
                result
            }
            "boom" => {
                return Err(ErrorData::new(
                    ErrorCode::INTERNAL_ERROR,
                    "the upstream exploded",
                    None,
                ));
            }
            "progress" => {
                let token = context.meta.get_progress_token();
                if let Some(token) = &token {
                    for step in 1..=3 {
                        let param = rmcp::model::ProgressNotificationParam::new(
                            token.clone(),
                            f64::from(step),
                        )
                        .with_total(3.0)
                        .with_message(format!("step {step}"));
                        let _ = context.peer.notify_progress(param).await;
                    }
                }
                CallToolResult::structured(
                    json!({ "token": serde_json::to_value(&token).unwrap() }),
                )
            }
            "ask" => {
                let question: rmcp::model::ElicitRequestParams = serde_json::from_value(json!({
                    "mode": "form",
                    "message": "Which colour?",
                    "requestedSchema": {"type": "object", "properties": {"colour": {"type": "string"}}, "required": ["colour"]}
                }))
                .unwrap();
                match context.peer.create_elicitation(question).await {
                    Ok(answer) => CallToolResult::structured(serde_json::to_value(answer).unwrap()),
                    Err(error) => CallToolResult::structured(json!({"error": error.to_string()})),
                }
            }
            "hang" => {
                self.hang.started.fire();
                context.ct.cancelled().await;
                self.hang.cancelled.fire();
                return Err(ErrorData::new(ErrorCode::INTERNAL_ERROR, "cancelled", None));
            }
            other => {
                return Err(ErrorData::new(
                    ErrorCode::INVALID_PARAMS,
                    format!("no tool {other}"),
                    None,
                ));
            }
        };
        Ok(CallToolResponse::Complete(result))
    }
}

#[derive(Clone)]
struct Guard {
    seen: Arc<Mutex<Vec<Seen>>>,
    reject_next: Arc<Mutex<usize>>,
    require: Option<RequireToken>,
    audience: String,
}

async fn guard(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let authorization = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    guard.seen.lock().await.push(Seen {
        authorization: authorization.clone(),
        session: request
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    });
    let refused = {
        let mut reject = guard.reject_next.lock().await;
        let refused = *reject > 0;
        *reject = reject.saturating_sub(1);
        refused
    };
    if let Some(require) = &guard.require {
        let valid = !refused
            && authorization
                .as_deref()
                .and_then(|v| v.strip_prefix("Bearer "))
                .is_some_and(|token| {
                    let key =
                        jsonwebtoken::DecodingKey::from_rsa_pem(require.public_key_pem.as_bytes())
                            .unwrap();
                    let mut validation =
                        jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
                    validation.set_issuer(&[require.issuer.as_str()]);
                    validation.set_audience(&[guard.audience.as_str()]);
                    jsonwebtoken::decode::<Value>(token, &key, &validation).is_ok()
                });
        if !valid {
            // RFC 9728 section 5.1: the challenge names the resource's metadata.
            let challenge = format!(
                "Bearer error=\"invalid_token\", error_description=\"not a token for this server\", \
                 resource_metadata=\"{}\"",
                metadata_url(&guard.audience)
            );
            return (StatusCode::UNAUTHORIZED, [("www-authenticate", challenge)]).into_response();
        }
    }
    next.run(request).await
}

/// RFC 9728 section 3.1: the metadata of `http://host/mcp` at the path-inserted well-known URI.
fn metadata_url(resource: &str) -> String {
    resource.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")
}

impl Upstream {
    /// Starts the server on an ephemeral loopback port. One that requires a token publishes
    /// its RFC 9728 protected resource metadata, as the MCP authorization spec asks: the
    /// token's issuer as its authorization server and `tools.read` as its scope.
    pub async fn start(require: Option<RequireToken>) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let reject_next = Arc::new(Mutex::new(0));
        let handler = Handler::default();
        let added = handler.added.clone();
        let peers = handler.peers.clone();
        let hang = handler.hang.clone();
        let service = StreamableHttpService::new(
            move || Ok(handler.clone()),
            Arc::new(LocalSessionManager::default()),
            StreamableHttpServerConfig::default(),
        );
        let metadata = require.as_ref().map(|require| {
            json!({
                "resource": url,
                "authorization_servers": [require.issuer],
                "scopes_supported": ["tools.read"],
                "bearer_methods_supported": ["header"],
            })
        });
        let mut app = axum::Router::new().route_service("/mcp", service).layer(
            axum::middleware::from_fn_with_state(
                Guard {
                    seen: seen.clone(),
                    reject_next: reject_next.clone(),
                    require,
                    audience: url.clone(),
                },
                guard,
            ),
        );
        if let Some(metadata) = metadata {
            app = app.route(
                "/.well-known/oauth-protected-resource/mcp",
                axum::routing::get(move || async move { axum::Json(metadata) }),
            );
        }
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Upstream {
            url,
            seen,
            reject_next,
            added,
            peers,
            hang,
            task,
        }
    }

    /// Waits until `count` sessions have been initialised (event-driven; the caller bounds it).
    pub async fn sessions_initialised(&self, count: usize) {
        loop {
            let joined = self.peers.joined.notified();
            if self.peers.list.lock().len() >= count {
                return;
            }
            joined.await;
        }
    }

    /// Sends `notifications/tools/list_changed` on every session still open; how many took it.
    pub async fn announce_tools_changed(&self) -> usize {
        let peers: Vec<rmcp::Peer<RoleServer>> = self.peers.list.lock().clone();
        let mut told = 0;
        for peer in peers {
            if peer.notify_tool_list_changed().await.is_ok() {
                told += 1;
            }
        }
        told
    }

    /// Adds a tool named `name` to the server's `tools/list`.
    pub async fn add_tool(&self, name: &str) {
        self.added.lock().await.push(Tool::new_with_raw(
            name.to_string(),
            Some("Added while the gateway runs.".into()),
            object(json!({"type": "object"})),
        ));
    }

    /// The distinct `Mcp-Session-Id`s the server was sent.
    pub async fn sessions(&self) -> Vec<String> {
        let mut sessions: Vec<String> = self
            .seen
            .lock()
            .await
            .iter()
            .filter_map(|s| s.session.clone())
            .collect();
        sessions.sort();
        sessions.dedup();
        sessions
    }
}
