//! The flows behind the identity API (DESIGN 2.7), on the same vault, providers and consent
//! sessions as MCP tool calls: a workload's user token (USER_FEDERATION, with consent through
//! the gateway's own connect URL), client-credentials tokens (M2M), polling a session by its
//! `sessionUri`, binding a session to its user (`CompleteResourceTokenAuth`), and API keys.

use std::collections::BTreeMap;

use super::consent::{self, Stage};
use super::{
    ConsentOptions, Credential, CredentialRequest, Identity, IdentityError, Injection, Owner,
    UserRef,
};
use crate::credential::{GrantType, OAuthCredential};
use crate::secret::Secret;

/// One `GetResourceOauth2Token` request, validated.
#[derive(Debug)]
pub struct ResourceTokenRequest<'a> {
    pub provider: &'a str,
    pub scopes: &'a [String],
    pub custom_parameters: &'a BTreeMap<String, String>,
    /// RFC 8707 resource (`resources`, at most one).
    pub resource: Option<&'a str>,
    pub force_authentication: bool,
    pub options: ConsentOptions,
}

/// What `GetResourceOauth2Token` answers.
#[derive(Debug)]
pub enum ResourceToken {
    Token(Secret),
    /// The user must (still) authorize: `authorizationUrl` is the gateway's connect URL while
    /// the session can be opened in a browser.
    InProgress {
        authorization_url: Option<String>,
        session_uri: String,
    },
    Failed {
        session_uri: String,
    },
}

impl ResourceTokenRequest<'_> {
    fn credential(&self, grant_type: GrantType) -> OAuthCredential {
        OAuthCredential {
            provider: self.provider.to_string(),
            grant_type,
            scopes: self.scopes.to_vec(),
            custom_parameters: self.custom_parameters.clone(),
            // The request's own `resources` apply (CredentialRequest::resource).
            resource: None,
        }
    }

    fn credential_request(&self) -> CredentialRequest<'_> {
        CredentialRequest {
            tool_scopes: &[],
            target_resource: None,
            resource: self.resource,
            force_authentication: self.force_authentication,
        }
    }
}

fn bearer(credential: Credential) -> Result<Secret, IdentityError> {
    match credential {
        Credential::Ready(Injection::Bearer(token)) => Ok(token),
        _ => Err(IdentityError::Internal(
            "the provider flow produced no bearer token".into(),
        )),
    }
}

impl Identity {
    /// RFC 6749 section 4.4 client credentials (`oauth2Flow: M2M`), cached like tool calls.
    pub async fn m2m_token(
        &self,
        request: &ResourceTokenRequest<'_>,
    ) -> Result<Secret, IdentityError> {
        let oauth = request.credential(GrantType::ClientCredentials);
        bearer(
            self.service
                .client_credentials(&oauth, &request.credential_request())
                .await?,
        )
    }

    /// `owner`'s token at the provider (`oauth2Flow: USER_FEDERATION`): from the vault
    /// (refreshed when needed) or, without one or with `forceAuthentication`, a new consent
    /// session whose URL is the gateway's own `/oauth2/connect/<id>`.
    pub async fn user_federation_token(
        &self,
        owner: &Owner,
        request: &ResourceTokenRequest<'_>,
    ) -> Result<ResourceToken, IdentityError> {
        let oauth = request.credential(GrantType::AuthorizationCode);
        let options = ConsentOptions {
            keep_after_callback: true,
            ..request.options.clone()
        };
        let credential_request = request.credential_request();
        let ask = self.ask(owner, &oauth, &credential_request, &options)?;
        match self.user_token(&ask, request.force_authentication).await? {
            Credential::NeedsConsent(prompt) => Ok(ResourceToken::InProgress {
                authorization_url: Some(prompt.url),
                session_uri: format!("{}{}", consent::SESSION_URI_PREFIX, prompt.id),
            }),
            ready => bearer(ready).map(ResourceToken::Token),
        }
    }

