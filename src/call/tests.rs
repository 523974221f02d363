//! The pipeline's steps against a recording target and the scripted token endpoint: what runs,
//! in which order, and which typed outcome each path ends in. `mcp/outcome.rs` tests how each
//! outcome reaches the client; the integration tests run the same paths over HTTP.

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use rmcp::model::{CallToolResult, ContentBlock as Content};
use serde_json::{Map, Value, json};

use super::{CallOptions, CallOutcome, CallPipeline};
use crate::catalog::model::ToolDef;
use crate::catalog::{CatalogTool, TargetEntry, catalog_tool};
use crate::credential::{Credentials, Injection};
use crate::identity::test_rig::{Rig, Script, alice, credentials, rig};
use crate::limits::RateLimits;
use crate::targets::{BoxFuture, Invocation, Refusal, Target, TargetError, ToolCall};
use crate::vault::unix_now;

/// What the recording target does with a call.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// Answers with the bearer token it was sent, unless that token is in `refused`.
    Echo,
    /// Fails as a target that cannot be reached.
    Unreachable,
}

/// A target that records every call (the bearer token it carried) and answers as scripted.
#[derive(Debug)]
struct Recording {
    behaviour: Behaviour,
    resource: Option<String>,
    /// Tokens the target answers 401 to.
    refused: Vec<String>,
    seen: Mutex<Vec<Option<String>>>,
}

impl Recording {
    fn new(behaviour: Behaviour) -> Recording {
        Recording {
            behaviour,
            resource: None,
            refused: vec![],
            seen: Mutex::default(),
        }
    }

    fn refusing(mut self, tokens: &[&str]) -> Recording {
        self.refused = tokens.iter().map(|t| t.to_string()).collect();
        self
    }

    fn seen(&self) -> Vec<Option<String>> {
        self.seen.lock().clone()
    }
}

impl Target for Recording {
    fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }

    fn invoke<'a>(
        &'a self,
        call: &'a ToolCall<'a>,
        credential: Option<&'a Injection>,
    ) -> BoxFuture<'a, Result<Invocation, TargetError>> {
        Box::pin(async move {
            let token = match credential {
                Some(Injection::Bearer(token)) => Some(token.expose().to_string()),
                Some(Injection::ApiKey { value, .. }) => Some(value.expose().to_string()),
                None => None,
            };
            self.seen.lock().push(token.clone());
            if let Behaviour::Unreachable = self.behaviour {
                return Err(TargetError::Unreachable("connection refused".into()));
            }
            let result = CallToolResult::success(vec![Content::text(format!(
                "{} for {} with {}",
                call.qualified_name,
                call.user_id,
                token.as_deref().unwrap_or("no credential")
            ))]);
            if token.as_ref().is_some_and(|t| self.refused.contains(t)) {
                return Ok(Invocation {
                    result: CallToolResult::error(vec![Content::text("401")]),
                    credential_refused: Some(Refusal {
                        challenge: Some("Bearer error=\"invalid_token\"".into()),
                    }),
                });
            }
            Ok(Invocation::answered(result))
        })
    }
}

/// One tool `t___echo` on `target`, whose `msg` argument must be a string.
fn tool(target: Arc<Recording>, credentials: Option<Credentials>) -> CatalogTool {
    let entry = Arc::new(TargetEntry {
        name: "t".into(),
        description: None,
        file: PathBuf::from("t.json"),
        kind: "test",
        credentials,
        runtime: target,
    });
    let schema = json!({
        "type": "object",
        "properties": {"msg": {"type": "string"}},
        "required": ["msg"],
    });
    let Value::Object(input_schema) = schema.clone() else {
        unreachable!("an object literal")
    };
    let def = ToolDef {
        name: "echo".into(),
        input_schema,
        ..ToolDef::default()
    };
    let validator = jsonschema::validator_for(&schema).unwrap();
    catalog_tool(&entry, 0, def, validator)
}

fn args(value: Value) -> Map<String, Value> {
    let Value::Object(map) = value else {
        panic!("arguments must be an object")
    };
    map
}

fn text(outcome: &CallOutcome) -> String {
    let CallOutcome::Answered(result) = outcome else {
        panic!("expected an answer, got {outcome:?}")
    };
    result.content[0].as_text().unwrap().text.clone()
}

