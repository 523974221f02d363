//! On whose behalf? The caller's own downstream credentials (DESIGN 2.6, 3.1, 3.2).
//!
//! [`Identity::credential_for`] answers, for one caller and one target credential, either a
//! credential to inject or a consent prompt. Tokens are read from the vault; a token near
//! expiry is refreshed once per key however many calls want it (single flight, store re-read
//! after taking the key's lock); a rotated refresh token is durable before the new access
//! token is used; `invalid_grant` re-reads before giving up.
//!
//! The identity API ([`api`], DESIGN 2.7) drives the same flows for agent code: a workload
//! acting for a user ([`Owner`]) instead of the gateway's own workload acting for an MCP caller.

mod agent;
pub mod api;
mod consent;
mod locks;
mod login;
mod oauth;
mod pages;
mod providers;
pub mod routes;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use rmcp::service::{Peer, RoleServer};

pub use consent::{CONSENT_TTL_SECONDS, ConsentSession};
use consent::{now, random_token};
use locks::KeyedLocks;
pub use oauth::OAuthError;
use providers::Provider;

use crate::catalog::model::{
    ApiKeyCredential, ApiKeyLocation, Credentials, GrantType, OAuthCredential,
};
use crate::config::{Config, ConsentBinding};
use crate::inbound::{Caller, KeyStore};
use crate::vault::{Secret, Store, TokenKey, TokenRecord, VaultError};

/// Access tokens are refreshed this long before they expire, so a call never starts with a
/// token that dies in flight.
pub const REFRESH_MARGIN_SECONDS: u64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("provider {0:?} is not configured on this gateway")]
    UnknownProvider(String),
    #[error("API key {0:?} is not configured on this gateway")]
    UnknownApiKey(String),
    #[error("provider {provider:?}: {reason}")]
    Provider { provider: String, reason: String },
    #[error("vault: {0}")]
    Vault(#[from] VaultError),
    /// A `sessionUri` that is unknown, expired or already used.
    #[error("no live consent session {0:?} (unknown, expired or already completed)")]
    SessionNotFound(String),
    /// The session belongs to another workload or user (DESIGN 3.2 invariant 4).
    #[error("the consent session was started by another {0}")]
    SessionOfAnother(&'static str),
    /// CompleteResourceTokenAuth before the user finished at the provider.
    #[error("the user has not finished authorizing at the provider yet")]
    SessionNotAuthorized,
    #[error("{0}")]
    Internal(String),
}

/// What to put on the downstream request.
#[derive(Debug, Clone)]
pub enum Injection {
    /// RFC 6750 section 2.1 `Authorization: Bearer`.
    Bearer(Secret),
    ApiKey {
        location: ApiKeyLocation,
        name: String,
        value: Secret,
    },
}

/// The user must link their account first: show them `url`.
#[derive(Debug, Clone)]
pub struct ConsentPrompt {
    pub id: String,
    pub url: String,
    pub provider: String,
    pub message: String,
}

#[derive(Debug, Clone)]
pub enum Credential {
    Ready(Injection),
    NeedsConsent(ConsentPrompt),
}

/// Per-call inputs beyond the caller.
#[derive(Debug, Clone, Copy)]
pub struct CredentialRequest<'a> {
    /// Scopes the tool needs in addition to the target's.
    pub tool_scopes: &'a [String],
    /// RFC 8707 resource for the downstream API (an HTTP target's base URL).
    pub resource: Option<&'a str>,
    /// `_meta` asked for a new consent even if a token exists.
    pub force_authentication: bool,
}

/// Who a user is, in the namespace its token key lives in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRef {
    /// Verified by the inbound IdP (an MCP caller, or `GetWorkloadAccessTokenForJWT`).
    Federated { issuer: String, subject: String },
    /// Asserted by a trusted agent (`GetWorkloadAccessTokenForUserId`).
    UserId(String),
}

impl UserRef {
    /// The vault's user key: `<issuer>#<subject>`, or `userid:<id>`. The namespaces cannot
    /// collide: an issuer is an `https://` (or loopback `http://`) URL, never `userid:...`.
    pub fn key(&self) -> String {
        match self {
            UserRef::Federated { issuer, subject } => format!("{issuer}#{subject}"),
            UserRef::UserId(id) => format!("userid:{id}"),
        }
    }
}

