//! Schemas as a tool needs them: OpenAPI 3.0 Schema Objects rewritten as JSON Schema 2020-12,
//! and the parts of an object schema that become arguments.

use serde_json::{Map, Value, json};

pub(super) fn schema_type(schema: &Value) -> Option<&str> {
    match schema.get("type") {
        Some(Value::String(kind)) => Some(kind),
        // 3.1 `type: [x, "null"]`.
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|k| *k != "null"),
        _ => None,
    }
}

pub(super) fn add_description(schema: &mut Value, parameter: &Value) {
    if let (Value::Object(fields), Some(description)) = (schema, parameter.get("description"))
        && !fields.contains_key("description")
    {
        fields.insert("description".into(), description.clone());
    }
}

/// An object schema's parts, its `allOf` members' included.
pub(super) struct ObjectParts {
    pub(super) properties: Map<String, Value>,
    pub(super) required: Vec<String>,
    pub(super) additional: Option<Value>,
}

/// The properties, required names and `additionalProperties` of an object schema, including
/// those of its `allOf` members; `None` if the schema is not an object.
pub(super) fn object_parts(schema: &Value) -> Option<ObjectParts> {
    let is_object = schema_type(schema) == Some("object")
        || (schema_type(schema).is_none()
            && (schema.get("properties").is_some() || schema.get("allOf").is_some()));
    if !is_object {
        return None;
    }
    let mut properties = Map::new();
    let mut required = Vec::new();
    let mut additional = schema.get("additionalProperties").cloned();
    let members = std::iter::once(schema).chain(
        schema
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten(),
    );
    for member in members {
        if let Some(own) = member.get("properties").and_then(Value::as_object) {
            properties.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        if let Some(own) = member.get("required").and_then(Value::as_array) {
            required.extend(own.iter().filter_map(Value::as_str).map(str::to_string));
        }
        if member.get("additionalProperties") == Some(&Value::Bool(false)) {
            additional = Some(Value::Bool(false));
        }
        // A member that is itself not an object (oneOf inside allOf) cannot be merged.
        if member.get("oneOf").is_some() || member.get("anyOf").is_some() {
            return None;
        }
    }
    Some(ObjectParts {
        properties,
        required,
        additional,
    })
}

/// OpenAPI 3.0 Schema Objects -> JSON Schema 2020-12: `nullable: true` becomes a `"null"` type,
/// boolean `exclusiveMinimum` / `exclusiveMaximum` become the numeric form. Everything else
/// 3.0 allows is valid JSON Schema with the same meaning (or an annotation).
pub fn from_openapi_3_0(schema: &mut Value) {
    match schema {
        Value::Object(fields) => {
            if fields.get("nullable") == Some(&Value::Bool(true)) {
                fields.remove("nullable");
                match fields.get_mut("type") {
                    Some(Value::String(kind)) => {
                        let kind = std::mem::take(kind);
                        fields.insert("type".into(), json!([kind, "null"]));
                    }
                    Some(_) => {}
                    None => {}
                }
            }
            for (flag, bound) in [
                ("exclusiveMinimum", "minimum"),
                ("exclusiveMaximum", "maximum"),
            ] {
                match fields.get(flag) {
                    Some(Value::Bool(true)) => {
                        if let Some(value) = fields.remove(bound) {
                            fields.insert(flag.into(), value);
                        } else {
                            fields.remove(flag);
                        }
                    }
                    Some(Value::Bool(false)) => {
                        fields.remove(flag);
                    }
                    _ => {}
                }
            }
            for value in fields.values_mut() {
                from_openapi_3_0(value);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(from_openapi_3_0),
        _ => {}
    }
}
