//! Routes that exist only under `--dev`: the development issuer's discovery document and
//! JWKS, and a tiny echo API that the example `targets/echo.json` calls, so a fresh clone can
//! make a real tool call with no network and no accounts.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::HeaderMap;
use serde_json::{Map, Value, json};

use crate::inbound::DevIssuer;

/// The dev routes; the issuer's are only there when the gateway runs its own issuer.
pub fn routes(issuer: Option<Arc<DevIssuer>>) -> Router {
    let echo = Router::new()
        .route("/dev/echo/say", post(echo_say))
        .route("/dev/echo/headers", get(echo_headers));
    match issuer {
        Some(issuer) => echo.merge(
            Router::new()
                .route("/dev/.well-known/openid-configuration", get(discovery))
                .route("/dev/jwks.json", get(jwks))
                .with_state(issuer),
        ),
        None => echo,
    }
}

async fn discovery(State(issuer): State<Arc<DevIssuer>>) -> Response {
    Json(issuer.discovery_document()).into_response()
}

async fn jwks(State(issuer): State<Arc<DevIssuer>>) -> Response {
    Json(issuer.jwks()).into_response()
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
