//! The one place a tool call's [`CallOutcome`] becomes what the client sees, for the client's
//! revision (DESIGN 2.6). Failures the model can act on (bad arguments, target errors, missing
//! credentials) are `isError` results, never protocol errors (MCP 2025-06-18 "Tools: Error
//! Handling"); wording is part of the product: every message says what was wrong and where.

use rmcp::model::{
    CallToolResponse, CallToolResult, ContentBlock as Content, ErrorCode, ErrorData,
    ProtocolVersion,
};
use serde_json::json;

use crate::call::CallOutcome;
use crate::identity::{ConsentPrompt, IdentityError};
use crate::targets::TargetError;

/// How this request's client can be sent to a consent URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentChannel {
    /// 2026-07-28 with `elicitation.url` for this request: an `input_required` result
    /// (SEP-2322 MRTR); the client retries the call once the user is done.
    InputRequired,
    /// 2025-11-25 with `elicitation.url` for the session: a -32042 error, then
    /// `notifications/elicitation/complete` on the session when the user is done.
    ElicitationError,
    /// Every other client: an `isError` result whose text holds the absolute URL.
    ToolResult,
}

impl ConsentChannel {
    /// A request for input only goes to a client that declared `elicitation.url` (per request
    /// in 2026-07-28, per session in 2025-11-25); earlier revisions have no URL elicitation.
    pub fn for_client(version: Option<&ProtocolVersion>, url_elicitation: bool) -> ConsentChannel {
        match version {
            _ if !url_elicitation => ConsentChannel::ToolResult,
            Some(v) if *v >= ProtocolVersion::V_2026_07_28 => ConsentChannel::InputRequired,
            Some(v) if *v == ProtocolVersion::V_2025_11_25 => ConsentChannel::ElicitationError,
            _ => ConsentChannel::ToolResult,
        }
    }
}

/// `outcome` as the answer to `tools/call` on `channel`.
pub fn respond(
    outcome: CallOutcome,
    channel: ConsentChannel,
) -> Result<CallToolResponse, ErrorData> {
    let result = match outcome {
        CallOutcome::Answered(result) => result,
        CallOutcome::InvalidArguments(failures) => invalid_arguments_result(&failures),
        CallOutcome::TargetFailed(error) => target_error_result(&error),
        CallOutcome::PolicyDenied => policy_denied_result(),
        CallOutcome::RateLimited(limited) => rate_limited_result(&limited),
        CallOutcome::CredentialUnconfigured { provider } => {
            credential_unavailable_result(&provider)
        }
        CallOutcome::CredentialFailed(error) => credential_error_result(&error),
        CallOutcome::FreshTokenRefused { challenge } => {
            fresh_token_refused_result(challenge.as_deref())
        }
        CallOutcome::NeedsConsent(prompt) => match channel {
            ConsentChannel::InputRequired => {
                return Ok(CallToolResponse::InputRequired(consent_input_required(
                    &prompt,
                )));
            }
            ConsentChannel::ElicitationError => return Err(consent_error(&prompt)),
            ConsentChannel::ToolResult => consent_tool_result(&prompt),
        },
    };
    Ok(CallToolResponse::Complete(result))
}

/// Tells the model exactly which arguments failed `inputSchema`, so it can correct itself.
fn invalid_arguments_result(failures: &[String]) -> CallToolResult {
    let mut text =
        String::from("Invalid arguments: the call did not match the tool's inputSchema.\n");
    for failure in failures {
        text.push_str("- ");
        text.push_str(failure);
        text.push('\n');
    }
    text.push_str("Fix these arguments and call the tool again.");
    CallToolResult::error(vec![Content::text(text)])
}

/// A refused call says that it was refused and nothing about which policies exist.
fn policy_denied_result() -> CallToolResult {
    CallToolResult::error(vec![Content::text(
        "Not permitted: this gateway's access policy does not allow you to call this tool with these arguments. Nothing was run.",
    )])
}

