//! JSON-RPC error shapes (JSON-RPC 2.0 section 5.1) for what goes wrong before a tool runs:
//! rmcp's plain-text transport refusals rewritten, unknown sessions and tools, bad cursors.
//! Tool-call outcomes are shaped in [`super::outcome`].

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::RETRY_AFTER;
use rmcp::model::{ErrorCode, ErrorData};
use serde_json::json;

use crate::catalog::CatalogError;

/// Refuses a request whose declared `Content-Length` exceeds `limit` before a byte of the body
/// is read (RFC 9110 section 15.5.14, 413). rmcp enforces the same limit while reading, so
/// without this a client announcing an oversized body made the gateway wait for and read up to
/// `limit` bytes first; a body without a length is still bounded by rmcp as it streams.
pub async fn refuse_declared_oversize(
    axum::extract::State(limit): axum::extract::State<usize>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > u64::try_from(limit).unwrap_or(u64::MAX)) {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body exceeds {limit} bytes"),
        )
            .into_response();
    }
    next.run(request).await
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
pub fn session_owner_error_response(error: &super::SessionOwnerError) -> Response {
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

/// A `tools/list` cursor this gateway did not issue: -32602.
pub fn catalog_error(error: &CatalogError) -> ErrorData {
    ErrorData::new(ErrorCode::INVALID_PARAMS, error.to_string(), None)
}

/// A request its client cancelled (MCP 2025-11-25 "Cancellation"). The client ignores any
/// answer to a cancelled request, so this is only what rmcp's server loop sends regardless;
/// -32800 is the code JSON-RPC peers commonly use for it (LSP's `RequestCancelled`).
pub fn cancelled() -> ErrorData {
    ErrorData::new(
        ErrorCode(-32800),
        "the request was cancelled by the client",
        None,
    )
}

/// The caller identity is put in place by the authentication layer; its absence is a bug.
pub fn missing_caller() -> ErrorData {
    ErrorData::new(
        ErrorCode::INTERNAL_ERROR,
        "request reached the MCP handler without an authenticated caller",
        None,
    )
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
