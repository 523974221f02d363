//! How a tool runs: one module per target kind behind the [`Target`] trait (DESIGN 2.3, 2.8).
//!
//! A kind is a module plus one [`Kind`] line in [`KINDS`]: the key that selects it in a target
//! file and a constructor from that section and the target's tools. The catalog builds every
//! target through this registry and names no kind. A target receives the caller's credential
//! for a call; it never fetches one (DESIGN 3), so kinds use only the leaves below them
//! (`credential`, `body`, `secret`).
//!
//! Owns: the trait, the registry, the shared transports, each kind's wire mapping, and
//! [`TargetError`]. May use: `credential`, `body`, `secret`. Used by: `catalog` (building) and
//! `call` (invoking).

pub mod http;
pub mod lambda;
pub mod mcp_server;
pub mod openapi;
mod results;

use std::fmt;
use std::future::Future;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use rmcp::model::CallToolResult;
use serde_json::{Map, Value};

use crate::body::BodyError;
use crate::credential::{Credentials, Injection, TargetCredentials};

pub use results::{
    ERROR_EXCERPT_BYTES, body_result, error_result, excerpt, json_result, printable_challenge,
};

/// A boxed, sendable future: what [`Target::invoke`] returns, so that the trait stays
/// object-safe and one call's future does not embed every kind's (the Lambda SDK's is ~11 KiB).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One loaded target of some kind.
pub trait Target: Send + Sync + fmt::Debug {
    /// The RFC 8707 resource a token for this target is meant for when the kind has one of its
    /// own (an MCP server's URL: MCP authorization "Resource Parameter Implementation").
    /// `None`: the credential's or the provider's resource applies (DESIGN 2.3).
    fn resource(&self) -> Option<&str> {
        None
    }

    /// How often the target's tools should be listed again (an MCP server's discovered
    /// tools, `refreshSeconds`); `None` when they change only with the file.
    fn refresh_every(&self) -> Option<std::time::Duration> {
        None
    }

    /// Whether a call carries the caller's own bearer token instead of a credential of the
    /// target's (an MCP server with `"passthrough": true`). Off for every kind by default:
    /// DESIGN 3.2 invariant 2 holds unless a target file opts out of it in so many words.
    fn forwards_caller_token(&self) -> bool {
        false
    }

    /// Whether a call may ask the caller a question ([`ElicitationSink`]): only then does the
    /// MCP layer build a relay for it.
    fn may_elicit(&self) -> bool {
        false
    }

    /// Called once the target serves (its catalog snapshot was swapped in), never for a
    /// snapshot that is built and thrown away (an unchanged refresh, `validate`): the place to
    /// start background work such as an MCP server's `tools/list_changed` session.
    fn activate(&self) {}

    /// Runs one tool. `credential` goes on the request as it is; the answer says whether the
    /// target refused it, so that the pipeline can refresh once and retry.
    fn invoke<'a>(
        &'a self,
        call: &'a ToolCall<'a>,
        credential: Option<&'a Injection>,
    ) -> BoxFuture<'a, Result<Invocation, TargetError>>;
}

/// One call as a target sees it. The arguments have passed the tool's `inputSchema`.
#[derive(Debug, Clone, Copy)]
pub struct ToolCall<'a> {
    /// The tool's position among its target's tools, as they were given to [`Kind::build`].
    pub tool: usize,
    /// `<target>___<tool>`.
    pub qualified_name: &'a str,
    pub target_name: &'a str,
    pub gateway_id: &'a str,
    /// The JSON-RPC id of the `tools/call`, as text.
    pub message_id: &'a str,
    /// `issuer#subject` of the caller.
    pub user_id: &'a str,
    pub args: &'a Map<String, Value>,
    /// Where progress goes, when the caller asked for it (a `progressToken`).
    pub progress: Option<&'a Arc<dyn ProgressSink>>,
    /// Where the target's server may ask the caller a question, when the caller's client can
    /// answer one (it declared the `elicitation` capability on a session).
    pub elicitation: Option<&'a Arc<dyn ElicitationSink>>,
}

/// Where a target reports a call's progress (MCP 2025-11-25 "Progress"): the caller's client
/// asked for it with a `progressToken`, and the MCP layer turns each report into a
/// `notifications/progress` with that token. Protocol-free here, so a target needs no MCP
/// server types to report.
pub trait ProgressSink: Send + Sync + std::fmt::Debug {
    /// Sends one report; done when it is on its way to the client.
    fn report(
        &self,
        progress: f64,
        total: Option<f64>,
        message: Option<String>,
    ) -> BoxFuture<'_, ()>;
}

