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
//! Idle sessions are closed here, not by rmcp (DESIGN 3.2 invariant 9). rmcp's own
//! `SessionConfig::keep_alive` counts only worker events, so it closes a session in the middle
//! of a call that is quiet for longer (a 10-minute Lambda) and keeps a dead one for 5 minutes;
//! the gateway turns it off and counts what it sees instead: every answer body and GET stream
//! of a session is a use, and a session with no use for `server.mcp_session_idle_seconds`
//! is closed by [`SessionOwners::close_idle`], run on a timer. Its ~92 KiB inside rmcp are
//! freed; with a vault the session is restored from there on its next request
//! (`shared_sessions.rs`), so to the client nothing happened. An open GET stream is a use: it
//! holds the session until the client goes away (the stream's SSE pings find that out).
//!
//! Bounded: whenever this map grows past a threshold, entries rmcp no longer has (transport
//! gone, DELETE) are dropped, and the threshold doubles from what is left (amortised O(1) per
//! session). Past [`MAX_LIVE_SESSIONS`] live sessions, a new session is closed at once and
//! the `initialize` is answered 503.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;
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
    uses: Arc<SessionUses>,
}

/// What a session is doing: answers and streams still open, and when the last one ended.
#[derive(Debug)]
struct SessionUses {
    open: AtomicU32,
    /// Milliseconds since [`SessionOwners::epoch`].
    last_ended_ms: AtomicU64,
}

/// One open answer or stream of a session; dropping it (body done or client gone) ends it.
struct InUse {
    uses: Arc<SessionUses>,
    epoch: Instant,
}

impl Drop for InUse {
    fn drop(&mut self) {
        self.uses
            .last_ended_ms
            .store(millis_since(self.epoch), Ordering::Relaxed);
        self.uses.open.fetch_sub(1, Ordering::Release);
    }
}

fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Owner {
    fn of(caller: &Caller, now_ms: u64) -> Owner {
        Owner {
            issuer: caller.issuer.clone(),
            subject: caller.subject.clone(),
            uses: Arc::new(SessionUses {
                open: AtomicU32::new(0),
                last_ended_ms: AtomicU64::new(now_ms),
            }),
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
    /// Sessions kept in the vault, restorable on any replica (`shared_sessions.rs`).
    shared: Option<SharedSessions>,
    /// The clock [`SessionUses::last_ended_ms`] counts from.
    epoch: Instant,
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
            epoch: Instant::now(),
        }
    }

    /// Also serves sessions issued by other replicas on the same shared store, after checking
    /// there that they were issued to the caller.
    pub fn with_shared(mut self, shared: SharedSessions) -> SessionOwners {
        self.shared = Some(shared);
        self
    }

    /// Whether `session` was issued to `caller`. Unknown sessions belong to nobody.
    #[cfg(test)]
    pub fn is_owned_by(&self, session: &str, caller: &Caller) -> bool {
        self.owners
            .lock()
            .by_session
            .get(session)
            .is_some_and(|owner| owner.is(caller))
    }

    /// A use of `session` by `caller`, if it is theirs. Counted under the map's lock, so that
    /// [`SessionOwners::close_idle`] never closes a session a request has just been let into.
    fn start_use(&self, session: &str, caller: &Caller) -> Option<InUse> {
        let owners = self.owners.lock();
        let owner = owners.by_session.get(session).filter(|o| o.is(caller))?;
        owner.uses.open.fetch_add(1, Ordering::Acquire);
        Some(InUse {
            uses: owner.uses.clone(),
            epoch: self.epoch,
        })
    }

    /// Closes every session with nothing open for `idle` (module docs); returns how many it
    /// closed and how many are left in memory.
    pub async fn close_idle(&self, idle: Duration) -> (usize, usize) {
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        let now = millis_since(self.epoch);
        let (idle_sessions, left) = {
            let mut owners = self.owners.lock();
            let mut idle_sessions = Vec::new();
            owners.by_session.retain(|session, owner| {
                let quiet = owner.uses.open.load(Ordering::Acquire) == 0
                    && now.saturating_sub(owner.uses.last_ended_ms.load(Ordering::Relaxed))
                        >= idle_ms;
                if quiet {
                    idle_sessions.push(session.clone());
                }
                !quiet
            });
            (idle_sessions, owners.by_session.len())
        };
        for session in &idle_sessions {
            self.close(session).await;
        }
        (idle_sessions.len(), left)
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
        owners
            .by_session
            .insert(session.into(), Owner::of(caller, millis_since(self.epoch)));
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

    /// Ends a session in rmcp: one that could not be bound (the map is full), or an idle one.
    async fn close(&self, session: &str) {
        if let Err(error) = self.rmcp_sessions.close_session(&Arc::from(session)).await {
            tracing::debug!(%error, "could not close an MCP session");
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
    let response = if let Some(in_use) = owners.start_use(&session, &caller) {
        held_while_open(next.run(request).await, in_use)
    } else if let Some(shared) = &owners.shared {
        // Issued by another replica (or closed idle here): the shared store says whose it is.
        match shared.owned_by(&session, &caller).await {
            Ok(Some(params)) => {
                if let Err(error) = owners.remember(&session, &caller).await {
                    return super::errors::session_owner_error_response(&error);
                }
                let in_use = owners.start_use(&session, &caller);
                let response = with_loaded_session(&session, params, next.run(request)).await;
                match in_use {
                    Some(in_use) => held_while_open(response, in_use),
                    None => response,
                }
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

/// Keeps `in_use` until the response body is done or dropped (rmcp streams SSE; no trailers).
fn held_while_open(response: Response, in_use: InUse) -> Response {
    let (parts, body) = response.into_parts();
    let body = body.into_data_stream().map(move |chunk| {
        let _ = &in_use;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(body))
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
