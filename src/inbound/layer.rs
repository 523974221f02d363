//! The axum middleware that turns `Authorization: Bearer` into a [`Caller`] extension.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::header::AUTHORIZATION;

use super::{AuthError, Verifier};

/// What the middleware needs: the verifier and where the resource metadata lives.
pub struct AuthLayerState {
    pub verifier: Verifier,
    pub public_url: String,
    /// The protected resource's path, for the `resource_metadata` URL in challenges.
    pub resource_path: &'static str,
}

/// Rejects the request (401/403/503 via [`super::challenge`]) unless it carries an acceptable token;
/// otherwise inserts the [`super::Caller`] into the request extensions for the handlers.
pub async fn require_caller(
    State(state): State<Arc<AuthLayerState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let outcome = match bearer_token(&request) {
        Ok(token) => state.verifier.verify(token).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(error) => {
            tracing::info!(%error, path = request.uri().path(), "request refused");
            crate::telemetry::auth_refused(error.reason());
            super::challenge::auth_error_response(&error, &state.public_url, state.resource_path)
        }
    }
}

/// RFC 6750 section 2.1: `Bearer` (case-insensitive scheme) followed by the token.
fn bearer_token(request: &Request) -> Result<&str, AuthError> {
    let Some(value) = request.headers().get(AUTHORIZATION) else {
        return Err(AuthError::MissingToken);
    };
    let value = value
        .to_str()
        .map_err(|_| AuthError::InvalidToken("Authorization header is not ASCII".into()))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(AuthError::MissingToken),
    }
}
