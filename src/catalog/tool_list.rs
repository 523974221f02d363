//! Where a target's tools come from (`ToolSource`): the file's `tools`, its AgentCore tool
//! schema file, a description the kind reads (an OpenAPI document), or the target's own
//! listing (an MCP server's `tools/list`).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::load::{Found, Problem, Schemas, check_schema, read_json};
use super::model::TargetFile;
use crate::credential::{Credentials, GrantType, KeyPlacement};
use crate::targets::{self, DescribeInput, Kind, ListInput, SpecProblems, ToolSource, Transport};

/// A target's tools before checking: where they are written and how each is addressed.
pub(super) struct ToolList {
    pub(super) tools: Vec<Value>,
    /// The file the tools are in (the target file, its tool-schema file, a described document).
    pub(super) file: PathBuf,
    /// Each tool's RFC 6901 pointer in `file`.
    pub(super) pointers: Vec<String>,
    /// Written by the admin (`tools`, `toolSchemaFile`) rather than described by the kind.
    pub(super) written: bool,
    /// The section the kind is built from, when describing replaced the file's.
    pub(super) section: Option<Value>,
    pub(super) skipped: Vec<Problem>,
    /// Where the kind's description says an API key goes.
    pub(super) key_placement: Option<KeyPlacement>,
}

pub(super) async fn tool_list(
    kind: &Kind,
    file: &TargetFile,
    path: &Path,
    section: &Value,
    schemas: &Schemas,
    transport: &Transport,
    found: &mut Found<'_>,
) -> Option<ToolList> {
    let written = |tools: Vec<Value>, file: PathBuf, prefix: &str| {
        let pointers = (0..tools.len()).map(|i| format!("{prefix}/{i}")).collect();
        ToolList {
            tools,
            file,
            pointers,
            written: true,
            section: None,
            skipped: vec![],
            key_placement: None,
        }
    };
    match (kind.tools, &file.tools, &file.tool_schema_file) {
        (ToolSource::File | ToolSource::FileOrListed(_), Some(tools), None) => {
            Some(written(tools.clone(), path.to_path_buf(), "/tools"))
        }
        (ToolSource::File | ToolSource::FileOrListed(_), None, Some(relative)) => {
            match tool_schema_file(path, relative, schemas) {
                Ok((tools, schema_path)) => Some(written(tools, schema_path, "")),
                Err(mut problems) => {
                    found.problems.append(&mut problems);
                    None
                }
            }
        }
        (ToolSource::FileOrListed(list), None, None) => {
            if let Some(Credentials::Oauth(oauth)) = &file.credentials
                && oauth.grant_type == GrantType::AuthorizationCode
            {
                found.push(
                    "",
                    format!(
                        "{} targets with an AUTHORIZATION_CODE credential need `tools` or `toolSchemaFile`: only a user's token could list their tools, and none is at hand at load",
                        kind.key
                    ),
                );
                return None;
            }
            let input = ListInput {
                section,
                credentials: file.credentials.as_ref(),
                transport,
            };
            match list(&input).await {
                Ok(tools) => Some(ToolList {
                    // Not a pointer into the file: the item of the server's answer.
                    pointers: (0..tools.len())
                        .map(|i| format!("tools/list/{i}"))
                        .collect(),
                    tools,
                    file: path.to_path_buf(),
                    written: false,
                    section: None,
                    skipped: vec![],
                    key_placement: None,
                }),
                Err(message) => {
                    found.push(format!("/{}", kind.key), message);
                    None
                }
            }
        }
        (ToolSource::File | ToolSource::FileOrListed(_), _, _) => {
            found.push("", "exactly one of `tools` or `toolSchemaFile` is required");
            None
        }
        (ToolSource::Described(describe), None, None) => {
            let mut problems = SpecProblems::default();
            let described = describe(
                &DescribeInput {
                    section,
                    target_file: path,
                },
                &mut problems,
            );
            for (pointer, message) in problems.section {
                found.push(format!("/{}{pointer}", kind.key), message);
            }
            let described = described.filter(|_| found.problems.is_empty())?;
            let (pointers, tools) = described
                .tools
                .into_iter()
                .map(|tool| (tool.pointer, tool.tool))
                .unzip();
            Some(ToolList {
                tools,
                file: described.file,
                pointers,
                written: false,
                section: Some(described.section),
                key_placement: described.key_placement,
                skipped: described
                    .skipped
                    .into_iter()
                    .map(|s| Problem {
                        file: s.file,
                        pointer: s.pointer,
                        message: format!("skipped: {}", s.message),
                    })
                    .collect(),
            })
        }
        (ToolSource::Described(_), tools, _) => {
            let key = if tools.is_some() {
                "/tools"
            } else {
                "/toolSchemaFile"
            };
            found.push(
                key,
                format!(
                    "{} targets describe their own tools; remove this key",
                    kind.key
                ),
            );
            None
        }
    }
}

/// Resolves and loads an AgentCore tool-schema file, which must sit inside the targets folder
/// tree (no absolute paths, no `..`), so a target file cannot read arbitrary files.
fn tool_schema_file(
    target_file: &Path,
    relative: &str,
    schemas: &Schemas,
) -> Result<(Vec<Value>, PathBuf), Vec<Problem>> {
    let problem = |message: String| {
        vec![Problem {
            file: target_file.to_path_buf(),
            pointer: "/toolSchemaFile".into(),
            message,
        }]
    };
    let path = targets::file_beside(target_file, relative).map_err(problem)?;
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
