//! Binds every `Mcp-Session-Id` to the caller it was issued to (DESIGN 3.2 invariant 8).
//!
//! rmcp's `StreamableHttpService` treats a session id as a capability: whoever presents it
//! (with any token our `inbound` layer accepts) is served in that session, can read its SSE
//! stream and can `DELETE` it. MCP 2025-11-25 "Security Best Practices: Session Hijacking"
//! requires more: servers "MUST NOT use sessions for authentication" and should bind the
//! session to user-specific information. So this middleware sits between
//! `inbound::require_caller` (which put a [`Caller`] in the request) and rmcp:
//! - a response to a request *without* a session id that carries `Mcp-Session-Id` (only an
//!   `initialize` creates one) records `session id -> issuer + subject`;
//! - every request *with* a session id (POST, GET, DELETE) is answered 404, exactly as for an
//!   unknown session (MCP 2025-11-25 "Session Management" 3.), unless the recorded owner is this
//!   caller; the session itself is untouched and lives on;
//! - a successful `DELETE` forgets the entry.
//!
//! Unknown ids are refused here too (fail closed): a session rmcp knows but this map does not
//! would otherwise be open to anyone.
//!
//! Bounded (DESIGN 3.2 invariant 9): rmcp closes idle sessions after
//! `SessionConfig::keep_alive` (5 minutes) and removes them from
//! `LocalSessionManager::sessions`; whenever this map grows past a threshold, entries rmcp no
//! longer has are dropped, and the threshold doubles from what is left (amortised O(1) per
//! session). Past [`MAX_LIVE_SESSIONS`] live sessions, a new session is closed at once and
//! the `initialize` is answered 503.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::Method;
use parking_lot::Mutex;
use rmcp::transport::streamable_http_server::session::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;

use super::shared_sessions::{SharedSessions, with_initializing_caller, with_loaded_session};
use crate::inbound::Caller;

/// `Mcp-Session-Id` (MCP 2025-11-25 "Session Management").
pub const SESSION_HEADER: &str = "mcp-session-id";

/// At most this many sessions are bound at once. 10,000 idle sessions hold about 1 GiB inside
/// rmcp (README, "Performance"), so this also caps what one token holder can pin in memory.
pub const MAX_LIVE_SESSIONS: usize = 20_000;

/// The map is first pruned at this size; after each prune the next one is at twice what is left.
const FIRST_PRUNE_AT: usize = 1_024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionOwnerError {
    #[error(
        "too many live MCP sessions ({max}): end idle ones with DELETE, or retry once they expire"
    )]
    TooManySessions { max: usize },
    /// A session this replica does not hold could not be looked up in the shared store.
    #[error("the MCP session store is unavailable right now; retry shortly")]
    StoreUnavailable,
}

/// Who a session belongs to: the same issuer + subject as [`Caller::user_id`], kept as the two
/// shared strings so that the check on every request allocates nothing.
#[derive(Debug)]
struct Owner {
    issuer: Arc<str>,
    subject: Arc<str>,
}

impl Owner {
    fn of(caller: &Caller) -> Owner {
        Owner {
            issuer: caller.issuer.clone(),
            subject: caller.subject.clone(),
        }
    }

    fn is(&self, caller: &Caller) -> bool {
        self.issuer == caller.issuer && self.subject == caller.subject
    }
}

struct Owners {
    by_session: HashMap<Box<str>, Owner>,
    prune_at: usize,
}

/// Session id -> owner, for the sessions of one `LocalSessionManager`.
pub struct SessionOwners {
    owners: Mutex<Owners>,
    rmcp_sessions: Arc<LocalSessionManager>,
    max: usize,
    /// Sessions other replicas issued, when the store is shared (`shared_sessions.rs`).
    shared: Option<SharedSessions>,
}

impl SessionOwners {
    /// Owners of the sessions `rmcp_sessions` serves (the same manager given to rmcp's
    /// `StreamableHttpService`).
    pub fn new(rmcp_sessions: Arc<LocalSessionManager>) -> SessionOwners {
        Self::with_limit(rmcp_sessions, MAX_LIVE_SESSIONS)
    }

