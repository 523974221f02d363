//! A tool's `http` mapping (DESIGN 2.3 "HTTP mapping"), checked against its `inputSchema` at
//! load and kept pre-parsed, so that a call does no parsing of its own.

use std::str::FromStr;

use http::{HeaderName, Method};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::RESERVED_HEADERS;
use crate::targets::{SpecProblems, ToolSpec};

/// The `http` object of a tool, as written.
#[derive(Debug, Clone, Deserialize)]
pub struct ToolHttpSpec {
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub query: Vec<String>,
    #[serde(default)]
    pub headers: Vec<String>,
    /// The one argument that is the whole JSON body (an OpenAPI operation whose body is not an
    /// object); without it the arguments left over from path, query and headers are the body.
    pub body: Option<String>,
}

/// How an HTTP tool's arguments become a request.
#[derive(Debug)]
pub struct HttpRoute {
    pub method: Method,
    pub path: Vec<PathPart>,
    pub query: Vec<String>,
    pub headers: Vec<(String, HeaderName)>,
    /// Whether the request has a JSON body (POST, PUT, PATCH).
    pub has_body: bool,
    /// The argument that is the body; `None`: the arguments not used elsewhere form it.
    pub body: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum PathPart {
    Literal(String),
    /// `{name}`: one percent-encoded path segment taken from the argument `name`.
    Param(String),
}

impl HttpRoute {
    /// Names of the arguments consumed by the path, query and headers.
    pub fn mapped_args(&self) -> impl Iterator<Item = &str> {
        self.path
            .iter()
            .filter_map(|p| match p {
                PathPart::Param(name) => Some(name.as_str()),
                PathPart::Literal(_) => None,
            })
            .chain(self.query.iter().map(String::as_str))
            .chain(self.headers.iter().map(|(arg, _)| arg.as_str()))
    }
}

/// The route of tool `index`, or its problems (pointers inside the tool object).
pub fn tool_route(
    index: usize,
    tool: &ToolSpec<'_>,
    problems: &mut SpecProblems,
) -> Option<HttpRoute> {
    let Some(raw) = tool.raw.get("http") else {
        problems.in_tool(
            index,
            "",
            "tools of an HTTP target need an `http` mapping (method, path)",
        );
        return None;
    };
    let spec: ToolHttpSpec = match serde_json::from_value(raw.clone()) {
        Ok(spec) => spec,
        Err(e) => {
            problems.in_tool(index, "/http", format!("unexpected shape: {e}"));
            return None;
        }
    };
    let before = problems.tools.len();
    let route = route(&spec, tool.input_schema, &mut |pointer, message| {
        problems.in_tool(index, format!("/http{pointer}"), message)
    });
    (problems.tools.len() == before).then_some(route).flatten()
}

fn route(
    spec: &ToolHttpSpec,
    input_schema: &Map<String, Value>,
    problem: &mut dyn FnMut(String, String),
) -> Option<HttpRoute> {
    let properties = input_schema.get("properties").and_then(Value::as_object);
    let declared = |name: &str| properties.is_some_and(|p| p.contains_key(name));
    let required: Vec<&str> = input_schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Ok(method) = Method::from_str(&spec.method) else {
        problem("/method".into(), "not an HTTP method".into());
        return None;
    };
    let path = parse_path_template(&spec.path).unwrap_or_else(|message| {
        problem("/path".into(), message);
        vec![]
    });
    for part in &path {
        if let PathPart::Param(name) = part
            && (!declared(name) || !required.contains(&name.as_str()))
        {
            problem(
                "/path".into(),
                format!("path parameter {{{name}}} must be a required property of inputSchema"),
            );
        }
    }
    for (i, name) in spec.query.iter().enumerate() {
        if !declared(name) {
            problem(
                format!("/query/{i}"),
                format!("{name:?} is not a property of inputSchema"),
            );
        }
    }
    let mut headers = Vec::new();
    for (i, name) in spec.headers.iter().enumerate() {
        let at = format!("/headers/{i}");
        match HeaderName::from_str(name) {
            Ok(header) if RESERVED_HEADERS.contains(&header.as_str()) => {
                problem(at, format!("{header} may not be set from arguments"))
            }
            Ok(_) if !declared(name) => {
                problem(at, format!("{name:?} is not a property of inputSchema"))
            }
            Ok(header) => headers.push((name.clone(), header)),
            Err(_) => problem(at, "not a valid header name".into()),
        }
    }
    let has_body = matches!(method, Method::POST | Method::PUT | Method::PATCH);
    if let Some(body) = &spec.body {
        if !has_body {
            problem(
                "/body".into(),
                format!("{} requests carry no body", spec.method),
            );
        } else if !declared(body) {
            problem(
                "/body".into(),
                format!("{body:?} is not a property of inputSchema"),
            );
        }
    }
    Some(HttpRoute {
        method,
        path,
        query: spec.query.clone(),
        headers,
        has_body,
        body: spec.body.clone(),
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
}
