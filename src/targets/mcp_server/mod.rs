//! `mcp` targets: a remote MCP server over Streamable HTTP (DESIGN 2.8), its tools served as
//! `<target>___<tool>`.
//!
//! The gateway is an MCP client of the server (rmcp's client, MCP 2025-11-25 Streamable HTTP).
//! Each calling user has an upstream session of their own ([`sessions`]), opened with that
//! user's credential and never shared. A call's result passes through unchanged (`content`,
//! `structuredContent`, `isError`, `_meta`); a JSON-RPC error from the server becomes an
//! `isError` result that names the server; an HTTP 401 (RFC 6750 section 3.1) is reported as a
//! refused credential so that the pipeline refreshes once and then asks for consent, exactly
//! as for HTTP targets. The caller's own token to the gateway never reaches the server
//! (DESIGN 3.2 invariant 2): the only `Authorization` sent is the target's credential.
//!
//! Without a static tool list the server's `tools/list` is fetched at load, on reload, every
//! `refreshSeconds` and whenever the server says its tools changed ([`list`], [`watch`]).

mod elicitation;
mod list;
mod progress;
mod sessions;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::ServiceError;
use serde::Deserialize;
use url::Url;

use super::{
    BoxFuture, BuildInput, Invocation, Kind, Refusal, SpecProblems, Target, TargetError, ToolCall,
    ToolSource, error_result,
};
use crate::credential::{Credentials, Injection, TargetCredentials};
use sessions::{ConnectError, Sessions};

pub const KIND: Kind = Kind {
    key: "mcp",
    tool_key: None,
    tools: ToolSource::FileOrListed(list::list_tools),
    build,
};

/// How long a call may take when the file does not say (`timeoutMs`).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Upstream sessions kept per target when the file does not say (`maxSessions`).
const DEFAULT_MAX_SESSIONS: usize = 1_000;
/// How often discovered tools are listed again when the file does not say (`refreshSeconds`).
const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// An upstream session unused this long is closed.
const IDLE: Duration = Duration::from_secs(300);

/// The `mcp` section as written (`schemas/target.schema.json`, `$defs/mcpTarget`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Spec {
    url: String,
    timeout_ms: Option<u64>,
    max_sessions: Option<usize>,
    refresh_seconds: Option<u64>,
    #[serde(default)]
    passthrough: bool,
}

/// The checked section: what both the lister and the target are built from.
struct Checked {
    url: Url,
    timeout: Duration,
    max_sessions: usize,
    refresh: Duration,
    passthrough: bool,
}

fn check(section: &serde_json::Value, problems: &mut SpecProblems) -> Option<Checked> {
    let spec: Spec = super::section(section, problems)?;
    let url = match Url::parse(&spec.url) {
        Ok(url) => url,
        Err(e) => {
            problems.in_section("/url", format!("not a URL: {e}"));
            return None;
        }
    };
    let loopback = match url.host() {
        Some(url::Host::Domain(host)) => host == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
        problems.in_section(
            "/url",
            "must be https:// (http:// only for a loopback server): user tokens travel on it",
        );
        return None;
    }
    Some(Checked {
        url,
        timeout: spec
            .timeout_ms
            .map_or(DEFAULT_TIMEOUT, Duration::from_millis),
        max_sessions: spec.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS),
        refresh: spec
            .refresh_seconds
            .map_or(DEFAULT_REFRESH, |s| Duration::from_secs(s.max(1))),
        passthrough: spec.passthrough,
    })
}

fn build(input: &BuildInput<'_>, problems: &mut SpecProblems) -> Option<Arc<dyn Target>> {
    let checked = check(input.section, problems)?;
    if checked.passthrough && input.credentials.is_some() {
        problems.in_section(
            "/passthrough",
            "cannot be combined with `credentials`: a call carries either the caller's own token or the target's credential",
        );
        return None;
    }
    let url: Arc<str> = Arc::from(checked.url.as_str());
    Some(Arc::new(McpServerTarget {
        tools: input.tools.iter().map(|t| t.name.to_string()).collect(),
        timeout: checked.timeout,
        refresh: input.listed.then_some(checked.refresh),
        passthrough: checked.passthrough,
        watch: input.listed.then(|| Watch {
            http: input.transport.mcp_http.clone(),
            credentials: input.credentials.cloned(),
            own: input.transport.own_credentials.clone(),
            changed: input.transport.tools_changed.clone(),
            watcher: std::sync::OnceLock::new(),
        }),
        sessions: Sessions::new(
            url.clone(),
            input.transport.mcp_http.clone(),
            checked.max_sessions,
            IDLE,
            checked.timeout,
        ),
        url,
    }))
}

/// The gateway's own credential for listing or watching `url` (DESIGN 2.8: discovery uses "the
/// target's own credential (none, API key or client credentials)"); `Ok(None)` for a target
/// without credentials. The RFC 8707 resource is the server's URL, as for a call.
async fn own_credential(
    credentials: Option<&Credentials>,
    own: Option<&Arc<dyn TargetCredentials>>,
    url: &str,
) -> Result<Option<Injection>, String> {
    let Some(credentials) = credentials else {
        return Ok(None);
    };
    let own = own.ok_or_else(|| {
        format!(
            "listing {url} needs the target's {:?} credential, and the config defines no provider or API key",
            credentials.provider()
        )
    })?;
    own.own_credential(credentials, Some(url))
        .await
        .map(Some)
        .map_err(|reason| format!("no credential to list {url} with: {reason}"))
}

