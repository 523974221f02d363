//! The server's questions during a call (MCP 2025-11-25 "Elicitation"), sent on to the caller.
//!
//! rmcp's client hands the session's handler an `elicitation/create` with no word of which of
//! the session's requests it belongs to (the spec relates it to one only through the stream it
//! arrived on). A session serves one user only, so a question never reaches another user; to
//! also never reach the wrong call, it goes to the session's call in flight when there is
//! exactly one, and only if that call's client can answer ([`ElicitationSink`]). With none, or
//! with several calls in flight (one user's concurrent calls on one server), it is declined:
//! the spec's answer for a question the user was not shown.

use std::sync::Arc;

use rmcp::model::{ElicitRequestParams, ElicitResult, ElicitationAction};

use crate::targets::ElicitationSink;

/// The session's calls in flight, each with its caller's sink if it has one.
#[derive(Default)]
pub struct InFlight {
    calls: parking_lot::Mutex<Calls>,
}

#[derive(Default)]
struct Calls {
    next: u64,
    open: Vec<(u64, Option<Arc<dyn ElicitationSink>>)>,
}

/// A call's place among those in flight; it leaves when dropped.
pub struct Registered<'a> {
    in_flight: &'a InFlight,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.in_flight
            .calls
            .lock()
            .open
            .retain(|(id, _)| *id != self.id);
    }
}

impl InFlight {
    /// Counts a call in flight until the returned guard is dropped.
    pub fn register(&self, sink: Option<&Arc<dyn ElicitationSink>>) -> Registered<'_> {
        let mut calls = self.calls.lock();
        let id = calls.next;
        calls.next += 1;
        calls.open.push((id, sink.cloned()));
        Registered {
            in_flight: self,
            id,
        }
    }

    /// The sink a question goes to: the only call in flight's, if it has one.
    fn recipient(&self) -> Option<Arc<dyn ElicitationSink>> {
        match self.calls.lock().open.as_slice() {
            [(_, sink)] => sink.clone(),
            _ => None,
        }
    }

    /// Relays `request` to the one call in flight's caller, or declines.
    pub async fn ask(&self, request: ElicitRequestParams) -> ElicitResult {
        match self.recipient() {
            Some(sink) => sink.elicit(request).await,
            None => {
                tracing::info!(
                    "an MCP server's elicitation was declined: no single call in flight whose client can answer"
                );
                ElicitResult::new(ElicitationAction::Decline)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::BoxFuture;

    #[derive(Debug)]
    struct Accepting;

    impl ElicitationSink for Accepting {
        fn elicit(&self, _request: ElicitRequestParams) -> BoxFuture<'_, ElicitResult> {
            Box::pin(async { ElicitResult::new(ElicitationAction::Accept) })
        }
    }

    fn question() -> ElicitRequestParams {
        serde_json::from_value(serde_json::json!({
            "mode": "form",
            "message": "Which colour?",
            "requestedSchema": {"type": "object", "properties": {"colour": {"type": "string"}}}
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn a_question_reaches_the_only_call_in_flight_and_no_other() {
        let in_flight = InFlight::default();
        let sink: Arc<dyn ElicitationSink> = Arc::new(Accepting);
        // Nobody in flight: declined.
        assert_eq!(
            in_flight.ask(question()).await.action,
            ElicitationAction::Decline
        );
        {
            let _one = in_flight.register(Some(&sink));
            assert_eq!(
                in_flight.ask(question()).await.action,
                ElicitationAction::Accept
            );
            // A second call of the same user in flight: whose question it is cannot be told.
            let two = in_flight.register(Some(&sink));
            assert_eq!(
                in_flight.ask(question()).await.action,
                ElicitationAction::Decline
            );
            drop(two);
            assert_eq!(
                in_flight.ask(question()).await.action,
                ElicitationAction::Accept
            );
        }
        // The call ended: declined again.
        assert_eq!(
            in_flight.ask(question()).await.action,
            ElicitationAction::Decline
        );
        // A call whose client cannot answer: declined.
        let _without = in_flight.register(None);
        assert_eq!(
            in_flight.ask(question()).await.action,
            ElicitationAction::Decline
        );
    }
}
