//! Small helpers for reading MCP results in tests.
#![allow(dead_code)]

use rmcp::model::CallToolResult;

/// All text blocks of a tool result, joined by newlines.
pub fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}