/// Where a target's server asks the caller's client a question (MCP 2025-11-25
/// "Elicitation"): an upstream MCP server's `elicitation/create`, relayed by the MCP layer to
/// the client of the call it belongs to. The answer is the client's, or a decline when the
/// client cannot take this kind of question or is gone (the spec's `decline`).
pub trait ElicitationSink: Send + Sync + std::fmt::Debug {
    fn elicit(
        &self,
        request: rmcp::model::ElicitRequestParams,
    ) -> BoxFuture<'_, rmcp::model::ElicitResult>;
}

/// What a target answered.
#[derive(Debug)]
pub struct Invocation {
    pub result: CallToolResult,
    /// The target refused the credential it was sent (an HTTP 401, RFC 6750 section 3.1).
    pub credential_refused: Option<Refusal>,
}

impl Invocation {
    /// An answer that says nothing about the credential.
    pub fn answered(result: CallToolResult) -> Invocation {
        Invocation {
            result,
            credential_refused: None,
        }
    }
}

/// How a target refused a credential.
#[derive(Debug, Clone, Default)]
pub struct Refusal {
    /// The response's `WWW-Authenticate` challenge (RFC 6750 section 3), printable ASCII only
    /// and bounded, so that the refusal can be explained to the caller.
    pub challenge: Option<String>,
}

/// Why a target could not produce a result. Every variant becomes an `isError` tool result
/// (MCP 2025-06-18 "Error Handling": tool execution errors are reported in the result so the
/// model can see them); the wording is shaped by `mcp`.
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
    /// A tool index the target was not built with: a loader defect, reported, never a panic.
    #[error("the target has no tool #{0}")]
    NoSuchTool(usize),
}

impl From<BodyError> for TargetError {
    fn from(error: BodyError) -> TargetError {
        match error {
            BodyError::TooLarge(limit) => TargetError::TooLarge(limit),
            BodyError::Read(reason) => TargetError::Unreachable(reason),
        }
    }
}

/// The transports shared by all targets: one pooled HTTP client (keep-alive per host) and the
/// Lambda clients, one per (region, endpoint). Cheap to clone.
#[derive(Clone)]
pub struct Transport {
    pub http: reqwest::Client,
    /// For MCP servers: no idle connection is reused (see [`mcp_server::client`]).
    pub mcp_http: reqwest::Client,
    pub lambda: lambda::LambdaClients,
    /// Signalled when a target hears that its server's tools changed (an MCP server's
    /// `notifications/tools/list_changed`): the gateway lists discovered tools again.
    pub tools_changed: Arc<tokio::sync::Notify>,
    /// The gateway's own credentials (API keys, client credentials), for targets that list
    /// their tools with them; `None` when the config defines none.
    pub own_credentials: Option<Arc<dyn TargetCredentials>>,
}

impl Transport {
    pub fn new() -> Result<Transport, reqwest::Error> {
        Ok(Transport {
            http: http::client()?,
            mcp_http: mcp_server::client()?,
            lambda: lambda::LambdaClients::default(),
            tools_changed: Arc::default(),
            own_credentials: None,
        })
    }
}

/// One tool as a kind sees it at load; the catalog has checked the generic parts (name,
/// schemas).
#[derive(Debug, Clone, Copy)]
pub struct ToolSpec<'a> {
    pub name: &'a str,
    pub input_schema: &'a Map<String, Value>,
    /// The whole tool object, for the kind's own per-tool key (`http` for HTTP targets).
    pub raw: &'a Value,
}

/// What a kind's constructor gets.
pub struct BuildInput<'a> {
    /// The kind's section of the target file (`"http": {...}`).
    pub section: &'a Value,
    pub tools: &'a [ToolSpec<'a>],
    /// The tools were listed by the target itself (`ToolSource::FileOrListed` without a
    /// written list), so they may change without the file changing.
    pub listed: bool,
    /// The target's `credentials`, as the file declares them.
    pub credentials: Option<&'a Credentials>,
    pub transport: &'a Transport,
}

/// Problems a kind found, with RFC 6901 pointers relative to its section or to one tool; the
/// catalog adds the file and the prefix.
#[derive(Debug, Default)]
pub struct SpecProblems {
    pub section: Vec<(String, String)>,
    /// (tool index, pointer inside the tool, message).
    pub tools: Vec<(usize, String, String)>,
}

impl SpecProblems {
    pub fn in_section(&mut self, pointer: impl Into<String>, message: impl Into<String>) {
        self.section.push((pointer.into(), message.into()));
    }

