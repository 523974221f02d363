//! The one tool-call pipeline: validate arguments -> policy -> rate limits -> credential ->
//! invoke -> audit.
//!
//! Readable top to bottom in [`CallPipeline::run`]. It returns a typed [`CallOutcome`]; how
//! each outcome reaches the client (revisions, JSON-RPC, the consent signal, wording) is the
//! `mcp` module's job, in one function.
//!
//! Owns: the order of the steps and the single refresh-and-retry after a refused credential.
//! May use: `catalog` (the tool), `targets` (invoke through the trait), `identity` (the
//! caller's credential), `inbound` (the caller), `credential`, `telemetry` (labels).

use std::sync::Arc;
use std::time::Instant;

use rmcp::model::CallToolResult;
use serde_json::{Map, Value};

use crate::catalog::CatalogTool;
use crate::credential::Injection;
use crate::identity::{ConsentPrompt, Credential, CredentialRequest, Identity, IdentityError};
use crate::inbound::Caller;
use crate::limits::{Limited, RateLimits};
use crate::policy::Policies;
use crate::targets::{Invocation, TargetError, ToolCall};

pub struct CallPipeline {
    identity: Option<Arc<Identity>>,
    /// `[policy]`: who may call what; `None` lets every authenticated caller call every tool.
    policies: Option<Arc<Policies>>,
    /// `[[rate_limits]]`; empty when none are configured.
    limits: RateLimits,
    gateway_id: String,
}

/// How one call ended. `mcp` turns it into what the client sees; [`CallOutcome::label`] is
/// what the audit line and the metrics record.
#[derive(Debug)]
pub enum CallOutcome {
    /// The target answered: its result, success or its own `isError`, passes through unchanged.
    Answered(CallToolResult),
    /// The arguments failed the tool's `inputSchema`: one `<JSON pointer>: <keyword>: <message>`
    /// per failure. Nothing ran.
    InvalidArguments(Vec<String>),
    /// The target could not produce a result.
    TargetFailed(TargetError),
    /// The policies do not permit this call (DESIGN 2.10). Nothing ran.
    PolicyDenied,
    /// A rate limit refused the call (issue 13). Nothing ran.
    RateLimited(Limited),
    /// The user must link their account first.
    NeedsConsent(ConsentPrompt),
    /// The target declares a credential but this gateway has no identity section to supply it.
    CredentialUnconfigured { provider: String },
    /// The credential could not be obtained for a reason other than missing consent.
    CredentialFailed(IdentityError),
    /// The API refused a token the provider had just issued (after a refresh): another consent
    /// would only produce another such token, so none is asked for (DESIGN 2.3, no consent loop).
    FreshTokenRefused { challenge: Option<String> },
}

impl CallOutcome {
    /// The audit and metrics label: bounded, no user data.
    pub fn label(&self) -> &'static str {
        match self {
            CallOutcome::Answered(result) if result.is_error == Some(true) => "tool_error",
            CallOutcome::Answered(_) => "ok",
            CallOutcome::InvalidArguments(_) => "invalid_arguments",
            CallOutcome::TargetFailed(_) => "target_failed",
            CallOutcome::PolicyDenied => "policy_denied",
            CallOutcome::RateLimited(_) => "rate_limited",
            CallOutcome::NeedsConsent(_) => "consent_required",
            CallOutcome::CredentialUnconfigured { .. } | CallOutcome::CredentialFailed(_) => {
                "credential_unavailable"
            }
            CallOutcome::FreshTokenRefused { .. } => "credential_refused",
        }
    }
}

/// Per-call options from the request's `_meta`.
#[derive(Default, Clone)]
pub struct CallOptions {
    /// Ask for a new consent even if a token exists (AgentCore `forceAuthentication`).
    pub force_authentication: bool,
    /// Where the target's progress goes, when the caller sent a `progressToken`.
    pub progress: Option<Arc<dyn crate::targets::ProgressSink>>,
    /// Where the target's server may ask the caller a question, when the client can answer.
    pub elicitation: Option<Arc<dyn crate::targets::ElicitationSink>>,
    /// The caller's own bearer token, given only for a target that forwards it
    /// ([`crate::targets::Target::forwards_caller_token`]).
    pub caller_token: Option<crate::secret::Secret>,
}

