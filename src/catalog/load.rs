//! One target file -> a [`LoadedFile`], or every problem in it, each with file and JSON pointer.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde_json::{Value, json};

use super::model::{CatalogTool, SEPARATOR, TargetEntry, TargetFile, ToolDef};
use crate::credential::{Credentials, KeyPlacement};
use crate::targets::{self, BuildInput, KINDS, Kind, SpecProblems, ToolSpec, Transport};

const TARGET_SCHEMA: &str = include_str!("../../schemas/target.schema.json");
/// Longest message excerpt kept from a schema error (they can quote whole instances).
const MAX_MESSAGE_CHARS: usize = 300;

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
    pub target: Arc<TargetEntry>,
    pub tools: Vec<Arc<CatalogTool>>,
    /// Described tools left out (an OpenAPI operation that cannot be mapped), for reporting.
    pub skipped: Vec<Problem>,
}

pub(super) struct Schemas {
    target: jsonschema::Validator,
    pub(super) tool_file: jsonschema::Validator,
    /// One tool (`$defs/tool`): what a listed or described tool must be to be served.
    pub(super) tool: jsonschema::Validator,
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
            let tool = json!({
                "$defs": target.get("$defs").cloned().unwrap_or(Value::Null),
                "$ref": "#/$defs/tool",
            });
            Ok(Schemas {
                target: compile(&target)?,
                tool_file: compile(&tool_file)?,
                tool: compile(&tool)?,
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Problems found while loading one file; the file is refused if any is found.
pub(super) struct Found<'a> {
    pub(super) file: &'a Path,
    pub(super) problems: Vec<Problem>,
}

impl Found<'_> {
    pub(super) fn push(&mut self, pointer: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            pointer: pointer.into(),
            message: message.into(),
        });
    }
}

