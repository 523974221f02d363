//! Lambda targets through aws-sdk-lambda (DESIGN 2.3 "Lambda contract").
//!
//! The event is the bare arguments object and `clientContext.custom` carries the
//! AgentCore-compatible fields, so functions written for a managed gateway run unchanged.
//! Credentials come from the AWS default chain; `endpointUrl` points a target at a local
//! Invoke API (cargo-lambda, LocalStack) instead.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_lambda::primitives::Blob;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use parking_lot::Mutex;
use rmcp::model::CallToolResult;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use url::Url;

use super::{
    BoxFuture, BuildInput, Invocation, Kind, SpecProblems, Target, TargetError, ToolCall,
    ToolSource, body_result, error_result, excerpt,
};
use crate::credential::{ApiKeyLocation, Injection};

/// The registry entry: `"lambda": {...}` in a target file; tools carry nothing of their own.
pub const KIND: Kind = Kind {
    key: "lambda",
    tool_key: None,
    tools: ToolSource::File,
    build,
};

/// AWS caps the base64 client context at 3,583 bytes (Invoke API reference, ClientContext).
const MAX_CLIENT_CONTEXT_BYTES: usize = 3583;
/// AgentCore's message version for the client context fields.
const MESSAGE_VERSION: &str = "1.0";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The `lambda` section of a target file, as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LambdaSpec {
    function_arn: String,
    endpoint_url: Option<String>,
    region: Option<String>,
    timeout_ms: Option<u64>,
    qualifier: Option<String>,
}

/// A Lambda function target.
pub struct LambdaTarget {
    function_name: String,
    qualifier: Option<String>,
    endpoint_url: Option<Url>,
    /// The section's `region`, else the one in the ARN, else the SDK's default chain.
    region: Option<String>,
    timeout: Duration,
    clients: LambdaClients,
}

impl std::fmt::Debug for LambdaTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LambdaTarget")
            .field("function_name", &self.function_name)
            .field("qualifier", &self.qualifier)
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url.as_ref().map(Url::as_str))
            .finish_non_exhaustive()
    }
}

fn build(input: &BuildInput<'_>, problems: &mut SpecProblems) -> Option<Arc<dyn Target>> {
    let spec: LambdaSpec = super::section(input.section, problems)?;
    let target = lambda_target(&spec, input.transport.lambda.clone(), problems)?;
    problems
        .is_empty()
        .then(|| Arc::new(target) as Arc<dyn Target>)
}

fn lambda_target(
    spec: &LambdaSpec,
    clients: LambdaClients,
    problems: &mut SpecProblems,
) -> Option<LambdaTarget> {
    // arn:partition:lambda:region:account:function:name[:qualifier]
    let parts: Vec<&str> = spec.function_arn.split(':').collect();
    let (arn_region, arn_qualifier) = match parts.as_slice() {
        ["arn", _, "lambda", region, _, "function", _] => (Some(*region), None),
        ["arn", _, "lambda", region, _, "function", _, qualifier] => {
            (Some(*region), Some(*qualifier))
        }
        _ => (None, None),
    };
    if arn_qualifier.is_some() && spec.qualifier.is_some() {
        problems.in_section("/qualifier", "the functionArn already carries a qualifier");
    }
    let endpoint_url = match &spec.endpoint_url {
        None => None,
        Some(text) => match Url::parse(text) {
            Ok(url) => Some(url),
            Err(e) => {
                problems.in_section("/endpointUrl", format!("not a URL: {e}"));
                return None;
            }
        },
    };
    Some(LambdaTarget {
        function_name: spec.function_arn.clone(),
        qualifier: spec.qualifier.clone(),
        endpoint_url,
        region: spec
            .region
            .clone()
            .or_else(|| arn_region.map(str::to_string)),
        timeout: spec
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_TIMEOUT),
        clients,
    })
}

/// Clients are keyed by (region, endpoint URL): targets sharing both share a client.
type ClientKey = (Option<String>, Option<String>);

