//! A provider found from an MCP server's own metadata: the MCP authorization spec (2025-11-25,
//! "Authorization Server Discovery") on RFC 9728 and RFC 8414, so that an upstream that
//! follows the spec needs no hand-written endpoints (`protected_resource = "<server URL>"`).
//!
//! 1. The protected resource metadata (PRM): the URL a 401 names in `WWW-Authenticate:
//!    Bearer resource_metadata="..."` (RFC 9728 section 5.1) if the server answers an
//!    unauthenticated `initialize` that way, else the well-known URIs of RFC 9728 section 3.1
//!    (the path-inserted one first, then the root).
//! 2. Its `resource` must be the server's URL (section 3.3: metadata for another resource is an
//!    impersonation attempt and is refused).
//! 3. The first of `authorization_servers`; its metadata from the RFC 8414 section 3.1 and
//!    OIDC Discovery URIs in the MCP spec's order, whose `issuer` must be that server (RFC 8414
//!    section 3.3), and which must offer PKCE S256 (the MCP spec refuses to go on without it).
//! 4. Scopes: the challenge's `scope`, else the PRM's `scopes_supported`; asked for only when
//!    neither the provider nor the target names any.
//!
//! Every URL the metadata hands out must be https (or http on a loopback address), as the
//! config demands of hand-written endpoints.

use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use url::Url;

use super::providers::Endpoints;

const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_METADATA_BYTES: usize = 512 * 1024;

#[derive(Deserialize)]
struct ResourceMetadata {
    resource: String,
    #[serde(default)]
    authorization_servers: Vec<String>,
    #[serde(default)]
    scopes_supported: Vec<String>,
}

#[derive(Deserialize)]
struct ServerMetadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    #[serde(default)]
    code_challenge_methods_supported: Vec<String>,
}

/// Discovers how to authorize to `resource`; the error names the step and URL that failed.
pub async fn discover(http: &reqwest::Client, resource: &Url) -> Result<Endpoints, String> {
    let challenge = probe(http, resource).await;
    let (metadata_url, metadata) = match challenge.as_ref().and_then(|c| c.metadata_url.clone()) {
        Some(url) => {
            let url = allowed(&url, "the 401's resource_metadata")?;
            let metadata = fetch::<ResourceMetadata>(http, &url).await?;
            (url, metadata)
        }
        None => first_found(http, &resource_metadata_urls(resource)).await?,
    };
    if !same_resource(&metadata.resource, resource) {
        return Err(format!(
            "{metadata_url} describes {:?}, not {resource} (RFC 9728 section 3.3: refused)",
            metadata.resource
        ));
    }
    let Some(issuer) = metadata.authorization_servers.first() else {
        return Err(format!("{metadata_url} names no authorization_servers"));
    };
    let issuer_url = allowed(issuer, "authorization_servers[0]")?;
    let (server_url, server) =
        first_found::<ServerMetadata>(http, &server_metadata_urls(&issuer_url)).await?;
    if server.issuer.trim_end_matches('/') != issuer.trim_end_matches('/') {
        return Err(format!(
            "{server_url} is the metadata of {:?}, not of {issuer} (RFC 8414 section 3.3: refused)",
            server.issuer
        ));
    }
    if !server
        .code_challenge_methods_supported
        .iter()
        .any(|m| m == "S256")
    {
        return Err(format!(
            "{server_url} does not list S256 in code_challenge_methods_supported \
             (the MCP authorization spec requires PKCE S256)"
        ));
    }
    let scopes = match challenge.and_then(|c| c.scope) {
        Some(scope) => scope.split_whitespace().map(String::from).collect(),
        None => metadata.scopes_supported,
    };
    Ok(Endpoints {
        authorization: allowed(&server.authorization_endpoint, "authorization_endpoint")?,
        token: allowed(&server.token_endpoint, "token_endpoint")?,
        issuer: Some(server.issuer),
        scopes,
    })
}

/// What a `WWW-Authenticate: Bearer` challenge said (RFC 6750 section 3, RFC 9728 section 5.1).
struct Challenge {
    metadata_url: Option<String>,
    scope: Option<String>,
}

/// An unauthenticated `initialize`, as an MCP client's first request; a spec-following server
/// answers 401 with its challenge. Anything else (no 401, no header, unreachable) leaves the
/// well-known URIs to try.
async fn probe(http: &reqwest::Client, resource: &Url) -> Option<Challenge> {
    let initialize = serde_json::json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "portcullis", "version": env!("CARGO_PKG_VERSION")}}
    });
    let response = http
        .post(resource.clone())
        .header("accept", "application/json, text/event-stream")
        .json(&initialize)
        .timeout(DISCOVERY_TIMEOUT)
        .send()
        .await
        .ok()?;
    if response.status() != StatusCode::UNAUTHORIZED {
        return None;
    }
    let header = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.trim_start().to_ascii_lowercase().starts_with("bearer"))?
        .to_string();
    Some(Challenge {
        metadata_url: auth_param(&header, "resource_metadata"),
        scope: auth_param(&header, "scope"),
    })
}

/// RFC 9728 section 3.1: the well-known suffix inserted between host and path, then at the root.
fn resource_metadata_urls(resource: &Url) -> Vec<Url> {
    well_known_urls(resource, &["oauth-protected-resource"], false)
}

/// The MCP spec's order: RFC 8414 path-inserted, OIDC path-inserted, OIDC path-appended; for an
/// issuer without a path, RFC 8414 then OIDC at the root.
fn server_metadata_urls(issuer: &Url) -> Vec<Url> {
    well_known_urls(
        issuer,
        &["oauth-authorization-server", "openid-configuration"],
        true,
    )
}