    fn with_limit(rmcp_sessions: Arc<LocalSessionManager>, max: usize) -> SessionOwners {
        SessionOwners {
            owners: Mutex::new(Owners {
                by_session: HashMap::new(),
                prune_at: FIRST_PRUNE_AT.min(max),
            }),
            rmcp_sessions,
            max,
            shared: None,
        }
    }

    /// Also serves sessions issued by other replicas on the same shared store, after checking
    /// there that they were issued to the caller.
    pub fn with_shared(mut self, shared: SharedSessions) -> SessionOwners {
        self.shared = Some(shared);
        self
    }

    /// Whether `session` was issued to `caller`. Unknown sessions belong to nobody.
    pub fn is_owned_by(&self, session: &str, caller: &Caller) -> bool {
        self.owners
            .lock()
            .by_session
            .get(session)
            .is_some_and(|owner| owner.is(caller))
    }

    /// Records that `session` (just created by rmcp) belongs to `caller`.
    pub async fn remember(&self, session: &str, caller: &Caller) -> Result<(), SessionOwnerError> {
        let needs_prune = {
            let owners = self.owners.lock();
            owners.by_session.len() >= owners.prune_at
        };
        if needs_prune {
            self.prune().await;
        }
        let mut owners = self.owners.lock();
        if owners.by_session.len() >= self.max {
            return Err(SessionOwnerError::TooManySessions { max: self.max });
        }
        owners.by_session.insert(session.into(), Owner::of(caller));
        Ok(())
    }

    pub fn forget(&self, session: &str) {
        self.owners.lock().by_session.remove(session);
    }

    /// How many sessions are bound (live or not yet pruned).
    pub fn len(&self) -> usize {
        self.owners.lock().by_session.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the entries of sessions rmcp has closed (idle timeout, transport gone, DELETE).
    async fn prune(&self) {
        let live = self.rmcp_sessions.sessions.read().await;
        let mut owners = self.owners.lock();
        owners
            .by_session
            .retain(|session, _| live.contains_key(session.as_ref()));
        owners.prune_at = owners
            .by_session
            .len()
            .saturating_mul(2)
            .clamp(FIRST_PRUNE_AT.min(self.max), self.max);
    }

    /// Ends a session rmcp created but that could not be bound (the map is full).
    async fn close(&self, session: &str) {
        if let Err(error) = self.rmcp_sessions.close_session(&Arc::from(session)).await {
            tracing::warn!(%error, "could not close an unbound MCP session");
        }
    }
}

/// The axum middleware (see the module docs). Layered inside `inbound::require_caller` and
/// `errors::json_rpc_client_errors`, so that its refusals look like rmcp's own.
pub async fn bind_sessions_to_callers(
    State(owners): State<Arc<SessionOwners>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(caller) = request.extensions().get::<Caller>().cloned() else {
        // `require_caller` runs first; a request without a caller is a wiring bug.
        return super::errors::missing_caller_response();
    };
    let Some(session) = request.headers().get(SESSION_HEADER) else {
        let response = match &owners.shared {
            Some(_) => with_initializing_caller(&caller, next.run(request)).await,
            None => next.run(request).await,
        };
        return bind_new_session(&owners, &caller, response).await;
    };
    let Ok(session) = session.to_str().map(str::to_owned) else {
        return refuse_session(&caller, &request);
    };
    let is_delete = request.method() == Method::DELETE;
    let response = if owners.is_owned_by(&session, &caller) {
        next.run(request).await
    } else if let Some(shared) = &owners.shared {
        // Issued by another replica (or closed idle here): the shared store says whose it is.
        match shared.owned_by(&session, &caller).await {
            Ok(Some(params)) => {
                if let Err(error) = owners.remember(&session, &caller).await {
                    return super::errors::session_owner_error_response(&error);
                }
                with_loaded_session(&session, params, next.run(request)).await
            }
            Ok(None) => return refuse_session(&caller, &request),
            Err(error) => {
                tracing::warn!(%error, "an MCP session could not be looked up");
                return super::errors::session_owner_error_response(
                    &SessionOwnerError::StoreUnavailable,
                );
            }
        }
    } else {
        return refuse_session(&caller, &request);
    };
    if is_delete && response.status().is_success() {
        owners.forget(&session);
    }
    response
}

/// 404, as for an unknown session: the id is unknown or belongs to another caller.
fn refuse_session(caller: &Caller, request: &Request) -> Response {
    tracing::info!(
        caller = %caller.user_id(),
        method = %request.method(),
        "MCP request refused: the session id is unknown or belongs to another caller"
    );
    super::errors::unknown_session_response()
}

/// Records the owner of a session this response creates, or ends it if none can be recorded.
async fn bind_new_session(owners: &SessionOwners, caller: &Caller, response: Response) -> Response {
    let Some(session) = response.headers().get(SESSION_HEADER) else {
        return response;
    };
    let Ok(session) = session.to_str().map(str::to_owned) else {
        return response;
    };
    match owners.remember(&session, caller).await {
        Ok(()) => response,
        Err(error) => {
            owners.close(&session).await;
            tracing::warn!(%error, "MCP session refused");
            super::errors::session_owner_error_response(&error)
        }
    }
}

#[cfg(test)]
mod tests {
    use rmcp::transport::streamable_http_server::session::local::{
        SessionConfig, create_local_session,
    };

