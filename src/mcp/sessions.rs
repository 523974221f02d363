//! Live sessions that can receive `notifications/tools/list_changed` (MCP 2025-06-18 "Tools:
//! List Changed Notification"). Only session-based revisions have a channel to push on; a
//! 2026-07-28 client learns of changes from `ttlMs` / re-listing.

use parking_lot::Mutex;
use rmcp::service::{Peer, RoleServer};

#[derive(Default)]
pub struct SessionRegistry {
    peers: Mutex<Vec<Peer<RoleServer>>>,
}

impl SessionRegistry {
    pub fn register(&self, peer: Peer<RoleServer>) {
        let mut peers = self.peers.lock();
        peers.retain(|p| !p.is_transport_closed());
        peers.push(peer);
    }

    pub fn live_count(&self) -> usize {
        let mut peers = self.peers.lock();
        peers.retain(|p| !p.is_transport_closed());
        peers.len()
    }

    /// Tells every live session that the tool list changed; closed sessions are dropped.
    pub async fn notify_tools_changed(&self) {
        let peers: Vec<Peer<RoleServer>> = {
            let mut peers = self.peers.lock();
            peers.retain(|p| !p.is_transport_closed());
            peers.clone()
        };
        for peer in peers {
            if let Err(error) = peer.notify_tool_list_changed().await {
                tracing::debug!(%error, "could not notify a session of the tool list change");
            }
        }
    }
}
