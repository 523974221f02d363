//! The gateway's own credentials for a target (DESIGN 2.3): API keys from `[api_keys]` and
//! client-credentials tokens (RFC 6749 section 4.4), cached in memory. No user and no vault
//! take part, so the same credentials serve a call, an MCP server's discovery at load
//! (DESIGN 2.8: "discovered ... with the target's own credential") and `portcullis validate`,
//! which has no vault open.

use std::collections::BTreeMap;

use parking_lot::Mutex;

use super::bounded::BoundedMap;
use super::consent::now;
use super::locks::KeyedLocks;
use super::providers::Provider;
use super::tokens::{resource, resource_params, scopes};
use super::{Credential, CredentialRequest, IdentityError, REFRESH_MARGIN_SECONDS, provider_error};
use crate::credential::{
    ApiKeyCredential, Credentials, GrantType, Injection, OAuthCredential, TargetCredentials,
};
use crate::secret::Secret;

/// How long a client-credentials token without `expires_in` is reused.
const DEFAULT_M2M_LIFETIME_SECONDS: u64 = 3600;
/// Client-credentials tokens kept (one per provider, scope set, resource and parameters).
const MAX_M2M_TOKENS: usize = 1_024;

/// The configured providers and API keys, and the client-credentials tokens obtained with them.
pub struct ServiceCredentials {
    providers: BTreeMap<String, Provider>,
    api_keys: BTreeMap<String, Secret>,
    /// Client-credentials tokens: not personal, re-obtainable, so kept in memory only.
    m2m: Mutex<BoundedMap<String, Secret>>,
    /// One token request per cache key at a time.
    locks: KeyedLocks,
}

impl ServiceCredentials {
    pub fn new(providers: Vec<Provider>, api_keys: BTreeMap<String, Secret>) -> ServiceCredentials {
        ServiceCredentials {
            providers: providers
                .into_iter()
                .map(|p| (p.config.name.clone(), p))
                .collect(),
            api_keys,
            m2m: Mutex::new(BoundedMap::new(MAX_M2M_TOKENS)),
            locks: KeyedLocks::default(),
        }
    }

    pub(super) fn provider(&self, name: &str) -> Result<&Provider, IdentityError> {
        self.providers
            .get(name)
            .ok_or_else(|| IdentityError::UnknownProvider(name.to_string()))
    }

    pub(super) fn has_provider(&self, name: &str) -> bool {
        self.providers.contains_key(name)
    }

    /// The `[api_keys.<name>]` key from the config.
    pub(super) fn configured_api_key(&self, name: &str) -> Option<&Secret> {
        self.api_keys.get(name)
    }

    pub(super) fn api_key(&self, api_key: &ApiKeyCredential) -> Result<Injection, IdentityError> {
        let value = self
            .api_keys
            .get(&api_key.provider)
            .ok_or_else(|| IdentityError::UnknownApiKey(api_key.provider.clone()))?;
        // The catalog loads no target whose key has nowhere to go; say so rather than guess.
        let (Some(location), Some(name)) = (api_key.location, api_key.parameter_name.clone())
        else {
            return Err(IdentityError::Provider {
                provider: api_key.provider.clone(),
                reason: "the target does not say where the API key goes".into(),
            });
        };
        let value = match &api_key.prefix {
            Some(prefix) => Secret::new(format!("{prefix}{}", value.expose())),
            None => value.clone(),
        };
        Ok(Injection::ApiKey {
            location,
            name,
            value,
        })
    }

    /// A client-credentials token for `oauth`, from the cache while it has more than
    /// [`REFRESH_MARGIN_SECONDS`] left, else from the provider (one request per key at a time).
    pub(super) async fn client_credentials(
        &self,
        oauth: &OAuthCredential,
        request: &CredentialRequest<'_>,
    ) -> Result<Credential, IdentityError> {
        let provider = self.provider(&oauth.provider)?;
        let scopes = scopes(provider, oauth, request.tool_scopes);
        let resource = resource(provider, oauth, request);
        let cache_key = format!(
            "{}\n{}\n{}\n{:?}",
            oauth.provider,
            scopes.join(" "),
            resource.unwrap_or(""),
            oauth.custom_parameters
        );
        let cached = || {
            self.m2m
                .lock()
                .get(&cache_key, now() + REFRESH_MARGIN_SECONDS)
                .cloned()
        };
        if let Some(token) = cached() {
            return Ok(Credential::Ready(Injection::Bearer(token)));
        }
        let lock = self.locks.get(&cache_key);
        let _guard = lock.lock().await;
        if let Some(token) = cached() {
            return Ok(Credential::Ready(Injection::Bearer(token)));
        }
        let (_, client) = provider.resolve().await?;
        let mut extra = resource_params(resource);
        extra.extend(
            oauth
                .custom_parameters
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        let granted = client
            .client_credentials(&scopes, &extra)
            .await
            .map_err(|e| provider_error(&oauth.provider, e))?;
        let expires = now() + granted.expires_in.unwrap_or(DEFAULT_M2M_LIFETIME_SECONDS);
        self.m2m
            .lock()
            .insert(cache_key, granted.access_token.clone(), expires, now());
        Ok(Credential::Ready(Injection::Bearer(granted.access_token)))
    }

    /// Drops a client-credentials token a target refused, so that the next ask gets a new one.
    pub(super) fn forget(&self, refused: &Secret) {
        self.m2m
            .lock()
            .retain(|_, token| token.expose() != refused.expose());
    }

    /// (entries, bound) of the token cache, for `/metrics` (DESIGN 3.2 invariant 9).
    pub(super) fn cache_size(&self) -> (usize, usize) {
        let m2m = self.m2m.lock();
        (m2m.len(), m2m.capacity())
    }

    /// The gateway's own credential for a target, without a user: an API key or a
    /// client-credentials token for `resource` (the target's RFC 8707 resource).
    pub async fn own_credential(
        &self,
        credentials: &Credentials,
        resource: Option<&str>,
    ) -> Result<Injection, IdentityError> {
        match credentials {
            Credentials::ApiKey(api_key) => self.api_key(api_key),
            Credentials::Oauth(oauth) if oauth.grant_type == GrantType::ClientCredentials => {
                let request = CredentialRequest {
                    tool_scopes: &[],
                    resource: None,
                    target_resource: resource,
                    force_authentication: false,
                };
                match self.client_credentials(oauth, &request).await? {
                    Credential::Ready(injection) => Ok(injection),
                    Credential::NeedsConsent(_) => Err(IdentityError::Internal(
                        "a client-credentials grant asked for consent".into(),
                    )),
                }
            }
            Credentials::Oauth(oauth) => Err(IdentityError::Internal(format!(
                "the {:?} credential is a user's (AUTHORIZATION_CODE): only a user's call has one",
                oauth.provider
            ))),
        }
    }
}

impl TargetCredentials for ServiceCredentials {
    fn own_credential<'a>(
        &'a self,
        credentials: &'a Credentials,
        resource: Option<&'a str>,
    ) -> crate::credential::BoxFuture<'a, Result<Injection, String>> {
        Box::pin(async move {
            ServiceCredentials::own_credential(self, credentials, resource)
                .await
                .map_err(|error| error.to_string())
        })
    }
}

impl std::fmt::Debug for ServiceCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceCredentials")
            .field("providers", &self.providers.keys().collect::<Vec<_>>())
            .field("api_keys", &self.api_keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}
