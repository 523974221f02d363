//! Target files as written (`schemas/target.schema.json`) and the runtime forms built from them.
//!
//! The file types are deserialized only after the file passed the JSON Schema, so they can be
//! lenient; the runtime types carry everything pre-parsed (URLs, header names, path templates,
//! compiled argument validators) so that a tool call does no parsing of its own.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, Method};
use serde::Deserialize;
use serde_json::{Map, Value};
use url::Url;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetFile {
    pub name: String,
    pub description: Option<String>,
    pub lambda: Option<LambdaSpec>,
    pub http: Option<HttpSpec>,
    pub credentials: Option<Credentials>,
    pub tools: Option<Vec<ToolDef>>,
    pub tool_schema_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LambdaSpec {
    pub function_arn: String,
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    pub timeout_ms: Option<u64>,
    pub qualifier: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpSpec {
    pub base_url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub timeout_ms: Option<u64>,
    pub max_response_bytes: Option<u64>,
}

/// At most one downstream credential per target (DESIGN 2.3).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Credentials {
    Oauth(OAuthCredential),
    ApiKey(ApiKeyCredential),
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OAuthCredential {
    pub provider: String,
    pub grant_type: GrantType,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub custom_parameters: BTreeMap<String, String>,
    /// RFC 8707 resource indicator (DESIGN 2.3); `None` falls back to the provider's.
    #[serde(default)]
    pub resource: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GrantType {
    AuthorizationCode,
    ClientCredentials,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyCredential {
    pub provider: String,
    pub location: ApiKeyLocation,
    pub parameter_name: String,
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ApiKeyLocation {
    Header,
    QueryParameter,
}

/// One tool, inline or from an AgentCore tool-schema file (same shape).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolDef {
    pub name: String,
    pub description: Option<String>,
    pub input_schema: Map<String, Value>,
    pub output_schema: Option<Map<String, Value>>,
    pub http: Option<ToolHttpSpec>,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub annotations: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ToolHttpSpec {
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub query: Vec<String>,
    #[serde(default)]
    pub headers: Vec<String>,
}

/// A loaded target, shared by all of its tools.
#[derive(Debug)]
pub struct Target {
    pub name: String,
    pub description: Option<String>,
    pub file: PathBuf,
    pub kind: TargetKind,
    pub credentials: Option<Credentials>,
}

#[derive(Debug)]
pub enum TargetKind {
    Http(HttpTarget),
    Lambda(LambdaTarget),
}

#[derive(Debug)]
pub struct HttpTarget {
    /// Always ends without `/`; tool paths (which start with `/`) are appended to it.
    pub base_url: String,
    /// `base_url` parsed once at load, so that a call only sets the path and query instead of
    /// re-parsing (and IDNA-mapping) the whole URL.
    pub base: Url,
    pub headers: HeaderMap,
    pub timeout: Duration,
    pub max_response_bytes: usize,
}

#[derive(Debug)]
pub struct LambdaTarget {
    pub function_name: String,
    pub qualifier: Option<String>,
    pub endpoint_url: Option<Url>,
    pub region: Option<String>,
    pub timeout: Duration,
}

/// How an HTTP tool's arguments become a request (DESIGN 2.3 "HTTP mapping").
#[derive(Debug)]
pub struct HttpRoute {
    pub method: Method,
    pub path: Vec<PathPart>,
    pub query: Vec<String>,
    pub headers: Vec<(String, HeaderName)>,
    /// Whether the arguments not used elsewhere form a JSON body (POST, PUT, PATCH).
    pub has_body: bool,
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

/// A tool as the gateway runs it.
pub struct CatalogTool {
    /// `<target>___<tool>`, the name clients see.
    pub qualified_name: String,
    pub target: Arc<Target>,
    pub def: ToolDef,
    pub route: Option<HttpRoute>,
    pub validator: jsonschema::Validator,
    /// The `tools/list` entry, built once.
    pub listing: rmcp::model::Tool,
}

impl std::fmt::Debug for CatalogTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogTool")
            .field("qualified_name", &self.qualified_name)
            .field("target", &self.target.name)
            .finish_non_exhaustive()
    }
}

/// Separator between target and tool names; target names cannot contain `_` (DESIGN 2.3).
pub const SEPARATOR: &str = "___";
