//! The Cedar schema of a catalog, as AgentCore Gateway generates one from its tool manifest
//! (DESIGN 2.10; AgentCore developer guide, "Schema constraints").
//!
//! - `AgentCore::OAuthUser` carries the token's claims as `String` tags; `AgentCore::Gateway`
//!   is the resource;
//! - actions `Mcp`, `CallTool in Mcp`, and one action per tool in `CallTool`, applying to
//!   `OAuthUser` on `Gateway` with `context: { input: <tool>Input }`;
//! - `<tool>Input` is the tool's inputSchema in Cedar types, where Cedar can express it:
//!   string -> `String`, integer -> `Long`, boolean -> `Bool`, number -> `decimal`, an object
//!   with `properties` -> a record (attributes outside `required` are optional), an array with
//!   typed `items` -> a set. A property Cedar cannot type (no `type`, a union, `null`, an
//!   untyped array) is left out, so a policy that reads it fails validation instead of being
//!   checked against a guess.
//!
//! The schema is what `portcullis policy schema` writes for editors and what `validate` checks
//! every policy file against. At run time the same mapping shapes each call's `context.input`
//! ([`input_expression`]): a `number` argument is a Cedar `decimal`, as it is on AgentCore.

use cedar_policy::RestrictedExpression;
use serde_json::{Map, Value, json};

use super::entities::{CALL_TOOL, MCP_GROUP};

/// One tool as the schema needs it.
#[derive(Debug, Clone, Copy)]
pub struct ToolShape<'a> {
    /// `<target>___<tool>`, the action's id.
    pub name: &'a str,
    pub input_schema: &'a Map<String, Value>,
}

/// The schema in Cedar's JSON schema format (namespace `AgentCore`).
pub fn schema_json<'a>(tools: impl IntoIterator<Item = ToolShape<'a>>) -> Value {
    let mut common = Map::new();
    let mut actions = Map::new();
    actions.insert(MCP_GROUP.into(), json!({}));
    actions.insert(
        CALL_TOOL.into(),
        json!({ "memberOf": [{ "id": MCP_GROUP }] }),
    );
    for tool in tools {
        let input = record(tool.input_schema);
        // A valid identifier becomes a named type, as AgentCore names it; other names (a
        // hyphen in a tool name) keep the record inline.
        let input_type = if is_identifier(tool.name) {
            let type_name = format!("{}Input", tool.name);
            common.insert(type_name.clone(), input);
            json!({ "type": type_name })
        } else {
            input
        };
        actions.insert(
            tool.name.to_string(),
            json!({
                "memberOf": [{ "id": CALL_TOOL }],
                "appliesTo": {
                    "principalTypes": ["OAuthUser"],
                    "resourceTypes": ["Gateway"],
                    "context": {
                        "type": "Record",
                        "attributes": { "input": input_type }
                    }
                }
            }),
        );
    }
    json!({
        "AgentCore": {
            "commonTypes": common,
            "entityTypes": {
                "OAuthUser": {
                    "shape": { "type": "Record", "attributes": {} },
                    "tags": { "type": "String" }
                },
                "Gateway": {}
            },
            "actions": actions
        }
    })
}

/// The schema, parsed (for validation).
pub fn schema<'a>(
    tools: impl IntoIterator<Item = ToolShape<'a>>,
) -> Result<cedar_policy::Schema, String> {
    cedar_policy::Schema::from_json_value(schema_json(tools)).map_err(|e| e.to_string())
}

/// The schema in Cedar's own schema syntax, for `portcullis policy schema` and editors.
pub fn schema_text<'a>(tools: impl IntoIterator<Item = ToolShape<'a>>) -> Result<String, String> {
    cedar_policy::SchemaFragment::from_json_value(schema_json(tools))
        .map_err(|e| e.to_string())?
        .to_cedarschema()
        .map_err(|e| e.to_string())
}

/// An object schema as a Cedar record type.
fn record(schema: &Map<String, Value>) -> Value {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut attributes = Map::new();
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            if let Some(Value::Object(mut cedar)) = cedar_type(property) {
                cedar.insert("required".into(), required.contains(&name.as_str()).into());
                attributes.insert(name.clone(), Value::Object(cedar));
            }
        }
    }
    json!({ "type": "Record", "attributes": attributes })
}

