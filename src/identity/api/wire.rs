//! Wire shapes of the AgentCore Identity data plane (restJson1), as botocore's service model
//! `bedrock-agentcore` 2024-02-28 defines them, and their validation.
//!
//! Every member is read as optional so that a missing required member is reported by its
//! wire name, like the managed service does; constraints (length, pattern, enum) are the
//! model's. Unknown members are ignored (restJson1 servers must tolerate new members).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::ApiError;

/// Parses a request body: malformed JSON or a wrong member type is a ValidationException
/// (`CannotParse`) naming the member.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // serde_json messages may quote the input (`invalid type: string "eyJ..."`), which can be
        // a token: say where and what kind of mistake, never the value.
        let what = match inner.classify() {
            serde_json::error::Category::Data => "wrong type or shape",
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                "malformed JSON"
            }
            serde_json::error::Category::Io => "unreadable body",
        };
        let syntax = what == "malformed JSON";
        let message = if syntax || path.is_empty() || path == "." || path == "?" {
            format!("request body: {what} (a JSON object is expected)")
        } else {
            format!("{path}: {what}")
        };
        ApiError::cannot_parse(message)
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetWorkloadAccessTokenRequest {
    pub workload_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetWorkloadAccessTokenForJwtRequest {
    pub workload_name: Option<String>,
    pub user_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetWorkloadAccessTokenForUserIdRequest {
    pub workload_name: Option<String>,
    pub user_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetResourceOauth2TokenRequest {
    pub workload_identity_token: Option<String>,
    pub resource_credential_provider_name: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub oauth2_flow: Option<String>,
    pub session_uri: Option<String>,
    pub resource_oauth2_return_url: Option<String>,
    pub force_authentication: Option<bool>,
    pub custom_parameters: Option<BTreeMap<String, String>>,
    pub custom_state: Option<String>,
    pub resources: Option<Vec<String>>,
    pub audiences: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompleteResourceTokenAuthRequest {
    pub user_identifier: Option<UserIdentifier>,
    pub session_uri: Option<String>,
}

/// A union: exactly one member.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserIdentifier {
    pub user_token: Option<String>,
    pub user_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetResourceApiKeyRequest {
    pub workload_identity_token: Option<String>,
    pub resource_credential_provider_name: Option<String>,
}

/// `Oauth2FlowType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oauth2Flow {
    UserFederation,
    M2m,
}

/// A model pattern as text (for messages) and a check for it.
pub type Pattern = (&'static str, fn(&str) -> bool);

/// One string member's constraints, as in the model.
pub struct Rule {
    pub min: usize,
    pub max: usize,
    pub pattern: Option<Pattern>,
}

fn workload_name_chars(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn provider_name_chars(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
}

fn custom_key_chars(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `[A-Za-z0-9-_=]+.[A-Za-z0-9-_=]+.[A-Za-z0-9-_=]+`: a compact JWS.
fn jws_shape(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '='))
        })
}

/// `urn:ietf:params:oauth:request_uri:[a-zA-Z0-9-._~]+`.
pub fn session_id(s: &str) -> Option<&str> {
    s.strip_prefix(crate::identity::consent::SESSION_URI_PREFIX)
        .filter(|id| {
            !id.is_empty()
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~'))
        })
}

fn request_uri(s: &str) -> bool {
    session_id(s).is_some()
}

/// `\w+:(\/?\/?)[^\s]+`.
fn return_url(s: &str) -> bool {
    match s.split_once(':') {
        Some((scheme, rest)) => {
            !scheme.is_empty()
                && scheme.chars().all(|c| c.is_alphanumeric() || c == '_')
                && !rest.trim_start_matches('/').is_empty()
                && !rest.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

pub const WORKLOAD_NAME: Rule = Rule {
    min: 3,
    max: 255,
    pattern: Some(("[A-Za-z0-9_.-]", workload_name_chars)),
};
pub const USER_TOKEN: Rule = Rule {
    min: 1,
    max: 131_072,
    pattern: Some(("[A-Za-z0-9-_=]+.[A-Za-z0-9-_=]+.[A-Za-z0-9-_=]+", jws_shape)),
};
pub const USER_ID: Rule = Rule {
    min: 1,
    max: 128,
    pattern: None,
};
pub const WORKLOAD_TOKEN: Rule = Rule {
    min: 1,
    max: 131_072,
    pattern: None,
};
pub const PROVIDER_NAME: Rule = Rule {
    min: 1,
    max: 128,
    pattern: Some(("[a-zA-Z0-9\\-_]", provider_name_chars)),
};
pub const SCOPE: Rule = Rule {
    min: 1,
    max: 128,
    pattern: None,
};
pub const SESSION_URI: Rule = Rule {
    min: 1,
    max: 1024,
    pattern: Some((
        "urn:ietf:params:oauth:request_uri:[a-zA-Z0-9-._~]+",
        request_uri,
    )),
};
pub const RETURN_URL: Rule = Rule {
    min: 1,
    max: 2048,
    pattern: Some(("\\w+:(\\/?\\/?)[^\\s]+", return_url)),
};
pub const CUSTOM_KEY: Rule = Rule {
    min: 1,
    max: 256,
    pattern: Some(("[a-zA-Z0-9\\-_\\.]", custom_key_chars)),
};
pub const CUSTOM_VALUE: Rule = Rule {
    min: 1,
    max: 2048,
    pattern: None,
};
pub const CUSTOM_STATE: Rule = Rule {
    min: 1,
    max: 4096,
    pattern: None,
};
pub const RESOURCE: Rule = Rule {
    min: 1,
    max: 2048,
    pattern: None,
};

/// Parameters of the authorization and token requests that the gateway itself sets or that
/// define the grant (RFC 6749 sections 4.1, 4.4 and 6, RFC 7636 section 4, RFC 7521
/// section 4.2, RFC 8693 section 2.1, RFC 8707 section 2, RFC 9101 section 5, OpenID Connect
/// Core 3.1.2.1). As `customParameters` they would override the gateway's own values
/// (`redirect_uri`, `state`, PKCE) or widen a grant past the workload's limits (`scope`,
/// `resource`), so they are refused; `scopes`, `resources` and `audiences` carry the
/// legitimate ones.
const PROTOCOL_PARAMETERS: &[&str] = &[
    "response_type",
    "response_mode",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code",
    "code_challenge",
    "code_challenge_method",
    "code_verifier",
    "grant_type",
    "refresh_token",
    "username",
    "password",
    "assertion",
    "subject_token",
    "subject_token_type",
    "actor_token",
    "actor_token_type",
    "requested_token_type",
    "resource",
    "request",
    "request_uri",
];

/// `customParameters.<name>` must not be one of [`PROTOCOL_PARAMETERS`] (compared without
/// case: some servers read parameter names case-insensitively).
pub fn not_a_protocol_parameter(name: &str) -> Result<(), ApiError> {
    if PROTOCOL_PARAMETERS
        .iter()
        .any(|reserved| reserved.eq_ignore_ascii_case(name))
    {
        return Err(ApiError::field(
            &format!("customParameters.{name}"),
            "is an OAuth 2.0 protocol parameter, which the gateway sets itself (use scopes, resources or audiences)",
        ));
    }
    Ok(())
}

/// Checks one string member; the message names the member and the rule, never the value
/// (members such as `userToken` are secrets).
pub fn check<'a>(field: &str, value: &'a str, rule: &Rule) -> Result<&'a str, ApiError> {
    let length = value.chars().count();
    let fits = (rule.min..=rule.max).contains(&length);
    match rule.pattern {
        Some((text, matches)) if !fits || !matches(value) => {
            // Character-class patterns read best with the length folded in: `[a-z]{1,128}`.
            let shown = if text.ends_with(']') {
                format!("{text}{{{},{}}}", rule.min, rule.max)
            } else {
                format!("{text} (length {}-{})", rule.min, rule.max)
            };
            Err(ApiError::field(field, format!("must match {shown}")))
        }
        None if !fits => Err(ApiError::field(
            field,
            format!("length must be {}-{}", rule.min, rule.max),
        )),
        _ => Ok(value),
    }
}

/// A required string member.
pub fn required<'a>(
    field: &str,
    value: Option<&'a String>,
    rule: &Rule,
) -> Result<&'a str, ApiError> {
    match value {
        Some(value) => check(field, value, rule),
        None => Err(ApiError::field(field, "is required")),
    }
}

/// An optional string member.
pub fn optional<'a>(
    field: &str,
    value: Option<&'a String>,
    rule: &Rule,
) -> Result<Option<&'a str>, ApiError> {
    value.map(|v| check(field, v, rule)).transpose()
}