impl std::fmt::Debug for CallOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallOptions")
            .field("force_authentication", &self.force_authentication)
            .field("progress", &self.progress.is_some())
            .field("elicitation", &self.elicitation.is_some())
            .field("caller_token", &self.caller_token.is_some())
            .finish()
    }
}

/// One argument-validation failure: `<JSON pointer>: <keyword>: <message>`.
fn describe_argument_error(error: &jsonschema::ValidationError<'_>) -> String {
    let pointer = error.instance_path().as_str();
    let pointer = if pointer.is_empty() { "/" } else { pointer };
    format!("{pointer}: {}: {error}", error.kind().keyword())
}

impl CallPipeline {
    pub fn new(
        identity: Option<Arc<Identity>>,
        policies: Option<Arc<Policies>>,
        limits: RateLimits,
        gateway_id: String,
    ) -> CallPipeline {
        CallPipeline {
            identity,
            policies,
            limits,
            gateway_id,
        }
    }

    pub fn policies(&self) -> Option<&Arc<Policies>> {
        self.policies.as_ref()
    }

    pub fn identity(&self) -> Option<&Arc<Identity>> {
        self.identity.as_ref()
    }

    /// Runs `tool` for `caller` and records the audit event.
    pub async fn run(
        &self,
        caller: &Caller,
        tool: &CatalogTool,
        args: Map<String, Value>,
        message_id: &str,
        options: CallOptions,
    ) -> CallOutcome {
        let started = Instant::now();
        let outcome = self.execute(caller, tool, args, message_id, options).await;
        crate::telemetry::tool_called(
            &caller.issuer,
            &caller.subject,
            &tool.qualified_name,
            outcome.label(),
            started.elapsed(),
        );
        outcome
    }

    async fn execute(
        &self,
        caller: &Caller,
        tool: &CatalogTool,
        args: Map<String, Value>,
        message_id: &str,
        options: CallOptions,
    ) -> CallOutcome {
        // 1. Arguments must match the tool's inputSchema before anything runs.
        let args = Value::Object(args);
        let failures: Vec<String> = tool
            .validator
            .iter_errors(&args)
            .map(|e| describe_argument_error(&e))
            .collect();
        let Value::Object(args) = args else {
            return CallOutcome::InvalidArguments(vec!["/: must be an object".into()]);
        };
        if !failures.is_empty() {
            return CallOutcome::InvalidArguments(failures);
        }

        // 2. The policies decide on the validated arguments, before any credential is fetched.
        if let Some(policies) = &self.policies
            && !policies
                .authorize(
                    caller,
                    crate::policy::ToolShape {
                        name: &tool.qualified_name,
                        input_schema: &tool.listing.input_schema,
                    },
                    &args,
                )
                .proceed
        {
            return CallOutcome::PolicyDenied;
        }
        // A permitted call counts against the caller's rate limits; its permit is held until
        // the call ends (concurrency limits).
        let _permit = match self.limits.admit(caller, &tool.qualified_name).await {
            Ok(permit) => permit,
            Err(limited) => {
                crate::telemetry::rate_limited(limited.rule);
                return CallOutcome::RateLimited(limited);
            }
        };

        // 3. The caller's own downstream credential, if the target declares one. The RFC 8707
        //    resource is the credential's, else the target's own, else the provider's
        //    (DESIGN 2.3).
        let request = CredentialRequest {
            tool_scopes: &tool.def.scopes,
            resource: None,
            target_resource: tool.target.runtime.resource(),
            force_authentication: options.force_authentication,
        };
        //    A target that forwards the caller's own token gets that instead (the loader refuses
        //    it together with `credentials`).
        let runtime = &tool.target.runtime;
        let passthrough = runtime.forwards_caller_token();
        let credential = if passthrough {
            match options.caller_token {
                Some(token) => Some(Injection::Bearer(token)),
                None => {
                    return CallOutcome::TargetFailed(TargetError::Credential(
                        "the caller's token to pass through is missing".into(),
                    ));
                }
            }
        } else {
            match self.credential(caller, tool, &request).await {
                Ok(Some(Credential::Ready(injection))) => Some(injection),
                Ok(Some(Credential::NeedsConsent(prompt))) => {
                    return CallOutcome::NeedsConsent(prompt);
                }
                Ok(None) => None,
                Err(failure) => return failure,
            }
        };

        // 4. Invoke. A refused bearer token means the user's token died: refresh once and
        //    retry. If the freshly issued token is refused too, a new consent would only produce
        //    another token the API refuses: say so instead of asking again (no consent loop).
        let user_id = caller.user_id();
        let call = ToolCall {
            tool: tool.index,
            qualified_name: &tool.qualified_name,
            target_name: &tool.target.name,
            gateway_id: &self.gateway_id,
            message_id,
            user_id: &user_id,
            args: &args,
            progress: options.progress.as_ref(),
            elicitation: options.elicitation.as_ref(),
        };
        let invoked = runtime.invoke(&call, credential.as_ref()).await;
        let invoked = match (invoked, &credential) {
            // A refused pass-through token is the caller's to renew: the answer says so.
            (
                Ok(Invocation {
                    credential_refused: Some(_),
                    ..
                }),
                Some(Injection::Bearer(used)),
            ) if !passthrough => {
                let fresh = match self
                    .refresh_after_refusal(caller, tool, used, &request)
                    .await
                {
                    Ok(fresh) => fresh,
                    Err(early) => return early,
                };
                match runtime.invoke(&call, Some(&fresh)).await {
                    Ok(Invocation {
                        credential_refused: Some(refusal),
                        ..
                    }) => {
                        return CallOutcome::FreshTokenRefused {
                            challenge: refusal.challenge,
                        };
                    }
                    retried => retried,
                }
            }
            (invoked, _) => invoked,
        };
        match invoked {
            Ok(invocation) => CallOutcome::Answered(invocation.result),
            Err(error) => CallOutcome::TargetFailed(error),
        }
    }

