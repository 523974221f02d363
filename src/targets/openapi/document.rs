//! Reading an OpenAPI document: JSON or YAML, version 3.0 or 3.1, and its local `$ref`s
//! (OpenAPI 3.1.0 section 4.8.23 "Reference Object"; JSON Reference + RFC 6901 pointers).
//!
//! Only references inside the same document (`#/...`) are followed: a target file may read
//! files inside the targets folder only, and a remote reference would make loading depend on
//! the network. References are inlined, so that each tool's `inputSchema` stands alone; a
//! reference that leads back to itself (a recursive schema) cannot be inlined and is reported.

use std::path::Path;

use serde_json::{Map, Value};

/// Most nested references followed through one value: far beyond any real document, and a
/// bound on the work a hostile one can cause (each level may fan out).
const MAX_REF_DEPTH: usize = 64;
/// Largest document read: 1,000 operations of a real API are ~5 MB of YAML.
pub const MAX_DOCUMENT_BYTES: u64 = 32 * 1024 * 1024;

/// A parsed document and the OpenAPI minor version it declares.
#[derive(Debug)]
pub struct Document {
    pub root: Value,
    /// `true` for 3.0.x, whose Schema Object differs from JSON Schema (`nullable`, boolean
    /// `exclusiveMinimum`); 3.1 schemas are JSON Schema 2020-12.
    pub is_3_0: bool,
}

/// Why a document cannot be used at all. Problems of single operations are reported per
/// operation instead.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("cannot read the document: {0}")]
    Read(String),
    #[error("the document is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge,
    #[error("not valid {format}: {reason}")]
    Syntax {
        format: &'static str,
        reason: String,
    },
    #[error("`openapi` must be a 3.0.x or 3.1.x version string, found {0}")]
    Version(String),
}

/// Reads `path`: YAML when it ends in `.yaml` / `.yml`, JSON otherwise.
pub fn read(path: &Path) -> Result<Document, DocumentError> {
    let size = std::fs::metadata(path)
        .map_err(|e| DocumentError::Read(e.to_string()))?
        .len();
    if size > MAX_DOCUMENT_BYTES {
        return Err(DocumentError::TooLarge);
    }
    let text = std::fs::read_to_string(path).map_err(|e| DocumentError::Read(e.to_string()))?;
    let is_yaml = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
    let root: Value = if is_yaml {
        serde_saphyr::from_str(&text).map_err(|e| DocumentError::Syntax {
            format: "YAML",
            reason: e.to_string(),
        })?
    } else {
        serde_json::from_str(&text).map_err(|e| DocumentError::Syntax {
            format: "JSON",
            reason: e.to_string(),
        })?
    };
    parse(root)
}

/// Checks the version of an already parsed document.
pub fn parse(root: Value) -> Result<Document, DocumentError> {
    let version = root.get("openapi");
    let is_3_0 = match version.and_then(Value::as_str) {
        Some(v) if v.starts_with("3.0.") || v == "3.0" => true,
        Some(v) if v.starts_with("3.1.") || v == "3.1" => false,
        _ => {
            let found = version.map_or_else(|| "none".to_string(), Value::to_string);
            return Err(DocumentError::Version(found));
        }
    };
    Ok(Document { root, is_3_0 })
}

/// Why a value could not be resolved: the message names the reference.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    #[error(
        "$ref {0:?} is not a local reference (`#/...`); only references inside the document are followed"
    )]
    NotLocal(String),
    #[error("$ref {0:?} points at nothing in the document")]
    Unresolvable(String),
    #[error("$ref {0:?} refers back to itself (a recursive schema), which cannot be inlined")]
    Cycle(String),
    #[error("$refs nest deeper than {MAX_REF_DEPTH} levels")]
    TooDeep,
}

impl Document {
    /// The value a reference object points at (one hop), or the value itself.
    pub fn follow<'a>(&'a self, value: &'a Value) -> Result<&'a Value, RefError> {
        let mut current = value;
        for _ in 0..MAX_REF_DEPTH {
            match current.get("$ref").and_then(Value::as_str) {
                Some(reference) => current = self.target(reference)?,
                None => return Ok(current),
            }
        }
        Err(RefError::TooDeep)
    }

    /// `value` with every reference inside it replaced by what it points at, recursively.
    pub fn inline(&self, value: &Value) -> Result<Value, RefError> {
        let mut path = Vec::new();
        self.inline_inner(value, &mut path)
    }