async fn run(pipeline: &CallPipeline, tool: &CatalogTool, arguments: Value) -> CallOutcome {
    pipeline
        .run(&alice(), tool, args(arguments), "1", CallOptions::default())
        .await
}

fn with_identity(rig: &Rig) -> CallPipeline {
    CallPipeline::new(
        Some(rig.identity.clone()),
        None,
        RateLimits::new(vec![], None),
        "portcullis".into(),
    )
}

#[tokio::test]
async fn invalid_arguments_name_each_failure_and_never_reach_the_target() {
    let target = Arc::new(Recording::new(Behaviour::Echo));
    let tool = tool(target.clone(), None);
    let pipeline = CallPipeline::new(
        None,
        None,
        RateLimits::new(vec![], None),
        "portcullis".into(),
    );
    let outcome = run(&pipeline, &tool, json!({"msg": 7, "extra": true})).await;
    let CallOutcome::InvalidArguments(failures) = &outcome else {
        panic!("expected invalid arguments, got {outcome:?}")
    };
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].starts_with("/msg: type: "), "{failures:?}");
    assert_eq!(outcome.label(), "invalid_arguments");
    let missing = run(&pipeline, &tool, json!({})).await;
    assert!(
        matches!(&missing, CallOutcome::InvalidArguments(f) if f[0].starts_with("/: required: ")),
        "{missing:?}"
    );
    assert!(target.seen().is_empty(), "the target was invoked");
}

#[tokio::test]
async fn a_target_without_credentials_runs_once_with_none() {
    let target = Arc::new(Recording::new(Behaviour::Echo));
    let tool = tool(target.clone(), None);
    let pipeline = CallPipeline::new(
        None,
        None,
        RateLimits::new(vec![], None),
        "portcullis".into(),
    );
    let outcome = run(&pipeline, &tool, json!({"msg": "hi"})).await;
    assert_eq!(
        text(&outcome),
        "t___echo for https://idp.example#alice with no credential"
    );
    assert_eq!(outcome.label(), "ok");
    assert_eq!(target.seen(), [None]);
}

#[tokio::test]
async fn a_target_failure_is_typed_not_an_answer() {
    let target = Arc::new(Recording::new(Behaviour::Unreachable));
    let tool = tool(target.clone(), None);
    let pipeline = CallPipeline::new(
        None,
        None,
        RateLimits::new(vec![], None),
        "portcullis".into(),
    );
    let outcome = run(&pipeline, &tool, json!({"msg": "hi"})).await;
    assert!(
        matches!(
            outcome,
            CallOutcome::TargetFailed(TargetError::Unreachable(_))
        ),
        "{outcome:?}"
    );
    assert_eq!(outcome.label(), "target_failed");
    assert_eq!(target.seen().len(), 1, "a failure is not retried");
}

#[tokio::test]
async fn a_credential_without_an_identity_section_is_unconfigured_and_nothing_runs() {
    let target = Arc::new(Recording::new(Behaviour::Echo));
    let tool = tool(target.clone(), Some(credentials()));
    let pipeline = CallPipeline::new(
        None,
        None,
        RateLimits::new(vec![], None),
        "portcullis".into(),
    );
    let outcome = run(&pipeline, &tool, json!({"msg": "hi"})).await;
    assert!(
        matches!(&outcome, CallOutcome::CredentialUnconfigured { provider } if provider == "github"),
        "{outcome:?}"
    );
    assert!(target.seen().is_empty());
}

#[tokio::test]
async fn no_link_asks_for_consent_and_nothing_runs() {
    let rig = rig(vec![]);
    let target = Arc::new(Recording::new(Behaviour::Echo));
    let tool = tool(target.clone(), Some(credentials()));
    let outcome = run(&with_identity(&rig), &tool, json!({"msg": "hi"})).await;
    let CallOutcome::NeedsConsent(prompt) = &outcome else {
        panic!("expected a consent prompt, got {outcome:?}")
    };
    assert_eq!(prompt.provider, "github");
    assert!(target.seen().is_empty());
}

#[tokio::test]
async fn the_linked_token_is_what_the_target_receives() {
    let rig = rig(vec![]);
    rig.link("alice-token", unix_now() + 3600).await;
    let target = Arc::new(Recording::new(Behaviour::Echo));
    let tool = tool(target.clone(), Some(credentials()));
    let outcome = run(&with_identity(&rig), &tool, json!({"msg": "hi"})).await;
    assert!(text(&outcome).ends_with("with alice-token"));
    assert_eq!(target.seen(), [Some("alice-token".to_string())]);
    assert!(rig.endpoint.refreshes.lock().is_empty());
}

