//! One target file -> a [`LoadedFile`], or every problem in it, each with file and JSON pointer.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde_json::{Map, Value, json};
use url::Url;

use super::model::{
    CatalogTool, HttpRoute, HttpTarget, LambdaTarget, PathPart, SEPARATOR, Target, TargetFile,
    TargetKind, ToolDef,
};

const TARGET_SCHEMA: &str = include_str!("../../schemas/target.schema.json");
const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_LAMBDA_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Longest message excerpt kept from a schema error (they can quote whole instances).
const MAX_MESSAGE_CHARS: usize = 300;

/// Headers a target file may not set, statically or from arguments: credentials belong in
/// `credentials` (never inline in a committed file), and framing headers are the client's job.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
];

/// A problem in a target file (or in the tool-schema file it references).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// RFC 6901 JSON pointer into `file`; empty for the file as a whole.
    pub pointer: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pointer.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{} at {}: {}",
                self.file.display(),
                self.pointer,
                self.message
            )
        }
    }
}

/// Everything one target file contributes.
#[derive(Debug)]
pub struct LoadedFile {
    pub target: Arc<Target>,
    pub tools: Vec<Arc<CatalogTool>>,
}

struct Schemas {
    target: jsonschema::Validator,
    tool_file: jsonschema::Validator,
}

/// The embedded schemas, compiled once. They ship inside the binary, so a failure here is a
/// build defect; it is still reported as a problem rather than a panic.
fn schemas() -> Result<&'static Schemas, String> {
    static SCHEMAS: OnceLock<Result<Schemas, String>> = OnceLock::new();
    SCHEMAS
        .get_or_init(|| {
            let target: Value = serde_json::from_str(TARGET_SCHEMA).map_err(|e| e.to_string())?;
            let compile = |schema: &Value| {
                jsonschema::options()
                    .build(schema)
                    .map_err(|e| format!("embedded target schema does not compile: {e}"))
            };
            let tool_file = json!({
                "$defs": target.get("$defs").cloned().unwrap_or(Value::Null),
                "$ref": "#/$defs/toolSchemaFile",
            });
            Ok(Schemas {
                target: compile(&target)?,
                tool_file: compile(&tool_file)?,
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Problems found while loading one file; the file is refused if any is found.
struct Found<'a> {
    file: &'a Path,
    problems: Vec<Problem>,
}

impl Found<'_> {
    fn push(&mut self, pointer: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            pointer: pointer.into(),
            message: message.into(),
        });
    }
}

