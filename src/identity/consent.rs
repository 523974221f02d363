//! Consent sessions (DESIGN 2.6): single use, 10 minutes, bound to workload + user + provider +
//! scopes, with PKCE S256 and `state` held server side (OAuth 2.0 Security BCP section 4.7).
//!
//! Records live in the vault's `consents` tree under three typed key spaces
//! ([`RecordKind`]), all sealed: the session by its id, its callback `state` -> id, and a
//! browser signed in at the gateway by its session cookie. A sign-in in progress is not stored at all: it travels in
//! a sealed cookie (`login.rs`), so unauthenticated requests write nothing (DESIGN 3.2
//! invariant 9).
//!
//! Every transition of a stored session is a compare-and-swap ([`Store::swap_consent`]) or an
//! atomic take: a page that loaded a session can never write a stale copy back over a
//! callback that consumed or advanced it meanwhile (issue 9, item 9).

use serde::{Deserialize, Serialize};

use super::IdentityError;
use crate::vault::{ConsentRecord, RecordKind, Secret, Store, TokenRecord};

/// RFC 9126 section 2.2 request URI form, which AgentCore uses for `sessionUri`:
/// `urn:ietf:params:oauth:request_uri:<consent id>`.
pub const SESSION_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

/// How long a consent link stays usable.
pub const CONSENT_TTL_SECONDS: u64 = 600;
/// How long a signed-in browser stays signed in.
pub const BROWSER_SESSION_TTL_SECONDS: u64 = 8 * 3600;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsentSession {
    pub id: String,
    pub state: String,
    /// Where the browser goes once bound; built with the PKCE challenge. Never handed out
    /// directly: users always get the gateway's own connect URL.
    pub authorization_url: String,
    pub pkce_verifier: Secret,
    pub workload: String,
    pub issuer: String,
    pub subject: String,
    pub provider: String,
    pub scopes: Vec<String>,
    /// RFC 8707 resource, repeated on the token request.
    pub resource: Option<String>,
    pub created_at: u64,
    pub expires_at: u64,
    /// Set when a browser opens the connect URL; the callback must come from that browser.
    pub browser_nonce: Option<String>,
    /// The vault user key when the user is not `issuer#subject` (`userid:<id>`).
    #[serde(default)]
    pub user_key: Option<String>,
    /// Identity API: where the browser goes after the provider's callback.
    #[serde(default)]
    pub return_url: Option<String>,
    /// Identity API `customState`, echoed to `return_url` as `state`.
    #[serde(default)]
    pub custom_state: Option<Secret>,
    #[serde(default)]
    pub stage: Stage,
    /// Identity API sessions stay (until they expire) after the callback, so that polling
    /// with `sessionUri` learns how they ended.
    #[serde(default)]
    pub keep_after_callback: bool,
    /// For a completion record (`consent_binding = "app"`, created at the provider callback):
    /// the id the flow started as, which is the elicitation id clients know and the
    /// `sessionUri` the identity API polls.
    #[serde(default)]
    pub origin: Option<String>,
}

/// Where a consent session is. Only `Pending` sessions can be opened in a browser.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub enum Stage {
    /// Waiting for the user at the provider.
    #[default]
    Pending,
    /// `consent_binding = "app"`, on a completion record: the provider granted a token, held
    /// here (sealed like every consent record) until `CompleteResourceTokenAuth` names the same
    /// user. The record's id was created at the callback and went only to the browser that
    /// consented, so whoever holds the connect URL cannot complete it (issue 9, item 2).
    Authorized(Box<TokenRecord>),
    /// `consent_binding = "app"`, on the original session: the provider granted, the token
    /// waits under a completion id that only the consenting browser received.
    AwaitingApp,
    /// The token is in the vault under the session's workload / user / provider.
    Completed,
    /// The provider refused, or the code exchange failed. Nothing was stored.
    Failed,
}

impl ConsentSession {
    pub fn user_id(&self) -> String {
        self.user_key
            .clone()
            .unwrap_or_else(|| crate::inbound::user_key(&self.issuer, &self.subject))
    }

    /// The identity API's name for this session.
    pub fn session_uri(&self) -> String {
        format!("{SESSION_URI_PREFIX}{}", self.id)
    }
}

/// A signed-in browser (consent_binding = "login", `/connections`).
#[derive(Debug, Serialize, Deserialize)]
pub struct BrowserSession {
    pub issuer: String,
    pub subject: String,
    /// Anti-CSRF token for the forms this browser posts.
    pub csrf: String,
    pub expires_at: u64,
}

