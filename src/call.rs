//! The one tool-call pipeline: validate arguments -> credential -> invoke -> audit.
//!
//! Readable top to bottom in [`CallPipeline::run`]; protocol shaping (revisions, JSON-RPC) is
//! the `mcp` module's job and error wording is `edge`'s.

use std::time::Instant;

use rmcp::model::CallToolResult;
use serde_json::{Map, Value};

use crate::catalog::{CatalogTool, TargetKind};
use crate::inbound::Caller;
use crate::targets::lambda::InvokeContext;
use crate::targets::{HttpInvoker, LambdaInvoker, TargetError};

pub struct CallPipeline {
    http: HttpInvoker,
    lambda: LambdaInvoker,
    gateway_id: String,
}

/// How one call ended, for the audit trail and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    InvalidArguments,
    ToolError,
    TargetFailed,
    CredentialUnavailable,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::InvalidArguments => "invalid_arguments",
            Outcome::ToolError => "tool_error",
            Outcome::TargetFailed => "target_failed",
            Outcome::CredentialUnavailable => "credential_unavailable",
        }
    }
}

impl CallPipeline {
    pub fn new(http: HttpInvoker, lambda: LambdaInvoker, gateway_id: String) -> CallPipeline {
        CallPipeline {
            http,
            lambda,
            gateway_id,
        }
    }

    /// Runs `tool` for `caller`. Always yields a tool result: failures that the model can act
    /// on (bad arguments, target errors) are `isError` results, never protocol errors.
    pub async fn run(
        &self,
        caller: &Caller,
        tool: &CatalogTool,
        args: Map<String, Value>,
        message_id: &str,
    ) -> CallToolResult {
        let started = Instant::now();
        let (result, outcome) = self.execute(caller, tool, args, message_id).await;
        crate::telemetry::tool_called(caller, &tool.qualified_name, outcome, started.elapsed());
        result
    }

    async fn execute(
        &self,
        caller: &Caller,
        tool: &CatalogTool,
        args: Map<String, Value>,
        message_id: &str,
    ) -> (CallToolResult, Outcome) {
        let args = Value::Object(args);
        let failures: Vec<String> = tool
            .validator
            .iter_errors(&args)
            .map(|e| crate::edge::describe_argument_error(&e))
            .collect();
        if !failures.is_empty() {
            return (
                crate::edge::invalid_arguments_result(&failures),
                Outcome::InvalidArguments,
            );
        }
        let Value::Object(args) = args else {
            return (
                crate::edge::invalid_arguments_result(&["/: must be an object".into()]),
                Outcome::InvalidArguments,
            );
        };

        if let Some(credentials) = &tool.target.credentials {
            return (
                crate::edge::credential_unavailable_result(credentials),
                Outcome::CredentialUnavailable,
            );
        }

        let invoked = match &tool.target.kind {
            TargetKind::Http(target) => match &tool.route {
                Some(route) => self.http.invoke(target, route, &args).await,
                None => Err(TargetError::Unreachable("tool has no HTTP mapping".into())),
            },
            TargetKind::Lambda(target) => {
                let user_id = caller.user_id();
                let context = InvokeContext {
                    qualified_tool_name: &tool.qualified_name,
                    gateway_id: &self.gateway_id,
                    target_name: &tool.target.name,
                    mcp_message_id: message_id,
                    user_id: &user_id,
                };
                self.lambda.invoke(target, &args, &context).await
            }
        };
        match invoked {
            Ok(result) if result.is_error == Some(true) => (result, Outcome::ToolError),
            Ok(result) => (result, Outcome::Ok),
            Err(error) => (
                crate::edge::target_error_result(&error),
                Outcome::TargetFailed,
            ),
        }
    }
}
