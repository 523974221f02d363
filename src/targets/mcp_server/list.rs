//! Discovery: an `mcp` target without a static tool list serves the server's own `tools/list`
//! (every page, MCP 2025-11-25 "Pagination"), fetched at load and reload (DESIGN 2.8).
//!
//! Each tool is reduced to the target-file tool shape (name, description, inputSchema,
//! outputSchema, annotations), so that it passes the same checks as a written tool: a tool
//! the catalog cannot serve (a name it cannot prefix, an invalid schema) is skipped and
//! reported, the others load. A server that cannot be listed fails the file, which keeps its
//! last good version on reload.

use rmcp::model::Tool;
use serde_json::{Map, Value};

use super::sessions::{ConnectError, client_info, connect_as};
use super::{BoxFuture, SpecProblems, check};
use crate::targets::ListInput;

/// [`crate::targets::Lister`] of `mcp` targets.
pub fn list_tools<'a>(input: &'a ListInput<'a>) -> BoxFuture<'a, Result<Vec<Value>, String>> {
    Box::pin(async move {
        let mut problems = SpecProblems::default();
        let Some(checked) = check(input.section, &mut problems) else {
            let reasons: Vec<String> = problems
                .section
                .into_iter()
                .map(|(pointer, message)| format!("{pointer}: {message}"))
                .collect();
            return Err(reasons.join("; "));
        };
        let url = checked.url.as_str();
        let listing = async {
            let credential = super::own_credential(
                input.credentials,
                input.transport.own_credentials.as_ref(),
                url,
            )
            .await?;
            let client = connect_as(url, &input.transport.mcp_http, credential.as_ref(), client_info())
                .await
                .map_err(|error| match error {
                    ConnectError::Refused(_) if credential.is_some() => format!(
                        "tools/list of {url}: the server refused the target's credential (HTTP 401)"
                    ),
                    ConnectError::Refused(_) => format!(
                        "tools/list of {url}: the server requires a credential (HTTP 401); give the target `credentials` (an API key or client credentials) or a static `tools` list"
                    ),
                    ConnectError::Failed(reason) => format!("tools/list of {url}: {reason}"),
                })?;
            let tools = client
                .list_all_tools()
                .await
                .map_err(|error| format!("tools/list of {url} failed: {error}"));
            // Discovery needs no session afterwards; closing it tells the server so.
            let _ = client.cancel().await;
            tools
        };
        let tools = tokio::time::timeout(checked.timeout, listing)
            .await
            .map_err(|_| {
                format!(
                    "tools/list of {url} did not finish within {} ms",
                    checked.timeout.as_millis()
                )
            })??;
        Ok(tools.iter().map(tool_entry).collect())
    })
}

/// One listed tool in the target-file shape (`schemas/target.schema.json`, `$defs/tool`).
fn tool_entry(tool: &Tool) -> Value {
    let mut entry = Map::new();
    entry.insert("name".into(), Value::String(tool.name.to_string()));
    if let Some(description) = &tool.description {
        entry.insert("description".into(), Value::String(description.to_string()));
    }
    entry.insert(
        "inputSchema".into(),
        Value::Object(tool.input_schema.as_ref().clone()),
    );
    if let Some(output) = &tool.output_schema {
        entry.insert(
            "outputSchema".into(),
            Value::Object(output.as_ref().clone()),
        );
    }
    if let Some(annotations) = &tool.annotations
        && let Ok(annotations) = serde_json::to_value(annotations)
    {
        entry.insert("annotations".into(), annotations);
    }
    Value::Object(entry)
}
