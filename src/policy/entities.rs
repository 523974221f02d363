//! AgentCore Gateway's entity model for one caller and one tool (DESIGN 2.10).

use std::str::FromStr;
use std::sync::OnceLock;

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request, RestrictedExpression,
};
use serde_json::Value;

const PRINCIPAL_TYPE: &str = "AgentCore::OAuthUser";
const ACTION_TYPE: &str = "AgentCore::Action";
const RESOURCE_TYPE: &str = "AgentCore::Gateway";
/// The action group every tool action belongs to.
pub const CALL_TOOL: &str = "CallTool";
/// The group `CallTool` belongs to: AgentCore's action hierarchy is tool -> `CallTool` -> `Mcp`.
pub const MCP_GROUP: &str = "Mcp";

/// The three entity type names, parsed once.
struct Types {
    principal: EntityTypeName,
    action: EntityTypeName,
    resource: EntityTypeName,
}

fn types() -> Result<&'static Types, String> {
    static TYPES: OnceLock<Result<Types, String>> = OnceLock::new();
    TYPES
        .get_or_init(|| {
            let parse = |name: &str| EntityTypeName::from_str(name).map_err(|e| e.to_string());
            Ok(Types {
                principal: parse(PRINCIPAL_TYPE)?,
                action: parse(ACTION_TYPE)?,
                resource: parse(RESOURCE_TYPE)?,
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

fn uid(type_name: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(type_name.clone(), EntityId::new(id))
}

/// The caller as a principal entity, its claims as tags.
fn principal(caller: &crate::inbound::Caller, types: &Types) -> Result<Entity, String> {
    let tags = caller.claims.iter().filter_map(|(name, value)| {
        tag_value(value).map(|text| (name.clone(), RestrictedExpression::new_string(text)))
    });
    Entity::new_with_tags(uid(&types.principal, &caller.subject), [], [], tags)
        .map_err(|e| e.to_string())
}

/// One listing's entities: the caller, the gateway, the action group and every tool's action,
/// built once so that each tool costs only its request.
pub fn listing(
    caller: &crate::inbound::Caller,
    tools: &[&str],
    gateway: &str,
) -> Result<(Entities, Vec<Request>), String> {
    let types = types()?;
    let group = uid(&types.action, CALL_TOOL);
    let principal_entity = principal(caller, types)?;
    let principal_uid = principal_entity.uid();
    let resource = uid(&types.resource, gateway);
    let mut entities = vec![principal_entity, resource_entity(&resource)];
    entities.extend(groups(types));
    let mut requests = Vec::with_capacity(tools.len());
    for tool in tools {
        let action = uid(&types.action, tool);
        entities.push(Entity::new_no_attrs(
            action.clone(),
            [group.clone()].into_iter().collect(),
        ));
        let request = Request::builder()
            .principal(principal_uid.clone())
            .action(action)
            .resource(resource.clone())
            .build();
        requests.push(request);
    }
    // The same tool twice would be the same entity twice, which Cedar refuses.
    let entities = Entities::empty()
        .add_entities(entities, None)
        .map_err(|e| e.to_string())?;
    Ok((entities, requests))
}

/// The action groups: `CallTool` in `Mcp`.
fn groups(types: &Types) -> [Entity; 2] {
    let mcp = uid(&types.action, MCP_GROUP);
    [
        Entity::new_no_attrs(
            uid(&types.action, CALL_TOOL),
            [mcp.clone()].into_iter().collect(),
        ),
        Entity::new_no_attrs(mcp, Default::default()),
    ]
}

fn resource_entity(resource: &EntityUid) -> Entity {
    Entity::new_no_attrs(resource.clone(), Default::default())
}

/// The tools an action scope names, or `None` when it reaches every tool (no action
/// constraint, or a group: `CallTool`, `Mcp`). Ids of other types name nothing.
pub fn named_tools(scope: &cedar_policy::ActionConstraint) -> Option<Vec<String>> {
    let mut named = Vec::new();
    let uids: Vec<&EntityUid> = match scope {
        cedar_policy::ActionConstraint::Any => return None,
        cedar_policy::ActionConstraint::Eq(uid) => vec![uid],
        cedar_policy::ActionConstraint::In(uids) => uids.iter().collect(),
    };
    for uid in uids {
        if uid.type_name().to_string() != ACTION_TYPE {
            continue;
        }
        let id = uid.id().unescaped();
        if [CALL_TOOL, MCP_GROUP].contains(&id) {
            return None;
        }
        named.push(id.to_string());
    }
    Some(named)
}

/// Whether a policy's conditions read the `action` variable (Cedar's JSON policy format spells
/// a variable `{"Var": "action"}`). A policy that cannot be rendered is assumed to.
pub fn condition_reads_action(policy: &cedar_policy::Policy) -> bool {
    fn reads(value: &Value) -> bool {
        match value {
            Value::Object(object) => {
                object.get("Var").is_some_and(|v| v == "action") || object.values().any(reads)
            }
            Value::Array(items) => items.iter().any(reads),
            _ => false,
        }
    }
    policy
        .to_json()
        .map_or(true, |json| json.get("conditions").is_none_or(reads))
}

/// Whether a policy with this action scope can apply to a call of `tool` (every tool action is
/// in `CallTool`, which is in `Mcp`, and in nothing else).
pub fn scope_may_match(scope: &cedar_policy::ActionConstraint, tool: &str) -> bool {
    let names = |uid: &EntityUid| {
        uid.type_name().to_string() == ACTION_TYPE
            && [tool, CALL_TOOL, MCP_GROUP].contains(&uid.id().unescaped())
    };
    match scope {
        cedar_policy::ActionConstraint::Any => true,
        cedar_policy::ActionConstraint::Eq(uid) => {
            uid.type_name().to_string() == ACTION_TYPE && uid.id().unescaped() == tool
        }
        cedar_policy::ActionConstraint::In(uids) => uids.iter().any(names),
    }
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

/// What Cedar needs to decide `caller` calling `tool` on `gateway`, apart from the arguments:
/// the entities (the caller, the tool's action and its groups, the gateway) and the request's
/// three ids. It depends only on the token and the tool, so a caller's repeated calls of a tool
/// reuse it (`Policies` keeps recent ones).
pub struct CallEntities {
    pub entities: Entities,
    principal: EntityUid,
    action: EntityUid,
    resource: EntityUid,
}

impl CallEntities {
    pub fn new(
        caller: &crate::inbound::Caller,
        tool: &str,
        gateway: &str,
    ) -> Result<CallEntities, String> {
        let types = types()?;
        let principal_entity = principal(caller, types)?;
        let principal = principal_entity.uid();
        let action = uid(&types.action, tool);
        let group = uid(&types.action, CALL_TOOL);
        let resource = uid(&types.resource, gateway);
        let [call_tool, mcp] = groups(types);
        let entities = Entities::from_entities(
            [
                principal_entity,
                Entity::new_no_attrs(action.clone(), [group].into_iter().collect()),
                call_tool,
                mcp,
                resource_entity(&resource),
            ],
            None,
        )
        .map_err(|e| e.to_string())?;
        Ok(CallEntities {
            entities,
            principal,
            action,
            resource,
        })
    }

    /// The request with `context.input` as [`super::schema::input_expression`] built it;
    /// `None` leaves the context unknown (partial evaluation, for `tools/list`).
    pub fn request(&self, input: Option<RestrictedExpression>) -> Result<Request, String> {
        let (principal, action, resource) = (
            self.principal.clone(),
            self.action.clone(),
            self.resource.clone(),
        );
        Ok(match input {
            Some(input) => {
                let context = Context::from_pairs([("input".to_string(), input)])
                    .map_err(|e| format!("the arguments cannot be expressed in Cedar: {e}"))?;
                Request::new(principal, action, resource, context, None)
                    .map_err(|e| e.to_string())?
            }
            None => Request::builder()
                .principal(principal)
                .action(action)
                .resource(resource)
                .build(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