    pub fn in_tool(&mut self, tool: usize, pointer: impl Into<String>, message: impl Into<String>) {
        self.tools.push((tool, pointer.into(), message.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.section.is_empty() && self.tools.is_empty()
    }
}

/// One kind of target in the registry.
pub struct Kind {
    /// The target-file key that selects this kind (`"http"`, `"lambda"`).
    pub key: &'static str,
    /// The per-tool key this kind reads, if any; tools of other kinds may not carry it.
    pub tool_key: Option<&'static str>,
    /// Where the target's tools come from.
    pub tools: ToolSource,
    /// Builds the target, or records why not. `None` only with a problem recorded.
    pub build: fn(&BuildInput<'_>, &mut SpecProblems) -> Option<Arc<dyn Target>>,
}

/// Where a kind's tools come from.
#[derive(Clone, Copy)]
pub enum ToolSource {
    /// The target file's `tools` or `toolSchemaFile`, written by the admin: any problem in
    /// one of them fails the file (the last good version stays in force).
    File,
    /// The kind describes them from its section (an OpenAPI document). A described tool with
    /// a problem is skipped and reported; the others load.
    Described(fn(&DescribeInput<'_>, &mut SpecProblems) -> Option<Described>),
    /// The file's `tools` / `toolSchemaFile` when it has them, else the target lists its own
    /// at load and reload (an MCP server's `tools/list`). A listing that fails fails the file,
    /// so the last good version (and its tools) stays in force.
    FileOrListed(Lister),
}

/// Lists a target's tools from the target itself, in the target-file tool shape.
pub type Lister = for<'a> fn(&'a ListInput<'a>) -> BoxFuture<'a, Result<Vec<Value>, String>>;

/// What a listing kind reads.
pub struct ListInput<'a> {
    pub section: &'a Value,
    /// The target's `credentials`: a listing uses the gateway's own (an API key, client
    /// credentials) through [`Transport::own_credentials`]; never a user's.
    pub credentials: Option<&'a Credentials>,
    pub transport: &'a Transport,
}

/// What a describing kind reads.
pub struct DescribeInput<'a> {
    pub section: &'a Value,
    /// The target file, against which the section's relative paths resolve ([`file_beside`]).
    pub target_file: &'a Path,
}

/// Tools a kind described, in the target-file tool shape.
#[derive(Debug)]
pub struct Described {
    /// The file the tools were described from; tool problems are reported against it.
    pub file: PathBuf,
    /// The section [`Kind::build`] receives instead of the file's own.
    pub section: Value,
    pub tools: Vec<DescribedTool>,
    /// What was left out, and why; reported, not fatal.
    pub skipped: Vec<Located>,
    /// Where the document says an API key goes, for a target file whose `apiKey` credential
    /// does not say it.
    pub key_placement: Option<crate::credential::KeyPlacement>,
}

#[derive(Debug)]
pub struct DescribedTool {
    /// Where in [`Described::file`] the tool comes from (RFC 6901).
    pub pointer: String,
    pub tool: Value,
}

/// A problem with its file and RFC 6901 pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub file: PathBuf,
    pub pointer: String,
    pub message: String,
}

/// Every kind this gateway knows. A new kind is a module and one line here.
pub const KINDS: &[Kind] = &[lambda::KIND, http::KIND, openapi::KIND, mcp_server::KIND];

/// A file named by a target file (`toolSchemaFile`, `specFile`): relative to the target file
/// and inside its folder tree (no absolute path, no `..`), so that a target file cannot make
/// the gateway read arbitrary files.
pub fn file_beside(target_file: &Path, relative: &str) -> Result<PathBuf, String> {
    let rel = Path::new(relative);
    if relative.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(format!(
            "{relative:?} must be a relative path inside the targets folder (no `..`, not absolute)"
        ));
    }
    Ok(target_file.parent().unwrap_or(Path::new(".")).join(rel))
}

/// The kind a target-file key selects.
pub fn kind(key: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|kind| kind.key == key)
}

/// RFC 6901 section 3 escaping of one reference token.
pub fn escape_pointer(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// A kind's section deserialized into its own spec type, or a problem at the section.
pub fn section<T: serde::de::DeserializeOwned>(
    section: &Value,
    problems: &mut SpecProblems,
) -> Option<T> {
    match serde_json::from_value(section.clone()) {
        Ok(spec) => Some(spec),
        Err(e) => {
            problems.in_section("", format!("unexpected shape: {e}"));
            None
        }
    }
}
