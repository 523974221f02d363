//! Asking the user: a new consent session (DESIGN 2.6) and the prompt that points at it.
//!
//! Pending consents are capped per user (DESIGN 3.2 invariant 9): a caller that triggers
//! consent after consent (a retry loop, `forceAuthentication`) keeps at most
//! [`MAX_PENDING_PER_USER`] sessions; starting one more withdraws the oldest, whose link then
//! answers "expired or already used". The bookkeeping is in memory (bounded too) and per
//! replica; every session also expires on its own after [`CONSENT_TTL_SECONDS`] and is purged.

use std::collections::VecDeque;

use super::consent::{self, CONSENT_TTL_SECONDS, ConsentSession, now, random_token};
use super::tokens::{TokenAsk, resource_params};
use super::{ConsentPrompt, Credential, Identity, IdentityError, UserRef};
use crate::identity::settings::ConsentBinding;

/// Live consent sessions one user may have at a time.
pub const MAX_PENDING_PER_USER: usize = 8;
/// Users whose pending consents are tracked at once (the map's hard bound).
pub const MAX_TRACKED_USERS: usize = 100_000;

/// A user's pending consent sessions, oldest first: (session id, its `state`).
pub(super) type Pending = VecDeque<(String, String)>;

impl Identity {
    /// Starts a consent session for `ask` with `scopes` and returns its prompt.
    pub(super) async fn start_consent(
        &self,
        ask: &TokenAsk<'_>,
        scopes: Vec<String>,
    ) -> Result<Credential, IdentityError> {
        let (endpoints, client) = ask.provider.resolve().await?;
        // Nothing names a scope: ask for what the resource's metadata suggests (MCP
        // authorization spec, "Scope Selection Strategy").
        let scopes = if scopes.is_empty() {
            endpoints.scopes.clone()
        } else {
            scopes
        };
        let id = random_token(18);
        let state = random_token(24);
        let mut extra: Vec<(String, String)> = ask
            .provider
            .config
            .extra_authorize_params
            .iter()
            .chain(&ask.oauth.custom_parameters)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        extra.extend(resource_params(ask.resource));
        let authorization = client.authorization_request(&state, &scopes, &extra);
        let created_at = now();
        let owner = ask.owner;
        let (issuer, subject, user_key) = match &owner.user {
            UserRef::Federated { issuer, subject } => (issuer.clone(), subject.clone(), None),
            // No issuer: a `login`-bound connect page never matches a signed-in browser.
            UserRef::UserId(id) => (String::new(), id.clone(), Some(owner.user.key())),
        };
        let return_url = ask.options.return_url.clone().or_else(|| {
            (self.binding == ConsentBinding::App)
                .then(|| self.default_return_url.clone())
                .flatten()
        });
        let session = ConsentSession {
            id: id.clone(),
            state: state.clone(),
            authorization_url: authorization.url.to_string(),
            pkce_verifier: authorization.pkce_verifier,
            workload: owner.workload.clone(),
            issuer,
            subject,
            user_key,
            return_url,
            custom_state: ask.options.custom_state.clone(),
            stage: consent::Stage::Pending,
            keep_after_callback: ask.options.keep_after_callback,
            provider: ask.oauth.provider.clone(),
            scopes,
            resource: ask.resource.map(str::to_string),
            created_at,
            expires_at: created_at + CONSENT_TTL_SECONDS,
            browser_nonce: None,
            origin: None,
        };
        consent::save_session(self.store.as_ref(), &session).await?;
        self.track_pending(&ask.key.user, id.clone(), state, session.expires_at)
            .await;
        crate::telemetry::consent_started(&ask.oauth.provider);
        Ok(Credential::NeedsConsent(ConsentPrompt {
            url: self.connect_url(&id),
            message: format!(
                "This tool needs access to your {} account. Open the link to connect it (it expires in 10 minutes), then retry the call.",
                ask.oauth.provider
            ),
            provider: ask.oauth.provider.clone(),
            id,
        }))
    }

    /// The consent URL handed to users: `<public_url>/oauth2/connect/<id>` (DESIGN 2.4).
    pub(super) fn connect_url(&self, id: &str) -> String {
        format!("{}/oauth2/connect/{id}", self.public_url)
    }

    /// Records a new pending session of `user` and withdraws the oldest beyond the cap.
    async fn track_pending(&self, user: &str, id: String, state: String, expires_at: u64) {
        let withdrawn: Vec<(String, String)> = {
            let mut pending = self.pending.lock();
            let user = user.to_string();
            // An expired entry's sessions are gone or expired; withdrawing them is harmless.
            let mut list = pending.remove(&user).unwrap_or_default();
            list.push_back((id, state));
            let excess = list.len().saturating_sub(MAX_PENDING_PER_USER);
            let withdrawn = list.drain(..excess).collect();
            // The entry lives as long as the user's newest session. A user evicted to make
            // room is only no longer capped; their sessions still expire on their own.
            pending.insert(user, list, expires_at, now());
            withdrawn
        };
        for (id, state) in withdrawn {
            if let Err(error) = consent::withdraw_session(self.store.as_ref(), &id, &state).await {
                tracing::warn!(%error, "could not withdraw a superseded consent session");
            }
        }
    }

    /// Sizes of the identity module's in-memory maps and their bounds, for `/metrics` and the
    /// flood test (DESIGN 3.2 invariant 9).
    pub fn memory_bounds(&self) -> Vec<(&'static str, usize, usize)> {
        let m2m = self.service.cache_size();
        let waiting = self.waiting.lock();
        let pending = self.pending.lock();
        vec![
            ("m2m_tokens", m2m.0, m2m.1),
            ("waiting_sessions", waiting.len(), waiting.capacity()),
            ("pending_consent_users", pending.len(), pending.capacity()),
        ]
    }
}
