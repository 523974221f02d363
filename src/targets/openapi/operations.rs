//! OpenAPI operations -> tools (DESIGN 2.8): one tool per operation with an `operationId`; path,
//! query and header parameters are arguments of the same name; a JSON request body's
//! properties are merged into the arguments, a non-object body is the argument `body`.
//!
//! Each tool comes out in the target-file tool shape with a generated `http` mapping, so that
//! the HTTP target's mapping and result rules apply unchanged. An operation this gateway cannot
//! call faithfully (a parameter style the HTTP mapping does not speak, a non-JSON body, a name
//! clash) is skipped and reported with its JSON pointer; the rest of the document loads.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::document::Document;
use super::schema::{ObjectParts, add_description, from_openapi_3_0, object_parts, schema_type};
use crate::targets::escape_pointer;
use crate::targets::http::{RESERVED_HEADERS, parse_path_template};

/// OpenAPI 3.1.0 section 4.8.8 "Path Item Object": the fields that are operations.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];
/// The argument a non-object JSON request body is passed as.
const BODY_ARGUMENT: &str = "body";
/// Longest tool description: the summary and description, cut at a character boundary.
const MAX_DESCRIPTION_CHARS: usize = 4000;
/// Tool names clients see are `<target>___<tool>`; the tool part allows 1-128 of these.
const MAX_TOOL_NAME_CHARS: usize = 128;

/// One operation as a tool: where it is in the document and the tool object.
#[derive(Debug)]
pub struct Operation {
    pub operation_id: String,
    /// RFC 6901 pointer of the operation in the document (`/paths/~1pets/get`).
    pub pointer: String,
    pub tool: Value,
}

/// An operation left out, and why.
#[derive(Debug, PartialEq, Eq)]
pub struct Skipped {
    pub pointer: String,
    pub message: String,
}

/// Every operation of `doc` (limited to `allow` if given) as a tool, in document order, and
/// those that could not be.
pub fn operations(
    doc: &Document,
    allow: Option<&BTreeSet<&str>>,
) -> (Vec<Operation>, Vec<Skipped>) {
    let mut done = Vec::new();
    let mut skipped = Vec::new();
    let mut names: Vec<(String, String)> = Vec::new();
    let Some(paths) = doc.root.get("paths").and_then(Value::as_object) else {
        return (done, skipped);
    };
    for (path, item) in paths {
        let item_pointer = format!("/paths/{}", escape_pointer(path));
        let item = match doc.follow(item) {
            Ok(item) => item,
            Err(e) => {
                skipped.push(Skipped {
                    pointer: item_pointer,
                    message: e.to_string(),
                });
                continue;
            }
        };
        for method in METHODS {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let pointer = format!("{item_pointer}/{method}");
            let Some(operation_id) = operation.get("operationId").and_then(Value::as_str) else {
                skipped.push(Skipped {
                    pointer,
                    message: "no operationId: an operation needs one to become a tool".into(),
                });
                continue;
            };
            if allow.is_some_and(|allow| !allow.contains(operation_id)) {
                continue;
            }
            let name = tool_name(operation_id);
            if let Some((_, first)) = names.iter().find(|(n, _)| *n == name) {
                skipped.push(Skipped {
                    pointer: format!("{pointer}/operationId"),
                    message: format!(
                        "tool name {name:?} is already taken by the operation at {first}"
                    ),
                });
                continue;
            }
            let shape = Shape {
                doc,
                path,
                method,
                item,
                item_pointer: &item_pointer,
                operation,
                pointer: &pointer,
            };
            match shape.tool(&name) {
                Ok(tool) => {
                    names.push((name, pointer.clone()));
                    done.push(Operation {
                        operation_id: operation_id.to_string(),
                        pointer,
                        tool,
                    });
                }
                Err((pointer, message)) => skipped.push(Skipped { pointer, message }),
            }
        }
    }
    (done, skipped)
}

