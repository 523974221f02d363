//! Result shaping shared by every kind: how a body or a JSON value becomes a tool result.

use rmcp::model::{CallToolResult, ContentBlock as Content};
use serde_json::Value;

/// The `WWW-Authenticate` value kept for an explanation is at most this long.
const MAX_CHALLENGE_CHARS: usize = 512;

/// A refusal's `WWW-Authenticate` challenge (RFC 6750 section 3) as it may be shown to the
/// caller: printable ASCII only and bounded; `None` when nothing printable is left.
pub fn printable_challenge(value: &str) -> Option<String> {
    let printable: String = value
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(MAX_CHALLENGE_CHARS)
        .collect();
    (!printable.is_empty()).then_some(printable)
}

/// Bytes of a failing response body kept in the error shown to the model.
pub const ERROR_EXCERPT_BYTES: usize = 2048;

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

/// An `isError` result the target itself produced (an HTTP error status, a function error).
pub fn error_result(text: String) -> CallToolResult {
    CallToolResult::error(vec![Content::text(text)])
}
