//! A call's progress, relayed to the client that asked for it (MCP 2025-11-25 "Progress"): the
//! client's `progressToken` on the `tools/call`, and each report of the target (an upstream MCP
//! server's own `notifications/progress`) sent back as `notifications/progress` with that
//! token, before the call's answer.
//!
//! "The progress value MUST increase with each notification": reports reach the relay from
//! concurrent tasks (rmcp handles each upstream notification in a task of its own), so they
//! are sent one at a time and a report not above the last one sent is dropped. The client
//! sees an increasing sequence that always ends with the highest report.

use std::sync::Arc;

use rmcp::model::{ProgressNotificationParam, ProgressToken};
use rmcp::service::{Peer, RoleServer};

use crate::targets::{BoxFuture, ProgressSink};

struct Relay {
    peer: Peer<RoleServer>,
    token: ProgressToken,
    /// The last progress sent; held while sending, so sends are one at a time and in order.
    last: tokio::sync::Mutex<Option<f64>>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl ProgressSink for Relay {
    fn report(
        &self,
        progress: f64,
        total: Option<f64>,
        message: Option<String>,
    ) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let mut last = self.last.lock().await;
            if last.is_some_and(|last| progress <= last) || !progress.is_finite() {
                return;
            }
            *last = Some(progress);
            let mut param = ProgressNotificationParam::new(self.token.clone(), progress);
            if let Some(total) = total {
                param = param.with_total(total);
            }
            if let Some(message) = message {
                param = param.with_message(message);
            }
            // A client that is gone hears nothing; the call goes on.
            let _ = self.peer.notify_progress(param).await;
        })
    }
}

/// The sink of one call whose client sent `token`, relaying to `peer`.
pub fn relay(peer: Peer<RoleServer>, token: ProgressToken) -> Arc<dyn ProgressSink> {
    Arc::new(Relay {
        peer,
        token,
        last: tokio::sync::Mutex::new(None),
    })
}