    fn inline_inner<'a>(
        &'a self,
        value: &'a Value,
        path: &mut Vec<&'a str>,
    ) -> Result<Value, RefError> {
        match value {
            Value::Object(fields) => {
                if let Some(reference) = fields.get("$ref").and_then(Value::as_str) {
                    if path.contains(&reference) {
                        return Err(RefError::Cycle(reference.to_string()));
                    }
                    if path.len() >= MAX_REF_DEPTH {
                        return Err(RefError::TooDeep);
                    }
                    let target = self.target(reference)?;
                    path.push(reference);
                    let mut inlined = self.inline_inner(target, path)?;
                    path.pop();
                    // OpenAPI 3.1: a Reference Object's `summary` / `description` override the
                    // target's; in a 3.1 schema, sibling keywords apply alongside the target.
                    if let Value::Object(out) = &mut inlined {
                        for (key, sibling) in fields.iter().filter(|(k, _)| *k != "$ref") {
                            out.insert(key.clone(), self.inline_inner(sibling, path)?);
                        }
                    }
                    return Ok(inlined);
                }
                let mut out = Map::with_capacity(fields.len());
                for (key, field) in fields {
                    out.insert(key.clone(), self.inline_inner(field, path)?);
                }
                Ok(Value::Object(out))
            }
            Value::Array(items) => items
                .iter()
                .map(|item| self.inline_inner(item, path))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            other => Ok(other.clone()),
        }
    }

    fn target(&self, reference: &str) -> Result<&Value, RefError> {
        let Some(pointer) = reference.strip_prefix('#') else {
            return Err(RefError::NotLocal(reference.to_string()));
        };
        // A JSON Reference fragment is percent-encoded (RFC 6901 section 6).
        let pointer = percent_encoding::percent_decode_str(pointer).decode_utf8_lossy();
        self.root
            .pointer(&pointer)
            .ok_or_else(|| RefError::Unresolvable(reference.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn document(root: Value) -> Document {
        parse(root).unwrap()
    }

    #[test]
    fn versions_3_0_and_3_1_are_accepted_and_others_named() {
        assert!(parse(json!({"openapi": "3.0.3"})).unwrap().is_3_0);
        assert!(!parse(json!({"openapi": "3.1.0"})).unwrap().is_3_0);
        let error = parse(json!({"swagger": "2.0"})).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`openapi` must be a 3.0.x or 3.1.x version string, found none"
        );
        assert!(parse(json!({"openapi": "4.0.0"})).is_err());
    }

    #[test]
    fn nested_references_are_inlined() {
        let doc = document(json!({
            "openapi": "3.1.0",
            "components": {"schemas": {
                "Pet": {"type": "object", "properties": {"tag": {"$ref": "#/components/schemas/Tag"}}},
                "Tag": {"type": "string"},
            }},
        }));
        let inlined = doc
            .inline(&json!({"$ref": "#/components/schemas/Pet"}))
            .unwrap();
        assert_eq!(
            inlined,
            json!({"type": "object", "properties": {"tag": {"type": "string"}}})
        );
    }

    #[test]
    fn a_reference_used_twice_side_by_side_is_not_a_cycle() {
        let doc = document(json!({
            "openapi": "3.1.0",
            "components": {"schemas": {"Id": {"type": "integer"}}},
        }));
        let inlined = doc
            .inline(&json!({"properties": {
                "a": {"$ref": "#/components/schemas/Id"},
                "b": {"$ref": "#/components/schemas/Id"},
            }}))
            .unwrap();
        assert_eq!(inlined["properties"]["b"], json!({"type": "integer"}));
    }

    #[test]
    fn cycles_broken_and_remote_references_are_named() {
        let doc = document(json!({
            "openapi": "3.1.0",
            "components": {"schemas": {
                "Node": {"properties": {"next": {"$ref": "#/components/schemas/Node"}}},
                "A~/B": {"type": "string"},
            }},
        }));
        assert_eq!(
            doc.inline(&json!({"$ref": "#/components/schemas/Node"})),
            Err(RefError::Cycle("#/components/schemas/Node".into()))
        );
        assert_eq!(
            doc.inline(&json!({"$ref": "#/components/schemas/Missing"})),
            Err(RefError::Unresolvable(
                "#/components/schemas/Missing".into()
            ))
        );
        assert_eq!(
            doc.inline(&json!({"$ref": "other.yaml#/x"})),
            Err(RefError::NotLocal("other.yaml#/x".into()))
        );
        // RFC 6901 escapes and the fragment's percent-encoding both apply.
        assert_eq!(
            doc.inline(&json!({"$ref": "#/components/schemas/A~0~1B"}))
                .unwrap(),
            json!({"type": "string"})
        );
    }

    #[test]
    fn yaml_documents_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.yaml");
        std::fs::write(
            &path,
            "openapi: 3.0.0\ninfo: {title: t, version: '1'}\npaths: {}\n",
        )
        .unwrap();
        let doc = read(&path).unwrap();
        assert!(doc.is_3_0);
        assert_eq!(doc.root["info"]["version"], json!("1"));
        std::fs::write(&path, "openapi: [unclosed\n").unwrap();
        assert!(matches!(
            read(&path),
            Err(DocumentError::Syntax { format: "YAML", .. })
        ));
    }
}
