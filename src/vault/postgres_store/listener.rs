//! The connection that receives the token-change notifications of `token_cache.rs`
//! (`LISTEN portcullis_tokens`, PostgreSQL 15 manual, NOTIFY), kept apart from the pool.
//!
//! While it is connected and listening the cache is live; when the connection ends or stops
//! answering the heartbeat, the cache is emptied and unused until a new connection listens
//! again (reconnecting with a backoff). A connection that dies without a reset (a partition)
//! is noticed by the heartbeat within [`HEARTBEAT`] + [`HEARTBEAT_TIMEOUT`].

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{AsyncMessage, Socket};
use tokio_util::sync::CancellationToken;

use super::connect::{self, DatabaseUrl, TlsMode};
use super::token_cache::{CHANNEL, TokenCache};
use crate::vault::VaultError;

/// How often the listening connection is asked whether it is still there.
pub(super) const HEARTBEAT: Duration = Duration::from_secs(10);
pub(super) const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How the listening connection shows in `pg_stat_activity`.
pub(super) const APPLICATION_NAME: &str = "portcullis token listener";

/// Listens until `stop` is cancelled (the store was dropped), reconnecting as needed.
pub(super) async fn run(url: DatabaseUrl, cache: Arc<TokenCache>, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let outcome = tokio::select! {
            () = stop.cancelled() => break,
            outcome = listen_once(&url, &cache) => outcome,
        };
        cache.set_live(false);
        match outcome {
            Ok(true) => {
                backoff = Duration::from_millis(200);
                tracing::warn!(
                    store = url.describe(),
                    "the token-change listener lost its connection; reading tokens from the database until it is back"
                );
            }
            Ok(false) => {}
            Err(error) => tracing::debug!(%error, "the token-change listener cannot connect"),
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    cache.set_live(false);
}

/// One connection's life. `Ok(true)`: it listened, then ended; `Ok(false)`: it ended before.
async fn listen_once(url: &DatabaseUrl, cache: &Arc<TokenCache>) -> Result<bool, VaultError> {
    match url.tls() {
        TlsMode::Disable => listen_with(url, tokio_postgres::NoTls, cache).await,
        TlsMode::Verified => {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(connect::tls_config(url)?);
            listen_with(url, tls, cache).await
        }
    }
}

async fn listen_with<T>(
    url: &DatabaseUrl,
    tls: T,
    cache: &Arc<TokenCache>,
) -> Result<bool, VaultError>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let error = |e: tokio_postgres::Error| connect::driver_error(url.describe(), &e);
    let mut config = url.driver_config().clone();
    config.application_name(APPLICATION_NAME);
    let (client, mut connection) = config.connect(tls).await.map_err(error)?;
    let notified = cache.clone();
    let mut driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(notification) = message {
                notified.invalidate(notification.payload());
            }
        }
    });
    let listening = tokio::time::timeout(
        HEARTBEAT_TIMEOUT,
        client.batch_execute(&format!("LISTEN {CHANNEL}")),
    )
    .await;
    if !matches!(listening, Ok(Ok(()))) {
        driver.abort();
        return Ok(false);
    }
    cache.set_live(true);
    loop {
        tokio::select! {
            _ = &mut driver => break,
            () = tokio::time::sleep(HEARTBEAT) => {
                let answered = tokio::time::timeout(HEARTBEAT_TIMEOUT, client.simple_query("")).await;
                if !matches!(answered, Ok(Ok(_))) {
                    break;
                }
            }
        }
    }
    driver.abort();
    Ok(true)
}
