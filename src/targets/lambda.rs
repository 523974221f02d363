//! Lambda targets through aws-sdk-lambda (DESIGN 2.3 "Lambda contract").
//!
//! The event is the bare arguments object and `clientContext.custom` carries the
//! AgentCore-compatible fields, so functions written for a managed gateway run unchanged.
//! Credentials come from the AWS default chain; `endpointUrl` points a target at a local
//! Invoke API (cargo-lambda, LocalStack) instead.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_lambda::primitives::Blob;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use parking_lot::Mutex;
use rmcp::model::CallToolResult;
use serde_json::{Map, Value, json};
use tokio::sync::OnceCell;

use super::{TargetError, body_result, error_result, excerpt};
use crate::catalog::model::{ApiKeyLocation, LambdaTarget};
use crate::identity::Injection;

/// AWS caps the base64 client context at 3,583 bytes (Invoke API reference, ClientContext).
const MAX_CLIENT_CONTEXT_BYTES: usize = 3583;
/// AgentCore's message version for the client context fields.
const MESSAGE_VERSION: &str = "1.0";

/// Who and what a Lambda invocation is for; becomes `clientContext.custom`.
pub struct InvokeContext<'a> {
    pub qualified_tool_name: &'a str,
    pub gateway_id: &'a str,
    pub target_name: &'a str,
    pub mcp_message_id: &'a str,
    pub user_id: &'a str,
    /// Only when the target declares an oauth/apiKey credential (DESIGN 2.3).
    pub credential: Option<&'a Injection>,
}

/// Clients are keyed by (region, endpoint URL): targets sharing both share a client.
type ClientKey = (Option<String>, Option<String>);

/// Lambda clients, one per (region, endpoint), sharing the SDK's connection pool.
#[derive(Clone, Default)]
pub struct LambdaInvoker {
    sdk: Arc<OnceCell<aws_config::SdkConfig>>,
    clients: Arc<Mutex<HashMap<ClientKey, aws_sdk_lambda::Client>>>,
}

impl LambdaInvoker {
    async fn client(&self, target: &LambdaTarget) -> aws_sdk_lambda::Client {
        let sdk = self
            .sdk
            .get_or_init(|| aws_config::load_defaults(aws_config::BehaviorVersion::latest()))
            .await;
        let key = (
            target.region.clone(),
            target.endpoint_url.as_ref().map(ToString::to_string),
        );
        let mut clients = self.clients.lock();
        clients
            .entry(key)
            .or_insert_with(|| {
                // No automatic retries: a tool may have side effects, and a 5xx or a throttle
                // must not run it twice behind the caller's back.
                let mut config = aws_sdk_lambda::config::Builder::from(sdk)
                    .retry_config(aws_sdk_lambda::config::retry::RetryConfig::disabled());
                if let Some(region) = &target.region {
                    config = config.region(aws_sdk_lambda::config::Region::new(region.clone()));
                }
                if let Some(endpoint) = &target.endpoint_url {
                    config = config.endpoint_url(endpoint.as_str().trim_end_matches('/'));
                }
                aws_sdk_lambda::Client::from_conf(config.build())
            })
            .clone()
    }

    pub async fn invoke(
        &self,
        target: &LambdaTarget,
        args: &Map<String, Value>,
        context: &InvokeContext<'_>,
    ) -> Result<CallToolResult, TargetError> {
        let client = self.client(target).await;
        let payload = serde_json::to_vec(args).map_err(|e| TargetError::Lambda(e.to_string()))?;
        let mut request = client
            .invoke()
            .function_name(&target.function_name)
            .payload(Blob::new(payload))
            .client_context(client_context(context)?);
        if let Some(qualifier) = &target.qualifier {
            request = request.qualifier(qualifier);
        }
        let output = tokio::time::timeout(target.timeout, request.send())
            .await
            .map_err(|_| TargetError::Timeout(target.timeout.as_millis()))?
            .map_err(|e| TargetError::Lambda(describe_sdk_error(&e)))?;
        let body = output.payload().map(|b| b.as_ref()).unwrap_or_default();
        if let Some(kind) = output.function_error() {
            return Ok(error_result(format!(
                "function error ({kind}): {}",
                excerpt(body)
            )));
        }
        Ok(lambda_result(body))
    }
}

