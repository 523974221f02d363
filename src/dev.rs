//! Routes that exist only under `--dev`: the development issuer's discovery document and
//! JWKS, and a tiny echo API that the example `targets/echo.json` calls, so a fresh clone can
//! make a real tool call with no network and no accounts.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value, json};

use crate::GatewayState;

pub fn routes() -> Router<Arc<GatewayState>> {
    Router::new()
        .route("/dev/.well-known/openid-configuration", get(discovery))
        .route("/dev/jwks.json", get(jwks))
        .route("/dev/echo/say", post(echo_say))
        .route("/dev/echo/headers", get(echo_headers))
}

async fn discovery(State(state): State<Arc<GatewayState>>) -> Response {
    match &state.dev_issuer {
        Some(issuer) => Json(issuer.discovery_document()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn jwks(State(state): State<Arc<GatewayState>>) -> Response {
    match &state.dev_issuer {
        Some(issuer) => Json(issuer.jwks()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn echo_say(Json(body): Json<Map<String, Value>>) -> Response {
    Json(json!({"echo": body.get("text").cloned().unwrap_or(Value::Null)})).into_response()
}

async fn echo_headers(headers: HeaderMap) -> Response {
    let seen: Map<String, Value> = headers
        .iter()
        .map(|(name, value)| {
            (
                name.to_string(),
                Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned()),
            )
        })
        .collect();
    Json(json!({"headers": seen})).into_response()
}
