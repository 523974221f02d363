//! OpenAPI targets (DESIGN 2.8): `"openapi": {"specFile": ..., "baseUrl": ...}`.
//!
//! The document is compiled at load into an HTTP target: each operation becomes a tool with a
//! generated `http` mapping ([`operations`]), and the HTTP kind builds and runs it, so an
//! OpenAPI tool costs a call exactly what a hand-mapped HTTP tool costs and follows the same
//! mapping, credential and result rules. Operations that cannot be mapped are reported with
//! their JSON pointer in the document and skipped; the rest load. An `apiKey` credential that
//! does not say where its key goes takes the document's security scheme ([`security`]).

mod document;
mod operations;
mod schema;
mod security;

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::{Value, json};

use super::{DescribeInput, Described, DescribedTool, Kind, Located, SpecProblems, ToolSource};

/// The registry entry: `"openapi": {...}` in a target file; its tools come from the document.
pub const KIND: Kind = Kind {
    key: "openapi",
    tool_key: None,
    tools: ToolSource::Described(describe),
    build: super::http::build,
};

/// The `openapi` section of a target file, as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OpenApiSpec {
    spec_file: String,
    base_url: Option<String>,
    operations: Option<Vec<String>>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    timeout_ms: Option<u64>,
    max_response_bytes: Option<u64>,
}

fn describe(input: &DescribeInput<'_>, problems: &mut SpecProblems) -> Option<Described> {
    let spec: OpenApiSpec = super::section(input.section, problems)?;
    let path = match super::file_beside(input.target_file, &spec.spec_file) {
        Ok(path) => path,
        Err(message) => {
            problems.in_section("/specFile", message);
            return None;
        }
    };
    let doc = match document::read(&path) {
        Ok(doc) => doc,
        Err(error) => {
            problems.in_section("/specFile", format!("{}: {error}", path.display()));
            return None;
        }
    };
    let base_url = match (&spec.base_url, server_url(&doc.root)) {
        (Some(base), _) => base.clone(),
        (None, Ok(url)) => url,
        (None, Err(message)) => {
            problems.in_section("", message);
            return None;
        }
    };
    let allow: Option<BTreeSet<&str>> = spec
        .operations
        .as_ref()
        .map(|ids| ids.iter().map(String::as_str).collect());
    let (found, skipped) = operations::operations(&doc, allow.as_ref());
    let mut skipped: Vec<Located> = skipped
        .into_iter()
        .map(|s| Located {
            file: path.clone(),
            pointer: s.pointer,
            message: s.message,
        })
        .collect();
    for (i, id) in spec.operations.iter().flatten().enumerate() {
        let known = found.iter().any(|o| o.operation_id == *id) || doc_has_operation(&doc.root, id);
        if !known {
            skipped.push(Located {
                file: input.target_file.to_path_buf(),
                pointer: format!("/openapi/operations/{i}"),
                message: format!("the document has no operation {id:?}"),
            });
        }
    }
    let (key_placement, scheme_problems) = security::key_placement(&doc);
    skipped.extend(scheme_problems.into_iter().map(|problem| Located {
        file: path.clone(),
        pointer: problem.pointer,
        message: format!("security scheme: {}", problem.message),
    }));
    let mut section = json!({"baseUrl": base_url, "headers": spec.headers});
    if let Some(ms) = spec.timeout_ms {
        section["timeoutMs"] = json!(ms);
    }
    if let Some(bytes) = spec.max_response_bytes {
        section["maxResponseBytes"] = json!(bytes);
    }
    Some(Described {
        file: path,
        section,
        tools: found
            .into_iter()
            .map(|o| DescribedTool {
                pointer: o.pointer,
                tool: o.tool,
            })
            .collect(),
        skipped,
        key_placement,
    })
}

/// `servers[0].url` with its variables set to their defaults (OpenAPI 3.1.0 section 4.8.5).
fn server_url(root: &Value) -> Result<String, String> {
    let Some(server) = root.pointer("/servers/0") else {
        return Err("the document lists no `servers`; set `baseUrl`".into());
    };
    let Some(template) = server.get("url").and_then(Value::as_str) else {
        return Err("`servers[0].url` is missing; set `baseUrl`".into());
    };
    let mut url = template.to_string();
    if let Some(variables) = server.get("variables").and_then(Value::as_object) {
        for (name, variable) in variables {
            if let Some(default) = variable.get("default").and_then(Value::as_str) {
                url = url.replace(&format!("{{{name}}}"), default);
            }
        }
    }
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(format!(
            "`servers[0].url` is {template:?}, not an absolute http(s) URL; set `baseUrl`"
        ));
    }
    Ok(url)
}

fn doc_has_operation(root: &Value, id: &str) -> bool {
    root.get("paths")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|paths| paths.values())
        .filter_map(Value::as_object)
        .flat_map(|item| item.values())
        .any(|operation| operation.get("operationId").and_then(Value::as_str) == Some(id))
}

#[cfg(test)]
mod tests;