/// A short, client-safe description of an Invoke failure: the service's error code, HTTP status
/// and message, never the SDK's debug dump (headers, raw bodies, internal types). The full
/// detail goes to the gateway's log.
fn describe_sdk_error(
    error: &aws_sdk_lambda::error::SdkError<
        aws_sdk_lambda::operation::invoke::InvokeError,
        aws_sdk_lambda::config::http::HttpResponse,
    >,
) -> String {
    use aws_sdk_lambda::error::{ProvideErrorMetadata, SdkError};
    tracing::warn!(error = %aws_sdk_lambda::error::DisplayErrorContext(error), "Lambda invoke failed");
    match error {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let inner = service.err();
            // Non-AWS Invoke fronts (cargo-lambda) put the function's message in the body only.
            let body_message = service
                .raw()
                .body()
                .bytes()
                .and_then(|b| serde_json::from_slice::<Value>(b).ok())
                .and_then(|v| {
                    ["errorMessage", "message", "Message"]
                        .iter()
                        .find_map(|k| v.get(*k).and_then(Value::as_str).map(str::to_string))
                });
            let message = inner.message().map(str::to_string).or(body_message);
            format!(
                "{} (HTTP {status}){}",
                inner.code().unwrap_or("service error"),
                message
                    .map(|m| format!(": {}", excerpt(m.as_bytes())))
                    .unwrap_or_default()
            )
        }
        SdkError::TimeoutError(_) => "the request timed out".to_string(),
        SdkError::DispatchFailure(failure) if failure.is_io() => {
            "the Lambda endpoint could not be reached".to_string()
        }
        SdkError::DispatchFailure(_) => "the request could not be sent".to_string(),
        SdkError::ConstructionFailure(_) => {
            "the request could not be built (check region and credentials)".to_string()
        }
        SdkError::ResponseError(_) => "the response could not be read".to_string(),
        _ => "unknown error".to_string(),
    }
}

/// A returned object with `content` is already an MCP result; anything else is shaped.
fn lambda_result(body: &[u8]) -> CallToolResult {
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        if value.get("content").is_some_and(Value::is_array)
            && let Ok(result) = serde_json::from_value::<CallToolResult>(value.clone())
        {
            return result;
        }
        return super::json_result(value);
    }
    body_result(body, false)
}

fn client_context(context: &InvokeContext<'_>) -> Result<String, TargetError> {
    let mut custom = json!({
        "bedrockAgentCoreToolName": context.qualified_tool_name,
        "bedrockAgentCoreMessageVersion": MESSAGE_VERSION,
        "bedrockAgentCoreGatewayId": context.gateway_id,
        "bedrockAgentCoreTargetId": context.target_name,
        "bedrockAgentCoreMcpMessageId": context.mcp_message_id,
        "portcullisUserId": context.user_id,
    });
    if let Some(credential) = context.credential {
        custom["portcullisCredential"] = match credential {
            Injection::Bearer(token) => {
                json!({"type": "oauth2", "tokenType": "Bearer", "accessToken": token.expose()})
            }
            Injection::ApiKey {
                location,
                name,
                value,
            } => json!({
                "type": "apiKey",
                "location": match location {
                    ApiKeyLocation::Header => "HEADER",
                    ApiKeyLocation::QueryParameter => "QUERY_PARAMETER",
                },
                "parameterName": name,
                "apiKey": value.expose(),
            }),
        };
    }
    let encoded = STANDARD.encode(json!({ "custom": custom }).to_string());
    if encoded.len() > MAX_CLIENT_CONTEXT_BYTES {
        return Err(TargetError::Lambda(format!(
            "client context is {} bytes, over the {MAX_CLIENT_CONTEXT_BYTES}-byte limit",
            encoded.len()
        )));
    }
    Ok(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcp_shaped_results_pass_through_and_others_are_wrapped() {
        let result = lambda_result(br#"{"content":[{"type":"text","text":"hi"}],"isError":true}"#);
        assert_eq!(result.is_error, Some(true));
        let result = lambda_result(br#"{"status":"ok"}"#);
        assert_eq!(result.structured_content, Some(json!({"status": "ok"})));
        let result = lambda_result(b"plain");
        assert!(result.structured_content.is_none());
    }

    #[test]
    fn client_context_carries_the_agentcore_fields() {
        let encoded = client_context(&InvokeContext {
            qualified_tool_name: "w___check",
            gateway_id: "portcullis",
            target_name: "w",
            mcp_message_id: "7",
            user_id: "https://idp#alice",
            credential: None,
        })
        .unwrap();
        let decoded: Value = serde_json::from_slice(&STANDARD.decode(encoded).unwrap()).unwrap();
        assert_eq!(decoded["custom"]["bedrockAgentCoreToolName"], "w___check");
        assert_eq!(decoded["custom"]["portcullisUserId"], "https://idp#alice");
    }
}
