//! The one place where module errors become what a client sees: HTTP responses for the
//! authentication layer, JSON-RPC errors for protocol mistakes, and `isError` tool results for
//! failures the model should read and correct (MCP 2025-06-18 "Tools: Error Handling").
//!
//! Wording here is part of the product: every message says what was wrong and where.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use rmcp::model::{CallToolResult, ContentBlock as Content, ErrorCode, ErrorData};
use serde_json::json;

use crate::catalog::{CatalogError, Credentials};
use crate::inbound::{AuthError, www_authenticate};
use crate::targets::TargetError;

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

/// rmcp answers some malformed requests (unparsable JSON, missing headers, oversized bodies)
/// with a plain-text 400/406/413/415. Clients expect a JSON-RPC error object (JSON-RPC 2.0 section 5.1: -32700 parse error,
/// -32600 invalid request, `id` null), so those bodies are rewritten here, on the error path
/// only; the message is kept because it says what was wrong.
pub async fn json_rpc_client_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let rewritable_status = matches!(
        response.status(),
        StatusCode::BAD_REQUEST
            | StatusCode::NOT_FOUND
            | StatusCode::NOT_ACCEPTABLE
            | StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    let is_json_or_stream = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/event-stream"));
    if !rewritable_status || is_json_or_stream {
        return response;
    }
    let (parts, body) = response.into_parts();
    let message = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
        Err(_) => "bad request".to_string(),
    };
    let code = if message.starts_with("fail to deserialize") {
        ErrorCode::PARSE_ERROR
    } else {
        ErrorCode::INVALID_REQUEST
    };
    let mut response = json_rpc_http_error(parts.status, code, &message);
    for (name, value) in parts
        .headers
        .iter()
        .filter(|(n, _)| *n != http::header::CONTENT_TYPE && *n != http::header::CONTENT_LENGTH)
    {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

/// A JSON-RPC error object (JSON-RPC 2.0 section 5.1, `id` null) as an HTTP error response.
fn json_rpc_http_error(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": null, "error": {"code": code.0, "message": message}});
    (status, Json(body)).into_response()
}

/// rmcp's wording for a session it does not know (its 404 body, rewritten above).
const UNKNOWN_SESSION: &str = "Not Found: Session not found";

/// MCP 2025-11-25 "Session Management": 404 for a session id this caller may not use, the
/// same answer as for an unknown one, so that a leaked id reveals nothing (DESIGN 3.2
/// invariant 8).
pub fn unknown_session_response() -> Response {
    json_rpc_http_error(
        StatusCode::NOT_FOUND,
        ErrorCode::INVALID_REQUEST,
        UNKNOWN_SESSION,
    )
}

/// A new MCP session could not be bound to its caller (too many live sessions): 503, retry.
pub fn session_owner_error_response(error: &crate::mcp::SessionOwnerError) -> Response {
    let mut response = json_rpc_http_error(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::INTERNAL_ERROR,
        &error.to_string(),
    );
    response
        .headers_mut()
        .insert(RETRY_AFTER, http::HeaderValue::from_static("60"));
    response
}

/// [`missing_caller`] at the HTTP layer: 500, a wiring bug, never a client mistake.
pub fn missing_caller_response() -> Response {
    let error = missing_caller();
    json_rpc_http_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        error.code,
        &error.message,
    )
}

/// MCP 2025-06-18 "Tools: Error Handling": an unknown tool is a protocol error, -32602.
pub fn unknown_tool(name: &str) -> ErrorData {
    ErrorData::new(
        ErrorCode::INVALID_PARAMS,
        format!("unknown tool {name:?}: tools/list shows the tools this gateway offers"),
        Some(json!({"tool": name})),
    )
}

pub fn catalog_error(error: &CatalogError) -> ErrorData {
    ErrorData::new(ErrorCode::INVALID_PARAMS, error.to_string(), None)
}

/// The caller identity is put in place by the authentication layer; its absence is a bug.
pub fn missing_caller() -> ErrorData {
    ErrorData::new(
        ErrorCode::INTERNAL_ERROR,
        "request reached the MCP handler without an authenticated caller",
        None,
    )
}

/// One argument-validation failure: `<JSON pointer>: <keyword>: <message>`.
pub fn describe_argument_error(error: &jsonschema::ValidationError<'_>) -> String {
    let pointer = error.instance_path().as_str();
    let pointer = if pointer.is_empty() { "/" } else { pointer };
    format!("{pointer}: {}: {error}", error.kind().keyword())
}

/// Tells the model exactly which arguments failed `inputSchema`, so it can correct itself.
pub fn invalid_arguments_result(failures: &[String]) -> CallToolResult {
    let mut text =
        String::from("Invalid arguments: the call did not match the tool's inputSchema.\n");
    for failure in failures {
        text.push_str("- ");
        text.push_str(failure);
        text.push('\n');
    }
    text.push_str("Fix these arguments and call the tool again.");
    CallToolResult::error(vec![Content::text(text)])
}

pub fn target_error_result(error: &TargetError) -> CallToolResult {
    CallToolResult::error(vec![Content::text(format!("Tool call failed: {error}"))])
}