/// Each item of a list member.
pub fn each(field: &str, values: &[String], rule: &Rule) -> Result<(), ApiError> {
    for (i, value) in values.iter().enumerate() {
        check(&format!("{field}[{i}]"), value, rule)?;
    }
    Ok(())
}

pub fn oauth2_flow(value: Option<&String>) -> Result<Oauth2Flow, ApiError> {
    match value.map(String::as_str) {
        Some("USER_FEDERATION") => Ok(Oauth2Flow::UserFederation),
        Some("M2M") => Ok(Oauth2Flow::M2m),
        Some("ON_BEHALF_OF_TOKEN_EXCHANGE") => Err(ApiError::field(
            "oauth2Flow",
            "ON_BEHALF_OF_TOKEN_EXCHANGE is not supported by this gateway (USER_FEDERATION or M2M)",
        )),
        Some(_) => Err(ApiError::field(
            "oauth2Flow",
            "must be one of USER_FEDERATION, M2M, ON_BEHALF_OF_TOKEN_EXCHANGE",
        )),
        None => Err(ApiError::field("oauth2Flow", "is required")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(result: Result<impl std::fmt::Debug, ApiError>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn provider_name_errors_name_the_field_and_the_pattern() {
        assert_eq!(
            message(check(
                "resourceCredentialProviderName",
                "bad name",
                &PROVIDER_NAME
            )),
            "resourceCredentialProviderName: must match [a-zA-Z0-9\\-_]{1,128}"
        );
        assert!(
            check(
                "resourceCredentialProviderName",
                "git-hub_1",
                &PROVIDER_NAME
            )
            .is_ok()
        );
        let long = "a".repeat(129);
        assert!(check("resourceCredentialProviderName", &long, &PROVIDER_NAME).is_err());
    }

    #[test]
    fn workload_names_follow_the_model() {
        assert!(check("workloadName", "ab", &WORKLOAD_NAME).is_err());
        assert!(check("workloadName", "my-agent.v2_x", &WORKLOAD_NAME).is_ok());
        assert!(check("workloadName", "my agent", &WORKLOAD_NAME).is_err());
    }

    #[test]
    fn session_uris_need_the_request_uri_urn() {
        assert_eq!(
            session_id("urn:ietf:params:oauth:request_uri:abc-_.~9"),
            Some("abc-_.~9")
        );
        assert_eq!(session_id("urn:ietf:params:oauth:request_uri:"), None);
        assert_eq!(session_id("urn:ietf:params:oauth:request_uri:a/b"), None);
        assert_eq!(session_id("abc"), None);
    }

    #[test]
    fn user_tokens_must_look_like_a_jws_and_values_are_never_echoed() {
        assert!(check("userToken", "a.b.c", &USER_TOKEN).is_ok());
        let err = message(check("userToken", "secret-not-a-jwt", &USER_TOKEN));
        assert!(err.starts_with("userToken: must match"), "{err}");
        assert!(!err.contains("secret-not-a-jwt"));
    }

    #[test]
    fn return_urls_follow_the_model_pattern() {
        assert!(return_url("https://app.example.com/cb"));
        assert!(return_url("http://127.0.0.1:9/cb?x=1"));
        assert!(!return_url("no scheme"));
        assert!(!return_url("https://has space"));
    }

    #[test]
    fn malformed_json_and_wrong_types_are_cannot_parse_without_values() {
        let err = parse::<GetResourceApiKeyRequest>(b"{not json").unwrap_err();
        assert!(err.to_string().contains("malformed JSON"), "{err}");
        let err = parse::<GetResourceOauth2TokenRequest>(br#"{"scopes": "eyJsecret"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("scopes: wrong type"), "{err}");
        assert!(!err.contains("eyJsecret"));
        assert!(parse::<GetResourceApiKeyRequest>(b"").is_ok());
        assert!(parse::<GetResourceApiKeyRequest>(b"[1]").is_err());
    }

    #[test]
    fn custom_parameters_cannot_set_protocol_parameters() {
        for name in ["scope", "Redirect_URI", "state", "resource", "client_id"] {
            let err = message(not_a_protocol_parameter(name));
            assert!(
                err.starts_with(&format!(
                    "customParameters.{name}: is an OAuth 2.0 protocol parameter"
                )),
                "{err}"
            );
        }
        for name in ["audience", "prompt", "access_type", "login_hint"] {
            assert!(not_a_protocol_parameter(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn flows_outside_the_supported_two_are_validation_errors() {
        assert_eq!(
            oauth2_flow(Some(&"M2M".to_string())).unwrap(),
            Oauth2Flow::M2m
        );
        assert!(
            message(oauth2_flow(Some(&"ON_BEHALF_OF_TOKEN_EXCHANGE".into())))
                .contains("not supported")
        );
        assert_eq!(message(oauth2_flow(None)), "oauth2Flow: is required");
    }
}
