//! Following the server's own `notifications/tools/list_changed` (MCP 2025-11-25, "Tools: List
//! Changed Notification"): a target whose tools were discovered keeps one session of its own
//! open, with no user's credential (as discovery lists), and each notification on it asks the
//! gateway to list the tools again ([`crate::targets::Transport::tools_changed`]). The gateway's
//! own clients then hear `tools/list_changed` if the listing changed.
//!
//! The session lives as long as the target: a reload builds a new target with a new watcher,
//! and dropping the old target stops the old one. A server that closes the session, or cannot
//! be reached, is tried again after [`RETRY`]; the `refreshSeconds` listing covers the gap.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::ClientConfig;
use rmcp::service::{NotificationContext, RoleClient};
use tokio::sync::Notify;

use super::sessions::{client_info, connect_as};
use crate::credential::{Credentials, TargetCredentials};

/// How long to wait before opening the watching session again.
const RETRY: Duration = Duration::from_secs(30);

/// The watching session's task; dropping the watcher stops it.
#[derive(Debug)]
pub struct Watcher {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Hears the server's notifications; answers like the gateway's other upstream sessions.
struct Listener {
    changed: Arc<Notify>,
    url: Arc<str>,
}

impl rmcp::ClientHandler for Listener {
    fn get_info(&self) -> ClientConfig {
        client_info()
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        tracing::info!(url = %self.url, "the MCP server's tools changed; listing them again");
        self.changed.notify_one();
    }
}

/// What a watching session needs.
pub struct Watching {
    pub url: Arc<str>,
    pub http: reqwest::Client,
    /// The target's credentials: the session carries the gateway's own (as discovery does).
    pub credentials: Option<Credentials>,
    pub own: Option<Arc<dyn TargetCredentials>>,
    pub changed: Arc<Notify>,
}

/// Starts watching (on the current runtime; without one, nothing is watched and the periodic
/// listing alone keeps the tools current).
pub fn watch(watching: Watching) -> Option<Watcher> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let Watching {
        url,
        http,
        credentials,
        own,
        changed,
    } = watching;
    let task = runtime.spawn(async move {
        loop {
            let listener = Listener {
                changed: changed.clone(),
                url: url.clone(),
            };
            // A credential per session: a client-credentials token may have expired since.
            let credential =
                match super::own_credential(credentials.as_ref(), own.as_ref(), &url).await {
                    Ok(credential) => credential,
                    Err(reason) => {
                        tracing::debug!(%url, %reason, "no watching session with the MCP server");
                        tokio::time::sleep(RETRY).await;
                        continue;
                    }
                };
            match connect_as(&url, &http, credential.as_ref(), listener).await {
                Ok(session) => {
                    let _ = session.waiting().await;
                    tracing::debug!(%url, "the watching session with the MCP server closed");
                }
                Err(error) => {
                    tracing::debug!(%url, ?error, "no watching session with the MCP server");
                }
            }
            tokio::time::sleep(RETRY).await;
        }
    });
    Some(Watcher { task })
}