fn read_json(path: &Path) -> Result<Value, Problem> {
    let problem = |message: String| Problem {
        file: path.to_path_buf(),
        pointer: String::new(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| problem(format!("cannot read: {e}")))?;
    serde_json::from_str(&text).map_err(|e| problem(format!("invalid JSON: {e}")))
}

/// Validates `instance` against `validator`, recording one problem per failing keyword.
fn check_schema(validator: &jsonschema::Validator, instance: &Value, found: &mut Found<'_>) {
    for error in validator.iter_errors(instance) {
        let schema_path = error.schema_path().as_str();
        let message = if schema_path.starts_with("/allOf/0/oneOf") {
            "exactly one of `lambda` or `http` is required".to_string()
        } else if schema_path.starts_with("/allOf/1/oneOf") {
            "exactly one of `tools` or `toolSchemaFile` is required".to_string()
        } else {
            let text = error.to_string();
            let excerpt: String = text.chars().take(MAX_MESSAGE_CHARS).collect();
            format!("{} ({})", excerpt, error.kind().keyword())
        };
        found.push(error.instance_path().as_str(), message);
    }
}

/// Loads one target file and, if it names one, its tool-schema file.
pub fn load_file(path: &Path) -> Result<LoadedFile, Vec<Problem>> {
    let schemas = schemas().map_err(|message| {
        vec![Problem {
            file: path.to_path_buf(),
            pointer: String::new(),
            message,
        }]
    })?;
    let document = read_json(path).map_err(|p| vec![p])?;
    let mut found = Found {
        file: path,
        problems: vec![],
    };
    check_schema(&schemas.target, &document, &mut found);
    if !found.problems.is_empty() {
        return Err(found.problems);
    }
    let file: TargetFile = match serde_json::from_value(document) {
        Ok(file) => file,
        Err(e) => {
            found.push("", format!("unexpected shape: {e}"));
            return Err(found.problems);
        }
    };
    let kind = match (&file.http, &file.lambda) {
        (Some(http), None) => http_target(http, &mut found).map(TargetKind::Http),
        (None, Some(lambda)) => lambda_target(lambda, &mut found).map(TargetKind::Lambda),
        _ => {
            found.push("", "exactly one of `lambda` or `http` is required");
            None
        }
    };
    let (tools, tools_file, tools_prefix) = match (&file.tools, &file.tool_schema_file) {
        (Some(tools), None) => (tools.clone(), path.to_path_buf(), "/tools".to_string()),
        (None, Some(relative)) => match tool_schema_file(path, relative, schemas) {
            Ok((tools, schema_path)) => (tools, schema_path, String::new()),
            Err(mut problems) => {
                found.problems.append(&mut problems);
                return Err(found.problems);
            }
        },
        _ => {
            found.push("", "exactly one of `tools` or `toolSchemaFile` is required");
            return Err(found.problems);
        }
    };
    let Some(kind) = kind else {
        return Err(found.problems);
    };
    let target = Arc::new(Target {
        name: file.name.clone(),
        description: file.description.clone(),
        file: path.to_path_buf(),
        kind,
        credentials: file.credentials.clone(),
    });
    let mut tool_found = Found {
        file: &tools_file,
        problems: vec![],
    };
    let mut names = HashSet::new();
    let mut loaded = Vec::with_capacity(tools.len());
    for (i, def) in tools.into_iter().enumerate() {
        let pointer = format!("{tools_prefix}/{i}");
        if !names.insert(def.name.clone()) {
            tool_found.push(
                format!("{pointer}/name"),
                format!("duplicate tool name {:?}", def.name),
            );
            continue;
        }
        if let Some(tool) = catalog_tool(&target, def, &pointer, &mut tool_found) {
            loaded.push(Arc::new(tool));
        }
    }
    found.problems.append(&mut tool_found.problems);
    if found.problems.is_empty() {
        Ok(LoadedFile {
            target,
            tools: loaded,
        })
    } else {
        Err(found.problems)
    }
}

/// Resolves and loads an AgentCore tool-schema file, which must sit inside the targets folder
/// tree (no absolute paths, no `..`), so a target file cannot read arbitrary files.
fn tool_schema_file(
    target_file: &Path,
    relative: &str,
    schemas: &Schemas,
) -> Result<(Vec<ToolDef>, PathBuf), Vec<Problem>> {
    let problem = |message: String| {
        vec![Problem {
            file: target_file.to_path_buf(),
            pointer: "/toolSchemaFile".into(),
            message,
        }]
    };
    let rel = Path::new(relative);
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(problem(format!(
            "{relative:?} must be a relative path inside the targets folder (no `..`, not absolute)"
        )));
    }
    let path = target_file.parent().unwrap_or(Path::new(".")).join(rel);
    let document = read_json(&path).map_err(|p| vec![p])?;
    let mut found = Found {
        file: &path,
        problems: vec![],
    };
    check_schema(&schemas.tool_file, &document, &mut found);
    if !found.problems.is_empty() {
        return Err(found.problems);
    }
    serde_json::from_value(document)
        .map(|tools| (tools, path.clone()))
        .map_err(|e| problem(format!("unexpected shape: {e}")))
}

fn http_target(spec: &super::model::HttpSpec, found: &mut Found<'_>) -> Option<HttpTarget> {
    let (base_url, base) = match Url::parse(&spec.base_url) {
        Ok(url) if url.cannot_be_a_base() || !matches!(url.scheme(), "http" | "https") => {
            found.push("/http/baseUrl", "must be an http or https URL");
            return None;
        }
        Ok(url) if url.query().is_none() && url.fragment().is_none() => {
            (url.as_str().trim_end_matches('/').to_string(), url)
        }
        Ok(_) => {
            found.push("/http/baseUrl", "must not have a query or fragment");
            return None;
        }
        Err(e) => {
            found.push("/http/baseUrl", format!("not a URL: {e}"));
            return None;
        }
    };
    let mut headers = HeaderMap::new();
    for (name, value) in &spec.headers {
        let pointer = format!("/http/headers/{}", escape_pointer(name));
        match (HeaderName::from_str(name), HeaderValue::from_str(value)) {
            (Ok(name), _) if RESERVED_HEADERS.contains(&name.as_str()) => found.push(
                pointer,
                format!(
                    "{name} may not be set here: credentials go in `credentials`, never inline"
                ),
            ),
            (Ok(name), Ok(value)) => {
                headers.insert(name, value);
            }
            (Err(_), _) => found.push(pointer, "not a valid header name"),
            (_, Err(_)) => found.push(pointer, "not a valid header value"),
        }
    }
    Some(HttpTarget {
        base_url,
        base,
        headers,
        timeout: spec
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_HTTP_TIMEOUT),
        max_response_bytes: spec
            .max_response_bytes
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES),
    })
}

