//! Cedar policy cost (issue 13, DESIGN 2.10): `cargo bench --bench policy`.
//!
//! 100 policies in AgentCore's shapes (a permit per tool family with a claim condition and an
//! input condition, forbids with `unless`), a caller with a realistic claim set (15 claims).
//! Prints, from one run:
//! - the decision of one `tools/call` (p50 / p99 over many calls); goal <= 10 us;
//! - a `tools/list` of 10,000 tools: building the listing without policies (the clone of each
//!   tool's entry that `tools/list` does) vs with the policy filter (partial evaluation per
//!   tool); goal within 2x.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis::inbound::Caller;
use portcullis::policy::{Policies, PolicyConfig, PolicyMode, ToolShape};
use serde_json::{Map, Value, json};

const POLICIES: usize = 100;
const TOOLS: usize = 10_000;
const CALLS: usize = 20_000;

fn policy_text() -> String {
    let mut text = String::new();
    for i in 0..POLICIES - 10 {
        text.push_str(&format!(
            "@id(\"p{i}\")\npermit(principal is AgentCore::OAuthUser, action == AgentCore::Action::\"t{}___tool{i}\", resource)\n\
             when {{ principal.hasTag(\"department\") && principal.getTag(\"department\") == \"d{}\" && context.input.amount < {} }};\n",
            i % 50,
            i % 7,
            100 + i
        ));
    }
    for i in 0..10 {
        text.push_str(&format!(
            "@id(\"f{i}\")\nforbid(principal, action == AgentCore::Action::\"t{i}___danger\", resource)\n\
             unless {{ principal.hasTag(\"role\") && principal.getTag(\"role\") == \"admin\" }};\n"
        ));
    }
    text
}

fn caller() -> Caller {
    let Value::Object(claims) = json!({
        "iss": "https://idp.example.com", "sub": "alice", "aud": "https://gw.example.com/mcp",
        "exp": 1_900_000_000u64, "iat": 1_800_000_000u64, "nbf": 1_800_000_000u64,
        "jti": "b2f1c0de", "client_id": "agent", "scope": "mcp tools.read",
        "department": "d3", "level": 7, "groups": ["finance", "staff"], "email": "alice@example.com",
        "name": "Alice", "tenant": "acme"
    }) else {
        unreachable!()
    };
    Caller {
        issuer: Arc::from("https://idp.example.com"),
        subject: Arc::from("alice"),
        client_id: Some(Arc::from("agent")),
        scopes: Arc::from(vec!["mcp".to_string()]),
        expires_at: 1_900_000_000,
        claims: Arc::new(claims),
    }
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bench.cedar"), policy_text()).unwrap();
    let policies = Policies::load(PolicyConfig {
        dir: dir.path().to_path_buf(),
        mode: PolicyMode::Enforce,
        gateway: "portcullis".into(),
    })
    .unwrap();
    assert_eq!(policies.size().1, POLICIES);
    let caller = caller();
    let Value::Object(input) = json!({"amount": 42, "order": "o-123", "reason": "damaged"}) else {
        unreachable!()
    };
    let input: Map<String, Value> = input;
    let Value::Object(input_schema) = json!({"type": "object", "properties": {
        "amount": {"type": "integer"}, "order": {"type": "string"}, "reason": {"type": "string"}}})
    else {
        unreachable!()
    };

    // One decision: a permitted call (the policy that matches is in the middle of the set).
    let tool = ToolShape {
        name: "t3___tool3",
        input_schema: &input_schema,
    };
    assert!(policies.authorize(&caller, tool, &input).permitted);
    let mut samples = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let started = Instant::now();
        black_box(policies.authorize(&caller, black_box(tool), &input));
        samples.push(started.elapsed());
    }
    let p50 = percentile(&mut samples, 0.5);
    let p99 = percentile(&mut samples, 0.99);
    println!(
        "policy decision, {POLICIES} policies: p50 {:.1} us, p99 {:.1} us (goal <= 10 us)",
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );

    // tools/list of 10,000 tools, without and with the filter.
    let names: Vec<String> = (0..TOOLS)
        .map(|i| format!("t{}___tool{i}", i % 50))
        .collect();
    let listing: Vec<rmcp::model::Tool> = names
        .iter()
        .map(|name| {
            rmcp::model::Tool::new_with_raw(
                name.clone(),
                Some("A tool of the benchmark catalog".into()),
                Arc::new(
                    json!({"type": "object", "properties": {"amount": {"type": "integer"}}})
                        .as_object()
                        .unwrap()
                        .clone(),
                ),
            )
        })
        .collect();
    let rounds = 5;
    let mut without = Vec::new();
    let mut with = Vec::new();
    let mut listed = 0;
    for _ in 0..rounds {
        let started = Instant::now();
        let all: Vec<rmcp::model::Tool> = listing.to_vec();
        black_box(&all);
        without.push(started.elapsed());
        let started = Instant::now();
        // As tools/list does: a page of 200 at a time.
        let mut filtered: Vec<rmcp::model::Tool> = Vec::new();
        for page in listing.chunks(200) {
            let names: Vec<&str> = page.iter().map(|t| t.name.as_ref()).collect();
            let listable = policies.listable(&caller, &names);
            filtered.extend(
                page.iter()
                    .zip(listable)
                    .filter(|(_, l)| *l)
                    .map(|(t, _)| t.clone()),
            );
        }
        listed = filtered.len();
        black_box(&filtered);
        with.push(started.elapsed());
    }
    let without = percentile(&mut without, 0.5);
    let with = percentile(&mut with, 0.5);
    println!(
        "tools/list of {TOOLS} tools: without policies {:.1} ms, with {POLICIES} policies {:.1} ms ({listed} listed), ratio {:.1}x (goal <= 2x)",
        without.as_secs_f64() * 1e3,
        with.as_secs_f64() * 1e3,
        with.as_secs_f64() / without.as_secs_f64()
    );
}