    use super::*;

    fn caller(issuer: &str, subject: &str) -> Caller {
        Caller {
            issuer: issuer.into(),
            subject: subject.into(),
            client_id: None,
            scopes: Arc::from(Vec::new()),
            expires_at: 0,
            claims: Default::default(),
        }
    }

    /// Puts a session into rmcp's map as `create_session` would (the worker is not run).
    async fn open_in_rmcp(manager: &LocalSessionManager, id: &str) {
        let (handle, _worker) = create_local_session(id, SessionConfig::default());
        manager.sessions.write().await.insert(id.into(), handle);
    }

    #[tokio::test]
    async fn a_session_belongs_to_its_issuer_and_subject_only() {
        let owners = SessionOwners::new(Arc::new(LocalSessionManager::default()));
        let alice = caller("https://idp", "alice");
        owners.remember("s1", &alice).await.unwrap();
        assert!(owners.is_owned_by("s1", &alice));
        assert!(owners.is_owned_by("s1", &caller("https://idp", "alice")));
        assert!(!owners.is_owned_by("s1", &caller("https://idp", "bob")));
        assert!(!owners.is_owned_by("s1", &caller("https://other-idp", "alice")));
        // `issuer#subject` look-alikes do not collide: the parts are compared separately.
        assert!(!owners.is_owned_by("s1", &caller("https://idp#alice", "")));
        assert!(!owners.is_owned_by("unknown", &alice));
        owners.forget("s1");
        assert!(!owners.is_owned_by("s1", &alice));
    }

    #[tokio::test]
    async fn sessions_rmcp_has_closed_are_pruned_and_the_map_stays_bounded() {
        let manager = Arc::new(LocalSessionManager::default());
        let owners = SessionOwners::with_limit(manager.clone(), 4);
        let alice = caller("https://idp", "alice");
        open_in_rmcp(&manager, "live").await;
        owners.remember("live", &alice).await.unwrap();
        for id in ["closed-1", "closed-2", "closed-3"] {
            owners.remember(id, &alice).await.unwrap();
        }
        assert_eq!(owners.len(), 4);
        // Full of entries rmcp no longer has: the next one prunes them and fits.
        open_in_rmcp(&manager, "new").await;
        owners.remember("new", &alice).await.unwrap();
        assert_eq!(owners.len(), 2);
        assert!(owners.is_owned_by("live", &alice));
        assert!(owners.is_owned_by("new", &alice));
        // Full of live sessions: refused, nothing grows.
        for id in ["live-2", "live-3"] {
            open_in_rmcp(&manager, id).await;
            owners.remember(id, &alice).await.unwrap();
        }
        open_in_rmcp(&manager, "one-too-many").await;
        assert_eq!(
            owners.remember("one-too-many", &alice).await,
            Err(SessionOwnerError::TooManySessions { max: 4 })
        );
        assert_eq!(owners.len(), 4);
        owners.close("one-too-many").await;
        assert!(!manager.sessions.read().await.contains_key("one-too-many"));
    }
}