fn lambda_target(spec: &super::model::LambdaSpec, found: &mut Found<'_>) -> Option<LambdaTarget> {
    // arn:partition:lambda:region:account:function:name[:qualifier]
    let parts: Vec<&str> = spec.function_arn.split(':').collect();
    let (arn_region, arn_qualifier) = match parts.as_slice() {
        ["arn", _, "lambda", region, _, "function", _] => (Some(*region), None),
        ["arn", _, "lambda", region, _, "function", _, qualifier] => {
            (Some(*region), Some(*qualifier))
        }
        _ => (None, None),
    };
    if arn_qualifier.is_some() && spec.qualifier.is_some() {
        found.push(
            "/lambda/qualifier",
            "the functionArn already carries a qualifier",
        );
    }
    let endpoint_url = match &spec.endpoint_url {
        None => None,
        Some(text) => match Url::parse(text) {
            Ok(url) => Some(url),
            Err(e) => {
                found.push("/lambda/endpointUrl", format!("not a URL: {e}"));
                return None;
            }
        },
    };
    Some(LambdaTarget {
        function_name: spec.function_arn.clone(),
        qualifier: spec.qualifier.clone(),
        endpoint_url,
        region: spec
            .region
            .clone()
            .or_else(|| arn_region.map(str::to_string)),
        timeout: spec
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_LAMBDA_TIMEOUT),
    })
}

fn catalog_tool(
    target: &Arc<Target>,
    def: ToolDef,
    pointer: &str,
    found: &mut Found<'_>,
) -> Option<CatalogTool> {
    let before = found.problems.len();
    let schema = Value::Object(def.input_schema.clone());
    let validator = match jsonschema::options().build(&schema) {
        Ok(v) => Some(v),
        Err(e) => {
            found.push(
                format!("{pointer}/inputSchema"),
                format!("not a valid JSON Schema: {e}"),
            );
            None
        }
    };
    if let Some(output) = &def.output_schema
        && output.get("type").and_then(Value::as_str) != Some("object")
    {
        found.push(
            format!("{pointer}/outputSchema"),
            "MCP requires an outputSchema of \"type\": \"object\"",
        );
    }
    let route = match (&target.kind, &def.http) {
        (TargetKind::Http(_), Some(http)) => http_route(http, &def.input_schema, pointer, found),
        (TargetKind::Http(_), None) => {
            found.push(
                pointer,
                "tools of an HTTP target need an `http` mapping (method, path)",
            );
            None
        }
        (TargetKind::Lambda(_), Some(_)) => {
            found.push(
                format!("{pointer}/http"),
                "only tools of HTTP targets take an `http` mapping",
            );
            None
        }
        (TargetKind::Lambda(_), None) => None,
    };
    let validator = validator?;
    if found.problems.len() > before {
        return None;
    }
    let qualified_name = format!("{}{SEPARATOR}{}", target.name, def.name);
    let mut listing = rmcp::model::Tool::new_with_raw(
        qualified_name.clone(),
        def.description.clone().map(Into::into),
        Arc::new(def.input_schema.clone()),
    );
    if let Some(output) = &def.output_schema {
        listing = listing.with_raw_output_schema(Arc::new(output.clone()));
    }
    if let Some(annotations) = def
        .annotations
        .clone()
        .and_then(|a| serde_json::from_value(a).ok())
    {
        listing = listing.with_annotations(annotations);
    }
    Some(CatalogTool {
        qualified_name,
        target: target.clone(),
        def,
        route,
        validator,
        listing,
    })
}

