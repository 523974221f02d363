//! Operational endpoints: RFC 9728 metadata, health, readiness, metrics.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use arc_swap::ArcSwap;

use crate::catalog::Catalog;
use crate::inbound::KeyStore;
use crate::vault::Store;

/// What the operational endpoints look at.
pub struct OpsState {
    pub keys: Arc<KeyStore>,
    pub catalog: Arc<ArcSwap<Catalog>>,
    /// `None` without per-user OAuth (then no vault is opened).
    pub store: Option<Arc<dyn Store>>,
    pub public_url: String,
    pub scopes: Vec<String>,
}

fn metadata(state: &OpsState, resource_path: &str) -> Response {
    let snapshot = state.keys.snapshot();
    Json(crate::inbound::protected_resource_metadata(
        &state.public_url,
        resource_path,
        snapshot.issuer.as_deref(),
        &state.scopes,
    ))
    .into_response()
}

/// RFC 9728 section 3 for the resource `<public_url>`.
pub async fn resource_metadata_root(State(state): State<Arc<OpsState>>) -> Response {
    metadata(&state, "")
}

/// RFC 9728 section 3.1 for the resource `<public_url>/mcp`.
pub async fn resource_metadata_mcp(State(state): State<Arc<OpsState>>) -> Response {
    metadata(&state, crate::mcp::PATH)
}

/// Liveness: the process answers.
pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// Readiness (DESIGN 2.4): the inbound keys are loaded and, when per-user OAuth is on, the
/// vault answers a read. The catalog's size is reported but never makes the gateway unready:
/// a gateway with no targets yet still authenticates and answers `tools/list`.
pub async fn readyz(State(state): State<Arc<OpsState>>) -> Response {
    let keys = state.keys.is_loaded();
    let vault = match &state.store {
        None => None,
        Some(store) => Some(match store.check().await {
            Ok(()) => Ok(()),
            Err(error) => {
                tracing::warn!(%error, "readiness: the vault does not answer");
                Err(error.to_string())
            }
        }),
    };
    let vault_ok = vault.as_ref().is_none_or(Result::is_ok);
    let ready = keys && vault_ok;
    let catalog = state.catalog.load();
    let mut body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "inbound_keys_loaded": keys,
        "targets": catalog.target_count(),
        "tools": catalog.len(),
    });
    if let Some(vault) = vault {
        body["vault"] = json!(if vault.is_ok() { "ok" } else { "unavailable" });
    }
    let status = if ready {
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