/// A JSON Schema as a Cedar type, or `None` where Cedar has no type for it.
fn cedar_type(schema: &Value) -> Option<Value> {
    let schema = schema.as_object()?;
    match schema.get("type")?.as_str()? {
        "string" => Some(json!({ "type": "String" })),
        "integer" => Some(json!({ "type": "Long" })),
        "boolean" => Some(json!({ "type": "Bool" })),
        "number" => Some(json!({ "type": "Extension", "name": "decimal" })),
        "object" => Some(record(schema)),
        "array" => {
            let element = cedar_type(schema.get("items")?)?;
            Some(json!({ "type": "Set", "element": element }))
        }
        _ => None,
    }
}

/// A Cedar identifier (`[_a-zA-Z][_a-zA-Z0-9]*`), which a common type name must be.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// The call's arguments as `context.input`, under the schema's mapping: each argument the
/// inputSchema types `number` is a Cedar `decimal`, integers are `Long`s, objects records and
/// arrays sets (nested schemas followed). A `null` argument is left out (Cedar has no null:
/// `context.input has x` is false, as for an absent argument). A number Cedar cannot hold
/// exactly (more than four decimal places for a `decimal`, a fraction where no `number` is
/// declared, beyond 64 bits) is an error, and the call is denied rather than decided on a
/// rounded value.
///
/// Built as Cedar expressions directly: going through Cedar's JSON parser instead costs about
/// three times as much per call (benches/policy.rs).
pub fn input_expression(
    schema: &Map<String, Value>,
    input: &Map<String, Value>,
) -> Result<RestrictedExpression, String> {
    record_expression(Some(schema), input)
}

fn record_expression(
    schema: Option<&Map<String, Value>>,
    record: &Map<String, Value>,
) -> Result<RestrictedExpression, String> {
    let properties = schema
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object);
    let mut fields = Vec::with_capacity(record.len());
    for (name, value) in record {
        let property = properties.and_then(|p| p.get(name));
        if let Some(expression) = expression(property, value)
            .map_err(|problem| format!("argument {name:?}: {problem}"))?
        {
            fields.push((name.clone(), expression));
        }
    }
    RestrictedExpression::new_record(fields).map_err(|e| e.to_string())
}

fn expression(
    schema: Option<&Value>,
    value: &Value,
) -> Result<Option<RestrictedExpression>, String> {
    let schema = schema.and_then(Value::as_object);
    let declared = schema.and_then(|s| s.get("type")).and_then(Value::as_str);
    Ok(Some(match value {
        Value::Null => return Ok(None),
        Value::Bool(flag) => RestrictedExpression::new_bool(*flag),
        Value::String(text) => RestrictedExpression::new_string(text.clone()),
        Value::Number(number) if declared == Some("number") => {
            let text = decimal_text(number).ok_or_else(|| {
                format!("{number} has more precision than a Cedar decimal (four places)")
            })?;
            RestrictedExpression::new_decimal(text)
        }
        Value::Number(number) => {
            RestrictedExpression::new_long(whole(number).ok_or_else(|| {
                format!("{number} is not a 64-bit integer and the inputSchema declares no number")
            })?)
        }
        Value::Array(items) => {
            let item_schema = schema.and_then(|s| s.get("items"));
            let mut elements = Vec::with_capacity(items.len());
            for item in items {
                if let Some(element) = expression(item_schema, item)? {
                    elements.push(element);
                }
            }
            RestrictedExpression::new_set(elements)
        }
        Value::Object(object) => record_expression(schema, object)?,
    }))
}

/// An integer JSON number (`5` or `5.0`, both an `integer` to JSON Schema) as an i64.
fn whole(number: &serde_json::Number) -> Option<i64> {
    number.as_i64().or_else(|| {
        let float = number.as_f64()?;
        // Exactly representable range of i64 in f64, and no fraction.
        (float.fract() == 0.0 && float.abs() < 9.0e15).then_some(float as i64)
    })
}

