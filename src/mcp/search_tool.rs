//! The tool-search tool, `x_amz_bedrock_agentcore_search` (DESIGN 2.11).
//!
//! AgentCore Gateway's name and argument shape (`{"query": "<natural language>"}`), so an
//! agent written for AgentCore's semantic search works unchanged. The answer lists the best
//! matching tools, best first, as the same tool definitions `tools/list` gives, in
//! `structuredContent.tools` and, for clients that read only `content`, as JSON text (MCP
//! 2025-06-18 "Structured Content": a tool returning structured content should also return it
//! serialized in a text block).
//!
//! The ranking is the catalog snapshot's [`crate::search::SearchIndex`]; this module only
//! checks the arguments, applies the caller's filter and shapes the answer. A caller is never
//! shown a tool it may not call: the filter is applied before the results are cut to
//! `max_results`.

use std::sync::Arc;

use rmcp::model::{CallToolResult, ContentBlock as Content, Tool, ToolAnnotations};
use serde_json::{Map, Value, json};

use crate::call::CallOutcome;
use crate::catalog::Catalog;

/// AgentCore Gateway's name for the search tool; not prefixed with a target (no target owns it).
pub const NAME: &str = "x_amz_bedrock_agentcore_search";

/// The longest query accepted: a tool request, not a document (and a bound on the work).
const MAX_QUERY_CHARS: usize = 1_000;

/// `[search]` as validated (DESIGN 2.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchConfig {
    /// Whether the tool is offered at all.
    pub enabled: bool,
    /// How many tools one answer holds at most.
    pub max_results: usize,
}

impl SearchConfig {
    /// The largest `max_results` accepted: more would defeat the point of searching.
    pub const MAX_RESULTS_LIMIT: usize = 50;
}

impl Default for SearchConfig {
    fn default() -> SearchConfig {
        SearchConfig {
            enabled: false,
            max_results: 10,
        }
    }
}

/// The search tool's `tools/list` entry.
pub fn listing() -> Tool {
    let input = json!({
        "type": "object",
        "properties": {
            "query": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_QUERY_CHARS,
                "description": "What the tool should do, in natural language (for example \"open an issue in a repository\")."
            }
        },
        "required": ["query"],
        "additionalProperties": false
    });
    let output = json!({
        "type": "object",
        "properties": {
            "tools": {
                "type": "array",
                "description": "The most relevant tools, best first, as tools/list defines them.",
                "items": {"type": "object"}
            }
        },
        "required": ["tools"]
    });
    let (Value::Object(input), Value::Object(output)) = (input, output) else {
        unreachable!("json! object literals are objects")
    };
    Tool::new_with_raw(
        NAME,
        Some(
            "Search this gateway's tools with a natural-language query. Returns the most relevant tools you may call, best first, with their full definitions; call them by name afterwards."
                .into(),
        ),
        Arc::new(input),
    )
    .with_raw_output_schema(Arc::new(output))
    .with_annotations(
        ToolAnnotations::new()
            .read_only(true)
            .destructive(false)
            .idempotent(true)
            .open_world(false),
    )
}

/// Answers one search call on `catalog`. `allowed` says whether the caller may call a tool
/// (today every listed tool; the policy filter once `[policy]` exists).
pub fn run(
    catalog: &Catalog,
    arguments: Option<&Map<String, Value>>,
    config: &SearchConfig,
    allowed: impl Fn(&str) -> bool,
) -> CallOutcome {
    let query = match query_of(arguments) {
        Ok(query) => query,
        Err(failures) => return CallOutcome::InvalidArguments(failures),
    };
    let Some(index) = catalog.search_index() else {
        return error_result(
            "Tool search is unavailable: the search index of the current catalog could not be built (see the gateway's log). Use tools/list instead.",
        );
    };
    let hits = match index.search(query, config.max_results, allowed) {
        Ok(hits) => hits,
        Err(error) => return error_result(&format!("Tool search failed: {error}.")),
    };
    let tools: Vec<Value> = hits
        .iter()
        .filter_map(|hit| catalog.get(&hit.name))
        .filter_map(|tool| serde_json::to_value(&tool.listing).ok())
        .collect();
    // No match is an empty list, not an error: the text block stays the same JSON.
    CallOutcome::Answered(CallToolResult::structured(json!({ "tools": tools })))
}

/// The query, or the argument failures in the pipeline's `<pointer>: <keyword>: <message>` form.
fn query_of(arguments: Option<&Map<String, Value>>) -> Result<&str, Vec<String>> {
    let Some(arguments) = arguments else {
        return Err(vec!["/: required: \"query\" is a required property".into()]);
    };
    let mut failures: Vec<String> = arguments
        .keys()
        .filter(|key| key.as_str() != "query")
        .map(|key| {
            format!(
                "/: additionalProperties: {key:?} is not allowed (the only argument is \"query\")"
            )
        })
        .collect();
    let query = match arguments.get("query") {
        None => {
            failures.push("/: required: \"query\" is a required property".into());
            None
        }
        Some(Value::String(query)) if query.trim().is_empty() => {
            failures.push("/query: minLength: the query is empty".into());
            None
        }
        Some(Value::String(query)) if query.chars().count() > MAX_QUERY_CHARS => {
            failures.push(format!(
                "/query: maxLength: the query is longer than {MAX_QUERY_CHARS} characters"
            ));
            None
        }
        Some(Value::String(query)) => Some(query.as_str()),
        Some(other) => {
            failures.push(format!(
                "/query: type: {} is not of type \"string\"",
                json_type(other)
            ));
            None
        }
    };
    match query {
        Some(query) if failures.is_empty() => Ok(query),
        _ => Err(failures),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn error_result(text: &str) -> CallOutcome {
    CallOutcome::Answered(CallToolResult::error(vec![Content::text(text)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_string_query_is_the_only_argument() {
        assert_eq!(
            query_of(Some(&args(json!({"query": "open an issue"})))),
            Ok("open an issue")
        );
        let failures = query_of(Some(&args(json!({"query": 3, "limit": 5})))).unwrap_err();
        assert_eq!(
            failures,
            vec![
                "/: additionalProperties: \"limit\" is not allowed (the only argument is \"query\")",
                "/query: type: a number is not of type \"string\"",
            ]
        );
        assert_eq!(
            query_of(None).unwrap_err(),
            vec!["/: required: \"query\" is a required property"]
        );
        assert_eq!(
            query_of(Some(&args(json!({"query": "   "})))).unwrap_err(),
            vec!["/query: minLength: the query is empty"]
        );
        let long = "a".repeat(MAX_QUERY_CHARS + 1);
        assert!(
            query_of(Some(&args(json!({ "query": long })))).unwrap_err()[0]
                .starts_with("/query: maxLength")
        );
    }

    #[test]
    fn the_listing_is_a_read_only_tool_with_both_schemas() {
        let tool = listing();
        assert_eq!(tool.name, NAME);
        assert_eq!(tool.input_schema["required"], json!(["query"]));
        assert!(tool.output_schema.is_some());
        assert_eq!(
            tool.annotations.as_ref().and_then(|a| a.read_only_hint),
            Some(true)
        );
    }
}