/// A workload acting for a user: whose tokens (DESIGN 3.1 token key = workload / user / provider).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub workload: String,
    pub user: UserRef,
}

impl Owner {
    pub fn key(&self, provider: &str) -> TokenKey {
        TokenKey {
            workload: self.workload.clone(),
            user: self.user.key(),
            provider: provider.to_string(),
        }
    }
}

/// What the identity API adds to a consent session.
#[derive(Debug, Clone, Default)]
pub struct ConsentOptions {
    /// Where the browser goes after the provider's callback (an allowed return URL).
    pub return_url: Option<String>,
    /// Echoed to the return URL as `state`.
    pub custom_state: Option<Secret>,
    /// Keep the session after the callback so `sessionUri` polling can see how it ended.
    pub keep_after_callback: bool,
}

pub struct Identity {
    store: Arc<dyn Store>,
    providers: BTreeMap<String, Provider>,
    api_keys: BTreeMap<String, Secret>,
    workload: String,
    binding: ConsentBinding,
    /// With `consent_binding = "app"`, where MCP-triggered consents return the browser.
    default_return_url: Option<String>,
    public_url: String,
    refresh_locks: KeyedLocks,
    /// Client-credentials tokens: not personal, re-obtainable, so kept in memory only.
    m2m: Mutex<HashMap<String, (Secret, u64)>>,
    /// Live MCP sessions waiting for a consent, by consent id (for
    /// `notifications/elicitation/complete`).
    waiting: Mutex<HashMap<String, Peer<RoleServer>>>,
    login: Option<login::LoginClient>,
}

