//! Legacy MCP sessions that any replica can serve (DESIGN 2.9): rmcp's `SessionStore` on the
//! vault's shared store.
//!
//! rmcp 3.9 keeps a session's worker in the memory of the replica that created it. Given a
//! `SessionStore`, it persists the `initialize` parameters once the handshake succeeded, and a
//! replica that is asked about a session it does not hold loads them and replays `initialize`
//! and `notifications/initialized` to its own handler before serving the request
//! (`StreamableHttpService::try_restore_from_store`). No sticky routing is needed.
//!
//! What is stored: one [`RecordKind::McpSession`] record per session, sealed like every vault
//! record, holding the owner (issuer and subject, DESIGN 3.2 invariant 8) and the `initialize`
//! parameters, for [`SESSION_RECORD_LIFETIME`] from `initialize`; purged with the other
//! expired records. `DELETE` removes it.
//!
//! The owner comes from the request, which rmcp does not pass to the store: the owner
//! middleware runs rmcp's handling of an `initialize` inside [`with_initializing_caller`], and
//! [`SharedSessions::store`] reads it there (rmcp awaits `store` within that request). For a
//! session this replica does not know, the middleware loads the record first
//! ([`SharedSessions::owned_by`]) and hands it to rmcp's restore the same way, so the restore
//! costs one database read.
//!
//! Configured whenever the gateway has a vault, sled included: a session closed idle in
//! memory (`session_owner.rs`) is restored from its record on its next request, on the same
//! replica or another one on a shared store.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::InitializeRequestParams;
use rmcp::transport::streamable_http_server::session::store::{
    SessionState, SessionStore, SessionStoreError,
};
use serde::{Deserialize, Serialize};

use crate::inbound::Caller;
use crate::vault::{ConsentRecord, RecordKind, Store, VaultError, unix_now};

/// How long after `initialize` another replica can still take a session over. The replica
/// holding it in memory serves it until rmcp's idle timeout either way; past this, other
/// replicas answer 404 and the client starts a new session (MCP 2025-11-25 "Session
/// Management" 4.). Bounds what one caller's sessions can keep in the store.
pub const SESSION_RECORD_LIFETIME: Duration = Duration::from_secs(12 * 3600);

tokio::task_local! {
    /// The owner (issuer, subject) of the `initialize` request rmcp is answering in this task.
    static INITIALIZING: (Arc<str>, Arc<str>);
    /// A session record the owner middleware loaded for this request (id, parameters).
    static RESTORING: (Box<str>, InitializeRequestParams);
}

/// The stored form (inside the sealed envelope).
#[derive(Serialize, Deserialize)]
struct SessionRecord {
    issuer: String,
    subject: String,
    initialize_params: InitializeRequestParams,
}

/// Sessions in the shared store.
#[derive(Clone)]
pub struct SharedSessions {
    store: Arc<dyn Store>,
}

impl SharedSessions {
    pub fn new(store: Arc<dyn Store>) -> SharedSessions {
        SharedSessions { store }
    }

    /// The stored session `id` if it exists, has not expired and was issued to `caller`; its
    /// `initialize` parameters then. `None` for sessions of others, exactly as for unknown ones.
    pub async fn owned_by(
        &self,
        id: &str,
        caller: &Caller,
    ) -> Result<Option<InitializeRequestParams>, VaultError> {
        let Some(record) = self.record(id).await? else {
            return Ok(None);
        };
        let owned = *record.issuer == *caller.issuer && *record.subject == *caller.subject;
        Ok(owned.then_some(record.initialize_params))
    }
}

impl SharedSessions {
    /// The stored record of session `id`, if any and not expired.
    async fn record(&self, id: &str) -> Result<Option<SessionRecord>, VaultError> {
        let Some(record) = self.store.get_consent(RecordKind::McpSession, id).await? else {
            return Ok(None);
        };
        // Without serde's message: it may quote the (decrypted) input.
        let record = serde_json::from_slice(&record.payload).map_err(|e| VaultError::Corrupt {
            record: RecordKind::McpSession.as_str().to_string(),
            reason: format!("{:?} error", e.classify()),
        })?;
        Ok(Some(record))
    }
}

/// Runs `work` (rmcp answering an `initialize`) with `caller` as the owner of any session it
/// creates.
pub async fn with_initializing_caller<T>(caller: &Caller, work: impl Future<Output = T>) -> T {
    INITIALIZING
        .scope((caller.issuer.clone(), caller.subject.clone()), work)
        .await
}

/// Runs `work` (rmcp serving a request of session `id`, which it may have to restore) with
/// the record already loaded.
pub async fn with_loaded_session<T>(
    id: &str,
    params: InitializeRequestParams,
    work: impl Future<Output = T>,
) -> T {
    RESTORING.scope((id.into(), params), work).await
}

#[async_trait::async_trait]
impl SessionStore for SharedSessions {
    async fn load(&self, session_id: &str) -> Result<Option<SessionState>, SessionStoreError> {
        // The owner middleware let this request through, so it loaded the record (or the
        // session was bound on this replica and rmcp has since closed it idle).
        if let Ok(Some(params)) =
            RESTORING.try_with(|(id, params)| (id.as_ref() == session_id).then(|| params.clone()))
        {
            return Ok(Some(SessionState::new(params)));
        }
        let record = self.record(session_id).await?;
        Ok(record.map(|record| SessionState::new(record.initialize_params)))
    }

    async fn store(&self, session_id: &str, state: &SessionState) -> Result<(), SessionStoreError> {
        let (issuer, subject) = INITIALIZING
            .try_with(Clone::clone)
            .map_err(|_| "an MCP session was created outside an authenticated initialize")?;
        let record = SessionRecord {
            issuer: issuer.to_string(),
            subject: subject.to_string(),
            initialize_params: state.initialize_params.clone(),
        };
        let payload = serde_json::to_vec(&record)?;
        let expires_at = unix_now() + SESSION_RECORD_LIFETIME.as_secs();
        self.store
            .put_consent(
                RecordKind::McpSession,
                session_id,
                &ConsentRecord::new(payload, expires_at),
            )
            .await?;
        Ok(())
    }

    async fn delete(&self, session_id: &str) -> Result<(), SessionStoreError> {
        self.store
            .take_consent(RecordKind::McpSession, session_id)
            .await?;
        Ok(())
    }
}
