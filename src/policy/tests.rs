//! AgentCore Gateway's documented policy shapes, evaluated on the gateway's entity model.

use serde_json::{Map, Value, json};

use super::*;

const GATEWAY: &str = "arn:aws:bedrock-agentcore:us-east-1:123456789012:gateway/demo";

fn policies(text: &str, mode: PolicyMode) -> (tempfile::TempDir, Policies) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.cedar"), text).unwrap();
    let config = PolicyConfig {
        dir: dir.path().to_path_buf(),
        mode,
        gateway: GATEWAY.into(),
    };
    let policies = Policies::load(config).unwrap();
    (dir, policies)
}

fn caller(sub: &str, claims: Value) -> Caller {
    crate::inbound::test_caller(sub, claims)
}

/// A tool with no inputSchema properties: arguments reach Cedar as JSON types.
fn untyped(name: &str) -> ToolShape<'_> {
    static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);
    ToolShape {
        name,
        input_schema: &EMPTY,
    }
}

fn input(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

const REFUNDS: &str = r#"
@id("finance-refunds-under-500")
permit(principal is AgentCore::OAuthUser,
       action == AgentCore::Action::"refunds___process_refund",
       resource == AgentCore::Gateway::"arn:aws:bedrock-agentcore:us-east-1:123456789012:gateway/demo")
when { principal.hasTag("department") && principal.getTag("department") == "finance"
       && context.input.amount < 500 };
"#;

#[test]
fn the_refund_limit_example_permits_finance_under_500_only() {
    let (_dir, policies) = policies(REFUNDS, PolicyMode::Enforce);
    let finance = caller("alice", json!({"department": "finance"}));
    let engineering = caller("bob", json!({"department": "engineering"}));
    let tool = "refunds___process_refund";
    let ok = policies.authorize(&finance, untyped(tool), &input(json!({"amount": 120})));
    assert!(ok.permitted && ok.proceed);
    assert_eq!(ok.policies, ["finance-refunds-under-500"]);
    assert!(
        !policies
            .authorize(&finance, untyped(tool), &input(json!({"amount": 900})))
            .proceed
    );
    assert!(
        !policies
            .authorize(&engineering, untyped(tool), &input(json!({"amount": 5})))
            .proceed
    );
    // Deny by default: another tool, or no department at all.
    assert!(
        !policies
            .authorize(&finance, untyped("refunds___list"), &input(json!({})))
            .proceed
    );
    assert!(
        !policies
            .authorize(
                &caller("carol", json!({})),
                untyped(tool),
                &input(json!({"amount": 5}))
            )
            .proceed
    );
}

#[test]
fn listing_leaves_out_only_what_can_never_be_permitted() {
    let (_dir, policies) = policies(REFUNDS, PolicyMode::Enforce);
    let finance = caller("alice", json!({"department": "finance"}));
    let engineering = caller("bob", json!({"department": "engineering"}));
    // The amount is unknown when listing: finance may be permitted, so the tool is listed.
    assert!(policies.may_list(&finance, "refunds___process_refund"));
    assert!(!policies.may_list(&engineering, "refunds___process_refund"));
    assert!(!policies.may_list(&finance, "refunds___list"));
    // The page form agrees tool by tool.
    let page = ["refunds___process_refund", "refunds___list"];
    assert_eq!(policies.listable(&finance, &page), [true, false]);
    assert_eq!(policies.listable(&engineering, &page), [false, false]);
}

#[test]
fn forbid_wins_and_unless_exempts() {
    let text = r#"
permit(principal, action in AgentCore::Action::"CallTool", resource);
@id("no-deletes-unless-admin")
forbid(principal, action == AgentCore::Action::"crm___delete_account", resource)
unless { principal.hasTag("role") && principal.getTag("role") == "admin" };
"#;
    let (_dir, policies) = policies(text, PolicyMode::Enforce);
    let admin = caller("ann", json!({"role": "admin"}));
    let user = caller("ua", json!({"role": "user"}));
    let args = input(json!({"id": "42"}));
    assert!(
        policies
            .authorize(&admin, untyped("crm___delete_account"), &args)
            .proceed
    );
    let denied = policies.authorize(&user, untyped("crm___delete_account"), &args);
    assert!(!denied.proceed);
    assert_eq!(denied.policies, ["no-deletes-unless-admin"]);
    assert!(
        policies
            .authorize(&user, untyped("crm___get_account"), &args)
            .proceed
    );
    assert!(!policies.may_list(&user, "crm___delete_account"));
    assert!(policies.may_list(&user, "crm___get_account"));
}

#[test]
fn scope_claims_are_tags_that_like_can_match() {
    let text = r#"
permit(principal, action == AgentCore::Action::"crm___update_account", resource)
when { principal.hasTag("scope") && principal.getTag("scope") like "*crm:write*" };
"#;
    let (_dir, policies) = policies(text, PolicyMode::Enforce);
    let writer = caller("w", json!({"scope": "mcp crm:write"}));
    let reader = caller("r", json!({"scope": "mcp crm:read"}));
    let args = input(json!({}));
    assert!(
        policies
            .authorize(&writer, untyped("crm___update_account"), &args)
            .proceed
    );
    assert!(
        !policies
            .authorize(&reader, untyped("crm___update_account"), &args)
            .proceed
    );
}

#[test]
fn input_validation_in_a_policy_refuses_bad_arguments() {
    let text = r#"
permit(principal, action == AgentCore::Action::"mail___send", resource)
when { context.input has to && context.input.to like "*@example.com" };
"#;
    let (_dir, policies) = policies(text, PolicyMode::Enforce);
    let anyone = caller("x", json!({}));
    assert!(
        policies
            .authorize(
                &anyone,
                untyped("mail___send"),
                &input(json!({"to": "a@example.com"}))
            )
            .proceed
    );
    assert!(
        !policies
            .authorize(
                &anyone,
                untyped("mail___send"),
                &input(json!({"to": "a@evil.test"}))
            )
            .proceed
    );
    assert!(
        !policies
            .authorize(&anyone, untyped("mail___send"), &input(json!({})))
            .proceed
    );
}

#[test]
fn log_only_refuses_nothing_but_reports_the_decision() {
    let (_dir, policies) = policies(REFUNDS, PolicyMode::LogOnly);
    let engineering = caller("bob", json!({"department": "engineering"}));
    let verdict = policies.authorize(
        &engineering,
        untyped("refunds___process_refund"),
        &input(json!({"amount": 5})),
    );
    assert!(!verdict.permitted);
    assert!(verdict.proceed);
    assert!(policies.may_list(&engineering, "refunds___process_refund"));
}

#[test]
fn a_broken_reload_keeps_the_policies_in_force() {
    let (dir, policies) = policies(REFUNDS, PolicyMode::Enforce);
    std::fs::write(
        dir.path().join("broken.cedar"),
        "permit(principal, action resource);",
    )
    .unwrap();
    let problems = policies.reload().unwrap_err();
    assert!(
        problems[0].to_string().contains("broken.cedar:1:"),
        "{problems:?}"
    );
    let finance = caller("alice", json!({"department": "finance"}));
    assert!(
        policies
            .authorize(
                &finance,
                untyped("refunds___process_refund"),
                &input(json!({"amount": 1}))
            )
            .proceed
    );
    std::fs::remove_file(dir.path().join("broken.cedar")).unwrap();
    std::fs::write(dir.path().join("p.cedar"), "").unwrap();
    assert_eq!(policies.reload().unwrap(), 0);
    assert!(
        !policies
            .authorize(
                &finance,
                untyped("refunds___process_refund"),
                &input(json!({"amount": 1}))
            )
            .proceed
    );
}

#[test]
fn fractional_arguments_are_denied_not_guessed() {
    let (_dir, policies) = policies(REFUNDS, PolicyMode::Enforce);
    let finance = caller("alice", json!({"department": "finance"}));
    assert!(
        !policies
            .authorize(
                &finance,
                untyped("refunds___process_refund"),
                &input(json!({"amount": 1.5}))
            )
            .proceed
    );
}

fn refund_tool_schema() -> Map<String, Value> {
    input(json!({
        "type": "object",
        "required": ["orderId", "amount"],
        "properties": {
            "orderId": {"type": "string"},
            "amount": {"type": "number"},
            "reason": {"type": "string"}
        }
    }))
}

const DECIMAL_REFUNDS: &str = r#"
@id("refunds-below-500")
permit(principal, action == AgentCore::Action::"refunds___process_refund", resource)
when { context.input.amount.lessThan(decimal("500.00")) };
@id("everything-for-admins")
permit(principal, action in AgentCore::Action::"Mcp", resource)
when { principal.hasTag("role") && principal.getTag("role") == "admin" };
"#;

#[test]
fn number_arguments_are_decimals_as_on_agentcore() {
    let (_dir, policies) = policies(DECIMAL_REFUNDS, PolicyMode::Enforce);
    let schema = refund_tool_schema();
    let refund = ToolShape {
        name: "refunds___process_refund",
        input_schema: &schema,
    };
    let anyone = caller("carol", json!({}));
    let decide = |amount: Value| {
        policies
            .authorize(
                &anyone,
                refund,
                &input(json!({"orderId": "o-1", "amount": amount})),
            )
            .permitted
    };
    assert!(decide(json!(450.5)));
    assert!(decide(json!(499.9999)));
    assert!(!decide(json!(500)));
    assert!(!decide(json!(500.01)));
    assert!(
        !decide(json!(499.99999)),
        "not representable: denied, not rounded"
    );
    // The action hierarchy is tool -> CallTool -> Mcp.
    let admin = caller("root", json!({"role": "admin"}));
    assert!(
        policies
            .authorize(&admin, untyped("crm___delete_account"), &input(json!({})))
            .permitted
    );
    assert!(policies.may_list(&admin, "crm___delete_account"));
}

#[test]
fn validation_against_the_catalog_schema_names_file_line_and_column() {
    let schema = refund_tool_schema();
    let tools = [ToolShape {
        name: "refunds___process_refund",
        input_schema: &schema,
    }];
    let (dir, policies) = policies(DECIMAL_REFUNDS, PolicyMode::Enforce);
    assert_eq!(
        policies.validate(tools),
        vec![],
        "a valid set has no problems"
    );

    // A typo in an input name, a Long compared with a decimal, a tool the catalog lacks.
    let broken = "permit(principal, action == AgentCore::Action::\"refunds___process_refund\", resource)\n\
                  when { context.input.ammount.lessThan(decimal(\"1.0\")) };\n\
                  permit(principal, action == AgentCore::Action::\"refunds___process_refund\", resource)\n\
                  when { context.input.amount < 500 };\n\
                  @id(\"ghost\")\n\
                  permit(principal, action == AgentCore::Action::\"refunds___procces_refund\", resource);\n";
    std::fs::write(dir.path().join("broken.cedar"), broken).unwrap();
    let problems = policies.validate(tools);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert!(text[0].contains("broken.cedar:2:"), "{text:?}");
    assert!(text[0].contains("ammount"), "{text:?}");
    assert!(text[1].contains("broken.cedar:4:"), "{text:?}");
    assert!(text[2].contains("broken.cedar:6:"), "{text:?}");
    assert!(text[2].contains("refunds___procces_refund"), "{text:?}");
    // check (what `validate` runs) fails on the same problems.
    let config = policies.config().clone();
    assert_eq!(Policies::check(&config, tools).unwrap_err().len(), 3);
    std::fs::remove_file(dir.path().join("broken.cedar")).unwrap();
    assert_eq!(Policies::check(&config, tools).unwrap(), (1, 2));
}

#[test]
fn a_listing_shares_the_general_answer_only_when_no_condition_reads_the_action() {
    let text = r#"
        permit(principal, action in AgentCore::Action::"CallTool", resource)
        when { principal.hasTag("department") && principal.getTag("department") == "finance" };
        permit(principal, action, resource) when { action == AgentCore::Action::"ops___status" };
    "#;
    let (_dir, policies) = policies(text, PolicyMode::Enforce);
    let tools = ["ops___status", "ops___restart", "crm___get", "crm___put"];
    let finance = caller("alice", json!({"department": "finance"}));
    let engineering = caller("bob", json!({"department": "engineering"}));
    assert_eq!(policies.listable(&finance, &tools), [true; 4]);
    // The second policy reads `action`: each tool is put to it on its own.
    assert_eq!(
        policies.listable(&engineering, &tools),
        [true, false, false, false]
    );
    // And the listing agrees with the decisions.
    for (tool, listed) in tools.iter().zip(policies.listable(&engineering, &tools)) {
        let verdict = policies.authorize(&engineering, untyped(tool), &input(json!({})));
        assert_eq!(verdict.permitted, listed, "{tool}");
    }
}
