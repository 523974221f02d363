//! OAuth 2.0 Protected Resource Metadata (RFC 9728) and the `WWW-Authenticate` challenge that
//! points clients at it (RFC 9728 section 5.1, RFC 6750 section 3). This is how an MCP client
//! discovers which authorization server to get a token from (MCP 2025-06-18 authorization,
//! "Authorization Server Discovery").

use serde_json::{Value, json};

use super::AuthError;

/// The path of the metadata document for the resource at `resource_path` (RFC 9728 section
/// 3.1: the well-known segment goes between the host and the resource's path).
pub fn metadata_path(resource_path: &str) -> String {
    format!("/.well-known/oauth-protected-resource{resource_path}")
}

/// The metadata document for the resource `<public_url><resource_path>`.
pub fn protected_resource_metadata(
    public_url: &str,
    resource_path: &str,
    issuer: Option<&str>,
    scopes: &[String],
) -> Value {
    json!({
        "resource": format!("{public_url}{resource_path}"),
        "authorization_servers": issuer.into_iter().collect::<Vec<_>>(),
        "scopes_supported": scopes,
        "bearer_methods_supported": ["header"],
        "resource_name": "Portcullis MCP gateway",
    })
}

/// The challenge for a refused request. Descriptions are fixed strings chosen by the verifier,
/// never token content, and quotes are stripped so the header cannot be broken.
pub fn www_authenticate(error: &AuthError, public_url: &str, resource_path: &str) -> String {
    let metadata = format!("{public_url}{}", metadata_path(resource_path));
    let quote = |s: &str| s.replace(['"', '\\'], "'");
    match error {
        AuthError::MissingToken | AuthError::KeysUnavailable => {
            format!("Bearer resource_metadata=\"{metadata}\"")
        }
        AuthError::InvalidToken(reason) => format!(
            "Bearer error=\"invalid_token\", error_description=\"{}\", resource_metadata=\"{metadata}\"",
            quote(reason)
        ),
        AuthError::InsufficientScope(scopes) => format!(
            "Bearer error=\"insufficient_scope\", scope=\"{}\", resource_metadata=\"{metadata}\"",
            quote(&scopes.join(" "))
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_names_metadata_and_never_breaks_quotes() {
        let header = www_authenticate(
            &AuthError::InvalidToken("bad \"quote\"".into()),
            "https://gw.example.com",
            "/mcp",
        );
        assert_eq!(
            header,
            "Bearer error=\"invalid_token\", error_description=\"bad 'quote'\", resource_metadata=\"https://gw.example.com/.well-known/oauth-protected-resource/mcp\""
        );
    }
}