/// `operationId` -> a tool name: characters outside `[A-Za-z0-9_-]` become `_`, runs of `_`
/// stay shorter than the `___` separator, at most 128 characters.
pub fn tool_name(operation_id: &str) -> String {
    let mut name = String::with_capacity(operation_id.len());
    for c in operation_id.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '-' {
            c
        } else {
            '_'
        };
        if c == '_' && name.ends_with("__") {
            continue;
        }
        name.push(c);
        if name.len() == MAX_TOOL_NAME_CHARS {
            break;
        }
    }
    if name.is_empty() {
        name.push('_');
    }
    name
}

/// What one operation's tool is built from.
struct Shape<'a> {
    doc: &'a Document,
    path: &'a str,
    method: &'a str,
    item: &'a Value,
    item_pointer: &'a str,
    operation: &'a Value,
    pointer: &'a str,
}

/// A problem of the operation: (RFC 6901 pointer in the document, message).
type Problem = (String, String);

/// The arguments as they are collected: the tool's `inputSchema` and its `http` mapping.
#[derive(Default)]
struct Arguments {
    properties: Map<String, Value>,
    required: Vec<String>,
    query: Vec<String>,
    headers: Vec<String>,
    body: Option<String>,
    /// Names of the `in: path` parameters.
    path: Vec<String>,
    /// Where each argument came from, to name both sides of a clash.
    origin: Vec<(String, String)>,
}

impl Arguments {
    fn add(
        &mut self,
        name: &str,
        schema: Value,
        required: bool,
        at: String,
    ) -> Result<(), Problem> {
        if let Some((_, first)) = self.origin.iter().find(|(n, _)| n == name) {
            return Err((
                at,
                format!(
                    "argument {name:?} is defined twice (also at {first}); tools take one argument per name"
                ),
            ));
        }
        self.origin.push((name.to_string(), at));
        self.properties.insert(name.to_string(), schema);
        if required {
            self.required.push(name.to_string());
        }
        Ok(())
    }
}