    /// Polling with `sessionUri`: only the workload and user that started the session may
    /// see it (DESIGN 3.2 invariant 4).
    pub async fn poll_session(
        &self,
        owner: &Owner,
        session_id: &str,
        request: &ResourceTokenRequest<'_>,
    ) -> Result<ResourceToken, IdentityError> {
        let session = consent::load_session(self.store.as_ref(), session_id)
            .await?
            .ok_or_else(|| IdentityError::SessionNotFound(session_id.to_string()))?;
        if session.workload != owner.workload {
            return Err(IdentityError::SessionOfAnother("workload"));
        }
        if session.user_id() != owner.user.key() {
            return Err(IdentityError::SessionOfAnother("user"));
        }
        if session.provider != request.provider {
            return Err(IdentityError::SessionOfAnother("credential provider"));
        }
        let session_uri = session.session_uri();
        match session.stage {
            Stage::Pending => Ok(ResourceToken::InProgress {
                authorization_url: Some(self.connect_url(&session.id)),
                session_uri,
            }),
            Stage::Authorized(_) | Stage::AwaitingApp => Ok(ResourceToken::InProgress {
                authorization_url: None,
                session_uri,
            }),
            Stage::Failed => Ok(ResourceToken::Failed { session_uri }),
            // The token is in the vault now: read it like any later call would.
            Stage::Completed => {
                let again = ResourceTokenRequest {
                    force_authentication: false,
                    options: request.options.clone(),
                    ..*request
                };
                self.user_federation_token(owner, &again).await
            }
        }
    }

    /// `CompleteResourceTokenAuth`: links the token the provider granted to completion
    /// session `session_id` (the `session_id` the consenting browser brought back), only if
    /// `user` is the user who started the consent and the caller may act for its workload.
    ///
    /// Single use either way: a completion for the wrong user burns the held token (it is
    /// never linked to anyone, and the consent must be given again), so a completion id that
    /// leaks after an honest app's refused attempt is worthless (issue 9, item 2).
    pub async fn complete_session(
        &self,
        session_id: &str,
        user: &UserRef,
        may_act_for: impl Fn(&str) -> bool,
    ) -> Result<(), IdentityError> {
        let store = self.store.as_ref();
        let not_found = || IdentityError::SessionNotFound(session_id.to_string());
        let session = consent::load_session(store, session_id)
            .await?
            .ok_or_else(not_found)?;
        if !may_act_for(&session.workload) {
            return Err(IdentityError::SessionOfAnother("workload"));
        }
        match session.stage {
            Stage::Authorized(_) => {}
            // The connect URL's own id (known to whoever started the consent) never completes.
            Stage::Pending | Stage::AwaitingApp => return Err(IdentityError::SessionNotAuthorized),
            // An original session that ended: nothing to complete, whoever asks.
            Stage::Completed | Stage::Failed => return Err(not_found()),
        }
        // Of concurrent completions exactly one takes the held token.
        let mut taken = consent::take_session(store, &session)
            .await?
            .ok_or_else(not_found)?;
        let Stage::Authorized(record) = std::mem::take(&mut taken.stage) else {
            return Err(not_found());
        };
        if taken.user_id() != user.key() {
            tracing::warn!(
                provider = %taken.provider,
                "CompleteResourceTokenAuth refused: not the user who started the consent; the granted token is discarded"
            );
            crate::telemetry::consent_refused("wrong_user");
            self.record_failure(&taken).await;
            return Err(IdentityError::SessionOfAnother("user"));
        }
        tracing::info!(provider = %taken.provider, "CompleteResourceTokenAuth accepted");
        self.link_account(&taken, &record).await
    }

    /// `GetResourceApiKey`: the workload's own key in the vault's `api_keys` tree, else the
    /// `[api_keys.<name>]` key from the config. Whether the workload may read `name` at all
    /// (its `api_keys` list) is the identity API's check, made before this call.
    pub async fn api_key_for(&self, workload: &str, name: &str) -> Result<Secret, IdentityError> {
        if let Some(key) = self.store.get_api_key(workload, name).await? {
            return Ok(key);
        }
        self.service
            .configured_api_key(name)
            .cloned()
            .ok_or_else(|| IdentityError::UnknownApiKey(name.to_string()))
    }

    /// Whether `name` is a configured OAuth provider.
    pub fn has_provider(&self, name: &str) -> bool {
        self.service.has_provider(name)
    }

    pub fn binding_allows_user_ids(&self) -> bool {
        self.binding != crate::identity::settings::ConsentBinding::Login
    }
}
