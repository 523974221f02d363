#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Cedar policies through the real HTTP surface (DESIGN 2.10): the real gateway, real user
//! tokens from the test IdP carrying directory claims (`fin-alice` is in finance, `eng-bob` in
//! engineering), rmcp's client, and a real HTTP server that counts what reaches it. The
//! policies are AgentCore Gateway's documented shapes, unchanged.

mod support {
    pub mod binary;
    pub mod gateway;
    pub mod idp;
    pub mod mcp;
}

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rmcp::ServiceExt;
use rmcp::model::ClientConfig;
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use support::gateway::{Setup, TestGateway};
use support::idp::Idp;
use support::mcp::{call, text_of};

const ARN: &str = "arn:aws:bedrock-agentcore:us-east-1:123456789012:gateway/demo";

const POLICIES: &str = r#"
@id("finance-refunds-under-500")
permit(principal is AgentCore::OAuthUser,
       action == AgentCore::Action::"refunds___process_refund",
       resource == AgentCore::Gateway::"arn:aws:bedrock-agentcore:us-east-1:123456789012:gateway/demo")
when { principal.hasTag("department") && principal.getTag("department") == "finance"
       && context.input.amount < 500 };

@id("staff-read")
permit(principal, action == AgentCore::Action::"refunds___list_refunds", resource)
when { principal.hasTag("groups") && principal.getTag("groups") like "*\"staff\"*" };

@id("no-interns")
forbid(principal, action in AgentCore::Action::"CallTool", resource)
when { principal.hasTag("role") && principal.getTag("role") == "intern" };
"#;

/// A backend that answers every request and counts them.
struct Backend {
    url: String,
    calls: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

async fn backend() -> Backend {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            axum::Json(json!({"ok": true}))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Backend {
        url,
        calls,
        _task: task,
    }
}

fn refunds_target(base: &str) -> Value {
    json!({
        "name": "refunds", "http": {"baseUrl": base},
        "tools": [
            {"name": "process_refund", "description": "Refund an order",
             "inputSchema": {"type": "object", "properties": {"amount": {"type": "integer"}}, "required": ["amount"]},
             "http": {"method": "POST", "path": "/refunds"}},
            {"name": "list_refunds", "description": "List refunds", "inputSchema": {"type": "object"},
             "http": {"method": "GET", "path": "/refunds"}},
            {"name": "purge_refunds", "description": "Purge all refunds", "inputSchema": {"type": "object"},
             "http": {"method": "DELETE", "path": "/refunds"}}
        ]
    })
}

struct World {
    idp: Idp,
    backend: Backend,
    gateway: TestGateway,
}

async fn world(mode: &str, policies: &str) -> World {
    world_with(mode, policies, "").await
}

/// `more` is appended to the config.
async fn world_with(mode: &str, policies: &str, more: &str) -> World {
    let idp = Idp::start().await;
    let backend = backend().await;
    let extra = format!(
        "[policy]\ndir = \"policies\"\nmode = \"{mode}\"\ngateway = \"{ARN}\"\n[search]\nenabled = true\n{more}"
    );
    let gateway = TestGateway::start(
        &idp,
        Setup {
            targets: vec![("refunds.json", refunds_target(&backend.url))],
            files: vec![("policies/refunds.cedar", policies.to_string())],
            extra: &extra,
            ..Setup::default()
        },
    )
    .await;
    World {
        idp,
        backend,
        gateway,
    }
}

type Client = RunningService<RoleClient, ClientConfig>;

impl World {
    async fn client(&self, user: &str) -> Client {
        let token = self
            .idp
            .user_token(user, "mcp", &self.gateway.mcp_url())
            .await;
        let transport = StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(self.gateway.mcp_url())
                .auth_header(token),
        );
        ClientConfig::default().serve(transport).await.unwrap()
    }

    fn calls(&self) -> usize {
        self.backend.calls.load(Ordering::SeqCst)
    }
}

async fn names(client: &Client) -> Vec<String> {
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    names
}

