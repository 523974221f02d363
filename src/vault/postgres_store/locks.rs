//! Refresh single-flight across replicas (DESIGN 2.9): a PostgreSQL session-level advisory
//! lock per token record (PostgreSQL 15 manual 9.27.10), held on a connection of its own.
//!
//! - The lock's 64-bit key is the first eight bytes of SHA-256 over a fixed label and the
//!   token's record key. Two links that collide only share a queue; nothing is stored under it.
//! - Lock connections come from a second, small pool, so refreshes waiting on one another (or
//!   on a slow provider) never take the connections every other vault statement needs.
//! - The server releases a session's advisory locks when its connection ends: a replica that
//!   dies mid-refresh (SIGKILL, lost network) frees the link for the others by itself.
//! - On drop the lock is given back with `pg_advisory_unlock_all()` before the connection
//!   returns to the pool; if that cannot be confirmed, the connection is closed instead of
//!   pooled, so a pooled connection never holds a lock.

use std::time::Duration;

use aws_lc_rs::digest;
use deadpool_postgres::{Object, Pool};

use super::PostgresStore;
use super::connect;
use crate::vault::{DatabaseUrl, RefreshLock, TokenKey, VaultError};

/// Connections that may hold or wait for refresh locks at once, per replica. Each one is a
/// distinct link refreshing (the identity module lets one call per link through).
const LOCK_POOL_SIZE: usize = 8;
/// How long a refresh waits for another replica's refresh of the same link (or for a lock
/// connection): longer than a provider's token request may take, bounded so a wedged peer
/// turns into an error instead of a hung call.
pub(super) const LOCK_WAIT: Duration = Duration::from_secs(30);
const UNLOCK_TIMEOUT: Duration = Duration::from_secs(5);
const LABEL: &[u8] = b"portcullis refresh lock v1\0";

/// The pool refresh locks are taken on.
pub(super) fn lock_pool(url: &DatabaseUrl) -> Result<Pool, VaultError> {
    connect::pool(url, LOCK_POOL_SIZE, LOCK_WAIT)
}

/// The advisory lock key of a token record.
pub(super) fn lock_key(record_key: &[u8]) -> i64 {
    let mut input = Vec::with_capacity(LABEL.len() + record_key.len());
    input.extend_from_slice(LABEL);
    input.extend_from_slice(record_key);
    let hash = digest::digest(&digest::SHA256, &input);
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_ref()[..8]);
    i64::from_be_bytes(first)
}

impl PostgresStore {
    /// Takes the advisory lock of `key`'s token record (see the module docs).
    pub(super) async fn advisory_refresh_lock(
        &self,
        key: &TokenKey,
    ) -> Result<RefreshLock, VaultError> {
        let record_key = crate::vault::sled_store::token_record_key(key);
        let lock = lock_key(&record_key);
        let unavailable = |reason: String| VaultError::Unavailable {
            store: self.describe().to_string(),
            reason,
        };
        let client = self.inner.locks.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Timeout(_) => unavailable(format!(
                "no connection for a refresh lock within {LOCK_WAIT:?}"
            )),
            other => connect::pool_error(self.describe(), &other),
        })?;
        match tokio::time::timeout(
            LOCK_WAIT,
            client.execute("SELECT pg_advisory_lock($1)", &[&lock]),
        )
        .await
        {
            Ok(Ok(_)) => {
                // The re-read under the lock must see what the previous holder stored.
                self.inner
                    .tokens
                    .invalidate(&super::token_cache::record_hash(&record_key));
                Ok(RefreshLock::held(HeldLock {
                    client: Some(client),
                }))
            }
            Ok(Err(error)) => {
                discard(client);
                Err(self.error(&error))
            }
            Err(_) => {
                // The server may still grant the lock to this session later: never pool it.
                discard(client);
                Err(unavailable(format!(
                    "another replica has been refreshing {key} for over {LOCK_WAIT:?}"
                )))
            }
        }
    }
}

/// A pooled connection whose session holds an advisory lock.
struct HeldLock {
    client: Option<Object>,
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            discard(client);
            return;
        };
        runtime.spawn(async move {
            let unlocked = tokio::time::timeout(
                UNLOCK_TIMEOUT,
                client.execute("SELECT pg_advisory_unlock_all()", &[]),
            )
            .await;
            if !matches!(unlocked, Ok(Ok(_))) {
                tracing::warn!("a refresh lock could not be released; closing its connection");
                discard(client);
            }
        });
    }
}

/// Closes `client`'s connection instead of returning it to the pool: the server then drops
/// whatever advisory lock its session holds or was about to get.
fn discard(client: Object) {
    drop(Object::take(client));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_differ_per_record_and_are_stable() {
        assert_eq!(lock_key(b"a"), lock_key(b"a"));
        assert_ne!(lock_key(b"a"), lock_key(b"b"));
    }
}
