//! The MCP surface, on rmcp's Streamable HTTP server (DESIGN 2.5).
//!
//! rmcp negotiates the revision per request: 2025-03-26 / 2025-06-18 / 2025-11-25 clients
//! `initialize` and get an `Mcp-Session-Id`; 2026-07-28 clients are served statelessly
//! (`server/discover`, per-request `_meta`). This module only answers the two questions a
//! gateway has (which tools, run one) and leaves wire details to rmcp.
//!
//! Owns: the JSON-RPC shapes ([`errors`]), the mapping of call outcomes to each revision's
//! answer (`outcome`), and binding legacy sessions to their caller ([`session_owner`]). May
//! use: `call`, `catalog`, `identity` (the consent waiters), `inbound` (the caller), `targets`
//! (error wording), `vault` (legacy sessions in a shared store, [`shared_sessions`]).

mod elicitation;
pub mod errors;
mod outcome;
mod progress;
pub mod request_ids;
pub mod route;
pub mod search_tool;
pub mod session_owner;
mod sessions;
pub mod shared_sessions;

use std::borrow::Cow;
use std::sync::Arc;

use rmcp::handler::server::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ErrorData, Implementation, InitializeResult,
    ListToolsResult, PaginatedRequestParams, ProtocolVersion, ServerCapabilities, Tool,
};
use rmcp::service::{NotificationContext, RequestContext, RoleServer};

pub use errors::{json_rpc_client_errors, refuse_declared_oversize};
pub use outcome::{ConsentChannel, URL_ELICITATION_REQUIRED};
pub use search_tool::SearchConfig;
pub use session_owner::{SessionOwnerError, SessionOwners};
pub use sessions::SessionRegistry;
pub use shared_sessions::SharedSessions;

use crate::call::{CallOptions, CallOutcome, CallPipeline};
use crate::catalog::{Catalog, PAGE_SIZE};
use crate::inbound::Caller;

/// The path of the MCP endpoint, also the resource identifier's path (RFC 9728).
pub const PATH: &str = "/mcp";

/// The revisions DESIGN 2.5 commits to; rmcp picks the best match per request.
const SUPPORTED_VERSIONS: &[ProtocolVersion] = &[
    ProtocolVersion::V_2025_03_26,
    ProtocolVersion::V_2025_06_18,
    ProtocolVersion::V_2025_11_25,
    ProtocolVersion::V_2026_07_28,
];

/// What the MCP surface needs: the current catalog, the call pipeline and the live sessions.
pub struct McpState {
    /// Swapped whole on reload; a request keeps the snapshot it started with.
    pub catalog: Arc<arc_swap::ArcSwap<Catalog>>,
    pub pipeline: CallPipeline,
    pub sessions: SessionRegistry,
    /// `[search]`: whether `x_amz_bedrock_agentcore_search` is offered, and its result size.
    pub search: SearchConfig,
}

/// One handler per session (rmcp's factory clones it); all state is shared.
#[derive(Clone)]
pub struct McpGateway {
    state: Arc<McpState>,
}

impl McpGateway {
    pub fn new(state: Arc<McpState>) -> McpGateway {
        McpGateway { state }
    }
}

/// The authenticated caller, put into the HTTP request by `inbound::require_caller` and handed
/// to us by rmcp inside the request parts.
fn caller_of(extensions: &rmcp::model::Extensions) -> Result<Caller, ErrorData> {
    extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Caller>())
        .cloned()
        .ok_or_else(errors::missing_caller)
}

/// The bearer token the request carried (RFC 6750 section 2.1), which the inbound layer has
/// validated: only for a target that forwards it.
fn bearer_of(extensions: &rmcp::model::Extensions) -> Option<crate::secret::Secret> {
    let value = extensions
        .get::<http::request::Parts>()?
        .headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| crate::secret::Secret::new(token.trim().to_string()))
}

/// `_meta` may ask for a fresh consent (AgentCore's `forceAuthentication`).
fn force_authentication(meta: &serde_json::Map<String, serde_json::Value>) -> bool {
    ["portcullis/forceAuthentication", "forceAuthentication"]
        .iter()
        .any(|key| meta.get(*key).and_then(serde_json::Value::as_bool) == Some(true))
}

impl McpGateway {
    /// DESIGN 2.6: how this request's client learns a consent URL, from its revision and the
    /// `elicitation.url` capability it declared (per request in 2026-07-28, per session in
    /// 2025-11-25).
    fn consent_channel(context: &RequestContext<RoleServer>) -> ConsentChannel {
        let url_elicitation = context
            .client_capabilities()
            .and_then(|c| c.elicitation)
            .is_some_and(|e| e.url.is_some());
        ConsentChannel::for_client(context.protocol_version().as_ref(), url_elicitation)
    }
}

