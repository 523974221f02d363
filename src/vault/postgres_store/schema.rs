//! Tables, versioned migrations and the key canary (DESIGN 2.9: "Tables are created or
//! migrated at start").
//!
//! Every replica runs [`migrate`] when it opens the store. The whole step is one transaction
//! that first takes a transaction-scoped advisory lock (`pg_advisory_xact_lock`, PostgreSQL 15
//! manual section 9.27.10), so replicas starting at once run it one after the other: the first
//! creates the tables and writes the canary, the others find them there. The lock is released
//! by the commit or rollback, so a replica that dies part way leaves nothing locked and nothing
//! half-applied (PostgreSQL DDL is transactional).

#[cfg(test)]
use deadpool_postgres::Client;
use deadpool_postgres::Transaction;

use super::{PostgresStore, TABLES};
use crate::vault::VaultError;
use crate::vault::sled_store::{CANARY_KEY, CANARY_TEXT, META, canary_holds, describe};

/// The advisory lock key of the migration step: a fixed 64-bit number ("portcul" in ASCII),
/// the same in every replica and unlikely to collide with an application sharing the database.
const MIGRATION_LOCK: i64 = 0x706f_7274_6375_6c00;

/// The migrations, in order; version `i + 1` is `MIGRATIONS[i]`. Append only: a released
/// migration is never edited, a change is a new entry.
const MIGRATIONS: &[&str] = &[
    // 1: the four record tables. `record_key` and the `value` envelope are exactly the sled
    // store's key and value (same tree names in the associated data), so an envelope means the
    // same in both backends. Stored in clear, as sled stores them in its keys: token and API key
    // names (workload, user, provider, key name) and consent expiry (for the purge); consent ids
    // only as their SHA-256 inside `record_key`.
    "CREATE TABLE vault_tokens (
        record_key bytea PRIMARY KEY,
        user_key text NOT NULL,
        workload text NOT NULL,
        provider text NOT NULL,
        value bytea NOT NULL
    );
    CREATE INDEX vault_tokens_by_user ON vault_tokens (user_key);
    CREATE TABLE vault_consents (
        record_key bytea PRIMARY KEY,
        expires_at bigint NOT NULL,
        value bytea NOT NULL
    );
    CREATE INDEX vault_consents_by_expiry ON vault_consents (expires_at);
    CREATE TABLE vault_api_keys (
        record_key bytea PRIMARY KEY,
        workload text NOT NULL,
        name text NOT NULL,
        value bytea NOT NULL
    );
    CREATE TABLE vault_meta (
        record_key bytea PRIMARY KEY,
        value bytea NOT NULL
    );",
    // 2: rate-limit buckets shared by the replicas (`[[rate_limits]] shared = true`). A key is
    // the SHA-256 of the rule and the caller's key, so no user name is stored. One call of
    // `portcullis_take_tokens` takes a token from every bucket or from none, on the database's
    // clock (replicas' clocks may differ); the caller passes the keys sorted, so two calls lock
    // rows in the same order and cannot deadlock.
    "CREATE TABLE rate_buckets (
        bucket bytea PRIMARY KEY,
        tokens double precision NOT NULL,
        updated timestamptz NOT NULL
    );
    CREATE INDEX rate_buckets_by_update ON rate_buckets (updated);
    CREATE FUNCTION portcullis_take_tokens(
        buckets bytea[], capacities double precision[], per_second double precision[]
    ) RETURNS double precision[] LANGUAGE plpgsql AS $$
    DECLARE
        at timestamptz := clock_timestamp();
        available double precision[] := '{}';
        current double precision;
        since timestamptz;
        i integer;
    BEGIN
        FOR i IN 1 .. coalesce(array_length(buckets, 1), 0) LOOP
            INSERT INTO rate_buckets (bucket, tokens, updated)
                VALUES (buckets[i], capacities[i], at)
                ON CONFLICT (bucket) DO NOTHING;
            SELECT tokens, updated INTO current, since
                FROM rate_buckets WHERE bucket = buckets[i] FOR UPDATE;
            current := least(capacities[i],
                current + greatest(0, extract(epoch FROM at - since)) * per_second[i]);
            IF current < 1 THEN
                -- [index (1-based), seconds until a token]: nothing is taken.
                RETURN ARRAY[i, (1 - current) / per_second[i]];
            END IF;
            available := available || current;
        END LOOP;
        FOR i IN 1 .. coalesce(array_length(buckets, 1), 0) LOOP
            UPDATE rate_buckets SET tokens = available[i] - 1, updated = greatest(updated, at)
                WHERE bucket = buckets[i];
        END LOOP;
        RETURN '{}';
    END
    $$;",
    // 3: every change of a token row, by any writer, notifies the replicas' token caches
    // (`token_cache.rs`) with the hex SHA-256 of its record key (no name in clear). NOTIFY is
    // delivered at commit, so a replica never hears of a change it then cannot read.
    "CREATE FUNCTION portcullis_token_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('portcullis_tokens', encode(sha256(
            CASE WHEN TG_OP = 'DELETE' THEN OLD.record_key ELSE NEW.record_key END), 'hex'));
        RETURN NULL;
    END
    $$;
    CREATE TRIGGER vault_tokens_changed AFTER INSERT OR UPDATE OR DELETE ON vault_tokens
        FOR EACH ROW EXECUTE FUNCTION portcullis_token_changed();",
];