impl Shape<'_> {
    fn tool(&self, name: &str) -> Result<Value, Problem> {
        let template = parse_path_template(self.path).map_err(|message| {
            (
                self.item_pointer.to_string(),
                format!("path {:?}: {message}", self.path),
            )
        })?;
        let mut arguments = Arguments::default();
        for (at, parameter) in self.parameters()? {
            self.parameter(&mut arguments, &at, parameter)?;
        }
        for part in &template {
            if let crate::targets::http::PathPart::Param(param) = part
                && !arguments.path.contains(param)
            {
                return Err((
                    self.pointer.to_string(),
                    format!(
                        "path parameter {{{param}}} is not declared as an `in: path` parameter"
                    ),
                ));
            }
        }
        let closed = self.request_body(&mut arguments)?;
        let mut input_schema = json!({"type": "object", "properties": arguments.properties});
        if !arguments.required.is_empty() {
            input_schema["required"] = json!(arguments.required);
        }
        if let Some(additional) = closed {
            input_schema["additionalProperties"] = additional;
        }
        let mut http = json!({
            "method": self.method.to_ascii_uppercase(),
            "path": self.path,
            "query": arguments.query,
            "headers": arguments.headers,
        });
        if let Some(body) = &arguments.body {
            http["body"] = json!(body);
        }
        let mut tool = json!({
            "name": name,
            "inputSchema": input_schema,
            "http": http,
            "annotations": self.annotations(),
        });
        if let Some(description) = self.description() {
            tool["description"] = json!(description);
        }
        Ok(tool)
    }

    /// Path-item parameters, overridden by the operation's own of the same name and location
    /// (OpenAPI 3.1.0 section 4.8.10), each with its pointer relative to the operation.
    fn parameters(&self) -> Result<Vec<(String, &Value)>, Problem> {
        let mut all: Vec<(String, &Value)> = Vec::new();
        let lists = [
            (
                self.item.get("parameters"),
                format!("{}/parameters", self.item_pointer),
            ),
            (
                self.operation.get("parameters"),
                format!("{}/parameters", self.pointer),
            ),
        ];
        for (list, base) in lists {
            let Some(list) = list.and_then(Value::as_array) else {
                continue;
            };
            for (i, parameter) in list.iter().enumerate() {
                let at = format!("{base}/{i}");
                let parameter = self
                    .doc
                    .follow(parameter)
                    .map_err(|e| (at.clone(), e.to_string()))?;
                let key = |p: &Value| {
                    (
                        p.get("name").and_then(Value::as_str).map(str::to_string),
                        p.get("in").and_then(Value::as_str).map(str::to_string),
                    )
                };
                let this = key(parameter);
                all.retain(|(_, other)| key(other) != this);
                all.push((at, parameter));
            }
        }
        Ok(all)
    }

    fn parameter(
        &self,
        arguments: &mut Arguments,
        at: &str,
        parameter: &Value,
    ) -> Result<(), Problem> {
        let problem = |message: String| (at.to_string(), message);
        let (Some(name), Some(location)) = (
            parameter.get("name").and_then(Value::as_str),
            parameter.get("in").and_then(Value::as_str),
        ) else {
            return Err(problem("a parameter needs `name` and `in`".into()));
        };
        let Some(schema) = parameter.get("schema") else {
            return Err(problem(format!(
                "parameter {name:?} is described by `content`, which HTTP targets cannot send; only `schema` parameters are supported"
            )));
        };
        let mut schema = self
            .schema(schema)
            .map_err(|m| (format!("{at}/schema"), m))?;
        let kind = schema_type(&schema);
        let style = parameter.get("style").and_then(Value::as_str);
        let explode = parameter.get("explode").and_then(Value::as_bool);
        let required = parameter.get("required").and_then(Value::as_bool) == Some(true);
        let scalar_only = |location: &str| {
            if matches!(kind, Some("array" | "object")) {
                Err(problem(format!(
                    "{location} parameter {name:?} is an {}: only scalar {location} parameters are supported",
                    kind.unwrap_or_default()
                )))
            } else {
                Ok(())
            }
        };
        match location {
            "path" => {
                if style.is_some_and(|s| s != "simple") {
                    return Err(problem(format!(
                        "path parameter style {style:?} is not supported (only `simple`)"
                    )));
                }
                scalar_only("path")?;
                // OpenAPI: path parameters are always required.
                add_description(&mut schema, parameter);
                arguments.add(name, schema, true, at.to_string())?;
                arguments.path.push(name.to_string());
                Ok(())
            }
            "query" => {
                if style.is_some_and(|s| s != "form") {
                    return Err(problem(format!(
                        "query parameter style {:?} is not supported (only `form`, the default)",
                        style.unwrap_or_default()
                    )));
                }
                if kind == Some("object") {
                    return Err(problem(format!(
                        "query parameter {name:?} is an object, which HTTP targets cannot spread into the query"
                    )));
                }
                if kind == Some("array") && explode == Some(false) {
                    return Err(problem(format!(
                        "query parameter {name:?} with `explode: false` (comma-joined) is not supported; arrays repeat the parameter"
                    )));
                }
                add_description(&mut schema, parameter);
                arguments.add(name, schema, required, at.to_string())?;
                arguments.query.push(name.to_string());
                Ok(())
            }
            "header" => {
                // OpenAPI 3.1.0 section 4.8.12.1: these header parameters are ignored.
                if ["accept", "content-type", "authorization"]
                    .contains(&name.to_ascii_lowercase().as_str())
                {
                    return Ok(());
                }
                if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                    return Err(problem(format!(
                        "header {name:?} may not be set from arguments"
                    )));
                }
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    return Err(problem(format!("{name:?} is not a valid header name")));
                }
                scalar_only("header")?;
                add_description(&mut schema, parameter);
                arguments.add(name, schema, required, at.to_string())?;
                arguments.headers.push(name.to_string());
                Ok(())
            }
            "cookie" => Err(problem(format!(
                "cookie parameter {name:?}: cookies are not sent by HTTP targets"
            ))),
            other => Err(problem(format!("unknown parameter location {other:?}"))),
        }
    }

    /// Merges the JSON request body into the arguments. Returns the tool's
    /// `additionalProperties`: `false` when every argument is known, the body's own otherwise.
    fn request_body(&self, arguments: &mut Arguments) -> Result<Option<Value>, Problem> {
        let Some(body) = self.operation.get("requestBody") else {
            return Ok(Some(Value::Bool(false)));
        };
        let at = format!("{}/requestBody", self.pointer);
        let body = self
            .doc
            .follow(body)
            .map_err(|e| (at.clone(), e.to_string()))?;
        if !matches!(self.method, "post" | "put" | "patch") {
            return Err((
                at,
                format!(
                    "a request body on {} is not sent by HTTP targets",
                    self.method.to_ascii_uppercase()
                ),
            ));
        }
        let content = body.get("content").and_then(Value::as_object);
        let json_media = content.and_then(|content| {
            content
                .iter()
                .find(|(media, _)| crate::targets::http::is_json_media_type(media))
        });
        let Some((media, media_object)) = json_media else {
            let offered: Vec<&str> = content
                .map(|c| c.keys().map(String::as_str).collect())
                .unwrap_or_default();
            return Err((
                format!("{at}/content"),
                format!("no JSON media type among {offered:?}: HTTP targets send JSON bodies only"),
            ));
        };
        let schema_at = format!("{at}/content/{}/schema", escape_pointer(media));
        let schema = match media_object.get("schema") {
            Some(schema) => self.schema(schema).map_err(|m| (schema_at.clone(), m))?,
            None => json!({}),
        };
        let required = body.get("required").and_then(Value::as_bool) == Some(true);
        let Some(ObjectParts {
            properties,
            required: required_properties,
            additional,
        }) = object_parts(&schema)
        else {
            arguments.add(BODY_ARGUMENT, schema, required, schema_at)?;
            arguments.body = Some(BODY_ARGUMENT.to_string());
            return Ok(Some(Value::Bool(false)));
        };
        for (name, property) in properties {
            // A read-only property is the server's to set (OpenAPI 3.1.0 section 4.8.24).
            if property.get("readOnly").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let needed = required && required_properties.contains(&name);
            arguments.add(
                &name,
                property,
                needed,
                format!("{schema_at}/properties/{}", escape_pointer(&name)),
            )?;
        }
        Ok(additional)
    }

    /// A schema with references inlined and, for 3.0 documents, rewritten as JSON Schema.
    fn schema(&self, schema: &Value) -> Result<Value, String> {
        let mut schema = self.doc.inline(schema).map_err(|e| e.to_string())?;
        if self.doc.is_3_0 {
            from_openapi_3_0(&mut schema);
        }
        Ok(schema)
    }

    fn description(&self) -> Option<String> {
        let text = |key| {
            self.operation
                .get(key)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|t| !t.is_empty())
        };
        let joined = match (text("summary"), text("description")) {
            (Some(summary), Some(description)) if description.starts_with(summary) => {
                description.to_string()
            }
            (Some(summary), Some(description)) => format!("{summary}\n\n{description}"),
            (Some(one), None) | (None, Some(one)) => one.to_string(),
            (None, None) => return None,
        };
        Some(joined.chars().take(MAX_DESCRIPTION_CHARS).collect())
    }

    /// MCP tool annotations from HTTP method semantics (RFC 9110 section 9.2).
    fn annotations(&self) -> Value {
        match self.method {
            "get" | "head" | "options" => json!({"readOnlyHint": true}),
            "delete" => {
                json!({"readOnlyHint": false, "destructiveHint": true, "idempotentHint": true})
            }
            "put" => json!({"readOnlyHint": false, "idempotentHint": true}),
            _ => json!({"readOnlyHint": false}),
        }
    }
}