impl Identity {
    pub fn new(
        config: &Config,
        store: Arc<dyn Store>,
        keys: Arc<KeyStore>,
        http: reqwest::Client,
    ) -> Identity {
        let redirect = format!("{}/oauth2/callback", config.server.public_url);
        let providers = config
            .providers
            .iter()
            .map(|(name, p)| {
                (
                    name.clone(),
                    Provider::new(p.clone(), http.clone(), redirect.clone()),
                )
            })
            .collect();
        Identity {
            store,
            providers,
            api_keys: config.api_keys.clone(),
            workload: config.identity.workload.clone(),
            binding: config.identity.consent_binding,
            default_return_url: config
                .identity
                .allowed_return_urls
                .first()
                .map(|u| u.to_string()),
            public_url: config.server.public_url.clone(),
            refresh_locks: KeyedLocks::default(),
            m2m: Mutex::new(HashMap::new()),
            waiting: Mutex::new(HashMap::new()),
            login: login::LoginClient::new(config, keys, http),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn workload(&self) -> &str {
        &self.workload
    }

    fn provider(&self, name: &str) -> Result<&Provider, IdentityError> {
        self.providers
            .get(name)
            .ok_or_else(|| IdentityError::UnknownProvider(name.to_string()))
    }

    /// The gateway's own workload acting for an MCP caller.
    fn owner_of(&self, caller: &Caller) -> Owner {
        Owner {
            workload: self.workload.clone(),
            user: UserRef::Federated {
                issuer: caller.issuer.to_string(),
                subject: caller.subject.to_string(),
            },
        }
    }

    /// The credential `caller` needs for a target, or a consent prompt.
    pub async fn credential_for(
        &self,
        caller: &Caller,
        credentials: &Credentials,
        request: &CredentialRequest<'_>,
    ) -> Result<Credential, IdentityError> {
        match credentials {
            Credentials::ApiKey(api_key) => self.api_key(api_key).map(Credential::Ready),
            Credentials::Oauth(oauth) => match oauth.grant_type {
                GrantType::ClientCredentials => self.client_credentials(oauth, request).await,
                GrantType::AuthorizationCode => {
                    let owner = self.owner_of(caller);
                    self.user_token(&owner, oauth, request, &ConsentOptions::default())
                        .await
                }
            },
        }
    }

    fn api_key(&self, api_key: &ApiKeyCredential) -> Result<Injection, IdentityError> {
        let value = self
            .api_keys
            .get(&api_key.provider)
            .ok_or_else(|| IdentityError::UnknownApiKey(api_key.provider.clone()))?;
        let value = match &api_key.prefix {
            Some(prefix) => Secret::new(format!("{prefix}{}", value.expose())),
            None => value.clone(),
        };
        Ok(Injection::ApiKey {
            location: api_key.location,
            name: api_key.parameter_name.clone(),
            value,
        })
    }

    fn scopes(
        &self,
        provider: &Provider,
        oauth: &OAuthCredential,
        tool_scopes: &[String],
    ) -> Vec<String> {
        let set: BTreeSet<&String> = provider
            .config
            .scopes
            .iter()
            .chain(&oauth.scopes)
            .chain(tool_scopes)
            .collect();
        set.into_iter().cloned().collect()
    }

    fn resource_params(
        &self,
        provider: &Provider,
        resource: Option<&str>,
    ) -> Vec<(String, String)> {
        match resource {
            Some(resource) if provider.config.send_resource_indicator => {
                vec![("resource".to_string(), resource.to_string())]
            }
            _ => vec![],
        }
    }

    async fn client_credentials(
        &self,
        oauth: &OAuthCredential,
        request: &CredentialRequest<'_>,
    ) -> Result<Credential, IdentityError> {
        let provider = self.provider(&oauth.provider)?;
        let scopes = self.scopes(provider, oauth, request.tool_scopes);
        let cache_key = format!(
            "{}\n{}\n{}\n{:?}",
            oauth.provider,
            scopes.join(" "),
            request.resource.unwrap_or(""),
            oauth.custom_parameters
        );
        let fresh = |entry: Option<&(Secret, u64)>| {
            entry
                .filter(|(_, expires)| *expires > now() + REFRESH_MARGIN_SECONDS)
                .map(|(token, _)| token.clone())
        };
        if let Some(token) = fresh(self.m2m.lock().get(&cache_key)) {
            return Ok(Credential::Ready(Injection::Bearer(token)));
        }
        let lock = self.refresh_locks.get(&format!("m2m\n{cache_key}"));
        let _guard = lock.lock().await;
        if let Some(token) = fresh(self.m2m.lock().get(&cache_key)) {
            return Ok(Credential::Ready(Injection::Bearer(token)));
        }
        let (_, client) = provider.resolve().await?;
        let mut extra = self.resource_params(provider, request.resource);
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
        let expires = now() + granted.expires_in.unwrap_or(3600);
        self.m2m
            .lock()
            .insert(cache_key, (granted.access_token.clone(), expires));
        Ok(Credential::Ready(Injection::Bearer(granted.access_token)))
    }

    /// `owner`'s token for an authorization-code credential, refreshed if needed, or a
    /// consent prompt.
    async fn user_token(
        &self,
        owner: &Owner,
        oauth: &OAuthCredential,
        request: &CredentialRequest<'_>,
        options: &ConsentOptions,
    ) -> Result<Credential, IdentityError> {
        let provider = self.provider(&oauth.provider)?;
        let required = self.scopes(provider, oauth, request.tool_scopes);
        let key = owner.key(&oauth.provider);
        let consent =
            |scopes| self.consent(owner, provider, oauth, scopes, request.resource, options);
        if request.force_authentication {
            return consent(required).await;
        }
        let Some(record) = self.store.get_token(&key).await? else {
            return consent(required).await;
        };
        if !required.iter().all(|s| record.scopes.contains(s)) {
            // Ask for the union, so the new grant does not lose what the old one had.
            let union: BTreeSet<String> = required
                .into_iter()
                .chain(record.scopes.iter().cloned())
                .collect();
            return consent(union.into_iter().collect()).await;
        }
        if is_fresh(&record) {
            return Ok(Credential::Ready(Injection::Bearer(record.access_token)));
        }
        self.refresh(
            owner,
            provider,
            oauth,
            &key,
            None,
            required,
            request.resource,
            options,
        )
        .await
    }

    /// The downstream API answered 401 to `used`: forget that access token and refresh once.
    /// A consent prompt comes back if refreshing is impossible.
    pub async fn after_unauthorized(
        &self,
        caller: &Caller,
        credentials: &Credentials,
        used: &Secret,
        request: &CredentialRequest<'_>,
    ) -> Result<Credential, IdentityError> {
        let Credentials::Oauth(oauth) = credentials else {
            return Err(IdentityError::Internal(
                "API keys cannot be refreshed".into(),
            ));
        };
        if oauth.grant_type == GrantType::ClientCredentials {
            self.m2m
                .lock()
                .retain(|_, (token, _)| token.expose() != used.expose());
            return self.client_credentials(oauth, request).await;
        }
        let provider = self.provider(&oauth.provider)?;
        let required = self.scopes(provider, oauth, request.tool_scopes);
        let owner = self.owner_of(caller);
        let key = owner.key(&oauth.provider);
        self.refresh(
            &owner,
            provider,
            oauth,
            &key,
            Some(used),
            required,
            request.resource,
            &ConsentOptions::default(),
        )
        .await
    }

    /// Single-flight refresh for `key`. `rejected` is an access token the API refused: it is
    /// treated as expired even if its `expires_at` says otherwise.
    #[allow(clippy::too_many_arguments)]
    async fn refresh(
        &self,
        owner: &Owner,
        provider: &Provider,
        oauth: &OAuthCredential,
        key: &TokenKey,
        rejected: Option<&Secret>,
        required: Vec<String>,
        resource: Option<&str>,
        options: &ConsentOptions,
    ) -> Result<Credential, IdentityError> {
        let lock = self.refresh_locks.get(&key.to_string());
        let _guard = lock.lock().await;
        // Re-read under the lock: another call may have refreshed while we waited.
        let Some(record) = self.store.get_token(key).await? else {
            return self
                .consent(owner, provider, oauth, required, resource, options)
                .await;
        };
        let still_rejected = rejected.is_some_and(|r| r.expose() == record.access_token.expose());
        if is_fresh(&record) && !still_rejected {
            return Ok(Credential::Ready(Injection::Bearer(record.access_token)));
        }
        let Some(refresh_token) = record.refresh_token.clone() else {
            self.store.delete_token(key).await?;
            return self
                .consent(owner, provider, oauth, required, resource, options)
                .await;
        };
        let (_, client) = provider.resolve().await?;
        let extra = self.resource_params(provider, resource);
        match client.refresh(&refresh_token, &extra).await {
            Ok(granted) => {
                let updated = TokenRecord {
                    access_token: granted.access_token,
                    // RFC 6749 section 6: the provider may rotate the refresh token; if it does
                    // not send one, the old one stays valid.
                    refresh_token: granted.refresh_token.or(Some(refresh_token)),
                    token_type: granted.token_type,
                    expires_at: granted.expires_in.map(|s| now() + s),
                    scopes: granted.scopes.unwrap_or_else(|| record.scopes.clone()),
                    obtained_at: record.obtained_at,
                    refreshed_at: Some(now()),
                };
                // Durable before use: if we crash after the provider rotated the refresh token,
                // the new one must already be on disk (DESIGN 3.1).
                self.store.put_token(key, &updated).await?;
                crate::telemetry::token_refreshed(&key.provider, "ok");
                Ok(Credential::Ready(Injection::Bearer(updated.access_token)))
            }
            Err(OAuthError::InvalidGrant) => {
                crate::telemetry::token_refreshed(&key.provider, "invalid_grant");
                // Another node may have rotated the token under us: re-read before giving up.
                if let Some(current) = self.store.get_token(key).await?
                    && current.refresh_token.as_ref().map(Secret::expose)
                        != Some(refresh_token.expose())
                    && is_fresh(&current)
                {
                    return Ok(Credential::Ready(Injection::Bearer(current.access_token)));
                }
                self.store.delete_token(key).await?;
                self.consent(owner, provider, oauth, required, resource, options)
                    .await
            }
            Err(error) => {
                crate::telemetry::token_refreshed(&key.provider, "error");
                Err(provider_error(&key.provider, error))
            }
        }
    }

    async fn consent(
        &self,
        owner: &Owner,
        provider: &Provider,
        oauth: &OAuthCredential,
        scopes: Vec<String>,
        resource: Option<&str>,
        options: &ConsentOptions,
    ) -> Result<Credential, IdentityError> {
        let (_, client) = provider.resolve().await?;
        let id = random_token(18);
        let state = random_token(24);
        let mut extra: Vec<(String, String)> = provider
            .config
            .extra_authorize_params
            .iter()
            .chain(&oauth.custom_parameters)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        extra.extend(self.resource_params(provider, resource));
        let authorization = client.authorization_request(&state, &scopes, &extra);
        let created_at = now();
        let (issuer, subject, user_key) = match &owner.user {
            UserRef::Federated { issuer, subject } => (issuer.clone(), subject.clone(), None),
            // No issuer: a `login`-bound connect page never matches a signed-in browser.
            UserRef::UserId(id) => (String::new(), id.clone(), Some(owner.user.key())),
        };
        let return_url = options.return_url.clone().or_else(|| {
            (self.binding == ConsentBinding::App)
                .then(|| self.default_return_url.clone())
                .flatten()
        });
        let session = ConsentSession {
            id: id.clone(),
            state,
            authorization_url: authorization.url.to_string(),
            pkce_verifier: authorization.pkce_verifier,
            workload: owner.workload.clone(),
            issuer,
            subject,
            user_key,
            return_url,
            custom_state: options.custom_state.clone(),
            stage: consent::Stage::Pending,
            keep_after_callback: options.keep_after_callback,
            provider: oauth.provider.clone(),
            scopes,
            resource: resource
                .filter(|_| provider.config.send_resource_indicator)
                .map(str::to_string),
            created_at,
            expires_at: created_at + CONSENT_TTL_SECONDS,
            browser_nonce: None,
        };
        consent::save_session(self.store.as_ref(), &session).await?;
        crate::telemetry::consent_started(&oauth.provider);
        Ok(Credential::NeedsConsent(ConsentPrompt {
            url: format!("{}/oauth2/connect/{id}", self.public_url),
            message: format!(
                "This tool needs access to your {} account. Open the link to connect it (it expires in 10 minutes), then retry the call.",
                oauth.provider
            ),
            provider: oauth.provider.clone(),
            id,
        }))
    }

    /// Remembers the MCP session that asked, to tell it when the consent completes.
    pub fn await_completion(&self, consent_id: &str, peer: Peer<RoleServer>) {
        let mut waiting = self.waiting.lock();
        if waiting.len() > 10_000 {
            waiting.retain(|_, p| !p.is_transport_closed());
        }
        waiting.insert(consent_id.to_string(), peer);
    }

    /// MCP 2025-11-25 elicitation (URL mode): `notifications/elicitation/complete` to the
    /// session that triggered the consent, if it is still live.
    async fn notify_completed(&self, consent_id: &str) {
        let peer = self.waiting.lock().remove(consent_id);
        if let Some(peer) = peer
            && !peer.is_transport_closed()
        {
            let notification = rmcp::model::CustomNotification::new(
                "notifications/elicitation/complete",
                Some(serde_json::json!({ "elicitationId": consent_id })),
            );
            if let Err(error) = peer
                .send_notification(rmcp::model::ServerNotification::CustomNotification(
                    notification,
                ))
                .await
            {
                tracing::debug!(%error, "could not send elicitation/complete");
            }
        }
    }

    pub fn binding(&self) -> ConsentBinding {
        self.binding
    }

    pub fn public_url(&self) -> &str {
        &self.public_url
    }
}

/// Targets whose credentials name a provider or API key that the config does not define:
/// reported by `portcullis validate` and logged at load, so the mistake shows before a call.
pub fn unknown_credential_references(
    config: &Config,
    catalog: &crate::catalog::Catalog,
) -> Vec<crate::catalog::Problem> {
    catalog
        .targets()
        .filter_map(|target| {
            let (pointer, name, known, section) = match target.credentials.as_ref()? {
                Credentials::Oauth(oauth) => (
                    "/credentials/oauth/provider",
                    &oauth.provider,
                    config.providers.contains_key(&oauth.provider),
                    "[providers]",
                ),
                Credentials::ApiKey(key) => (
                    "/credentials/apiKey/provider",
                    &key.provider,
                    config.api_keys.contains_key(&key.provider),
                    "[api_keys]",
                ),
            };
            (!known).then(|| crate::catalog::Problem {
                file: target.file.clone(),
                pointer: pointer.to_string(),
                message: format!("{name:?} is not configured in {section} of the config"),
            })
        })
        .collect()
}

fn is_fresh(record: &TokenRecord) -> bool {
    record
        .expires_at
        .is_none_or(|expires| expires > now() + REFRESH_MARGIN_SECONDS)
}

fn provider_error(provider: &str, error: OAuthError) -> IdentityError {
    IdentityError::Provider {
        provider: provider.to_string(),
        reason: error.to_string(),
    }
}
