//! A real HTTP API whose `/slow` holds every answer until the test releases it: a call that
//! stays in flight for as long as a test needs.
#![allow(dead_code)]

use serde_json::json;

/// A backend whose `/slow` holds every answer until the test releases it.
pub struct SlowBackend {
    pub url: String,
    pub received: std::sync::Arc<tokio::sync::Notify>,
    pub release: std::sync::Arc<tokio::sync::Notify>,
}

impl SlowBackend {
    pub async fn start() -> SlowBackend {
        let received = std::sync::Arc::new(tokio::sync::Notify::new());
        let release = std::sync::Arc::new(tokio::sync::Notify::new());
        let (r, l) = (received.clone(), release.clone());
        let app = axum::Router::new().route(
            "/slow",
            axum::routing::post(move || {
                let (received, release) = (r.clone(), l.clone());
                async move {
                    received.notify_one();
                    release.notified().await;
                    axum::Json(json!({"ok": true}))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        SlowBackend {
            url,
            received,
            release,
        }
    }
}