/// A rate-limited call says when a retry can succeed (`_meta.retryAfterSeconds` for programs).
fn rate_limited_result(limited: &crate::limits::Limited) -> CallToolResult {
    let (text, seconds) = match limited.retry_after {
        Some(delay) => {
            let seconds = delay.as_secs_f64().ceil().max(1.0);
            (
                format!(
                    "Rate limit reached: too many calls of this tool; retry in {seconds:.0} s. Nothing was run."
                ),
                Some(seconds),
            )
        }
        None => (
            "Rate limit reached: too many calls of this tool in flight at once; retry when one of them has finished. Nothing was run."
                .to_string(),
            None,
        ),
    };
    let mut result = CallToolResult::error(vec![Content::text(text)]);
    if let Some(seconds) = seconds {
        let mut meta = rmcp::model::MetaObject::new();
        meta.0
            .insert("retryAfterSeconds".into(), serde_json::json!(seconds));
        result.meta = Some(meta);
    }
    result
}

fn target_error_result(error: &TargetError) -> CallToolResult {
    CallToolResult::error(vec![Content::text(format!("Tool call failed: {error}"))])
}

/// A target declares a downstream credential this gateway cannot supply.
fn credential_unavailable_result(provider: &str) -> CallToolResult {
    CallToolResult::error(vec![Content::text(format!(
        "This tool needs a credential from provider {provider:?}, which is not configured on this gateway; ask the administrator to add it under [providers] or [api_keys]."
    ))])
}

/// The API refused a token the provider had just issued: another consent would only get
/// another such token, so the caller learns why instead (DESIGN 2.3, issue 9 item 10).
fn fresh_token_refused_result(challenge: Option<&str>) -> CallToolResult {
    let challenge = challenge
        .map(|c| format!(" (WWW-Authenticate: {c})"))
        .unwrap_or_default();
    CallToolResult::error(vec![Content::text(format!(
        "The API answered HTTP 401{challenge} to a token the provider had just issued, so connecting the account again would not help. The provider issues tokens this API does not accept: the administrator should check the RFC 8707 `resource` (the target credential's or the provider's) and the scopes."
    ))])
}

/// A credential could not be obtained for a reason other than missing consent.
fn credential_error_result(error: &IdentityError) -> CallToolResult {
    if error.is_store_unavailable() {
        // Where the store is (host, port, database) is the operator's business: it is logged.
        return CallToolResult::error(vec![Content::text(
            "The credential store is unavailable right now, so this tool's downstream credential could not be read. Nothing was run; try again shortly.",
        )]);
    }
    CallToolResult::error(vec![Content::text(format!(
        "Could not obtain the downstream credential for this tool: {error}"
    ))])
}

/// MCP 2025-11-25 "URL Elicitation Required" (-32042): the client shows `url` to the user.
pub const URL_ELICITATION_REQUIRED: ErrorCode = ErrorCode(-32042);

fn elicitation_json(prompt: &ConsentPrompt) -> serde_json::Value {
    json!({"mode": "url", "elicitationId": prompt.id, "url": prompt.url, "message": prompt.message})
}

/// For 2025-11-25 clients that declared `elicitation.url`.
fn consent_error(prompt: &ConsentPrompt) -> ErrorData {
    ErrorData::new(
        URL_ELICITATION_REQUIRED,
        format!(
            "This request requires connecting your {} account.",
            prompt.provider
        ),
        Some(json!({"elicitations": [elicitation_json(prompt)]})),
    )
}

/// For 2026-07-28 clients: an `input_required` result (SEP-2322 MRTR) carrying a URL-mode
/// elicitation; the client retries the call once the user is done.
fn consent_input_required(prompt: &ConsentPrompt) -> rmcp::model::InputRequiredResult {
    let request =
        rmcp::model::ElicitRequest::new(rmcp::model::ElicitRequestParams::UrlElicitationParams {
            meta: None,
            message: prompt.message.clone(),
            url: prompt.url.clone(),
            elicitation_id: prompt.id.clone(),
        });
    let mut requests = rmcp::model::InputRequests::new();
    requests.insert(
        prompt.id.clone(),
        rmcp::model::InputRequest::Elicitation(request),
    );
    rmcp::model::InputRequiredResult::from_input_requests(requests)
}

