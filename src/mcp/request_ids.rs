//! One request per JSON-RPC id per session at a time (MCP 2025-11-25, Base Protocol
//! "Requests": an id "MUST NOT have been previously used by the requestor within the same
//! session").
//!
//! rmcp 3.9 routes a session's responses by request id (`LocalSessionWorker`), so a client
//! that sends a second request with an id still in flight overwrites the first one's route:
//! the earlier POST never gets an answer and stays open on keep-alive pings, and its routing
//! entry is never freed (`../shared/RMCP-SESSIONS.md` section 1; with 16 connections sharing
//! one session and one id, one call at a time gets through). Clients do have this bug, so this
//! middleware sits in front of rmcp for POSTs of a session: a request whose id is in flight in
//! that session is answered at once, 400 with a JSON-RPC error naming the id, and reaches
//! nothing. The entry is freed when the first request's answer (its response body) is done or
//! dropped, so nothing is left behind. Per replica, like rmcp's routing it protects.
//!
//! Cost: the body is read here (bounded by `server.max_body_bytes`) and handed on as bytes;
//! only the top-level `id` and `method` are parsed.

use std::collections::HashSet;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::{Method, StatusCode};
use parking_lot::Mutex;
use serde::Deserialize;

use super::session_owner::SESSION_HEADER;

/// The ids in flight, per session, on this replica.
#[derive(Default)]
pub struct InFlightIds {
    ids: Mutex<HashSet<(Box<str>, Box<str>)>>,
}

/// What is read of a message: enough to tell a request (method and id) from the rest.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    id: Option<&'a serde_json::value::RawValue>,
    method: Option<&'a str>,
}

/// Removes its entry when dropped (the answer was sent, or the client went away).
struct InFlight {
    ids: Arc<InFlightIds>,
    key: (Box<str>, Box<str>),
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.ids.ids.lock().remove(&self.key);
    }
}

impl InFlightIds {
    #[cfg(test)]
    fn len(&self) -> usize {
        self.ids.lock().len()
    }
}

/// The middleware (see the module docs); `limit` is `server.max_body_bytes`.
pub async fn refuse_duplicate_request_ids(
    State((ids, limit)): State<(Arc<InFlightIds>, usize)>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let Some(session) = request
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(Box::<str>::from)
    else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body exceeds {limit} bytes"),
            )
                .into_response();
        }
    };
    // Anything that is not one request with an id (a notification, a response, a batch,
    // unparsable JSON) goes on to rmcp untouched, which answers it as before.
    let id = serde_json::from_slice::<Envelope<'_>>(&bytes)
        .ok()
        .filter(|message| message.method.is_some())
        .and_then(|message| message.id)
        .map(|id| Box::<str>::from(id.get()));
    let Some(id) = id else {
        return next
            .run(Request::from_parts(parts, Body::from(bytes)))
            .await;
    };
    let key = (session, id);
    if !ids.ids.lock().insert(key.clone()) {
        return duplicate_id_response(&key.1);
    }
    let guard = InFlight { ids, key };
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let (parts, body) = response.into_parts();
    // The entry lives as long as the answer's body (rmcp streams it as SSE; no trailers).
    let body = body.into_data_stream().map(move |chunk| {
        let _ = &guard;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(body))
}

/// 400 with a JSON-RPC error for the offending id (JSON-RPC 2.0 section 5.1, -32600).
fn duplicate_id_response(id: &str) -> Response {
    let id: serde_json::Value = serde_json::from_str(id).unwrap_or(serde_json::Value::Null);
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": -32600,
            "message": format!("request id {id} is already in use by a request in flight in this session; use a new id for every request (MCP Base Protocol, Requests)"),
        }
    });
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use tower::ServiceExt as _;

    use super::*;

    /// A service that holds its answer's body open until `release` is notified.
    fn app(ids: Arc<InFlightIds>, release: Arc<tokio::sync::Notify>) -> axum::Router {
        axum::Router::new()
            .route(
                "/mcp",
                axum::routing::post(move || {
                    let release = release.clone();
                    async move {
                        let stream = futures::stream::once(async move {
                            release.notified().await;
                            Ok::<_, std::convert::Infallible>("data: done\n\n")
                        });
                        Body::from_stream(stream)
                    }
                }),
            )
            .layer(axum::middleware::from_fn_with_state(
                (ids, 1024),
                refuse_duplicate_request_ids,
            ))
    }

    fn post(session: &str, body: &str) -> http::Request<Body> {
        http::Request::post("/mcp")
            .header(SESSION_HEADER, session)
            .body(Body::from(body.to_string()))
            .unwrap()
    }

    #[tokio::test]
    async fn an_id_in_flight_is_refused_at_once_and_free_again_when_its_answer_is_done() {
        let ids = Arc::new(InFlightIds::default());
        let release = Arc::new(tokio::sync::Notify::new());
        let app = app(ids.clone(), release.clone());
        let call = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{}}"#;

        let first = app.clone().oneshot(post("s1", call)).await.unwrap();
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(ids.len(), 1);

        let second = app.clone().oneshot(post("s1", call)).await.unwrap();
        assert_eq!(second.status(), StatusCode::BAD_REQUEST);
        let body = axum::body::to_bytes(second.into_body(), 4096)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["id"], 7);
        assert_eq!(body["error"]["code"], -32600);

        // Another session, or another id, is not held up.
        let other_session = app.clone().oneshot(post("s2", call)).await.unwrap();
        assert_eq!(other_session.status(), StatusCode::OK);
        let other_id = r#"{"jsonrpc":"2.0","id":"7","method":"tools/call"}"#;
        assert_eq!(
            app.clone()
                .oneshot(post("s1", other_id))
                .await
                .unwrap()
                .status(),
            StatusCode::OK
        );
        // Notifications carry no id and pass.
        let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        assert_eq!(
            app.clone()
                .oneshot(post("s1", note))
                .await
                .unwrap()
                .status(),
            StatusCode::OK
        );
        drop(other_session);

        // The first answer completes: the id is free again, nothing is left.
        release.notify_one();
        let done = axum::body::to_bytes(first.into_body(), 4096).await.unwrap();
        assert_eq!(&done[..], b"data: done\n\n");
        assert_eq!(ids.len(), 0, "every entry freed");
        let again = app.clone().oneshot(post("s1", call)).await.unwrap();
        assert_eq!(again.status(), StatusCode::OK);
    }
}