fn http_route(
    spec: &super::model::ToolHttpSpec,
    input_schema: &Map<String, Value>,
    pointer: &str,
    found: &mut Found<'_>,
) -> Option<HttpRoute> {
    let properties = input_schema.get("properties").and_then(Value::as_object);
    let declared = |name: &str| properties.is_some_and(|p| p.contains_key(name));
    let required: Vec<&str> = input_schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Ok(method) = Method::from_str(&spec.method) else {
        found.push(format!("{pointer}/http/method"), "not an HTTP method");
        return None;
    };
    let path = parse_path_template(&spec.path).unwrap_or_else(|message| {
        found.push(format!("{pointer}/http/path"), message);
        vec![]
    });
    for part in &path {
        if let PathPart::Param(name) = part
            && (!declared(name) || !required.contains(&name.as_str()))
        {
            found.push(
                format!("{pointer}/http/path"),
                format!("path parameter {{{name}}} must be a required property of inputSchema"),
            );
        }
    }
    for (i, name) in spec.query.iter().enumerate() {
        if !declared(name) {
            found.push(
                format!("{pointer}/http/query/{i}"),
                format!("{name:?} is not a property of inputSchema"),
            );
        }
    }
    let mut headers = Vec::new();
    for (i, name) in spec.headers.iter().enumerate() {
        let at = format!("{pointer}/http/headers/{i}");
        match HeaderName::from_str(name) {
            Ok(header) if RESERVED_HEADERS.contains(&header.as_str()) => {
                found.push(at, format!("{header} may not be set from arguments"))
            }
            Ok(_) if !declared(name) => {
                found.push(at, format!("{name:?} is not a property of inputSchema"))
            }
            Ok(header) => headers.push((name.clone(), header)),
            Err(_) => found.push(at, "not a valid header name"),
        }
    }
    let has_body = matches!(method, Method::POST | Method::PUT | Method::PATCH);
    Some(HttpRoute {
        method,
        path,
        query: spec.query.clone(),
        headers,
        has_body,
    })
}

/// `/users/{owner}/repos` -> literal and parameter parts. A parameter fills exactly one
/// segment: braces must wrap a whole segment's worth of name, with no nesting.
pub fn parse_path_template(path: &str) -> Result<Vec<PathPart>, String> {
    if !path.starts_with('/') {
        return Err("must start with `/`".into());
    }
    let mut parts = Vec::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let (literal, after) = rest.split_at(open);
        let Some(close) = after.find('}') else {
            return Err("unclosed `{`".into());
        };
        let name = &after[1..close];
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!("invalid parameter name {{{name}}}"));
        }
        if !literal.is_empty() {
            parts.push(PathPart::Literal(literal.to_string()));
        }
        parts.push(PathPart::Param(name.to_string()));
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err("unmatched `}`".into());
    }
    if !rest.is_empty() {
        parts.push(PathPart::Literal(rest.to_string()));
    }
    Ok(parts)
}

/// RFC 6901 section 3 escaping of one reference token.
fn escape_pointer(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Lists the target files in `dir`: `*.json` directly inside it, sorted by name.
pub fn target_files(dir: &Path) -> Result<Vec<PathBuf>, Problem> {
    let entries = std::fs::read_dir(dir).map_err(|e| Problem {
        file: dir.to_path_buf(),
        pointer: String::new(),
        message: format!("cannot read the targets folder: {e}"),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file() && path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    Ok(files)
}

/// Name -> the file that first defined it, to refuse later duplicates.
pub type TargetOwners = BTreeMap<String, PathBuf>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_templates_split_into_literals_and_params() {
        assert_eq!(
            parse_path_template("/users/{owner}/repos").unwrap(),
            vec![
                PathPart::Literal("/users/".into()),
                PathPart::Param("owner".into()),
                PathPart::Literal("/repos".into())
            ]
        );
        assert!(parse_path_template("users").is_err());
        assert!(parse_path_template("/a/{b").is_err());
        assert!(parse_path_template("/a/{b/c}").is_err());
        assert!(parse_path_template("/a/b}").is_err());
    }

    #[test]
    fn embedded_schema_compiles() {
        assert!(schemas().is_ok());
    }
}