    /// A fresh credential after the target refused `used`, or the outcome to return instead.
    async fn refresh_after_refusal(
        &self,
        caller: &Caller,
        tool: &CatalogTool,
        used: &crate::secret::Secret,
        request: &CredentialRequest<'_>,
    ) -> Result<Injection, CallOutcome> {
        let (Some(credentials), Some(identity)) = (&tool.target.credentials, &self.identity) else {
            return Err(CallOutcome::TargetFailed(TargetError::Credential(
                "no credential to refresh".into(),
            )));
        };
        match Box::pin(identity.after_unauthorized(caller, credentials, used, request)).await {
            Ok(Credential::Ready(fresh)) => Ok(fresh),
            Ok(Credential::NeedsConsent(prompt)) => Err(CallOutcome::NeedsConsent(prompt)),
            Err(error) => Err(credential_failed(tool, error)),
        }
    }

    /// `Ok(None)`: the target needs no credential.
    async fn credential(
        &self,
        caller: &Caller,
        tool: &CatalogTool,
        request: &CredentialRequest<'_>,
    ) -> Result<Option<Credential>, CallOutcome> {
        let Some(credentials) = &tool.target.credentials else {
            return Ok(None);
        };
        let Some(identity) = &self.identity else {
            return Err(CallOutcome::CredentialUnconfigured {
                provider: credentials.provider().to_string(),
            });
        };
        // Boxed so that the vault and refresh futures do not inflate the per-call future.
        Box::pin(identity.credential_for(caller, credentials, request))
            .await
            .map(Some)
            .map_err(|error| credential_failed(tool, error))
    }
}

/// Logs why `tool`'s credential could not be had (the caller's answer may say less: an
/// unavailable store is not described to clients) and makes it the outcome.
fn credential_failed(tool: &CatalogTool, error: IdentityError) -> CallOutcome {
    tracing::warn!(tool = %tool.qualified_name, %error, "no downstream credential for the call");
    CallOutcome::CredentialFailed(error)
}

#[cfg(test)]
mod tests;