impl BrowserSession {
    /// The vault's user key of this browser's user ([`crate::inbound::user_key`]).
    pub fn user_key(&self) -> String {
        crate::inbound::user_key(&self.issuer, &self.subject)
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// 128+ bits from the system CSPRNG, URL-safe.
pub fn random_token(bytes: usize) -> String {
    use aws_lc_rs::rand::SecureRandom;
    use base64::Engine;
    let mut buf = vec![0u8; bytes];
    // SystemRandom only fails if the OS has no entropy source; an all-zero token would be a
    // disaster, so fall back to a UUIDv4 (also from the OS CSPRNG) rather than continue.
    if aws_lc_rs::rand::SystemRandom::new().fill(&mut buf).is_err() {
        return uuid::Uuid::new_v4().simple().to_string();
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

async fn put_json<T: Serialize>(
    store: &dyn Store,
    kind: RecordKind,
    key: &str,
    value: &T,
    expires_at: u64,
) -> Result<(), IdentityError> {
    let payload = serde_json::to_vec(value).map_err(|e| IdentityError::Internal(e.to_string()))?;
    store
        .put_consent(
            kind,
            key,
            &ConsentRecord {
                payload,
                expires_at,
            },
        )
        .await
        .map_err(IdentityError::Vault)
}

fn parse<T: for<'de> Deserialize<'de>>(
    record: Option<ConsentRecord>,
) -> Result<Option<T>, IdentityError> {
    match record {
        None => Ok(None),
        Some(record) if record.expires_at <= now() => Ok(None),
        Some(record) => serde_json::from_slice(&record.payload)
            .map(Some)
            .map_err(|e| IdentityError::Internal(format!("unreadable consent record: {e}"))),
    }
}

/// Writes the session record only (its `state` mapping is left as it is, or as consumed).
pub async fn put_session(store: &dyn Store, session: &ConsentSession) -> Result<(), IdentityError> {
    put_json(
        store,
        RecordKind::Consent,
        &session.id,
        session,
        session.expires_at,
    )
    .await
}

pub async fn save_session(
    store: &dyn Store,
    session: &ConsentSession,
) -> Result<(), IdentityError> {
    put_session(store, session).await?;
    put_json(
        store,
        RecordKind::CallbackState,
        &session.state,
        &session.id,
        session.expires_at,
    )
    .await
}

pub async fn load_session(
    store: &dyn Store,
    id: &str,
) -> Result<Option<ConsentSession>, IdentityError> {
    Ok(load_session_record(store, id)
        .await?
        .map(|loaded| loaded.session))
}

/// A session and the exact record it was read from: the `expected` of a later swap.
pub struct Loaded {
    pub session: ConsentSession,
    record: ConsentRecord,
}

pub async fn load_session_record(
    store: &dyn Store,
    id: &str,
) -> Result<Option<Loaded>, IdentityError> {
    let Some(record) = store
        .get_consent(RecordKind::Consent, id)
        .await
        .map_err(IdentityError::Vault)?
    else {
        return Ok(None);
    };
    let session = parse(Some(record.clone()))?;
    Ok(session.map(|session| Loaded { session, record }))
}

/// Writes `next` over `loaded` only if the stored session is still exactly what was loaded;
/// `false` (nothing written) if a callback, a completion or an expiry came first.
pub async fn swap_session(
    store: &dyn Store,
    loaded: &Loaded,
    next: &ConsentSession,
) -> Result<bool, IdentityError> {
    let payload = serde_json::to_vec(next).map_err(|e| IdentityError::Internal(e.to_string()))?;
    store
        .swap_consent(
            RecordKind::Consent,
            &loaded.session.id,
            &loaded.record,
            Some(&ConsentRecord::new(payload, next.expires_at)),
        )
        .await
        .map_err(IdentityError::Vault)
}

/// The session a callback's `state` belongs to, without consuming it.
pub async fn session_for_state(
    store: &dyn Store,
    state: &str,
) -> Result<Option<ConsentSession>, IdentityError> {
    let id: Option<String> = parse(
        store
            .get_consent(RecordKind::CallbackState, state)
            .await
            .map_err(IdentityError::Vault)?,
    )?;
    match id {
        Some(id) => load_session(store, &id).await,
        None => Ok(None),
    }
}

/// Consumes a session: exactly one caller ever gets it (the vault's take is atomic).
pub async fn take_session(
    store: &dyn Store,
    session: &ConsentSession,
) -> Result<Option<ConsentSession>, IdentityError> {
    let taken = parse(
        store
            .take_consent(RecordKind::Consent, &session.id)
            .await
            .map_err(IdentityError::Vault)?,
    )?;
    let _ = store
        .take_consent(RecordKind::CallbackState, &session.state)
        .await;
    Ok(taken)
}

pub async fn save_browser(
    store: &dyn Store,
    sid: &str,
    session: &BrowserSession,
) -> Result<(), IdentityError> {
    put_json(
        store,
        RecordKind::BrowserSession,
        sid,
        session,
        session.expires_at,
    )
    .await
}

pub async fn load_browser(
    store: &dyn Store,
    sid: &str,
) -> Result<Option<BrowserSession>, IdentityError> {
    parse(
        store
            .get_consent(RecordKind::BrowserSession, sid)
            .await
            .map_err(IdentityError::Vault)?,
    )
}

/// Removes a session and its `state` index (a superseded pending consent).
pub async fn withdraw_session(
    store: &dyn Store,
    id: &str,
    state: &str,
) -> Result<(), IdentityError> {
    store
        .take_consent(RecordKind::Consent, id)
        .await
        .map_err(IdentityError::Vault)?;
    store
        .take_consent(RecordKind::CallbackState, state)
        .await
        .map_err(IdentityError::Vault)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::vault::{Keyring, SledStore};

    fn session(id: &str) -> ConsentSession {
        ConsentSession {
            id: id.into(),
            state: format!("state-of-{id}"),
            authorization_url: "https://provider.example/authorize".into(),
            pkce_verifier: Secret::new("verifier"),
            workload: "portcullis".into(),
            issuer: "https://idp.example".into(),
            subject: "alice".into(),
            provider: "github".into(),
            scopes: vec![],
            resource: None,
            created_at: now(),
            expires_at: now() + CONSENT_TTL_SECONDS,
            browser_nonce: None,
            user_key: None,
            return_url: None,
            custom_state: None,
            stage: Stage::Pending,
            keep_after_callback: true,
            origin: None,
        }
    }

    fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("vault"), Keyring::generate().unwrap());
        (dir, Arc::new(store.unwrap()))
    }

    /// Issue 9 item 9: the connect page loads a session, a callback consumes it, then the page
    /// writes its copy back. The write must not bring the used session back to life.
    #[tokio::test]
    async fn a_connect_page_cannot_revive_a_session_a_callback_consumed_meanwhile() {
        let (_dir, store) = store();
        save_session(store.as_ref(), &session("c")).await.unwrap();
        let loaded = load_session_record(store.as_ref(), "c")
            .await
            .unwrap()
            .unwrap();
        // The callback, in between.
        assert!(
            take_session(store.as_ref(), &loaded.session)
                .await
                .unwrap()
                .is_some()
        );
        let bound = ConsentSession {
            browser_nonce: Some("nonce".into()),
            ..loaded.session.clone()
        };
        assert!(!swap_session(store.as_ref(), &loaded, &bound).await.unwrap());
        assert!(load_session(store.as_ref(), "c").await.unwrap().is_none());
        assert!(
            session_for_state(store.as_ref(), "state-of-c")
                .await
                .unwrap()
                .is_none()
        );
    }

    /// The same race against an app-bound callback that advanced the session: the page's
    /// stale `Pending` copy must not overwrite what the callback wrote.
    #[tokio::test]
    async fn a_connect_page_cannot_reset_a_session_the_provider_already_answered() {
        let (_dir, store) = store();
        save_session(store.as_ref(), &session("c")).await.unwrap();
        let loaded = load_session_record(store.as_ref(), "c")
            .await
            .unwrap()
            .unwrap();
        let taken = take_session(store.as_ref(), &loaded.session)
            .await
            .unwrap()
            .unwrap();
        let waiting = ConsentSession {
            stage: Stage::AwaitingApp,
            ..taken
        };
        put_session(store.as_ref(), &waiting).await.unwrap();
        let bound = ConsentSession {
            browser_nonce: Some("nonce".into()),
            ..loaded.session.clone()
        };
        assert!(!swap_session(store.as_ref(), &loaded, &bound).await.unwrap());
        let now_stored = load_session(store.as_ref(), "c").await.unwrap().unwrap();
        assert!(matches!(now_stored.stage, Stage::AwaitingApp));
        assert!(now_stored.browser_nonce.is_none());
    }

    #[tokio::test]
    async fn a_connect_page_binds_an_untouched_session() {
        let (_dir, store) = store();
        save_session(store.as_ref(), &session("c")).await.unwrap();
        let loaded = load_session_record(store.as_ref(), "c")
            .await
            .unwrap()
            .unwrap();
        let bound = ConsentSession {
            browser_nonce: Some("nonce".into()),
            ..loaded.session.clone()
        };
        assert!(swap_session(store.as_ref(), &loaded, &bound).await.unwrap());
        let stored = session_for_state(store.as_ref(), "state-of-c")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.browser_nonce.as_deref(), Some("nonce"));
    }
}