/// The client for MCP servers: like HTTP targets' (no redirects, TCP_NODELAY) but without
/// reusing idle connections, as rmcp's own default client. rmcp's client does not read a
/// Streamable HTTP response to its very end before the connection goes back to the pool, and
/// on Linux the next request on it then waits ~40 ms for a delayed ACK: measured at 360 calls/s
/// through the gateway against an upstream without TCP_NODELAY (axum's default), 5k calls/s
/// with this client (benches/mcp_target.rs). The price is a connection per request (and a TLS
/// handshake per request to an https server).
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(0)
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// One remote MCP server.
pub struct McpServerTarget {
    url: Arc<str>,
    /// The server's tool names, by the index the catalog calls them with.
    tools: Vec<String>,
    timeout: Duration,
    /// Set when the tools were discovered: how often to list them again.
    refresh: Option<Duration>,
    /// `"passthrough": true`: calls carry the caller's own bearer token.
    passthrough: bool,
    sessions: Sessions,
    /// Discovered tools only: what hears the server's `tools/list_changed`.
    watch: Option<Watch>,
}

/// The session that hears the server's `tools/list_changed`, opened when the target serves.
struct Watch {
    http: reqwest::Client,
    /// The target's own credential, obtained afresh for each watching session.
    credentials: Option<Credentials>,
    own: Option<Arc<dyn TargetCredentials>>,
    changed: Arc<tokio::sync::Notify>,
    watcher: std::sync::OnceLock<Option<watch::Watcher>>,
}

impl std::fmt::Debug for McpServerTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServerTarget")
            .field("url", &self.url)
            .field("tools", &self.tools.len())
            .finish_non_exhaustive()
    }
}

impl Target for McpServerTarget {
    /// MCP authorization ("Resource Parameter Implementation", RFC 8707): a token for an MCP
    /// server is requested for the server's own URL.
    fn resource(&self) -> Option<&str> {
        Some(&self.url)
    }

    fn refresh_every(&self) -> Option<Duration> {
        self.refresh
    }

    fn forwards_caller_token(&self) -> bool {
        self.passthrough
    }

    /// An MCP server may send `elicitation/create` while it works on a call.
    fn may_elicit(&self) -> bool {
        true
    }

    fn activate(&self) {
        if let Some(watch) = &self.watch {
            watch.watcher.get_or_init(|| {
                watch::watch(watch::Watching {
                    url: self.url.clone(),
                    http: watch.http.clone(),
                    credentials: watch.credentials.clone(),
                    own: watch.own.clone(),
                    changed: watch.changed.clone(),
                })
            });
        }
    }

    fn invoke<'a>(
        &'a self,
        call: &'a ToolCall<'a>,
        credential: Option<&'a Injection>,
    ) -> BoxFuture<'a, Result<Invocation, TargetError>> {
        Box::pin(self.call(call, credential))
    }
}

impl McpServerTarget {
    async fn call(
        &self,
        call: &ToolCall<'_>,
        credential: Option<&Injection>,
    ) -> Result<Invocation, TargetError> {
        let name = self
            .tools
            .get(call.tool)
            .ok_or(TargetError::NoSuchTool(call.tool))?;
        let timeout_ms = self.timeout.as_millis();
        let work = async {
            let client = match self.sessions.session(call.user_id, credential).await {
                Ok(client) => client,
                Err(ConnectError::Refused(challenge)) => return Ok(self.refused(challenge)),
                Err(ConnectError::Failed(reason)) => return Err(TargetError::Unreachable(reason)),
            };
            let params = CallToolRequestParams::new(name.clone()).with_arguments(call.args.clone());
            let _in_flight = client.service().in_flight.register(call.elicitation);
            let answer = match call.progress {
                Some(sink) => progress::call_with_progress(&client, params, sink).await,
                None => client.call_tool(params).await,
            };
            match answer {
                Ok(result) => Ok(Invocation::answered(result)),
                Err(ServiceError::McpError(error)) => {
                    Ok(Invocation::answered(self.json_rpc_error(name, &error)))
                }
                Err(error) => {
                    // The session is unusable (closed, or the server refused the token on it):
                    // the next call opens a new one.
                    self.sessions.forget(call.user_id).await;
                    match sessions::refusal_of(&error) {
                        Some(challenge) => Ok(self.refused(challenge)),
                        None => Err(TargetError::Unreachable(format!(
                            "the MCP server {} failed: {error}",
                            self.url
                        ))),
                    }
                }
            }
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(outcome) => outcome,
            Err(_) => Err(TargetError::Timeout(timeout_ms)),
        }
    }

    /// The server answered HTTP 401: the pipeline refreshes the token once, then asks for
    /// consent (DESIGN 2.8: "an upstream 401 is handled like an HTTP target's").
    fn refused(&self, challenge: Option<String>) -> Invocation {
        Invocation {
            result: error_result(format!(
                "The MCP server {} refused the credential (HTTP 401).",
                self.url
            )),
            credential_refused: Some(Refusal { challenge }),
        }
    }

    /// A JSON-RPC error of the server's, as a tool result the model can read.
    fn json_rpc_error(&self, tool: &str, error: &rmcp::model::ErrorData) -> CallToolResult {
        error_result(format!(
            "The MCP server {} answered the call of {tool:?} with JSON-RPC error {}: {}",
            self.url, error.code.0, error.message
        ))
    }
}

#[cfg(test)]
mod tests;
