//! [`PostgresStore`]: the shared [`Store`] for several replicas (DESIGN 2.9), on
//! `tokio-postgres` with a `deadpool-postgres` pool.
//!
//! Tables (created by the versioned migrations in `schema.rs`); `record_key` and `value` are the
//! sled store's record key and sealed envelope, sealed by `seal.rs` under the same tree names,
//! so the database only ever holds envelopes (DESIGN 3.1, 3.2 invariant 5):
//!
//! | table | record key | columns in clear (as sled keeps them in its keys) | value (sealed) |
//! |---|---|---|---|
//! | `vault_tokens` | length-prefixed `user`, `workload`, `provider` | `user_key`, `workload`, `provider` | [`TokenRecord`] as JSON |
//! | `vault_consents` | the kind's tag byte, then the SHA-256 of the id | `expires_at` (for the purge) | expiry (8 bytes BE) + payload |
//! | `vault_api_keys` | length-prefixed `workload`, `name` | `workload`, `name` | the key |
//! | `vault_meta` | `canary` | | the canary text |
//!
//! A token's associated data is rebuilt from its clear columns, so a row whose `user_key` was
//! edited to another user's no longer opens (DESIGN 3.2 invariant 3).
//!
//! Every operation is one statement, so each is atomic and durable once it returns (a commit
//! with PostgreSQL's default `synchronous_commit = on`): what the sled store gets from `flush`.
//! `take_consent` is one `DELETE ... RETURNING` and `swap_consent` an `UPDATE` (or `DELETE`)
//! whose `WHERE` names the exact envelope that was read: every seal has a fresh random nonce,
//! so the envelope is the record's version, and under PostgreSQL's row locks of any number of
//! replicas swapping from one state exactly one matches (PostgreSQL 15 manual 13.2.1: a
//! waiting `UPDATE` re-checks its `WHERE` against the row the winner wrote).
//!
//! A pooled connection that the server dropped (restart, failover) is noticed by the pool's
//! recycle check and replaced; while the server cannot be reached, operations fail with
//! [`VaultError::Unavailable`] and the store recovers by itself once it is back.

mod buckets;
mod connect;
mod listener;
mod locks;
mod maintenance;
mod migrate;
mod schema;
#[cfg(test)]
pub(in crate::vault) mod test_cluster;
#[cfg(test)]
mod tests;
mod token_cache;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Client, Pool};
use parking_lot::RwLock;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

pub use self::connect::{DatabaseUrl, TlsMode};
pub use self::migrate::Migration;
use self::token_cache::{TokenCache, record_hash};
use super::seal;
use super::sled_store::{
    API_KEYS, CANARY_KEY, CANARY_TEXT, CONSENTS, META, TOKENS, TRANSIENT, api_key_record_key,
    consent_record_key, describe, token_record_key,
};
use super::{
    ConsentRecord, Keyring, RecordKind, RefreshLock, Secret, Store, StoreUsage, TokenKey,
    TokenMeta, TokenRecord, VaultError,
};

/// How long one statement may take once a connection is in hand. Every vault statement is a
/// lookup or a write by primary key; seconds mean the server is not answering.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Each table and the tree name its envelopes are sealed under.
const TABLES: [(&str, &str); 4] = [
    ("vault_tokens", TOKENS),
    ("vault_consents", CONSENTS),
    ("vault_api_keys", API_KEYS),
    ("vault_meta", META),
];