pub(super) fn read_json(path: &Path) -> Result<Value, Problem> {
    let problem = |message: String| Problem {
        file: path.to_path_buf(),
        pointer: String::new(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| problem(format!("cannot read: {e}")))?;
    serde_json::from_str(&text).map_err(|e| problem(format!("invalid JSON: {e}")))
}

/// Validates `instance` against `validator`, recording one problem per failing keyword.
pub(super) fn check_schema(
    validator: &jsonschema::Validator,
    instance: &Value,
    found: &mut Found<'_>,
) {
    for error in validator.iter_errors(instance) {
        let schema_path = error.schema_path().as_str();
        let message = if schema_path.starts_with("/allOf/0/oneOf") {
            one_kind_required()
        } else if schema_path.starts_with("/allOf/1/else/else/oneOf") {
            "exactly one of `tools` or `toolSchemaFile` is required".to_string()
        } else if schema_path.starts_with("/allOf/1/else/then") {
            "at most one of `tools` or `toolSchemaFile` (with neither, the MCP server's own tools/list is used)".to_string()
        } else if schema_path.starts_with("/allOf/1/then") {
            "openapi targets describe their own tools; remove `tools` / `toolSchemaFile`"
                .to_string()
        } else {
            let text = error.to_string();
            let excerpt: String = text.chars().take(MAX_MESSAGE_CHARS).collect();
            format!("{} ({})", excerpt, error.kind().keyword())
        };
        found.push(error.instance_path().as_str(), message);
    }
}

/// "exactly one of `lambda` or `http` is required", from the registry.
fn one_kind_required() -> String {
    let keys: Vec<String> = KINDS.iter().map(|kind| format!("`{}`", kind.key)).collect();
    match keys.split_last() {
        Some((last, [])) => format!("{last} is required"),
        Some((last, rest)) => format!("exactly one of {} or {last} is required", rest.join(", ")),
        None => "no target kinds are registered".to_string(),
    }
}

/// Loads one target file and, if it names one, its tool-schema file. Targets are built with
/// `transport`'s shared clients.
pub async fn load_file(path: &Path, transport: &Transport) -> Result<LoadedFile, Vec<Problem>> {
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
    let present: Vec<&'static Kind> = KINDS
        .iter()
        .filter(|kind| document.get(kind.key).is_some())
        .collect();
    let (kind, section) = match (present.as_slice(), &document) {
        ([kind], Value::Object(fields)) => match fields.get(kind.key) {
            Some(section) => (*kind, section.clone()),
            None => return Err(vec![problem(path, "", one_kind_required())]),
        },
        _ => return Err(vec![problem(path, "", one_kind_required())]),
    };
    let file: TargetFile = match serde_json::from_value(document) {
        Ok(file) => file,
        Err(e) => {
            found.push("", format!("unexpected shape: {e}"));
            return Err(found.problems);
        }
    };
    let Some(list) =
        super::tool_list::tool_list(kind, &file, path, &section, schemas, transport, &mut found)
            .await
    else {
        return Err(found.problems);
    };
    let section = list.section.as_ref().unwrap_or(&section);
    let credentials = placed_credentials(&file, list.key_placement.as_ref(), &mut found);
    let mut tool_found = Found {
        file: &list.file,
        problems: vec![],
    };
    let mut skipped: Vec<Problem> = list.skipped;
    // The generic part of each tool, in order. A written tool with a problem fails the file; a
    // described one is skipped (reported) and the others keep their place.
    let mut names = HashSet::new();
    let mut kept: Vec<(ToolDef, Option<jsonschema::Validator>, &Value, &str)> = Vec::new();
    for (raw, pointer) in list.tools.iter().zip(&list.pointers) {
        let mut one = Found {
            file: &list.file,
            problems: vec![],
        };
        if !list.written {
            // Written tools passed the file's schema; a listed or described one must pass the
            // same rules for one tool (a name the catalog can prefix, a well-formed schema).
            for error in schemas.tool.iter_errors(raw) {
                let text = error.to_string();
                let excerpt: String = text.chars().take(MAX_MESSAGE_CHARS).collect();
                one.push(
                    format!("{pointer}{}", error.instance_path().as_str()),
                    format!("{excerpt} ({})", error.kind().keyword()),
                );
            }
        }
        let def = tool_def(raw, pointer, &mut names, &mut one);
        if list.written {
            foreign_tool_keys(raw, kind, pointer, &mut one);
        }
        let validator = validator(&def, pointer, &mut one);
        if one.problems.is_empty() || list.written {
            // A written tool keeps its place even with problems, so that the kind reports its
            // own problems of the file too (the file is refused either way).
            tool_found.problems.append(&mut one.problems);
            kept.push((def, validator, raw, pointer));
        } else {
            skipped.extend(one.problems.into_iter().map(|mut problem| {
                problem.message = format!("skipped: {}", problem.message);
                problem
            }));
        }
    }
    let specs: Vec<ToolSpec<'_>> = kept
        .iter()
        .map(|(def, _, raw, _)| ToolSpec {
            name: &def.name,
            input_schema: &def.input_schema,
            raw,
        })
        .collect();
    let mut kind_problems = SpecProblems::default();
    let runtime = (kind.build)(
        &BuildInput {
            section,
            tools: &specs,
            listed: !list.written && matches!(kind.tools, targets::ToolSource::FileOrListed(_)),
            credentials: credentials.as_ref(),
            transport,
        },
        &mut kind_problems,
    );
    for (pointer, message) in kind_problems.section {
        found.push(format!("/{}{pointer}", kind.key), message);
    }
    for (index, pointer, message) in kind_problems.tools {
        let at = kept.get(index).map_or("", |(_, _, _, at)| at);
        tool_found.push(format!("{at}{pointer}"), message);
    }
    let target = match runtime {
        Some(runtime) if found.problems.is_empty() && tool_found.problems.is_empty() => {
            Arc::new(TargetEntry {
                name: file.name.clone(),
                description: file.description.clone(),
                file: path.to_path_buf(),
                kind: kind.key,
                credentials,
                runtime,
            })
        }
        _ => {
            found.problems.append(&mut tool_found.problems);
            if found.problems.is_empty() {
                found.push(format!("/{}", kind.key), "the target could not be built");
            }
            return Err(found.problems);
        }
    };
    // No problem was recorded, so every kept tool has its validator.
    let tools = kept
        .into_iter()
        .enumerate()
        .filter_map(|(index, (def, validator, _, _))| {
            Some(Arc::new(catalog_tool(&target, index, def, validator?)))
        })
        .collect();
    Ok(LoadedFile {
        target,
        tools,
        skipped,
    })
}

/// The file's credential, with an API key's placement taken from the kind's description
/// (an OpenAPI document's security scheme) where the file leaves it out.
fn placed_credentials(
    file: &TargetFile,
    placement: Option<&KeyPlacement>,
    found: &mut Found<'_>,
) -> Option<Credentials> {
    let mut credentials = file.credentials.clone();
    if let Some(Credentials::ApiKey(api_key)) = &mut credentials {
        if let Some(placement) = placement {
            api_key.place(placement);
        }
        if !api_key.is_placed() {
            found.push(
                "/credentials/apiKey",
                "`location` and `parameterName` are required (only an OpenAPI document's \
                 security scheme can stand in for them)",
            );
        }
    }
    credentials
}

fn problem(file: &Path, pointer: &str, message: String) -> Problem {
    Problem {
        file: file.to_path_buf(),
        pointer: pointer.to_string(),
        message,
    }
}

/// The generic part of one tool; problems are recorded at `pointer`. A tool that fails here
/// still gets a definition, so that the other problems of the file are found too.
fn tool_def(
    raw: &Value,
    pointer: &str,
    names: &mut HashSet<String>,
    found: &mut Found<'_>,
) -> ToolDef {
    let def: ToolDef = match serde_json::from_value(raw.clone()) {
        Ok(def) => def,
        Err(e) => {
            found.push(pointer, format!("unexpected shape: {e}"));
            ToolDef::default()
        }
    };
    if !names.insert(def.name.clone()) {
        found.push(
            format!("{pointer}/name"),
            format!("duplicate tool name {:?}", def.name),
        );
    }
    def
}

/// A written tool may not carry another kind's per-tool key (an `http` mapping on a Lambda
/// tool would be silently ignored otherwise).
fn foreign_tool_keys(raw: &Value, kind: &Kind, pointer: &str, found: &mut Found<'_>) {
    for other in KINDS.iter().filter(|other| other.key != kind.key) {
        if let Some(key) = other.tool_key
            && Some(key) != kind.tool_key
            && raw.get(key).is_some()
        {
            found.push(
                format!("{pointer}/{}", targets::escape_pointer(key)),
                format!("only tools of {} targets take `{key}`", other.key),
            );
        }
    }
}

/// The tool's argument validator, or its schema problems.
fn validator(def: &ToolDef, pointer: &str, found: &mut Found<'_>) -> Option<jsonschema::Validator> {
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
        return None;
    }
    validator
}

/// The catalog's view of one tool of `target`: its qualified name, validator and listing.
pub(crate) fn catalog_tool(
    target: &Arc<TargetEntry>,
    index: usize,
    def: ToolDef,
    validator: jsonschema::Validator,
) -> CatalogTool {
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
    CatalogTool {
        qualified_name,
        target: target.clone(),
        index,
        def,
        validator,
        listing,
    }
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
    fn embedded_schema_compiles() {
        assert!(schemas().is_ok());
    }

    /// A new kind is a module plus one registry line, and the target schema must name it too.
    #[test]
    fn the_schema_names_exactly_the_registered_kinds() {
        let schema: Value = serde_json::from_str(TARGET_SCHEMA).unwrap();
        let mut in_schema: Vec<&str> = schema["allOf"][0]["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|branch| branch["required"][0].as_str().unwrap())
            .collect();
        let mut registered: Vec<&str> = KINDS.iter().map(|kind| kind.key).collect();
        in_schema.sort();
        registered.sort();
        assert_eq!(in_schema, registered);
        assert_eq!(
            one_kind_required(),
            "exactly one of `lambda`, `http`, `openapi` or `mcp` is required"
        );
    }
}
