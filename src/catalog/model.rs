//! Target files as written (`schemas/target.schema.json`) and the catalog's runtime forms.
//!
//! The file types are deserialized only after the file passed the JSON Schema, so they can be
//! lenient; the runtime types carry everything pre-built (compiled argument validators, the
//! `tools/list` entry, the kind's runtime) so that a tool call does no parsing of its own.
//! Nothing here belongs to one kind: a kind's section and per-tool keys are read by the kind.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::credential::Credentials;

/// The generic parts of a target file as written; the kind's section is read by the kind.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetFile {
    pub name: String,
    pub description: Option<String>,
    pub credentials: Option<Credentials>,
    pub tools: Option<Vec<Value>>,
    pub tool_schema_file: Option<String>,
}

/// One tool, inline or from an AgentCore tool-schema file (same shape).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolDef {
    pub name: String,
    pub description: Option<String>,
    pub input_schema: Map<String, Value>,
    pub output_schema: Option<Map<String, Value>>,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub annotations: Option<Value>,
}

/// A loaded target as the catalog holds it: what the file says about it, and the kind's
/// runtime that invokes its tools.
#[derive(Debug)]
pub struct TargetEntry {
    pub name: String,
    pub description: Option<String>,
    pub file: PathBuf,
    /// The registry key of its kind (`"http"`, `"lambda"`).
    pub kind: &'static str,
    pub credentials: Option<Credentials>,
    pub runtime: Arc<dyn crate::targets::Target>,
}

/// A tool as the gateway runs it.
pub struct CatalogTool {
    /// `<target>___<tool>`, the name clients see.
    pub qualified_name: String,
    pub target: Arc<TargetEntry>,
    /// The tool's position among its target's tools (what the runtime was built with).
    pub index: usize,
    pub def: ToolDef,
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