/// The PostgreSQL-backed vault. Cheap to clone (shared pool); `Debug` shows the host, port,
/// database and key ids, never the URL's password.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    url: DatabaseUrl,
    pool: Pool,
    /// Connections holding refresh locks (`locks.rs`), apart from `pool`.
    locks: Pool,
    keyring: RwLock<Keyring>,
    /// Token records read lately, invalidated by the database's notifications.
    tokens: Arc<TokenCache>,
    /// Stops the notification listener when the last handle on the store goes.
    listener: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.cancel();
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("store", &self.inner.url.describe())
            .field("keyring", &*self.inner.keyring.read())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects, applies missing migrations (safe when several replicas start at once, see
    /// `schema.rs`) and checks `keyring` against the vault's canary, so that a wrong key fails
    /// here with "the vault key does not match this vault". A server that cannot be reached is
    /// [`VaultError::Unavailable`].
    pub async fn open(url: &DatabaseUrl, keyring: Keyring) -> Result<PostgresStore, VaultError> {
        let store = PostgresStore {
            inner: Arc::new(Inner {
                url: url.clone(),
                pool: connect::pool(url, connect::POOL_SIZE, connect::POOL_TIMEOUT)?,
                locks: locks::lock_pool(url)?,
                keyring: RwLock::new(keyring),
                tokens: Arc::default(),
                listener: CancellationToken::new(),
            }),
        };
        store.migrate().await?;
        // After the migration: the trigger it creates is what the listener hears.
        tokio::spawn(listener::run(
            url.clone(),
            store.inner.tokens.clone(),
            store.inner.listener.clone(),
        ));
        tracing::info!(store = url.describe(), "vault opened");
        Ok(store)
    }

    /// The id of the key sealing new records.
    pub fn current_key_id(&self) -> u8 {
        self.inner.keyring.read().current_key_id()
    }

    /// How errors and logs name the store (`postgres host:port/db`).
    pub fn describe(&self) -> &str {
        self.inner.url.describe()
    }

    async fn client(&self) -> Result<Client, VaultError> {
        self.inner
            .pool
            .get()
            .await
            .map_err(|e| connect::pool_error(self.describe(), &e))
    }

    fn error(&self, error: &tokio_postgres::Error) -> VaultError {
        connect::driver_error(self.describe(), error)
    }

    /// One statement on a pooled connection, prepared once per connection.
    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, VaultError> {
        let client = self.client().await?;
        self.bounded(async {
            let statement = client.prepare_cached(sql).await?;
            client.query(&statement, params).await
        })
        .await
    }

    async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, VaultError> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, VaultError> {
        let client = self.client().await?;
        self.bounded(async {
            let statement = client.prepare_cached(sql).await?;
            client.execute(&statement, params).await
        })
        .await
    }

    /// Runs one statement's round trips within [`STATEMENT_TIMEOUT`]: a server that stops
    /// answering (hung, or a network dropping packets without a reset) is
    /// [`VaultError::Unavailable`] instead of holding the request until TCP gives up.
    async fn bounded<T>(
        &self,
        work: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, VaultError> {
        match tokio::time::timeout(STATEMENT_TIMEOUT, work).await {
            Ok(result) => result.map_err(|e| self.error(&e)),
            Err(_) => Err(VaultError::Unavailable {
                store: self.describe().to_string(),
                reason: format!("no answer within {STATEMENT_TIMEOUT:?}"),
            }),
        }
    }

    fn seal(&self, tree: &str, record_key: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
        let keyring = self.inner.keyring.read();
        seal::seal(&keyring, tree, record_key, plaintext).map_err(VaultError::seal)
    }

    fn open_envelope(
        &self,
        tree: &str,
        record_key: &[u8],
        envelope: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let keyring = self.inner.keyring.read();
        seal::open(&keyring, tree, record_key, envelope).map_err(|e| VaultError::Unseal {
            record: describe(tree, record_key),
            reason: e.to_string(),
        })
    }

    fn open_consent(
        &self,
        record_key: &[u8],
        envelope: &[u8],
    ) -> Result<ConsentRecord, VaultError> {
        let plaintext = self.open_envelope(CONSENTS, record_key, envelope)?;
        ConsentRecord::decode(&plaintext).ok_or_else(|| VaultError::Corrupt {
            record: describe(CONSENTS, record_key),
            reason: "shorter than its expiry field".to_string(),
        })
    }

    /// The consent record that `statement` (one `record_key = $1` parameter, returning the
    /// row's `value`) yields, opened; an expired record reads as none. The sealed expiry
    /// decides, not the clear column (which only serves the purge).
    async fn consent_by(
        &self,
        statement: &str,
        kind: RecordKind,
        id: &str,
    ) -> Result<Option<ConsentRecord>, VaultError> {
        let record_key = consent_record_key(kind, id);
        let Some(row) = self.query_opt(statement, &[&record_key]).await? else {
            return Ok(None);
        };
        let envelope: Vec<u8> = row.get(0);
        let record = self.open_consent(&record_key, &envelope)?;
        Ok((!record.is_expired(super::unix_now())).then_some(record))
    }

    /// The pool, for tests that look at the raw tables beside the store.
    #[cfg(test)]
    pub(super) async fn raw_client(&self) -> Client {
        self.client().await.unwrap()
    }
}

#[cfg(test)]
impl test_cluster::Cluster {
    /// The store's URL for `database`.
    pub(in crate::vault) fn url(&self, database: &str) -> DatabaseUrl {
        DatabaseUrl::parse(&Secret::new(self.url_text(database))).unwrap()
    }
}

/// Unix seconds as PostgreSQL's `bigint` (saturating: 2^63 seconds is far beyond any expiry).
fn to_bigint(unix: u64) -> i64 {
    i64::try_from(unix).unwrap_or(i64::MAX)
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn get_token(&self, key: &TokenKey) -> Result<Option<TokenRecord>, VaultError> {
        let record_key = token_record_key(key);
        let hash = record_hash(&record_key);
        if let Some(record) = self.inner.tokens.get(&hash, key) {
            return Ok(Some(record));
        }
        let ticket = self.inner.tokens.ticket();
        let row = self
            .query_opt(
                "SELECT value FROM vault_tokens WHERE record_key = $1",
                &[&record_key],
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let envelope: Vec<u8> = row.get(0);
        let plaintext = self.open_envelope(TOKENS, &record_key, &envelope)?;
        let record = parse_token(&plaintext, key)?;
        self.inner.tokens.fill(ticket, hash, key, &record);
        Ok(Some(record))
    }

    async fn put_token(&self, key: &TokenKey, record: &TokenRecord) -> Result<(), VaultError> {
        let record_key = token_record_key(key);
        // Sized up front so the buffer does not reallocate and leave an un-zeroed partial copy
        // of the plaintext behind (best effort, as in the sled store).
        let estimate = 1024
            + 2 * record.access_token.expose().len()
            + 2 * record
                .refresh_token
                .as_ref()
                .map_or(0, |t| t.expose().len())
            + record.scopes.iter().map(|s| 2 * s.len() + 3).sum::<usize>();
        let mut plaintext = Zeroizing::new(Vec::with_capacity(estimate));
        serde_json::to_writer(&mut *plaintext, record)
            .map_err(|e| VaultError::seal(format!("cannot encode {key}: {:?}", e.classify())))?;
        let envelope = self.seal(TOKENS, &record_key, &plaintext)?;
        self.execute(
            "INSERT INTO vault_tokens (record_key, user_key, workload, provider, value)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (record_key) DO UPDATE SET value = EXCLUDED.value",
            &[
                &record_key,
                &key.user,
                &key.workload,
                &key.provider,
                &envelope,
            ],
        )
        .await?;
        self.inner.tokens.invalidate(&record_hash(&record_key));
        Ok(())
    }

    async fn lock_refresh(&self, key: &TokenKey) -> Result<RefreshLock, VaultError> {
        self.advisory_refresh_lock(key).await
    }

    async fn delete_token(&self, key: &TokenKey) -> Result<bool, VaultError> {
        let record_key = token_record_key(key);
        let deleted = self
            .execute(
                "DELETE FROM vault_tokens WHERE record_key = $1",
                &[&record_key],
            )
            .await?;
        self.inner.tokens.invalidate(&record_hash(&record_key));
        Ok(deleted > 0)
    }

    async fn list_tokens(
        &self,
        user: Option<&str>,
    ) -> Result<Vec<(TokenKey, TokenMeta)>, VaultError> {
        let rows = match user {
            Some(user) => {
                self.query(
                    "SELECT user_key, workload, provider, value FROM vault_tokens WHERE user_key = $1",
                    &[&user],
                )
                .await?
            }
            None => {
                self.query(
                    "SELECT user_key, workload, provider, value FROM vault_tokens",
                    &[],
                )
                .await?
            }
        };
        let mut listed = Vec::with_capacity(rows.len());
        for row in rows {
            let key = TokenKey::new(
                row.get::<_, String>(1),
                row.get::<_, String>(0),
                row.get::<_, String>(2),
            );
            let envelope: Vec<u8> = row.get(3);
            // The associated data is rebuilt from the clear columns (see the module docs).
            let plaintext = self.open_envelope(TOKENS, &token_record_key(&key), &envelope)?;
            let meta = parse_token(&plaintext, &key)?.meta();
            listed.push((key, meta));
        }
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(listed)
    }

    async fn put_consent(
        &self,
        kind: RecordKind,
        id: &str,
        record: &ConsentRecord,
    ) -> Result<(), VaultError> {
        let record_key = consent_record_key(kind, id);
        let envelope = self.seal(CONSENTS, &record_key, &record.encode())?;
        self.execute(
            "INSERT INTO vault_consents (record_key, expires_at, value) VALUES ($1, $2, $3)
             ON CONFLICT (record_key) DO UPDATE
             SET expires_at = EXCLUDED.expires_at, value = EXCLUDED.value",
            &[&record_key, &to_bigint(record.expires_at), &envelope],
        )
        .await?;
        Ok(())
    }

    async fn get_consent(
        &self,
        kind: RecordKind,
        id: &str,
    ) -> Result<Option<ConsentRecord>, VaultError> {
        self.consent_by(
            "SELECT value FROM vault_consents WHERE record_key = $1",
            kind,
            id,
        )
        .await
    }

    async fn take_consent(
        &self,
        kind: RecordKind,
        id: &str,
    ) -> Result<Option<ConsentRecord>, VaultError> {
        // One statement: of concurrent takers on any replica exactly one gets the row back,
        // and the delete is committed before the record is used (DESIGN 3.2 invariant 4).
        self.consent_by(
            "DELETE FROM vault_consents WHERE record_key = $1 RETURNING value",
            kind,
            id,
        )
        .await
    }

    async fn swap_consent(
        &self,
        kind: RecordKind,
        id: &str,
        expected: &ConsentRecord,
        new: Option<&ConsentRecord>,
    ) -> Result<bool, VaultError> {
        let record_key = consent_record_key(kind, id);
        let row = self
            .query_opt(
                "SELECT value FROM vault_consents WHERE record_key = $1",
                &[&record_key],
            )
            .await?;
        let Some(row) = row else { return Ok(false) };
        let envelope: Vec<u8> = row.get(0);
        let current = self.open_consent(&record_key, &envelope)?;
        if current != *expected || current.is_expired(super::unix_now()) {
            return Ok(false);
        }
        // Compare-and-swap on the exact envelope read above (see the module docs).
        let changed = match new {
            Some(new) => {
                let replacement = self.seal(CONSENTS, &record_key, &new.encode())?;
                self.execute(
                    "UPDATE vault_consents SET value = $3, expires_at = $4
                     WHERE record_key = $1 AND value = $2",
                    &[
                        &record_key,
                        &envelope,
                        &replacement,
                        &to_bigint(new.expires_at),
                    ],
                )
                .await?
            }
            None => {
                self.execute(
                    "DELETE FROM vault_consents WHERE record_key = $1 AND value = $2",
                    &[&record_key, &envelope],
                )
                .await?
            }
        };
        Ok(changed == 1)
    }

    fn seal_transient(&self, purpose: &str, plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
        self.seal(TRANSIENT, purpose.as_bytes(), plaintext)
    }

    fn open_transient(
        &self,
        purpose: &str,
        envelope: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        self.open_envelope(TRANSIENT, purpose.as_bytes(), envelope)
    }

    async fn consent_usage(&self) -> Result<StoreUsage, VaultError> {
        let row = self
            .query_opt(
                "SELECT count(*), coalesce(sum(octet_length(value)), 0)::bigint FROM vault_consents",
                &[],
            )
            .await?;
        let (records, bytes): (i64, i64) = row.map_or((0, 0), |row| (row.get(0), row.get(1)));
        Ok(StoreUsage {
            records: usize::try_from(records).unwrap_or(usize::MAX),
            bytes: usize::try_from(bytes).unwrap_or(usize::MAX),
        })
    }

    async fn shared_secret(
        &self,
        name: &str,
        candidate: Option<&[u8]>,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, VaultError> {
        self.read_or_store_secret(name, candidate).await
    }

    /// A sealed read of the canary: the server answers and the keyring opens this vault.
    async fn check(&self) -> Result<(), VaultError> {
        let row = self
            .query_opt(
                "SELECT value FROM vault_meta WHERE record_key = $1",
                &[&CANARY_KEY],
            )
            .await?;
        let envelope: Vec<u8> = row
            .ok_or_else(|| VaultError::Corrupt {
                record: "the vault canary".to_string(),
                reason: "missing".to_string(),
            })?
            .get(0);
        let text = self.open_envelope(META, CANARY_KEY, &envelope)?;
        if text.as_slice() == CANARY_TEXT {
            Ok(())
        } else {
            Err(VaultError::Corrupt {
                record: "the vault canary".to_string(),
                reason: "unexpected content".to_string(),
            })
        }
    }

    async fn put_api_key(
        &self,
        workload: &str,
        name: &str,
        key: &Secret,
    ) -> Result<(), VaultError> {
        let record_key = api_key_record_key(workload, name);
        let envelope = self.seal(API_KEYS, &record_key, key.expose().as_bytes())?;
        self.execute(
            "INSERT INTO vault_api_keys (record_key, workload, name, value) VALUES ($1, $2, $3, $4)
             ON CONFLICT (record_key) DO UPDATE SET value = EXCLUDED.value",
            &[&record_key, &workload, &name, &envelope],
        )
        .await?;
        Ok(())
    }

    async fn get_api_key(&self, workload: &str, name: &str) -> Result<Option<Secret>, VaultError> {
        let record_key = api_key_record_key(workload, name);
        let row = self
            .query_opt(
                "SELECT value FROM vault_api_keys WHERE record_key = $1",
                &[&record_key],
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let envelope: Vec<u8> = row.get(0);
        let plaintext = self.open_envelope(API_KEYS, &record_key, &envelope)?;
        let text = std::str::from_utf8(&plaintext).map_err(|_| VaultError::Corrupt {
            record: format!("API key {workload}/{name}"),
            reason: "not UTF-8".to_string(),
        })?;
        Ok(Some(Secret::new(text)))
    }

    fn is_shared(&self) -> bool {
        true
    }

    /// One `DELETE` by the clear `expires_at` column (indexed), whatever replica runs it.
    async fn purge_expired(&self, now: u64) -> Result<usize, VaultError> {
        let purged = self
            .execute(
                "DELETE FROM vault_consents WHERE expires_at <= $1",
                &[&to_bigint(now)],
            )
            .await?;
        // Rate-limit buckets idle long enough to be full again (by the database's clock, as
        // they are written).
        self.execute(
            "DELETE FROM rate_buckets WHERE updated < clock_timestamp() - make_interval(secs => $1)",
            &[&buckets::IDLE_BUCKET_SECONDS],
        )
        .await?;
        Ok(usize::try_from(purged).unwrap_or(usize::MAX))
    }
}

fn parse_token(plaintext: &[u8], key: &TokenKey) -> Result<TokenRecord, VaultError> {
    serde_json::from_slice(plaintext).map_err(|e| VaultError::corrupt(format!("token {key}"), &e))
}
