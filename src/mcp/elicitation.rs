//! A target server's questions, relayed to the client of the call they belong to (MCP
//! 2025-11-25 "Elicitation"; DESIGN 2.8: "an upstream elicitation is relayed to a client that
//! can answer it, else declined").
//!
//! Only a client on a session (2025-06-18 and 2025-11-25) that declared the `elicitation`
//! capability gets a relay: the gateway sends the question as its own `elicitation/create` on
//! that client's session, and the client's answer goes back upstream as it is. A form question
//! needs the `form` capability (an empty `elicitation: {}` means form, as the spec keeps it
//! backwards compatible), a URL question the `url` capability; anything else is declined
//! without bothering the client. A 2026-07-28 request has no session to ask on: its calls get
//! no relay (the MRTR form of relaying, parking the upstream call behind an `input_required`
//! answer, is not built), so their questions are declined.

use std::sync::Arc;

use rmcp::model::{ElicitRequestParams, ElicitResult, ElicitationAction, ProtocolVersion};
use rmcp::service::{Peer, RequestContext, RoleServer};

use crate::targets::{BoxFuture, ElicitationSink};

struct Relay {
    peer: Peer<RoleServer>,
    form: bool,
    url: bool,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("form", &self.form)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

fn decline() -> ElicitResult {
    ElicitResult::new(ElicitationAction::Decline)
}

impl ElicitationSink for Relay {
    fn elicit(&self, request: ElicitRequestParams) -> BoxFuture<'_, ElicitResult> {
        Box::pin(async move {
            let answerable = match &request {
                ElicitRequestParams::FormElicitationParams { .. } => self.form,
                ElicitRequestParams::UrlElicitationParams { .. } => self.url,
                _ => false,
            };
            if !answerable {
                return decline();
            }
            match self.peer.create_elicitation(request).await {
                Ok(answer) => answer,
                Err(error) => {
                    // A client that is gone or answered with an error declines, as far as the
                    // server upstream can tell.
                    tracing::info!(%error, "the client did not answer a relayed elicitation");
                    decline()
                }
            }
        })
    }
}

/// The relay for this request's client, if it can answer questions at all.
pub fn relay_for(context: &RequestContext<RoleServer>) -> Option<Arc<dyn ElicitationSink>> {
    let version = context.protocol_version()?;
    if version >= ProtocolVersion::V_2026_07_28 {
        return None;
    }
    let capability = context.client_capabilities()?.elicitation?;
    let url = capability.url.is_some();
    let form = capability.form.is_some() || !url;
    Some(Arc::new(Relay {
        peer: context.peer.clone(),
        form,
        url,
    }))
}
