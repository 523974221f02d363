//! The credential a call gets: API keys from the config, client-credentials tokens (cached in
//! memory), and the caller's own tokens from the vault, refreshed single-flight (DESIGN 3.1).
//!
//! RFC 8707 resource indicators are explicit (DESIGN 2.3): the identity API request's
//! `resources`, else the target credential's `resource`, else the target kind's own (only an
//! MCP server has one: its URL, as the MCP authorization spec requires), else the provider's
//! `resource`; never an HTTP target's URL. A provider whose APIs check `aud` against their own
//! identifier would otherwise issue tokens those APIs refuse, and every refusal would ask for
//! consent again.

use std::collections::BTreeSet;

use super::providers::Provider;
use super::{
    ConsentOptions, Credential, CredentialRequest, Identity, IdentityError, Injection, Owner,
    REFRESH_MARGIN_SECONDS, provider_error,
};
use crate::credential::{Credentials, GrantType, OAuthCredential};
use crate::identity::consent::now;
use crate::identity::oauth::OAuthError;
use crate::inbound::Caller;
use crate::vault::{Secret, TokenKey, TokenRecord};

/// Everything one user-token lookup needs: whose token, for which credential, with which
/// scopes and resource, and how a consent (if one is needed) is shaped.
pub(super) struct TokenAsk<'a> {
    pub owner: &'a Owner,
    pub provider: &'a Provider,
    pub oauth: &'a OAuthCredential,
    pub key: TokenKey,
    /// Provider, credential and tool scopes.
    pub required: Vec<String>,
    pub resource: Option<&'a str>,
    pub options: &'a ConsentOptions,
}

impl Identity {
    /// The credential `caller` needs for a target, or a consent prompt.
    pub async fn credential_for(
        &self,
        caller: &Caller,
        credentials: &Credentials,
        request: &CredentialRequest<'_>,
    ) -> Result<Credential, IdentityError> {
        match credentials {
            Credentials::ApiKey(api_key) => self.service.api_key(api_key).map(Credential::Ready),
            Credentials::Oauth(oauth) => match oauth.grant_type {
                GrantType::ClientCredentials => {
                    self.service.client_credentials(oauth, request).await
                }
                GrantType::AuthorizationCode => {
                    let owner = self.owner_of(caller);
                    let options = ConsentOptions::default();
                    let ask = self.ask(&owner, oauth, request, &options)?;
                    self.user_token(&ask, request.force_authentication).await
                }
            },
        }
    }

    pub(super) fn ask<'a>(
        &'a self,
        owner: &'a Owner,
        oauth: &'a OAuthCredential,
        request: &CredentialRequest<'a>,
        options: &'a ConsentOptions,
    ) -> Result<TokenAsk<'a>, IdentityError> {
        let provider = self.provider(&oauth.provider)?;
        Ok(TokenAsk {
            owner,
            provider,
            oauth,
            key: owner.key(&oauth.provider),
            required: scopes(provider, oauth, request.tool_scopes),
            resource: resource(provider, oauth, request),
            options,
        })
    }

    /// The owner's token for an authorization-code credential, refreshed if needed, or a
    /// consent prompt.
    pub(super) async fn user_token(
        &self,
        ask: &TokenAsk<'_>,
        force_authentication: bool,
    ) -> Result<Credential, IdentityError> {
        if force_authentication {
            return self.start_consent(ask, ask.required.clone()).await;
        }
        let Some(record) = self.store.get_token(&ask.key).await? else {
            return self.start_consent(ask, ask.required.clone()).await;
        };
        if !ask.required.iter().all(|s| record.scopes.contains(s)) {
            // Ask for the union, so the new grant does not lose what the old one had.
            let union: BTreeSet<String> = ask
                .required
                .iter()
                .chain(record.scopes.iter())
                .cloned()
                .collect();
            return self.start_consent(ask, union.into_iter().collect()).await;
        }
        if is_fresh(&record) {
            return Ok(Credential::Ready(Injection::Bearer(record.access_token)));
        }
        self.refresh(ask, None).await
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
            self.service.forget(used);
            return self.service.client_credentials(oauth, request).await;
        }
        let owner = self.owner_of(caller);
        let options = ConsentOptions::default();
        let ask = self.ask(&owner, oauth, request, &options)?;
        self.refresh(&ask, Some(used)).await
    }

    /// Single-flight refresh for `ask.key`. `rejected` is an access token the API refused: it
    /// is treated as expired even if its `expires_at` says otherwise.
    async fn refresh(
        &self,
        ask: &TokenAsk<'_>,
        rejected: Option<&Secret>,
    ) -> Result<Credential, IdentityError> {
        let key = &ask.key;
        // One call per link in this process, then one process per link on a shared store
        // (another replica's refresh would spend a rotated refresh token under us).
        let lock = self.refresh_locks.get(&key.to_string());
        let _guard = lock.lock().await;
        let _shared = self.store.lock_refresh(key).await?;
        // Re-read under the locks: another call or replica may have refreshed while we waited.
        let Some(record) = self.store.get_token(key).await? else {
            return self.start_consent(ask, ask.required.clone()).await;
        };
        let still_rejected = rejected.is_some_and(|r| r.expose() == record.access_token.expose());
        if is_fresh(&record) && !still_rejected {
            return Ok(Credential::Ready(Injection::Bearer(record.access_token)));
        }
        let Some(refresh_token) = record.refresh_token.clone() else {
            self.store.delete_token(key).await?;
            return self.start_consent(ask, ask.required.clone()).await;
        };
        let (_, client) = ask.provider.resolve().await?;
        let extra = resource_params(ask.resource);
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
                self.start_consent(ask, ask.required.clone()).await
            }
            Err(error) => {
                crate::telemetry::token_refreshed(&key.provider, "error");
                Err(provider_error(&key.provider, error))
            }
        }
    }
}

/// Provider, credential and tool scopes, deduplicated and sorted.
pub(super) fn scopes(
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

/// The RFC 8707 resource to ask for (see the module docs), unless the provider refuses the
/// parameter altogether (`send_resource_indicator = false`).
pub(super) fn resource<'a>(
    provider: &'a Provider,
    oauth: &'a OAuthCredential,
    request: &CredentialRequest<'a>,
) -> Option<&'a str> {
    if !provider.config.send_resource_indicator {
        return None;
    }
    request
        .resource
        .or(oauth.resource.as_deref())
        .or(request.target_resource)
        .or(provider.config.resource.as_deref())
}

pub(super) fn resource_params(resource: Option<&str>) -> Vec<(String, String)> {
    resource
        .map(|r| vec![("resource".to_string(), r.to_string())])
        .unwrap_or_default()
}

fn is_fresh(record: &TokenRecord) -> bool {
    record
        .expires_at
        .is_none_or(|expires| expires > now() + REFRESH_MARGIN_SECONDS)
}