/// The schema version this build needs.
pub(super) const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

impl PostgresStore {
    /// Applies missing migrations and checks (or writes) the canary, under the advisory lock.
    pub(super) async fn migrate(&self) -> Result<(), VaultError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(|e| self.error(&e))?;
        transaction
            .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(|e| self.error(&e))?;
        // Looked up first rather than `CREATE TABLE IF NOT EXISTS`, which checks the CREATE
        // privilege even when the table exists: a role that may only use the tables starts.
        let exists: bool = transaction
            .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
            .await
            .map_err(|e| self.error(&e))?
            .get(0);
        if !exists {
            transaction
                .batch_execute(
                    "CREATE TABLE schema_migrations (
                        version integer PRIMARY KEY,
                        applied_at timestamptz NOT NULL DEFAULT now()
                    )",
                )
                .await
                .map_err(|e| self.error(&e))?;
        }
        let applied: Option<i32> = transaction
            .query_one("SELECT max(version) FROM schema_migrations", &[])
            .await
            .map_err(|e| self.error(&e))?
            .get(0);
        let applied = applied.unwrap_or(0);
        if applied > SCHEMA_VERSION {
            return Err(VaultError::Open {
                path: self.inner.url.describe().into(),
                reason: format!(
                    "the database schema is version {applied}, newer than this build's {SCHEMA_VERSION}; upgrade portcullis"
                ),
            });
        }
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
            let version = index as i32 + 1;
            transaction
                .batch_execute(sql)
                .await
                .map_err(|e| self.error(&e))?;
            transaction
                .execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)",
                    &[&version],
                )
                .await
                .map_err(|e| self.error(&e))?;
            tracing::info!(
                store = self.inner.url.describe(),
                version,
                "vault schema migrated"
            );
        }
        self.check_canary(&transaction).await?;
        transaction.commit().await.map_err(|e| self.error(&e))
    }

    /// Fails fast when the keyring is not this vault's (as the sled store does); writes the
    /// canary into a new vault after checking that the key opens any record already there.
    async fn check_canary(&self, transaction: &Transaction<'_>) -> Result<(), VaultError> {
        let mismatch = |detail: String| VaultError::KeyMismatch {
            path: self.inner.url.describe().into(),
            detail,
        };
        let row = transaction
            .query_opt(
                "SELECT value FROM vault_meta WHERE record_key = $1",
                &[&CANARY_KEY],
            )
            .await
            .map_err(|e| self.error(&e))?;
        if let Some(row) = row {
            let envelope: Vec<u8> = row.get(0);
            let keyring = self.inner.keyring.read();
            return canary_holds(&keyring, &envelope).map_err(mismatch);
        }
        for (table, tree) in TABLES {
            let row = transaction
                .query_opt(
                    &format!("SELECT record_key, value FROM {table} LIMIT 1"),
                    &[],
                )
                .await
                .map_err(|e| self.error(&e))?;
            if let Some(row) = row {
                let (record_key, envelope): (Vec<u8>, Vec<u8>) = (row.get(0), row.get(1));
                self.open_envelope(tree, &record_key, &envelope)
                    .map_err(|_| {
                        mismatch(format!("it cannot open {}", describe(tree, &record_key)))
                    })?;
            }
        }
        let envelope = self.seal(META, CANARY_KEY, CANARY_TEXT)?;
        transaction
            .execute(
                "INSERT INTO vault_meta (record_key, value) VALUES ($1, $2)",
                &[&CANARY_KEY, &envelope],
            )
            .await
            .map_err(|e| self.error(&e))?;
        Ok(())
    }
}

/// How many migrations the database has recorded (tests of concurrent start-up).
#[cfg(test)]
pub(super) async fn applied_versions(client: &Client) -> Vec<i32> {
    client
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}