/// A target declares a downstream credential this gateway cannot supply.
pub fn credential_unavailable_result(credentials: &Credentials) -> CallToolResult {
    let provider = match credentials {
        Credentials::Oauth(oauth) => &oauth.provider,
        Credentials::ApiKey(api_key) => &api_key.provider,
    };
    CallToolResult::error(vec![Content::text(format!(
        "This tool needs a credential from provider {provider:?}, which is not configured on this gateway; ask the administrator to add it under [providers] or [api_keys]."
    ))])
}

/// The API refused a token the provider had just issued: another consent would only get
/// another such token, so the caller learns why instead (DESIGN 2.3, issue 9 item 10).
pub fn fresh_token_refused_result(challenge: Option<&str>) -> CallToolResult {
    let challenge = challenge
        .map(|c| format!(" (WWW-Authenticate: {c})"))
        .unwrap_or_default();
    CallToolResult::error(vec![Content::text(format!(
        "The API answered HTTP 401{challenge} to a token the provider had just issued, so connecting the account again would not help. The provider issues tokens this API does not accept: the administrator should check the RFC 8707 `resource` (the target credential's or the provider's) and the scopes."
    ))])
}

/// A credential could not be obtained for a reason other than missing consent.
pub fn credential_error_result(error: &crate::identity::IdentityError) -> CallToolResult {
    CallToolResult::error(vec![Content::text(format!(
        "Could not obtain the downstream credential for this tool: {error}"
    ))])
}

/// MCP 2025-11-25 "URL Elicitation Required" (-32042): the client shows `url` to the user.
pub const URL_ELICITATION_REQUIRED: ErrorCode = ErrorCode(-32042);

fn elicitation_json(prompt: &crate::identity::ConsentPrompt) -> serde_json::Value {
    json!({"mode": "url", "elicitationId": prompt.id, "url": prompt.url, "message": prompt.message})
}

/// For 2025-11-25 clients that declared `elicitation.url`.
pub fn consent_error(prompt: &crate::identity::ConsentPrompt) -> ErrorData {
    ErrorData::new(
        URL_ELICITATION_REQUIRED,
        format!(
            "This request requires connecting your {} account.",
            prompt.provider
        ),
        Some(json!({"elicitations": [elicitation_json(prompt)]})),
    )
}

/// For 2026-07-28 clients: an `input_required` result (SEP-2322 MRTR) carrying a URL-mode
/// elicitation; the client retries the call once the user is done.
pub fn consent_input_required(
    prompt: &crate::identity::ConsentPrompt,
) -> rmcp::model::InputRequiredResult {
    let request =
        rmcp::model::ElicitRequest::new(rmcp::model::ElicitRequestParams::UrlElicitationParams {
            meta: None,
            message: prompt.message.clone(),
            url: prompt.url.clone(),
            elicitation_id: prompt.id.clone(),
        });
    let mut requests = rmcp::model::InputRequests::new();
    requests.insert(
        prompt.id.clone(),
        rmcp::model::InputRequest::Elicitation(request),
    );
    rmcp::model::InputRequiredResult::from_input_requests(requests)
}

/// For every other client: an `isError` result whose text holds the absolute URL.
pub fn consent_tool_result(prompt: &crate::identity::ConsentPrompt) -> CallToolResult {
    CallToolResult::error(vec![Content::text(format!(
        "{} Open this URL in a browser: {}\nThen call the tool again.",
        prompt.message, prompt.url
    ))])
}

/// The identity API's errors as restJson1 (Smithy "AWS restJson1 protocol", error
/// serialization): the status of the error shape, the shape's name in `x-amzn-ErrorType`
/// (botocore reads the code from this header), and a JSON body with `message`; a
/// ValidationException also carries `reason` and `fieldList` as the model defines them.
pub fn identity_api_error(error: &crate::identity::api::ApiError, request_id: &str) -> Response {
    use crate::identity::api::ApiError;
    let (status, error_type) = error.error_type();
    let body = match error {
        ApiError::Validation {
            reason,
            field,
            message,
        } => {
            let fields: Vec<serde_json::Value> = field
                .iter()
                .map(|name| {
                    let problem = message
                        .strip_prefix(&format!("{name}: "))
                        .unwrap_or(message);
                    json!({"name": name, "message": problem})
                })
                .collect();
            json!({"message": message, "reason": reason.as_str(), "fieldList": fields})
        }
        other => json!({"message": other.to_string()}),
    };
    let mut response = (status, Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        "x-amzn-errortype",
        http::HeaderValue::from_static(error_type),
    );
    if let Ok(value) = http::HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parts(response: Response) -> (StatusCode, String) {
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_session_refused_as_not_yours_reads_exactly_like_rmcps_unknown_session() {
        use tower::ServiceExt as _;
        // rmcp's own answer for an unknown session, through the rewriting layer.
        let rmcp_like = axum::Router::new()
            .route(
                "/mcp",
                axum::routing::post(|| async { (StatusCode::NOT_FOUND, UNKNOWN_SESSION) }),
            )
            .layer(axum::middleware::from_fn(json_rpc_client_errors));
        let request = http::Request::post("/mcp")
            .body(axum::body::Body::empty())
            .unwrap();
        let rewritten = parts(rmcp_like.oneshot(request).await.unwrap()).await;
        assert_eq!(rewritten, parts(unknown_session_response()).await);
        let body: serde_json::Value = serde_json::from_str(&rewritten.1).unwrap();
        assert_eq!(body["error"]["code"], -32600);
        assert_eq!(body["id"], serde_json::Value::Null);
    }
}