fn well_known_urls(base: &Url, suffixes: &[&str], oidc_appended: bool) -> Vec<Url> {
    let path = base.path().trim_end_matches('/');
    let mut urls = Vec::new();
    let mut at = |path: String| {
        let mut url = base.clone();
        url.set_path(&path);
        url.set_query(None);
        url.set_fragment(None);
        if !urls.contains(&url) {
            urls.push(url);
        }
    };
    for suffix in suffixes {
        at(format!("/.well-known/{suffix}{path}"));
    }
    if path.is_empty() {
        return urls;
    }
    if oidc_appended {
        at(format!("{path}/.well-known/openid-configuration"));
    } else {
        for suffix in suffixes {
            at(format!("/.well-known/{suffix}"));
        }
    }
    urls
}

/// The first of `urls` that answers 200 with metadata; otherwise every URL's failure.
async fn first_found<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    urls: &[Url],
) -> Result<(Url, T), String> {
    let mut failures = Vec::new();
    for url in urls {
        match fetch(http, url).await {
            Ok(metadata) => return Ok((url.clone(), metadata)),
            Err(failure) => failures.push(failure),
        }
    }
    Err(failures.join("; "))
}

async fn fetch<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &Url,
) -> Result<T, String> {
    let response = http
        .get(url.clone())
        .header("accept", "application/json")
        .timeout(DISCOVERY_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("{url}: {}", e.without_url()))?;
    if !response.status().is_success() {
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    let body = crate::body::read_limited(response, MAX_METADATA_BYTES)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    serde_json::from_slice(&body).map_err(|e| format!("{url}: invalid metadata: {e}"))
}

/// `text` as a URL the gateway may send requests or browsers to.
fn allowed(text: &str, what: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("{what} {text:?} is not a URL: {e}"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if url.scheme() == "https" || (url.scheme() == "http" && loopback) {
        Ok(url)
    } else {
        Err(format!(
            "{what} {text:?} must be https (http only on loopback addresses)"
        ))
    }
}

/// RFC 9728 section 3.3 asks for an identical identifier; URL parsing only normalises what
/// cannot change the meaning (case of scheme and host, a default port, an empty path).
fn same_resource(claimed: &str, resource: &Url) -> bool {
    Url::parse(claimed).is_ok_and(|claimed| &claimed == resource)
}

/// One auth-param of a challenge (RFC 9110 section 11.2): `name=token` or `name="quoted"`.
fn auth_param(header: &str, name: &str) -> Option<String> {
    let mut rest = header.trim_start();
    // Past the scheme.
    rest = rest.split_once(char::is_whitespace).map(|(_, r)| r)?;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        let (key, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end?..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        if key.trim().eq_ignore_ascii_case(name) {
            return Some(value);
        }
        rest = tail;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn challenge_parameters_are_read_quoted_or_not() {
        let header = r#"Bearer error="invalid_token", resource_metadata="https://s.example/.well-known/oauth-protected-resource/mcp", scope="notes:read notes:write""#;
        assert_eq!(
            auth_param(header, "resource_metadata").unwrap(),
            "https://s.example/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            auth_param(header, "scope").unwrap(),
            "notes:read notes:write"
        );
        assert_eq!(auth_param("Bearer realm=x, scope=a", "scope").unwrap(), "a");
        assert_eq!(
            auth_param(
                r#"Bearer error_description="a \"b\", c", scope="s""#,
                "scope"
            )
            .unwrap(),
            "s"
        );
        assert!(auth_param("Bearer", "scope").is_none());
        assert!(auth_param(r#"Bearer scope="unterminated"#, "scope").is_none());
    }

    #[test]
    fn well_known_uris_follow_rfc_9728_and_the_mcp_order() {
        let strings = |urls: Vec<Url>| urls.into_iter().map(String::from).collect::<Vec<_>>();
        assert_eq!(
            strings(resource_metadata_urls(
                &Url::parse("https://s.example/public/mcp?x=1").unwrap()
            )),
            [
                "https://s.example/.well-known/oauth-protected-resource/public/mcp",
                "https://s.example/.well-known/oauth-protected-resource",
            ]
        );
        assert_eq!(
            strings(server_metadata_urls(
                &Url::parse("https://auth.example/tenant1").unwrap()
            )),
            [
                "https://auth.example/.well-known/oauth-authorization-server/tenant1",
                "https://auth.example/.well-known/openid-configuration/tenant1",
                "https://auth.example/tenant1/.well-known/openid-configuration",
            ]
        );
        assert_eq!(
            strings(server_metadata_urls(
                &Url::parse("https://auth.example").unwrap()
            )),
            [
                "https://auth.example/.well-known/oauth-authorization-server",
                "https://auth.example/.well-known/openid-configuration",
            ]
        );
    }

    #[test]
    fn only_the_resource_itself_and_safe_urls_are_accepted() {
        let resource = Url::parse("https://s.example/mcp").unwrap();
        assert!(same_resource("https://S.example:443/mcp", &resource));
        assert!(!same_resource("https://s.example/other", &resource));
        assert!(!same_resource("https://evil.example/mcp", &resource));
        assert!(allowed("http://127.0.0.1:9/x", "t").is_ok());
        assert!(allowed("http://auth.example/x", "t").is_err());
        assert!(allowed("javascript:alert(1)", "t").is_err());
    }
}
