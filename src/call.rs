//! The one tool-call pipeline: validate arguments -> credential -> invoke -> audit.
//!
//! Readable top to bottom in [`CallPipeline::run`]; protocol shaping (revisions, JSON-RPC,
//! how a consent prompt reaches the client) is the `mcp` module's job and error wording is
//! `edge`'s.

use std::sync::Arc;
use std::time::Instant;

use rmcp::model::CallToolResult;
use serde_json::{Map, Value};

use crate::catalog::{CatalogTool, TargetKind};
use crate::identity::{ConsentPrompt, Credential, CredentialRequest, Identity, Injection};
use crate::inbound::Caller;
use crate::targets::lambda::InvokeContext;
use crate::targets::{HttpInvoker, LambdaInvoker, TargetError};

pub struct CallPipeline {
    http: HttpInvoker,
    lambda: LambdaInvoker,
    identity: Option<Arc<Identity>>,
    gateway_id: String,
}

/// How one call ended, for the audit trail and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    InvalidArguments,
    ToolError,
    TargetFailed,
    ConsentRequired,
    CredentialUnavailable,
    /// The API refused a token the provider had just issued (after a refresh).
    CredentialRefused,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::InvalidArguments => "invalid_arguments",
            Outcome::ToolError => "tool_error",
            Outcome::TargetFailed => "target_failed",
            Outcome::ConsentRequired => "consent_required",
            Outcome::CredentialUnavailable => "credential_unavailable",
            Outcome::CredentialRefused => "credential_refused",
        }
    }
}

/// What the client gets: a tool result, or a request to send the user to a consent URL.
pub enum CallOutcome {
    Result(CallToolResult),
    NeedsConsent(ConsentPrompt),
}

/// Per-call options from the request's `_meta`.
#[derive(Debug, Default, Clone, Copy)]
pub struct CallOptions {
    /// Ask for a new consent even if a token exists (AgentCore `forceAuthentication`).
    pub force_authentication: bool,
}

impl CallPipeline {
    pub fn new(
        http: HttpInvoker,
        lambda: LambdaInvoker,
        identity: Option<Arc<Identity>>,
        gateway_id: String,
    ) -> CallPipeline {
        CallPipeline {
            http,
            lambda,
            identity,
            gateway_id,
        }
    }

    pub fn identity(&self) -> Option<&Arc<Identity>> {
        self.identity.as_ref()
    }

    /// Runs `tool` for `caller`. Failures the model can act on (bad arguments, target errors)
    /// are `isError` results, never protocol errors.
    pub async fn run(
        &self,
        caller: &Caller,
        tool: &CatalogTool,
        args: Map<String, Value>,
        message_id: &str,
        options: CallOptions,
    ) -> CallOutcome {
        let started = Instant::now();
        let (outcome, audit) = self.execute(caller, tool, args, message_id, options).await;
        crate::telemetry::tool_called(caller, &tool.qualified_name, audit, started.elapsed());
        outcome
    }

    async fn execute(
        &self,
        caller: &Caller,
        tool: &CatalogTool,
        args: Map<String, Value>,
        message_id: &str,
        options: CallOptions,
    ) -> (CallOutcome, Outcome) {
        // 1. Arguments must match the tool's inputSchema before anything runs.
        let args = Value::Object(args);
        let failures: Vec<String> = tool
            .validator
            .iter_errors(&args)
            .map(|e| crate::edge::describe_argument_error(&e))
            .collect();
        let Value::Object(args) = args else {
            return (
                result(crate::edge::invalid_arguments_result(&[
                    "/: must be an object".into(),
                ])),
                Outcome::InvalidArguments,
            );
        };
        if !failures.is_empty() {
            return (
                result(crate::edge::invalid_arguments_result(&failures)),
                Outcome::InvalidArguments,
            );
        }

        // 2. The caller's own downstream credential, if the target declares one. The RFC 8707
        //    resource is the credential's or provider's own (DESIGN 2.3), never the target URL.
        let request = CredentialRequest {
            tool_scopes: &tool.def.scopes,
            resource: None,
            force_authentication: options.force_authentication,
        };
        let credential = match self.credential(caller, tool, &request).await {
            Ok(Some(Credential::Ready(injection))) => Some(injection),
            Ok(Some(Credential::NeedsConsent(prompt))) => {
                return (CallOutcome::NeedsConsent(prompt), Outcome::ConsentRequired);
            }
            Ok(None) => None,
            Err(failure) => return (result(failure), Outcome::CredentialUnavailable),
        };

        // 3. Invoke. A 401 from the API means the user's token died: refresh once and retry.
        //    If the freshly issued token is refused too, a new consent would only produce
        //    another token the API refuses: say so instead of asking again (no consent loop).
        let mut invoked = self
            .invoke(caller, tool, &args, message_id, credential.as_ref())
            .await;
        if let (
            Ok(Invoked {
                status: Some(401), ..
            }),
            Some(Injection::Bearer(used)),
        ) = (&invoked, &credential)
        {
            let fresh = match self.refresh_after_401(caller, tool, used, &request).await {
                Ok(fresh) => fresh,
                Err(early) => return early,
            };
            invoked = self
                .invoke(caller, tool, &args, message_id, Some(&fresh))
                .await;
            if let Ok(Invoked {
                status: Some(401),
                challenge,
                ..
            }) = &invoked
            {
                return (
                    result(crate::edge::fresh_token_refused_result(
                        challenge.as_deref(),
                    )),
                    Outcome::CredentialRefused,
                );
            }
        }

        // 4. Shape for the audit trail.
        match invoked {
            Ok(Invoked {
                result: tool_result,
                ..
            }) if tool_result.is_error == Some(true) => (result(tool_result), Outcome::ToolError),
            Ok(Invoked {
                result: tool_result,
                ..
            }) => (result(tool_result), Outcome::Ok),
            Err(error) => (
                result(crate::edge::target_error_result(&error)),
                Outcome::TargetFailed,
            ),
        }
    }

