//! Cedar policy cost (issue 13, DESIGN 2.10): `cargo bench --bench policy`.
//!
//! 100 policies in AgentCore's shapes (a permit per tool family with a claim condition and an
//! input condition, forbids with `unless`), a caller with a realistic claim set (15 claims).
//! Prints, from one run:
//! - the decision of one `tools/call` (p50 / p99 over many calls) by a caller whose token was
//!   seen before (the steady state: a token serves many calls); goal <= 10 us. Also a first
//!   call with a token never seen (the entities built afresh);
//! - a `tools/list` of 10,000 tools in pages of 200, each page cloned and serialised as the
//!   response is, without policies vs with the policy filter; goal within 2x. Also the filter
//!   alone against the bare clone.

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
        "policy decision, {POLICIES} policies, a token seen before: p50 {:.1} us, p99 {:.1} us (goal <= 10 us)",
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
    // A token never seen: each call's claims are a new allocation.
    let fresh: Vec<Caller> = (0..CALLS / 4)
        .map(|_| Caller {
            claims: Arc::new((*caller.claims).clone()),
            ..caller.clone()
        })
        .collect();
    let mut samples = Vec::with_capacity(fresh.len());
    for caller in &fresh {
        let started = Instant::now();
        black_box(policies.authorize(caller, black_box(tool), &input));
        samples.push(started.elapsed());
    }
    println!(
        "policy decision, {POLICIES} policies, a token's first call: p50 {:.1} us",
        percentile(&mut samples, 0.5).as_secs_f64() * 1e6
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
    list(
        &policies,
        &caller,
        &listing,
        "the bench's 100 policies, each naming its tool",
    );
    // Add a permit for every tool (scoped to the CallTool group, on a claim): now every tool
    // must be put to the policies, the worst case for the filter.
    std::fs::write(
        dir.path().join("all.cedar"),
        "@id(\"tenant-all\")\npermit(principal, action in AgentCore::Action::\"CallTool\", resource)\n\
         when { principal.hasTag(\"tenant\") && principal.getTag(\"tenant\") == \"acme\" };\n",
    )
    .unwrap();
    policies.reload().unwrap();
    list(
        &policies,
        &caller,
        &listing,
        "plus one permit for every tool of a tenant",
    );
}

/// A `tools/list` of `listing` in pages of 200, without and with the policy filter.
fn list(policies: &Policies, caller: &Caller, listing: &[rmcp::model::Tool], label: &str) {
    let rounds = 7;
    let (mut without, mut with, mut clone_only, mut filter_only) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut listed = 0;
    let respond = |page: Vec<rmcp::model::Tool>| {
        let result = rmcp::model::ListToolsResult::with_all_items(page);
        black_box(serde_json::to_vec(&result).unwrap());
    };
    for _ in 0..rounds {
        let started = Instant::now();
        black_box(listing.to_vec());
        clone_only.push(started.elapsed());

        let started = Instant::now();
        for page in listing.chunks(200) {
            respond(page.to_vec());
        }
        without.push(started.elapsed());

        let started = Instant::now();
        for page in listing.chunks(200) {
            let names: Vec<&str> = page.iter().map(|t| t.name.as_ref()).collect();
            black_box(policies.listable(caller, &names));
        }
        filter_only.push(started.elapsed());

        let started = Instant::now();
        listed = 0;
        for page in listing.chunks(200) {
            let names: Vec<&str> = page.iter().map(|t| t.name.as_ref()).collect();
            let listable = policies.listable(caller, &names);
            let kept: Vec<rmcp::model::Tool> = page
                .iter()
                .zip(listable)
                .filter(|(_, l)| *l)
                .map(|(t, _)| t.clone())
                .collect();
            listed += kept.len();
            respond(kept);
        }
        with.push(started.elapsed());
    }
    let ms = |samples: &mut Vec<Duration>| percentile(samples, 0.5).as_secs_f64() * 1e3;
    let (without, with) = (ms(&mut without), ms(&mut with));
    let (clone_only, filter_only) = (ms(&mut clone_only), ms(&mut filter_only));
    println!(
        "tools/list of {TOOLS} tools, {label} (pages cloned and serialised): without policies {without:.2} ms, with {POLICIES} policies {with:.2} ms ({listed} listed), ratio {:.2}x (goal <= 2x)",
        with / without
    );
    println!(
        "  the filter alone {filter_only:.2} ms against the bare clone of every entry {clone_only:.2} ms: {:.2}x",
        filter_only / clone_only
    );
}
