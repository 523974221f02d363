//! How a tool runs: one module per target kind, sharing result shaping (DESIGN 2.3).

pub mod http;
pub mod lambda;

use rmcp::model::{CallToolResult, ContentBlock as Content};
use serde_json::Value;

pub use self::http::HttpInvoker;
pub use self::lambda::LambdaInvoker;

/// Bytes of a failing response body kept in the error shown to the model.
pub const ERROR_EXCERPT_BYTES: usize = 2048;

/// Why a target could not produce a result. Every variant becomes an `isError` tool result
/// (MCP 2025-06-18 "Error Handling": tool execution errors are reported in the result so the
/// model can see them), via [`crate::edge::target_error_result`].
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("argument {name:?} {problem}")]
    BadArgument { name: String, problem: String },
    #[error("the target did not answer within {0} ms")]
    Timeout(u128),
    #[error("the target could not be reached: {0}")]
    Unreachable(String),
    #[error("the target's response exceeded {0} bytes")]
    TooLarge(usize),
    #[error("the Lambda invocation failed: {0}")]
    Lambda(String),
    #[error("the downstream credential cannot be sent: {0}")]
    Credential(String),
}

/// Reads a response body, refusing to buffer more than `limit` bytes.
pub async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, TargetError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(TargetError::TooLarge(limit));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| TargetError::Unreachable(e.without_url().to_string()))?
    {
        if body.len() + chunk.len() > limit {
            return Err(TargetError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A JSON value as a tool result: objects also become `structuredContent` (MCP 2025-06-18
/// "Structured Content": a text block carrying the same JSON keeps older clients working).
pub fn json_result(value: Value) -> CallToolResult {
    let text = match &value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut result = CallToolResult::success(vec![Content::text(text)]);
    if value.is_object() {
        result.structured_content = Some(value);
    }
    result
}

/// A response body that may or may not be JSON.
pub fn body_result(body: &[u8], is_json: bool) -> CallToolResult {
    if is_json && let Ok(value) = serde_json::from_slice::<Value>(body) {
        return json_result(value);
    }
    CallToolResult::success(vec![Content::text(
        String::from_utf8_lossy(body).into_owned(),
    )])
}

/// The first [`ERROR_EXCERPT_BYTES`] of a body, cut at a character boundary.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(ERROR_EXCERPT_BYTES)]).into_owned();
    if body.len() > ERROR_EXCERPT_BYTES {
        format!("{text}… ({} bytes in all)", body.len())
    } else {
        text
    }
}

/// Error result text, shared by both target kinds.
pub fn error_result(text: String) -> CallToolResult {
    CallToolResult::error(vec![Content::text(text)])
}