/// For every other client: an `isError` result whose text holds the absolute URL.
fn consent_tool_result(prompt: &ConsentPrompt) -> CallToolResult {
    CallToolResult::error(vec![Content::text(format!(
        "{} Open this URL in a browser: {}\nThen call the tool again.",
        prompt.message, prompt.url
    ))])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt() -> ConsentPrompt {
        ConsentPrompt {
            id: "c-1".into(),
            url: "https://gw.example/oauth2/connect/c-1".into(),
            provider: "github".into(),
            message: "Connect your github account.".into(),
        }
    }

    fn text(result: &CallToolResult) -> String {
        result
            .content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect()
    }

    #[test]
    fn the_consent_channel_follows_revision_and_declared_capability() {
        use ProtocolVersion as V;
        let table = [
            (Some(V::V_2026_07_28), true, ConsentChannel::InputRequired),
            (Some(V::V_2026_07_28), false, ConsentChannel::ToolResult),
            (
                Some(V::V_2025_11_25),
                true,
                ConsentChannel::ElicitationError,
            ),
            (Some(V::V_2025_11_25), false, ConsentChannel::ToolResult),
            // Earlier revisions have no URL elicitation, whatever a client claims.
            (Some(V::V_2025_06_18), true, ConsentChannel::ToolResult),
            (Some(V::V_2025_03_26), true, ConsentChannel::ToolResult),
            (None, true, ConsentChannel::ToolResult),
        ];
        for (version, declared, expected) in table {
            assert_eq!(
                ConsentChannel::for_client(version.as_ref(), declared),
                expected,
                "{version:?} declared={declared}"
            );
        }
    }

    #[test]
    fn a_consent_reaches_each_channel_in_its_own_shape() {
        let Ok(CallToolResponse::InputRequired(input)) = respond(
            CallOutcome::NeedsConsent(prompt()),
            ConsentChannel::InputRequired,
        ) else {
            panic!("2026-07-28 gets input_required");
        };
        let input = serde_json::to_value(&input).unwrap();
        assert_eq!(input["inputRequests"]["c-1"]["params"]["url"], prompt().url);
        assert_eq!(input["inputRequests"]["c-1"]["params"]["mode"], "url");

        let Err(error) = respond(
            CallOutcome::NeedsConsent(prompt()),
            ConsentChannel::ElicitationError,
        ) else {
            panic!("2025-11-25 gets -32042");
        };
        assert_eq!(error.code, URL_ELICITATION_REQUIRED);
        let data = error.data.unwrap();
        assert_eq!(data["elicitations"][0]["elicitationId"], "c-1");
        assert_eq!(data["elicitations"][0]["url"], prompt().url);

        let Ok(CallToolResponse::Complete(result)) = respond(
            CallOutcome::NeedsConsent(prompt()),
            ConsentChannel::ToolResult,
        ) else {
            panic!("others get a result");
        };
        assert_eq!(result.is_error, Some(true));
        assert!(text(&result).contains(&prompt().url));
    }

    fn complete(outcome: CallOutcome) -> CallToolResult {
        match respond(outcome, ConsentChannel::ElicitationError) {
            Ok(CallToolResponse::Complete(result)) => result,
            other => panic!("expected a result, got {other:?}"),
        }
    }

    #[test]
    fn a_target_answer_passes_through_unchanged() {
        let mut answer = CallToolResult::success(vec![Content::text("hi")]);
        answer.structured_content = Some(json!({"n": 1}));
        answer.meta = Some(rmcp::model::MetaObject(
            json!({"trace": "x"}).as_object().unwrap().clone(),
        ));
        let shown = complete(CallOutcome::Answered(answer.clone()));
        assert_eq!(
            serde_json::to_value(&shown).unwrap(),
            serde_json::to_value(&answer).unwrap()
        );
    }

    #[test]
    fn failures_are_is_error_results_that_say_what_to_do() {
        let shown = complete(CallOutcome::InvalidArguments(vec![
            "/id: type: 7 is not of type \"string\"".into(),
        ]));
        assert_eq!(shown.is_error, Some(true));
        assert!(text(&shown).contains("- /id: type:"));
        assert!(text(&shown).contains("call the tool again"));

        let shown = complete(CallOutcome::CredentialUnconfigured {
            provider: "github".into(),
        });
        assert!(text(&shown).contains("\"github\""));
        assert!(text(&shown).contains("[providers]"));

        let shown = complete(CallOutcome::FreshTokenRefused {
            challenge: Some("Bearer error=\"invalid_token\"".into()),
        });
        assert!(text(&shown).contains("WWW-Authenticate: Bearer error"));
        assert!(text(&shown).contains("resource"));

        let shown = complete(CallOutcome::TargetFailed(TargetError::Timeout(250)));
        assert!(text(&shown).contains("within 250 ms"));
    }
}