    /// A fresh credential after the API refused `used`, or the outcome to return instead.
    async fn refresh_after_401(
        &self,
        caller: &Caller,
        tool: &CatalogTool,
        used: &crate::vault::Secret,
        request: &CredentialRequest<'_>,
    ) -> Result<Injection, (CallOutcome, Outcome)> {
        let (Some(credentials), Some(identity)) = (&tool.target.credentials, &self.identity) else {
            return Err((
                result(crate::edge::target_error_result(&TargetError::Credential(
                    "no credential to refresh".into(),
                ))),
                Outcome::TargetFailed,
            ));
        };
        match Box::pin(identity.after_unauthorized(caller, credentials, used, request)).await {
            Ok(Credential::Ready(fresh)) => Ok(fresh),
            Ok(Credential::NeedsConsent(prompt)) => {
                Err((CallOutcome::NeedsConsent(prompt), Outcome::ConsentRequired))
            }
            Err(error) => Err((
                result(crate::edge::credential_error_result(&error)),
                Outcome::CredentialUnavailable,
            )),
        }
    }

    /// `Ok(None)`: the target needs no credential.
    async fn credential(
        &self,
        caller: &Caller,
        tool: &CatalogTool,
        request: &CredentialRequest<'_>,
    ) -> Result<Option<Credential>, CallToolResult> {
        let Some(credentials) = &tool.target.credentials else {
            return Ok(None);
        };
        let Some(identity) = &self.identity else {
            return Err(crate::edge::credential_unavailable_result(credentials));
        };
        // Boxed so that the vault and refresh futures do not inflate the per-call future.
        Box::pin(identity.credential_for(caller, credentials, request))
            .await
            .map(Some)
            .map_err(|e| crate::edge::credential_error_result(&e))
    }

    /// The result and, for HTTP targets, the response status and challenge.
    async fn invoke(
        &self,
        caller: &Caller,
        tool: &CatalogTool,
        args: &Map<String, Value>,
        message_id: &str,
        credential: Option<&Injection>,
    ) -> Result<Invoked, TargetError> {
        match &tool.target.kind {
            TargetKind::Http(target) => {
                let route = tool
                    .route
                    .as_ref()
                    .ok_or_else(|| TargetError::Unreachable("tool has no HTTP mapping".into()))?;
                let reply = self.http.invoke(target, route, args, credential).await?;
                Ok(Invoked {
                    result: reply.result,
                    status: Some(reply.status),
                    challenge: reply.challenge,
                })
            }
            TargetKind::Lambda(target) => {
                let user_id = caller.user_id();
                let context = InvokeContext {
                    qualified_tool_name: &tool.qualified_name,
                    gateway_id: &self.gateway_id,
                    target_name: &tool.target.name,
                    mcp_message_id: message_id,
                    user_id: &user_id,
                    credential,
                };
                // Boxed: the SDK's invoke future is ~11 KiB, and every future that embeds it
                // (up to rmcp's per-request task) would be copied at each spawn and first poll.
                let invoked = Box::pin(self.lambda.invoke(target, args, &context)).await?;
                Ok(Invoked {
                    result: invoked,
                    status: None,
                    challenge: None,
                })
            }
        }
    }
}

/// What a target answered: the result and, for HTTP targets, the status and challenge.
struct Invoked {
    result: CallToolResult,
    status: Option<u16>,
    challenge: Option<String>,
}

fn result(result: CallToolResult) -> CallOutcome {
    CallOutcome::Result(result)
}