impl McpGateway {
    /// One `x_amz_bedrock_agentcore_search` call, audited like any tool call.
    fn search(
        &self,
        caller: &Caller,
        catalog: &Catalog,
        arguments: Option<&serde_json::Map<String, serde_json::Value>>,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let started = std::time::Instant::now();
        // The same filter as tools/list, applied before the results are cut.
        let policies = self.state.pipeline.policies();
        let outcome = search_tool::run(catalog, arguments, &self.state.search, |name| {
            policies.is_none_or(|p| p.may_list(caller, name))
        });
        crate::telemetry::tool_called(
            &caller.issuer,
            &caller.subject,
            search_tool::NAME,
            outcome.label(),
            started.elapsed(),
        );
        outcome::respond(outcome, Self::consent_channel(context))
    }
}

impl ServerHandler for McpGateway {
    fn get_info(&self) -> InitializeResult {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .build();
        InitializeResult::new(capabilities)
            .with_server_info(Implementation::new("portcullis", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Tools are named <target>___<tool>. Some tools act with the user's own account at a downstream service; if one asks you to open a URL, show it to the user and retry after they finish.",
            )
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(SUPPORTED_VERSIONS)
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let caller = caller_of(&context.extensions)?;
        let catalog = self.state.catalog.load();
        let cursor = request.as_ref().and_then(|r| r.cursor.as_deref());
        let (page, next) = catalog
            .page(cursor, PAGE_SIZE)
            .map_err(|e| errors::catalog_error(&e))?;
        let mut tools = Vec::with_capacity(page.len() + 1);
        // The search tool heads the first page (AgentCore lists it first as well).
        if self.state.search.enabled && cursor.is_none() {
            tools.push(search_tool::listing());
        }
        // Tools the caller can never be permitted to call are left out (DESIGN 2.10); a page
        // may then hold fewer than PAGE_SIZE tools, and its cursor still moves on.
        match self.state.pipeline.policies() {
            None => tools.extend(page.iter().map(|t| t.listing.clone())),
            Some(policies) => {
                let names: Vec<&str> = page.iter().map(|t| t.qualified_name.as_str()).collect();
                let listable = policies.listable(&caller, &names);
                tools.extend(
                    page.iter()
                        .zip(listable)
                        .filter(|(_, listable)| *listable)
                        .map(|(t, _)| t.listing.clone()),
                );
            }
        }
        let mut result = ListToolsResult::with_all_items(tools);
        result.next_cursor = next;
        Ok(result)
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        if self.state.search.enabled && name == search_tool::NAME {
            return Some(search_tool::listing());
        }
        self.state
            .catalog
            .load()
            .get(name)
            .map(|t| t.listing.clone())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = caller_of(&context.extensions)?;
        let catalog = self.state.catalog.load_full();
        if self.state.search.enabled && request.name == search_tool::NAME {
            return self.search(&caller, &catalog, request.arguments.as_ref(), &context);
        }
        let tool = catalog
            .get(&request.name)
            .ok_or_else(|| errors::unknown_tool(&request.name))?;
        // Per-request `_meta` (2026-07-28) or the params' own `_meta`.
        let options = CallOptions {
            force_authentication: force_authentication(&context.meta.0.0)
                || request
                    .meta
                    .as_ref()
                    .is_some_and(|m| force_authentication(&m.0.0)),
            progress: context
                .meta
                .get_progress_token()
                .map(|token| progress::relay(context.peer.clone(), token)),
            elicitation: if tool.target.runtime.may_elicit() {
                elicitation::relay_for(&context)
            } else {
                None
            },
            caller_token: if tool.target.runtime.forwards_caller_token() {
                bearer_of(&context.extensions)
            } else {
                None
            },
        };
        let args = request.arguments.unwrap_or_default();
        let message_id = context.id.to_string();
        // MCP 2025-11-25 "Cancellation": when the client cancels, the call is dropped where it
        // stands; an upstream MCP server then hears `notifications/cancelled` in turn (rmcp's
        // client sends it for a request dropped in flight), an HTTP or Lambda request is
        // abandoned.
        let outcome = tokio::select! {
            outcome = self.state.pipeline.run(&caller, tool, args, &message_id, options) => outcome,
            () = context.ct.cancelled() => {
                tracing::info!(tool = %request.name, "the client cancelled the call");
                return Err(errors::cancelled());
            }
        };
        let channel = Self::consent_channel(&context);
        if let (CallOutcome::NeedsConsent(prompt), ConsentChannel::ElicitationError) =
            (&outcome, channel)
            && let Some(identity) = self.state.pipeline.identity()
        {
            // The session hears `notifications/elicitation/complete` when the user is done.
            identity.await_completion(&prompt.id, context.peer.clone());
        }
        outcome::respond(outcome, channel)
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.state.sessions.register(context.peer);
    }
}
