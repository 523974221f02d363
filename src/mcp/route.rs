//! The `/mcp` route: rmcp's Streamable HTTP service behind the gateway's own layers.
//!
//! Layers run outermost-last: authenticate first (`inbound`), then rewrite rmcp's plain-text
//! errors, then check that a session id belongs to the caller (DESIGN 3.2 invariant 8), then
//! refuse a declared body over the limit before reading it, then a request id already in
//! flight in its session. Idle legacy sessions are closed by a timer here rather than by rmcp
//! (`session_owner` says why).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use super::{McpGateway, McpState, PATH, SessionOwners, SharedSessions};
use crate::inbound::{self, AuthLayerState};
use crate::vault::Store;

/// Idle time before a session with a vault record is closed in memory: restoring it costs one
/// vault read and an `initialize` replay, so little is lost by closing early.
const IDLE_RESTORABLE: Duration = Duration::from_secs(60);
/// Without a vault a closed session is gone (the client gets 404 and initializes again, MCP
/// 2025-11-25 "Session Management" 4.), so it is kept as long as rmcp's own default.
const IDLE_IN_MEMORY_ONLY: Duration = Duration::from_secs(300);

/// How the route is set up, from `[server]` and the gateway's public URL.
pub struct McpRouteConfig {
    pub max_body_bytes: usize,
    /// `server.mcp_session_idle_seconds`, if set.
    pub session_idle: Option<Duration>,
    /// DNS-rebinding protection (MCP 2025-06-18 "Security Warning").
    pub allowed_hosts: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub auth: Arc<AuthLayerState>,
}

/// The route; `store` is the vault's, where legacy sessions are kept so that they outlive
/// their time in memory and any replica on a shared store serves them (DESIGN 2.9).
pub fn route(
    state: Arc<McpState>,
    store: Option<Arc<dyn Store>>,
    config: McpRouteConfig,
    shutdown: &CancellationToken,
) -> Router {
    let mut rmcp_sessions = LocalSessionManager::default();
    // Idle is decided by `SessionOwners::close_idle` from what the session has open.
    rmcp_sessions.session_config.keep_alive = None;
    let rmcp_sessions = Arc::new(rmcp_sessions);
    let mut session_owners = SessionOwners::new(rmcp_sessions.clone());
    let mut rmcp_config = StreamableHttpServerConfig::default();
    let restorable = store.is_some();
    if let Some(store) = store {
        let shared = SharedSessions::new(store);
        rmcp_config.session_store = Some(Arc::new(shared.clone()));
        session_owners = session_owners.with_shared(shared);
    }
    let session_owners = Arc::new(session_owners);
    let idle = config.session_idle.unwrap_or(if restorable {
        IDLE_RESTORABLE
    } else {
        IDLE_IN_MEMORY_ONLY
    });
    close_idle_sessions(session_owners.clone(), idle, shutdown);
    let service = StreamableHttpService::new(
        move || Ok(McpGateway::new(state.clone())),
        rmcp_sessions,
        rmcp_config
            .with_allowed_hosts(config.allowed_hosts)
            .with_allowed_origins(config.allowed_origins)
            .enforce_origin_validation()
            .with_max_request_body_bytes(config.max_body_bytes)
            // Stateless (2026-07-28) answers that are one message go out as one
            // `application/json` body (one write) instead of an SSE stream (a write per event);
            // rmcp still streams when a handler sends anything before its result. Sessions are
            // unaffected: their POST streams stay SSE with a priming event (resumable).
            .with_json_response(true)
            .with_cancellation_token(shutdown.child_token()),
    );
    Router::new()
        .route_service(PATH, service)
        .route_layer(axum::middleware::from_fn_with_state(
            (Arc::default(), config.max_body_bytes),
            super::request_ids::refuse_duplicate_request_ids,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            config.max_body_bytes,
            super::refuse_declared_oversize,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            session_owners,
            super::session_owner::bind_sessions_to_callers,
        ))
        .route_layer(axum::middleware::from_fn(super::json_rpc_client_errors))
        .route_layer(axum::middleware::from_fn_with_state(
            config.auth,
            inbound::require_caller,
        ))
}

/// Sweeps for idle sessions four times per idle period (at most every 15 s, at least every
/// 100 ms), so a session is closed between `idle` and 1.25 x `idle` after its last use.
fn close_idle_sessions(owners: Arc<SessionOwners>, idle: Duration, shutdown: &CancellationToken) {
    let shutdown = shutdown.child_token();
    let period = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(15));
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {
                    let (closed, left) = owners.close_idle(idle).await;
                    crate::telemetry::mcp_sessions_swept(closed, left);
                }
            }
        }
    });
}