#[tokio::test]
async fn a_refused_token_is_refreshed_once_and_the_call_retried() {
    let rig = rig(vec![Script::Grant("fresh", Some("r2"))]);
    rig.link("revoked", unix_now() + 3600).await;
    let target = Arc::new(Recording::new(Behaviour::Echo).refusing(&["revoked"]));
    let tool = tool(target.clone(), Some(credentials()));
    let outcome = run(&with_identity(&rig), &tool, json!({"msg": "hi"})).await;
    assert!(text(&outcome).ends_with("with fresh"), "{outcome:?}");
    assert_eq!(
        target.seen(),
        [Some("revoked".to_string()), Some("fresh".to_string())]
    );
    assert_eq!(*rig.endpoint.refreshes.lock(), ["r1"]);
}

#[tokio::test]
async fn a_fresh_token_refused_again_ends_without_a_consent_loop() {
    let rig = rig(vec![Script::Grant("fresh", Some("r2"))]);
    rig.link("revoked", unix_now() + 3600).await;
    let target = Arc::new(Recording::new(Behaviour::Echo).refusing(&["revoked", "fresh"]));
    let tool = tool(target.clone(), Some(credentials()));
    let outcome = run(&with_identity(&rig), &tool, json!({"msg": "hi"})).await;
    assert!(
        matches!(&outcome, CallOutcome::FreshTokenRefused { challenge: Some(c) } if c.contains("invalid_token")),
        "{outcome:?}"
    );
    assert_eq!(outcome.label(), "credential_refused");
    assert_eq!(target.seen().len(), 2, "exactly one retry");
    assert_eq!(
        rig.endpoint.refreshes.lock().len(),
        1,
        "exactly one refresh"
    );
    assert!(
        rig.endpoint.authorizations.lock().is_empty(),
        "no consent was started"
    );
}

#[tokio::test]
async fn a_refused_token_whose_refresh_is_refused_asks_for_consent() {
    let rig = rig(vec![Script::InvalidGrant]);
    rig.link("revoked", unix_now() + 3600).await;
    let target = Arc::new(Recording::new(Behaviour::Echo).refusing(&["revoked"]));
    let tool = tool(target.clone(), Some(credentials()));
    let outcome = run(&with_identity(&rig), &tool, json!({"msg": "hi"})).await;
    assert!(
        matches!(outcome, CallOutcome::NeedsConsent(_)),
        "{outcome:?}"
    );
    assert_eq!(target.seen().len(), 1);
    assert!(rig.stored().await.is_none(), "the dead link was dropped");
}

#[tokio::test]
async fn the_targets_own_resource_is_asked_for_when_the_credential_names_none() {
    let rig = rig(vec![Script::Grant("fresh", None)]);
    rig.link("stale", unix_now() - 1).await;
    let mut target = Recording::new(Behaviour::Echo);
    target.resource = Some("https://mcp.example/mcp".into());
    let target = Arc::new(target);
    let tool = tool(target.clone(), Some(credentials()));
    let outcome = run(&with_identity(&rig), &tool, json!({"msg": "hi"})).await;
    assert!(text(&outcome).ends_with("with fresh"));
    assert_eq!(
        *rig.endpoint.refresh_extras.lock(),
        [vec![(
            "resource".to_string(),
            "https://mcp.example/mcp".to_string()
        )]]
    );
}

#[tokio::test]
async fn the_credentials_resource_wins_over_the_targets() {
    let rig = rig(vec![Script::Grant("fresh", None)]);
    rig.link("stale", unix_now() - 1).await;
    let mut target = Recording::new(Behaviour::Echo);
    target.resource = Some("https://mcp.example/mcp".into());
    let target = Arc::new(target);
    let Credentials::Oauth(mut oauth) = credentials() else {
        unreachable!("the rig's credential is OAuth")
    };
    oauth.resource = Some("https://api.example/".into());
    let tool = tool(target.clone(), Some(Credentials::Oauth(oauth)));
    run(&with_identity(&rig), &tool, json!({"msg": "hi"})).await;
    assert_eq!(
        *rig.endpoint.refresh_extras.lock(),
        [vec![(
            "resource".to_string(),
            "https://api.example/".to_string()
        )]]
    );
}
