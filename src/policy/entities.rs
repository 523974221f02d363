//! AgentCore Gateway's entity model for one caller and one tool (DESIGN 2.10).

use std::str::FromStr;

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request, RestrictedExpression,
};
use serde_json::{Map, Value, json};

const PRINCIPAL_TYPE: &str = "AgentCore::OAuthUser";
const ACTION_TYPE: &str = "AgentCore::Action";
const RESOURCE_TYPE: &str = "AgentCore::Gateway";
/// The action group every tool action belongs to.
pub const CALL_TOOL: &str = "CallTool";

fn uid(type_name: &str, id: &str) -> Result<EntityUid, String> {
    let type_name = EntityTypeName::from_str(type_name).map_err(|e| e.to_string())?;
    Ok(EntityUid::from_type_name_and_id(
        type_name,
        EntityId::new(id),
    ))
}

/// A claim as an AgentCore principal tag: strings as they are, numbers and booleans as their
/// text, arrays and objects as their JSON text; `null` is no tag.
fn tag_value(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        Value::Bool(_) | Value::Number(_) | Value::Array(_) | Value::Object(_) => {
            Some(value.to_string())
        }
    }
}

/// The request and entities for `caller` calling `tool` on `gateway`. `input: None` leaves
/// the context unknown (partial evaluation, for `tools/list`).
pub fn request(
    caller: &crate::inbound::Caller,
    tool: &str,
    gateway: &str,
    input: Option<&Map<String, Value>>,
) -> Result<(Request, Entities), String> {
    let principal = uid(PRINCIPAL_TYPE, &caller.subject)?;
    let action = uid(ACTION_TYPE, tool)?;
    let group = uid(ACTION_TYPE, CALL_TOOL)?;
    let resource = uid(RESOURCE_TYPE, gateway)?;
    let tags = caller.claims.iter().filter_map(|(name, value)| {
        tag_value(value).map(|text| (name.clone(), RestrictedExpression::new_string(text)))
    });
    let entities = Entities::from_entities(
        [
            Entity::new_with_tags(principal.clone(), [], [], tags).map_err(|e| e.to_string())?,
            Entity::new_no_attrs(action.clone(), [group.clone()].into_iter().collect()),
            Entity::new_no_attrs(group, Default::default()),
            Entity::new_no_attrs(resource.clone(), Default::default()),
        ],
        None,
    )
    .map_err(|e| e.to_string())?;
    let request = match input {
        Some(input) => {
            let context = Context::from_json_value(json!({ "input": input }), None)
                .map_err(|e| format!("the arguments cannot be expressed in Cedar: {e}"))?;
            Request::new(principal, action, resource, context, None).map_err(|e| e.to_string())?
        }
        None => Request::builder()
            .principal(principal)
            .action(action)
            .resource(resource)
            .build(),
    };
    Ok((request, entities))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_become_tags_as_agentcore_writes_them() {
        assert_eq!(tag_value(&json!("finance")), Some("finance".into()));
        assert_eq!(tag_value(&json!(5)), Some("5".into()));
        assert_eq!(tag_value(&json!(true)), Some("true".into()));
        assert_eq!(tag_value(&json!(["a", "b"])), Some("[\"a\",\"b\"]".into()));
        assert_eq!(tag_value(&json!({"k": 1})), Some("{\"k\":1}".into()));
        assert_eq!(tag_value(&Value::Null), None);
    }
}