/// A JSON number in `decimal`'s syntax (digits, a point, one to four digits), if it fits
/// exactly; Cedar checks the range.
fn decimal_text(number: &serde_json::Number) -> Option<String> {
    if let Some(whole) = number.as_i64() {
        return Some(format!("{whole}.0"));
    }
    let text = number.to_string();
    let (whole, fraction) = text.split_once('.')?;
    let exact = !whole.is_empty()
        && (1..=4).contains(&fraction.len())
        && fraction.chars().all(|c| c.is_ascii_digit());
    exact.then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refund_schema() -> Map<String, Value> {
        json!({
            "type": "object",
            "required": ["orderId", "amount"],
            "properties": {
                "orderId": {"type": "string"},
                "amount": {"type": "number"},
                "count": {"type": "integer"},
                "express": {"type": "boolean"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "address": {"type": "object", "properties": {"country": {"type": "string"}}},
                "anything": {},
                "either": {"type": ["string", "null"]}
            }
        })
        .as_object()
        .cloned()
        .unwrap_or_default()
    }

    #[test]
    fn json_schema_types_map_as_agentcore_maps_them() {
        let schema = refund_schema();
        let text = schema_text([ToolShape {
            name: "refunds___process_refund",
            input_schema: &schema,
        }])
        .unwrap();
        assert!(text.contains("namespace AgentCore"), "{text}");
        assert!(text.contains("refunds___process_refundInput"), "{text}");
        assert!(text.contains("orderId: __cedar::String"), "{text}");
        assert!(text.contains("amount: __cedar::decimal"), "{text}");
        assert!(text.contains("count?: __cedar::Long"), "{text}");
        assert!(text.contains("express?: Bool"), "{text}");
        assert!(text.contains("Set<__cedar::String>"), "{text}");
        assert!(text.contains("country?: __cedar::String"), "{text}");
        assert!(
            !text.contains("anything"),
            "untyped properties are left out: {text}"
        );
        assert!(!text.contains("either"), "unions are left out: {text}");
        assert!(text.contains("OAuthUser tags __cedar::String"), "{text}");
        assert!(
            text.contains("action \"CallTool\" in [Action::\"Mcp\"]"),
            "{text}"
        );
        assert!(
            text.contains("action \"refunds___process_refund\" in [Action::\"CallTool\"]"),
            "{text}"
        );
    }

    #[test]
    fn tool_names_that_are_not_identifiers_keep_their_record_inline() {
        let refund = refund_schema();
        let parsed = schema([ToolShape {
            name: "billing___refund-order",
            input_schema: &refund,
        }]);
        assert!(parsed.is_ok(), "{parsed:?}");
        assert!(is_identifier("a___b_1"));
        assert!(!is_identifier("a-b") && !is_identifier("1a") && !is_identifier(""));
    }

    #[test]
    fn numbers_become_decimals_only_where_exact() {
        let number = |v: Value| match v {
            Value::Number(n) => n,
            _ => unreachable!(),
        };
        assert_eq!(decimal_text(&number(json!(12.5))).as_deref(), Some("12.5"));
        assert_eq!(decimal_text(&number(json!(7))).as_deref(), Some("7.0"));
        assert_eq!(
            decimal_text(&number(json!(-0.0001))).as_deref(),
            Some("-0.0001")
        );
        assert_eq!(decimal_text(&number(json!(0.123456))), None, "not rounded");
        assert_eq!(decimal_text(&number(json!(1e300))), None);
        assert_eq!(whole(&number(json!(5.0))), Some(5));
        assert_eq!(whole(&number(json!(5.5))), None);

        let schema = refund_schema();
        let ok = |v: Value| input_expression(&schema, v.as_object().unwrap());
        assert!(ok(json!({"amount": 12.5, "count": 3, "address": {"country": "NL"}})).is_ok());
        assert!(
            ok(json!({"amount": null, "tags": ["a", null]})).is_ok(),
            "nulls are left out"
        );
        let too_fine = ok(json!({"amount": 0.123456})).unwrap_err();
        assert!(too_fine.contains("\"amount\""), "{too_fine}");
        assert!(
            ok(json!({"count": 1.5})).is_err(),
            "a fraction where no number is declared"
        );
    }
}
