//! Progress from the upstream server back to the caller (MCP 2025-11-25 "Progress").
//!
//! rmcp's client gives every request a progress token of its own; a call whose caller asked
//! for progress is sent with [`call_with_progress`], which routes the server's
//! `notifications/progress` for that token to the call's [`ProgressSink`] while the call is in
//! flight. The caller's own token never goes upstream, so one user's token cannot be used to
//! address another's call, and the session's other calls are not affected.
//!
//! rmcp handles each incoming notification in a task of its own, so a report can still be on
//! its way when the answer arrives: before answering, the call lets those tasks run and waits
//! for the reports they are relaying. A report whose task has not started by then is still
//! relayed for at least [`LATE`] after the answer (a client may ignore it, as MCP allows); the
//! route goes with a later call's insert.

use std::collections::HashMap;
use std::sync::Arc;

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, CancelledNotificationParam,
    ClientConfig, ClientRequest, ProgressNotificationParam, ProgressToken, RequestId, ServerResult,
};
use rmcp::model::{
    ElicitRequestParams, ElicitResult, ElicitationCapability, FormElicitationCapability,
    UrlElicitationCapability,
};
use rmcp::service::{
    NotificationContext, Peer, PeerRequestOptions, RequestContext, RoleClient, ServiceError,
};

use super::sessions::{Client, client_info};
use crate::targets::ProgressSink;

/// What a user's upstream session does with the server's notifications: progress of a call in
/// flight goes to that call's sink; the rest is ignored as by rmcp's default client.
/// How long a call's route outlives its answer, for reports already on their way.
const LATE: std::time::Duration = std::time::Duration::from_secs(1);

type Routes = Arc<parking_lot::Mutex<RouteTable>>;

/// The session's routes, and when ended ones were last dropped (at most once per [`LATE`], so
/// a busy session pays one scan per second, not one per call).
struct RouteTable {
    routes: HashMap<ProgressToken, Route>,
    pruned: std::time::Instant,
}

impl Default for RouteTable {
    fn default() -> RouteTable {
        RouteTable {
            routes: HashMap::new(),
            pruned: std::time::Instant::now(),
        }
    }
}

/// A call's route: its sink, and when the call ended (then it is dropped at least [`LATE`]
/// after, by a later call's insert: no timer per call).
struct Route {
    routed: Arc<Routed>,
    ended: Option<std::time::Instant>,
}

#[derive(Default)]
pub struct SessionHandler {
    progress: Routes,
    /// The calls in flight, for the server's questions ([`super::elicitation`]).
    pub(super) in_flight: super::elicitation::InFlight,
}

/// A call's sink and the reports being relayed to it right now.
struct Routed {
    sink: Arc<dyn ProgressSink>,
    relaying: tokio::sync::watch::Sender<usize>,
}

impl rmcp::ClientHandler for SessionHandler {
    /// A user's session declares `elicitation` (form and URL): the server's questions are
    /// relayed to the caller when their client can answer, declined otherwise.
    fn get_info(&self) -> ClientConfig {
        let mut info = client_info();
        info.capabilities.elicitation = Some(
            ElicitationCapability::new()
                .with_form(FormElicitationCapability::default())
                .with_url(UrlElicitationCapability::default()),
        );
        info
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, rmcp::ErrorData> {
        Ok(self.in_flight.ask(request).await)
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let routed = self
            .progress
            .lock()
            .routes
            .get(&params.progress_token)
            .map(|route| route.routed.clone());
        if let Some(routed) = routed {
            let _relaying = Relaying::start(&routed.relaying);
            routed
                .sink
                .report(params.progress, params.total, params.message)
                .await;
        }
    }
}

/// One report being relayed; counted until it is sent or its task is dropped (so a call never
/// waits for a report that will not come).
struct Relaying<'a>(&'a tokio::sync::watch::Sender<usize>);

impl<'a> Relaying<'a> {
    fn start(count: &'a tokio::sync::watch::Sender<usize>) -> Relaying<'a> {
        count.send_modify(|n| *n += 1);
        Relaying(count)
    }
}

impl Drop for Relaying<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Marks a call's route ended when the call is over.
struct Ended {
    routes: Routes,
    token: ProgressToken,
}

impl Drop for Ended {
    fn drop(&mut self) {
        if let Some(route) = self.routes.lock().routes.get_mut(&self.token) {
            route.ended = Some(std::time::Instant::now());
        }
    }
}

/// Tells the server a request is abandoned if the call is dropped before its answer (the
/// caller cancelled, or `timeoutMs` passed), as rmcp's own `call_tool` does.
struct CancelOnDrop {
    peer: Peer<RoleClient>,
    id: Option<RequestId>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let peer = self.peer.clone();
            let param =
                CancelledNotificationParam::new(Some(id), Some("cancelled by the caller".into()));
            tokio::spawn(async move {
                let _ = peer.notify_cancelled(param).await;
            });
        }
    }
}

/// `tools/call` on `client`, relaying the server's progress for it to `sink`.
pub async fn call_with_progress(
    client: &Client,
    params: CallToolRequestParams,
    sink: &Arc<dyn ProgressSink>,
) -> Result<CallToolResult, ServiceError> {
    let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
    let handle = client
        .send_cancellable_request(request, PeerRequestOptions::no_options())
        .await?;
    let handler = client.service();
    let (relaying, mut relayed) = tokio::sync::watch::channel(0usize);
    {
        let mut table = handler.progress.lock();
        if table.pruned.elapsed() >= LATE {
            table
                .routes
                .retain(|_, route| route.ended.is_none_or(|ended| ended.elapsed() < LATE));
            table.pruned = std::time::Instant::now();
        }
        table.routes.insert(
            handle.progress_token.clone(),
            Route {
                routed: Arc::new(Routed {
                    sink: sink.clone(),
                    relaying,
                }),
                ended: None,
            },
        );
    }
    let _ended = Ended {
        routes: handler.progress.clone(),
        token: handle.progress_token.clone(),
    };
    let mut abandoned = CancelOnDrop {
        peer: client.peer().clone(),
        id: Some(handle.id.clone()),
    };
    let response = handle.await_response().await;
    abandoned.id = None;
    // Reports that came before the answer go out before it (see the module notes).
    tokio::task::yield_now().await;
    let _ = relayed.wait_for(|n| *n == 0).await;
    match response? {
        ServerResult::CallToolResult(result) => Ok(result),
        _ => Err(ServiceError::UnexpectedResponse),
    }
}