/// Lambda clients, one per (region, endpoint), sharing the SDK's connection pool. The SDK's
/// configuration (the default credential chain) is loaded at the first call, not at load, so
/// that `validate` and a gateway without Lambda targets never touch AWS configuration.
#[derive(Clone, Default)]
pub struct LambdaClients {
    sdk: Arc<OnceCell<aws_config::SdkConfig>>,
    clients: Arc<Mutex<HashMap<ClientKey, aws_sdk_lambda::Client>>>,
}

impl LambdaClients {
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
}

impl Target for LambdaTarget {
    fn invoke<'a>(
        &'a self,
        call: &'a ToolCall<'a>,
        credential: Option<&'a Injection>,
    ) -> BoxFuture<'a, Result<Invocation, TargetError>> {
        // Boxed: the SDK's invoke future is ~11 KiB, and every future that embeds it (up to
        // rmcp's per-request task) would be copied at each spawn and first poll.
        Box::pin(async move { self.call(call, credential).await.map(Invocation::answered) })
    }
}

impl LambdaTarget {
    async fn call(
        &self,
        call: &ToolCall<'_>,
        credential: Option<&Injection>,
    ) -> Result<CallToolResult, TargetError> {
        let client = self.clients.client(self).await;
        let payload =
            serde_json::to_vec(call.args).map_err(|e| TargetError::Lambda(e.to_string()))?;
        let mut request = client
            .invoke()
            .function_name(&self.function_name)
            .payload(Blob::new(payload))
            .client_context(client_context(call, credential)?);
        if let Some(qualifier) = &self.qualifier {
            request = request.qualifier(qualifier);
        }
        let output = tokio::time::timeout(self.timeout, request.send())
            .await
            .map_err(|_| TargetError::Timeout(self.timeout.as_millis()))?
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

/// `clientContext.custom`: AgentCore's fields, the caller, and the credential only when the
/// target declares one (DESIGN 2.3).
fn client_context(
    call: &ToolCall<'_>,
    credential: Option<&Injection>,
) -> Result<String, TargetError> {
    let mut custom = json!({
        "bedrockAgentCoreToolName": call.qualified_name,
        "bedrockAgentCoreMessageVersion": MESSAGE_VERSION,
        "bedrockAgentCoreGatewayId": call.gateway_id,
        "bedrockAgentCoreTargetId": call.target_name,
        "bedrockAgentCoreMcpMessageId": call.message_id,
        "portcullisUserId": call.user_id,
    });
    if let Some(credential) = credential {
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
        let args = serde_json::Map::new();
        let call = ToolCall {
            tool: 0,
            qualified_name: "w___check",
            gateway_id: "portcullis",
            target_name: "w",
            message_id: "7",
            user_id: "https://idp#alice",
            args: &args,
            progress: None,
            elicitation: None,
        };
        let encoded = client_context(&call, None).unwrap();
        let decoded: Value = serde_json::from_slice(&STANDARD.decode(encoded).unwrap()).unwrap();
        assert_eq!(decoded["custom"]["bedrockAgentCoreToolName"], "w___check");
        assert_eq!(decoded["custom"]["portcullisUserId"], "https://idp#alice");
    }

    fn spec(arn: &str) -> LambdaSpec {
        serde_json::from_value(json!({"functionArn": arn})).unwrap()
    }

    #[test]
    fn the_region_comes_from_the_arn_unless_the_section_names_one() {
        let mut problems = SpecProblems::default();
        let arn = "arn:aws:lambda:us-east-1:123456789012:function:warranty";
        let target = lambda_target(&spec(arn), LambdaClients::default(), &mut problems).unwrap();
        assert_eq!(target.region.as_deref(), Some("us-east-1"));
        let mut named = spec(arn);
        named.region = Some("eu-west-1".into());
        let target = lambda_target(&named, LambdaClients::default(), &mut problems).unwrap();
        assert_eq!(target.region.as_deref(), Some("eu-west-1"));
        assert!(problems.is_empty());
    }

    #[test]
    fn a_qualifier_in_both_the_arn_and_the_section_is_a_problem() {
        let mut problems = SpecProblems::default();
        let mut twice = spec("arn:aws:lambda:us-east-1:123456789012:function:warranty:live");
        twice.qualifier = Some("live".into());
        lambda_target(&twice, LambdaClients::default(), &mut problems);
        assert_eq!(problems.section[0].0, "/qualifier");
    }
}
