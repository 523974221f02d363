//! RFC 6750 section 3 refusals: the status, the `WWW-Authenticate` challenge and an RFC 6749
//! section 5.2 style JSON body for every [`AuthError`].

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use serde_json::json;

use super::{AuthError, www_authenticate};

/// 401 / 403 / 503 with the RFC 6750 section 3 challenge and an RFC 6749 style JSON body.
pub fn auth_error_response(error: &AuthError, public_url: &str, resource_path: &str) -> Response {
    let (status, code) = match error {
        AuthError::MissingToken => (StatusCode::UNAUTHORIZED, "invalid_request"),
        AuthError::InvalidToken(_) => (StatusCode::UNAUTHORIZED, "invalid_token"),
        AuthError::InsufficientScope(_) => (StatusCode::FORBIDDEN, "insufficient_scope"),
        AuthError::KeysUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable"),
    };
    let challenge = www_authenticate(error, public_url, resource_path);
    let body = Json(json!({"error": code, "error_description": error.to_string()}));
    let mut response = (status, body).into_response();
    if let Ok(value) = challenge.parse() {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    if matches!(error, AuthError::KeysUnavailable) {
        response
            .headers_mut()
            .insert(RETRY_AFTER, http::HeaderValue::from_static("2"));
    }
    response
}