fn refused(result: &rmcp::model::CallToolResult) -> bool {
    result.is_error == Some(true) && text_of(result).starts_with("Not permitted")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refund_limit_holds_per_user_and_amount_and_refusals_reach_nothing() {
    let world = world("enforce", POLICIES).await;
    let alice = world.client("fin-alice").await;
    let bob = world.client("eng-bob").await;

    let ok = call(&alice, "refunds___process_refund", json!({"amount": 120})).await;
    assert_ne!(ok.is_error, Some(true), "{}", text_of(&ok));
    assert_eq!(world.calls(), 1);

    let too_much = call(&alice, "refunds___process_refund", json!({"amount": 900})).await;
    assert!(refused(&too_much), "{}", text_of(&too_much));
    let not_finance = call(&bob, "refunds___process_refund", json!({"amount": 5})).await;
    assert!(refused(&not_finance), "{}", text_of(&not_finance));
    // Deny by default: nothing permits purging.
    let purge = call(&alice, "refunds___purge_refunds", json!({})).await;
    assert!(refused(&purge));
    assert_eq!(world.calls(), 1, "a refused call reaches no target");
    // The refusal reveals nothing about the policies.
    for text in [text_of(&too_much), text_of(&not_finance)] {
        assert!(!text.contains("finance") && !text.contains("500"), "{text}");
    }
    // Both staff members may list.
    let listed = call(&bob, "refunds___list_refunds", json!({})).await;
    assert_ne!(listed.is_error, Some(true), "{}", text_of(&listed));
    assert_eq!(world.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_caller_lists_and_finds_only_what_they_could_be_permitted() {
    let world = world("enforce", POLICIES).await;
    let alice = world.client("fin-alice").await;
    let bob = world.client("eng-bob").await;
    let ivy = world.client("intern-ivy").await;
    let search = "x_amz_bedrock_agentcore_search".to_string();
    assert_eq!(
        names(&alice).await,
        [
            "refunds___list_refunds".to_string(),
            "refunds___process_refund".to_string(),
            search.clone()
        ]
    );
    assert_eq!(
        names(&bob).await,
        ["refunds___list_refunds".to_string(), search.clone()]
    );
    // The forbid with unless removes everything for interns.
    assert_eq!(names(&ivy).await, vec![search.clone()]);

    // Search applies the same filter.
    let found = |result: rmcp::model::CallToolResult| -> Vec<String> {
        result.structured_content.unwrap()["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    };
    let for_alice = found(call(&alice, &search, json!({"query": "refund an order"})).await);
    assert_eq!(for_alice[0], "refunds___process_refund");
    let for_bob = found(call(&bob, &search, json!({"query": "refund an order"})).await);
    assert!(
        !for_bob.contains(&"refunds___process_refund".to_string()),
        "{for_bob:?}"
    );
    assert!(
        !for_bob.contains(&"refunds___purge_refunds".to_string()),
        "{for_bob:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_only_refuses_nothing() {
    let world = world("log_only", POLICIES).await;
    let bob = world.client("eng-bob").await;
    let result = call(&bob, "refunds___process_refund", json!({"amount": 5})).await;
    assert_ne!(result.is_error, Some(true), "{}", text_of(&result));
    assert_eq!(world.calls(), 1);
    assert_eq!(names(&bob).await.len(), 4, "log_only lists everything");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_policy_file_at_reload_keeps_the_last_good_policies() {
    let world = world("enforce", POLICIES).await;
    let alice = world.client("fin-alice").await;
    let dir = world.gateway.dir.path().join("policies");
    std::fs::write(
        dir.join("broken.cedar"),
        "permit(principal, action resource);",
    )
    .unwrap();
    world.gateway.state.reload_policies();
    let ok = call(&alice, "refunds___process_refund", json!({"amount": 120})).await;
    assert_ne!(
        ok.is_error,
        Some(true),
        "the last good policies stay in force"
    );
    // Fixed: the new set replaces the old one (here: nothing is permitted any more).
    std::fs::remove_file(dir.join("broken.cedar")).unwrap();
    std::fs::write(dir.join("refunds.cedar"), "").unwrap();
    world.gateway.state.reload_policies();
    let refused_now = call(&alice, "refunds___process_refund", json!({"amount": 120})).await;
    assert!(refused(&refused_now), "{}", text_of(&refused_now));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_policy_file_at_start_stops_the_gateway_naming_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::create_dir_all(dir.path().join("targets")).unwrap();
    std::fs::write(
        dir.path().join("policies/bad.cedar"),
        "permit(principal, action, resource);\npermit(principal action, resource);\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("portcullis.toml"),
        "[server]\nlisten = \"127.0.0.1:0\"\n[policy]\ndir = \"policies\"\n",
    )
    .unwrap();
    let config =
        portcullis::config::Config::load(Some(&dir.path().join("portcullis.toml")), true).unwrap();
    let error = match portcullis::Gateway::build(config).await {
        Ok(_) => panic!("a gateway must not start with a policy file it cannot read"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("bad.cedar:2:"), "{error}");

    // `portcullis validate` reports the same problem and exits 1.
    let (code, _, stderr) = support::binary::run(
        &["validate", "--dev", "--config", "portcullis.toml"],
        dir.path(),
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("bad.cedar:2:"), "{stderr}");
    assert!(stderr.contains("1 problem(s) in policy files"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_a_rate_limit_is_refused_with_the_delay_and_other_users_are_unaffected() {
    let world = world_with(
        "enforce",
        POLICIES,
        "[[rate_limits]]\ntools = \"refunds___list_*\"\nrequests_per_minute = 2\n",
    )
    .await;
    let alice = world.client("fin-alice").await;
    let bob = world.client("eng-bob").await;
    for _ in 0..2 {
        let ok = call(&alice, "refunds___list_refunds", json!({})).await;
        assert_ne!(ok.is_error, Some(true), "{}", text_of(&ok));
    }
    let limited = call(&alice, "refunds___list_refunds", json!({})).await;
    assert_eq!(limited.is_error, Some(true));
    let text = text_of(&limited);
    assert!(
        text.starts_with("Rate limit reached") && text.contains("retry in 30 s"),
        "{text}"
    );
    assert_eq!(limited.meta.unwrap().0["retryAfterSeconds"], json!(30.0));
    assert_eq!(world.calls(), 2, "a limited call reaches no target");
    // Bob has his own budget; a tool outside the rule is not limited.
    let ok = call(&bob, "refunds___list_refunds", json!({})).await;
    assert_ne!(ok.is_error, Some(true), "{}", text_of(&ok));
    let refund = call(&alice, "refunds___process_refund", json!({"amount": 10})).await;
    assert_ne!(refund.is_error, Some(true), "{}", text_of(&refund));
    assert_eq!(world.calls(), 4);
}

#[test]
fn policy_schema_prints_the_catalog_schema_and_validate_checks_policies_against_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::create_dir_all(dir.path().join("targets")).unwrap();
    std::fs::write(
        dir.path().join("targets/refunds.json"),
        refunds_target("http://127.0.0.1:9").to_string(),
    )
    .unwrap();
    std::fs::write(dir.path().join("policies/refunds.cedar"), POLICIES).unwrap();
    std::fs::write(
        dir.path().join("portcullis.toml"),
        "[server]\nlisten = \"127.0.0.1:0\"\n[policy]\ndir = \"policies\"\n",
    )
    .unwrap();
    let args = ["--dev", "--config", "portcullis.toml"];

    // The schema is Cedar's own syntax, one action per tool with its typed input.
    let (code, schema, stderr) =
        support::binary::run(&[&["policy", "schema"][..], &args].concat(), dir.path());
    assert_eq!(code, 0, "{stderr}");
    let (parsed, _warnings) = cedar_policy::Schema::from_cedarschema_str(&schema)
        .unwrap_or_else(|e| panic!("not a Cedar schema: {e}\n{schema}"));
    let actions: Vec<String> = parsed
        .actions()
        .map(|a| a.id().unescaped().to_string())
        .collect();
    for tool in [
        "refunds___process_refund",
        "refunds___list_refunds",
        "CallTool",
        "Mcp",
    ] {
        assert!(
            actions.iter().any(|a| a == tool),
            "{tool} missing: {actions:?}"
        );
    }
    assert!(schema.contains("amount: __cedar::Long"), "{schema}");
    let (code, json_schema, _) = support::binary::run(
        &[&["policy", "schema", "--json"][..], &args].concat(),
        dir.path(),
    );
    assert_eq!(code, 0);
    let json_schema: Value = serde_json::from_str(&json_schema).unwrap();
    assert!(json_schema["AgentCore"]["actions"]["refunds___purge_refunds"].is_object());

    // The test policies validate; a typo in a tool name or an input does not.
    let validate = [&["validate"][..], &args].concat();
    let (code, stdout, stderr) = support::binary::run(&validate, dir.path());
    assert_eq!(code, 0, "{stdout}{stderr}");
    std::fs::write(
        dir.path().join("policies/typos.cedar"),
        "permit(principal, action == AgentCore::Action::\"refunds___process_refnd\", resource);\n\
         permit(principal, action == AgentCore::Action::\"refunds___process_refund\", resource)\n  \
         when { context.input.amont < 5 };\n",
    )
    .unwrap();
    let (code, _, stderr) = support::binary::run(&validate, dir.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("typos.cedar:1:"), "{stderr}");
    assert!(stderr.contains("refunds___process_refnd"), "{stderr}");
    assert!(stderr.contains("typos.cedar:3:"), "{stderr}");
    assert!(stderr.contains("amont"), "{stderr}");
    assert!(stderr.contains("2 problem(s) in policy files"), "{stderr}");
}
