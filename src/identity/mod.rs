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
mod bounded;
mod consent;
mod link;
mod locks;
mod login;
mod oauth;
mod pages;
mod prompt;
mod providers;
mod resource_metadata;
pub mod routes;
mod service;
pub mod settings;
#[cfg(test)]
pub(crate) mod test_rig;
mod tokens;
#[cfg(test)]
mod tokens_tests;

use std::sync::Arc;

use parking_lot::Mutex;
use rmcp::service::{Peer, RoleServer};

use bounded::BoundedMap;
use consent::now;
pub use consent::{CONSENT_TTL_SECONDS, ConsentSession};
use locks::KeyedLocks;
pub use oauth::OAuthError;
pub use prompt::MAX_PENDING_PER_USER;
use providers::Provider;
pub use service::ServiceCredentials;

use crate::credential::Injection;
use crate::inbound::{Caller, KeyStore};
use crate::vault::{Secret, Store, TokenKey, VaultError};
use settings::{ConsentBinding, IdentitySections};

/// MCP sessions waiting for `notifications/elicitation/complete` at once.
const MAX_WAITING_SESSIONS: usize = 10_000;

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
    /// A browser flow's callback reached a browser that did not start it (DESIGN 3.2
    /// invariant 7).
    #[error("this sign-in was not started in this browser")]
    BrowserMismatch,
    /// CompleteResourceTokenAuth before the user finished at the provider.
    #[error("the user has not finished authorizing at the provider yet")]
    SessionNotAuthorized,
    #[error("{0}")]
    Internal(String),
}

impl IdentityError {
    /// The vault's store cannot be reached right now (DESIGN 2.9): a retry may succeed, and
    /// nothing about the user's links is known.
    pub fn is_store_unavailable(&self) -> bool {
        matches!(self, IdentityError::Vault(VaultError::Unavailable { .. }))
    }
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
    /// RFC 8707 resource named by the request itself (the identity API's `resources`); MCP
    /// calls leave it `None` and the credential's or provider's `resource` applies (DESIGN 2.3).
    pub resource: Option<&'a str>,
    /// The target's own RFC 8707 resource (an MCP server's URL), used when the credential names
    /// none; the provider's applies when neither does.
    pub target_resource: Option<&'a str>,
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
    /// Providers, API keys and client-credentials tokens: the gateway's own credentials.
    service: Arc<ServiceCredentials>,
    workload: String,
    binding: ConsentBinding,
    /// With `consent_binding = "app"`, where MCP-triggered consents return the browser.
    default_return_url: Option<String>,
    public_url: String,
    refresh_locks: KeyedLocks,
    /// Live MCP sessions waiting for a consent, by consent id (for
    /// `notifications/elicitation/complete`); an entry lives as long as its consent.
    waiting: Mutex<BoundedMap<String, Peer<RoleServer>>>,
    /// Each user's pending consent sessions, for the per-user cap (`prompt.rs`).
    pending: Mutex<BoundedMap<String, prompt::Pending>>,
    login: Option<login::LoginClient>,
}

impl Identity {
    pub fn new(
        sections: IdentitySections<'_>,
        store: Arc<dyn Store>,
        keys: Arc<KeyStore>,
        http: reqwest::Client,
    ) -> Identity {
        Identity {
            store,
            service: Arc::new(service_credentials(&sections, &http)),
            workload: sections.identity.workload.clone(),
            binding: sections.identity.consent_binding,
            default_return_url: sections
                .identity
                .allowed_return_urls
                .first()
                .map(|u| u.to_string()),
            public_url: sections.public_url.to_string(),
            refresh_locks: KeyedLocks::default(),
            waiting: Mutex::new(BoundedMap::new(MAX_WAITING_SESSIONS)),
            pending: Mutex::new(BoundedMap::new(prompt::MAX_TRACKED_USERS)),
            login: login::LoginClient::new(sections, keys, http),
        }
    }

    /// An identity with the given providers and no sign-in client, for unit tests.
    #[cfg(test)]
    fn for_tests(store: Arc<dyn Store>, providers: Vec<Provider>) -> Identity {
        Identity {
            store,
            service: Arc::new(ServiceCredentials::new(
                providers,
                std::collections::BTreeMap::new(),
            )),
            workload: "portcullis".into(),
            binding: ConsentBinding::Login,
            default_return_url: None,
            public_url: "https://gw.example.com".into(),
            refresh_locks: KeyedLocks::default(),
            waiting: Mutex::new(BoundedMap::new(MAX_WAITING_SESSIONS)),
            pending: Mutex::new(BoundedMap::new(prompt::MAX_TRACKED_USERS)),
            login: None,
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn workload(&self) -> &str {
        &self.workload
    }

    fn provider(&self, name: &str) -> Result<&Provider, IdentityError> {
        self.service.provider(name)
    }

    /// The gateway's own credentials (API keys, client credentials), for targets that list
    /// their tools with them.
    pub fn service(&self) -> &Arc<ServiceCredentials> {
        &self.service
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

    /// Remembers the MCP session that asked, to tell it when the consent completes.
    pub fn await_completion(&self, consent_id: &str, peer: Peer<RoleServer>) {
        let mut waiting = self.waiting.lock();
        if waiting.len() >= waiting.capacity() {
            waiting.retain(|_, p| !p.is_transport_closed());
        }
        let now = now();
        waiting.insert(consent_id.to_string(), peer, now + CONSENT_TTL_SECONDS, now);
    }

    /// MCP 2025-11-25 elicitation (URL mode): `notifications/elicitation/complete` to the
    /// session that triggered the consent, if it is still live.
    async fn notify_completed(&self, consent_id: &str) {
        let peer = self.waiting.lock().remove(&consent_id.to_string());
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

/// The gateway's own credentials from the identity sections of the config: what [`Identity`]
/// uses, and what `portcullis validate` lists MCP servers with when no vault is open.
pub fn service_credentials(
    sections: &IdentitySections<'_>,
    http: &reqwest::Client,
) -> ServiceCredentials {
    let redirect = format!("{}/oauth2/callback", sections.public_url);
    let providers = sections
        .providers
        .values()
        .map(|p| Provider::new(p.clone(), http.clone(), redirect.clone()))
        .collect();
    ServiceCredentials::new(providers, sections.api_keys.clone())
}

fn provider_error(provider: &str, error: OAuthError) -> IdentityError {
    IdentityError::Provider {
        provider: provider.to_string(),
        reason: error.to_string(),
    }
}
