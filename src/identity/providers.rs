//! Downstream providers at run time: endpoints (from presets, explicit config, RFC 8414 /
//! OIDC discovery, or an MCP server's RFC 9728 metadata, on first use) and the OAuth client
//! built on them.

use std::time::Duration;

use serde::Deserialize;
use tokio::sync::OnceCell;
use url::Url;

use super::IdentityError;
use std::sync::Arc;

use super::oauth::{OAuthClient, TokenEndpoint};
use super::settings::{ProviderConfig, ProviderEndpoints};

const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The endpoints a provider answers on.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub authorization: Url,
    pub token: Url,
    /// The issuer, when known from discovery; checked against the RFC 9207 `iss` parameter.
    pub issuer: Option<String>,
    /// Scopes the resource's metadata suggests (RFC 9728 `scopes_supported`), asked for when
    /// neither the provider nor the credential names any.
    pub scopes: Vec<String>,
}

#[derive(Deserialize)]
struct Metadata {
    issuer: Option<String>,
    authorization_endpoint: String,
    token_endpoint: String,
}

pub struct Provider {
    pub config: ProviderConfig,
    http: reqwest::Client,
    redirect_uri: String,
    resolved: OnceCell<(Endpoints, Arc<dyn TokenEndpoint>)>,
}

impl Provider {
    pub fn new(config: ProviderConfig, http: reqwest::Client, redirect_uri: String) -> Provider {
        Provider {
            config,
            http,
            redirect_uri,
            resolved: OnceCell::new(),
        }
    }

    /// Endpoints and client, discovered once; a failed discovery is retried on the next call.
    pub async fn resolve(&self) -> Result<&(Endpoints, Arc<dyn TokenEndpoint>), IdentityError> {
        self.resolved
            .get_or_try_init(|| async {
                let endpoints = self.endpoints().await?;
                let client = OAuthClient::new(
                    self.http.clone(),
                    &self.config.client_id,
                    &self.config.client_secret,
                    self.config.auth_method,
                    &endpoints.authorization,
                    &endpoints.token,
                    &self.redirect_uri,
                )
                .map_err(|e| IdentityError::Provider {
                    provider: self.config.name.clone(),
                    reason: e.to_string(),
                })?;
                let client: Arc<dyn TokenEndpoint> = Arc::new(client);
                Ok((endpoints, client))
            })
            .await
    }

    /// A provider whose endpoints are already known and answered by `endpoint` (unit tests
    /// script the token endpoint with this).
    #[cfg(test)]
    pub fn with_endpoint(
        config: ProviderConfig,
        endpoints: Endpoints,
        endpoint: Arc<dyn TokenEndpoint>,
    ) -> Provider {
        Provider {
            config,
            http: reqwest::Client::new(),
            redirect_uri: String::new(),
            resolved: OnceCell::new_with(Some((endpoints, endpoint))),
        }
    }

    async fn endpoints(&self) -> Result<Endpoints, IdentityError> {
        let url = match &self.config.endpoints {
            ProviderEndpoints::Explicit {
                authorization,
                token,
            } => {
                return Ok(Endpoints {
                    authorization: authorization.clone(),
                    token: token.clone(),
                    issuer: None,
                    scopes: Vec::new(),
                });
            }
            ProviderEndpoints::ProtectedResource(resource) => {
                return super::resource_metadata::discover(&self.http, resource)
                    .await
                    .map_err(|reason| IdentityError::Provider {
                        provider: self.config.name.clone(),
                        reason: format!("discovery from {resource}'s metadata: {reason}"),
                    });
            }
            ProviderEndpoints::Discovery(url) => url,
        };
        let fail = |reason: String| IdentityError::Provider {
            provider: self.config.name.clone(),
            reason: format!("discovery at {url}: {reason}"),
        };
        let response = self
            .http
            .get(url.clone())
            .timeout(DISCOVERY_TIMEOUT)
            .send()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("HTTP {}", response.status())));
        }
        let body = crate::body::read_limited(response, 512 * 1024)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let metadata: Metadata =
            serde_json::from_slice(&body).map_err(|e| fail(format!("invalid metadata: {e}")))?;
        let parse =
            |text: &str| Url::parse(text).map_err(|e| fail(format!("bad endpoint {text:?}: {e}")));
        Ok(Endpoints {
            authorization: parse(&metadata.authorization_endpoint)?,
            token: parse(&metadata.token_endpoint)?,
            issuer: metadata.issuer,
            scopes: Vec::new(),
        })
    }
}
