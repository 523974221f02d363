//! Operational endpoints: RFC 9728 metadata, health, readiness, metrics.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use crate::{GatewayState, MCP_PATH};

fn metadata(state: &GatewayState, resource_path: &str) -> Response {
    let snapshot = state.keys.snapshot();
    Json(crate::inbound::protected_resource_metadata(
        &state.config.server.public_url,
        resource_path,
        snapshot.issuer.as_deref(),
        &state.config.inbound.allowed_scopes,
    ))
    .into_response()
}

/// RFC 9728 section 3 for the resource `<public_url>`.
pub async fn resource_metadata_root(State(state): State<Arc<GatewayState>>) -> Response {
    metadata(&state, "")
}

/// RFC 9728 section 3.1 for the resource `<public_url>/mcp`.
pub async fn resource_metadata_mcp(State(state): State<Arc<GatewayState>>) -> Response {
    metadata(&state, MCP_PATH)
}

/// Liveness: the process answers.
pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// Readiness: inbound keys are loaded and the catalog holds at least one target.
pub async fn readyz(State(state): State<Arc<GatewayState>>) -> Response {
    let keys = state.keys.is_loaded();
    let catalog = state.catalog.load();
    let targets = catalog.target_count();
    let body = json!({
        "status": if keys { "ready" } else { "not_ready" },
        "inbound_keys_loaded": keys,
        "targets": targets,
        "tools": catalog.len(),
    });
    let status = if keys {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Prometheus text exposition.
pub async fn metrics() -> Response {
    match crate::telemetry::metrics_handle() {
        Some(handle) => (
            [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable",
        )
            .into_response(),
    }
}
