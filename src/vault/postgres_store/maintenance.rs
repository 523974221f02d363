//! Key maintenance on the PostgreSQL vault: the secrets replicas share (the identity API's
//! signing key), and key rotation: the crash-safe steps of [`crate::vault::Keyring`], with the
//! re-seal pass as one transaction.
//!
//! The re-seal locks the four tables against writers (`SHARE ROW EXCLUSIVE`, PostgreSQL 15
//! manual 13.3.1: readers go on, writers of every replica wait), re-seals every envelope not
//! under the new key and commits: the database moves from "all under old keys" to "all under
//! the new key" at once. Before the old key is retired from the key file a count confirms
//! that no envelope under an older key was written meanwhile.
//!
//! What this does not do (yet): tell the *other* running replicas. They keep the keyring they
//! started with: until restarted with the new key file they cannot open records re-sealed
//! under the new key, and they keep sealing with the old key. Rotate with the replicas
//! stopped, or restart every replica right after `rotate-key` (README, "PostgreSQL vault
//! backend").

use std::path::Path;

use zeroize::Zeroizing;

use super::{PostgresStore, TABLES};
use crate::vault::seal;
use crate::vault::sled_store::{META, describe, shared_secret_record_key};
use crate::vault::{KeyRotation, VaultError};

impl PostgresStore {
    /// Rotation step 2 (see [`crate::vault::Keyring`]): re-seals, in one transaction, every
    /// record not sealed with the current key. Fails, naming the record and changing nothing,
    /// if any record cannot be opened. Returns how many records were re-sealed.
    pub async fn reseal_all(&self) -> Result<usize, VaultError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(|e| self.error(&e))?;
        transaction
            .batch_execute(
                "LOCK TABLE vault_tokens, vault_consents, vault_api_keys, vault_meta
                 IN SHARE ROW EXCLUSIVE MODE",
            )
            .await
            .map_err(|e| self.error(&e))?;
        let mut resealed = 0;
        for (table, tree) in TABLES {
            let rows = transaction
                .query(&format!("SELECT record_key, value FROM {table}"), &[])
                .await
                .map_err(|e| self.error(&e))?;
            for row in rows {
                let (record_key, envelope): (Vec<u8>, Vec<u8>) = (row.get(0), row.get(1));
                let fresh = {
                    let keyring = self.inner.keyring.read();
                    if seal::envelope_key_id(&envelope) == Some(keyring.current_key_id()) {
                        continue;
                    }
                    let plaintext =
                        seal::open(&keyring, tree, &record_key, &envelope).map_err(|e| {
                            VaultError::Unseal {
                                record: describe(tree, &record_key),
                                reason: e.to_string(),
                            }
                        })?;
                    seal::seal(&keyring, tree, &record_key, &plaintext).map_err(VaultError::seal)?
                };
                transaction
                    .execute(
                        &format!("UPDATE {table} SET value = $2 WHERE record_key = $1"),
                        &[&record_key, &fresh],
                    )
                    .await
                    .map_err(|e| self.error(&e))?;
                resealed += 1;
            }
        }
        transaction.commit().await.map_err(|e| self.error(&e))?;
        Ok(resealed)
    }

    /// `portcullis vault rotate-key` against the shared database: appends a new key to
    /// `key_file`, re-seals every record (one transaction), checks that none is left under an
    /// older key, then retires the older keys from the file. `key_file` must be the file the
    /// keyring was loaded from; see the module docs for what the other replicas need.
    pub async fn rotate_key(&self, key_file: &Path) -> Result<KeyRotation, VaultError> {
        let inner = self.inner.clone();
        let file = key_file.to_path_buf();
        let (old_key_ids, new_key_id) = tokio::task::spawn_blocking(move || {
            let mut keyring = inner.keyring.write();
            let old = keyring.key_ids();
            keyring.rotate(&file).map(|new| (old, new))
        })
        .await
        .map_err(|e| VaultError::Task(e.to_string()))??;
        let resealed = self.reseal_all().await?;
        let mut stale = 0i64;
        for (table, _) in TABLES {
            let row = self
                .query_opt(
                    &format!("SELECT count(*) FROM {table} WHERE get_byte(value, 1) <> $1"),
                    &[&i32::from(new_key_id)],
                )
                .await?;
            stale += row.map_or(0, |row| row.get::<_, i64>(0));
        }
        if stale > 0 {
            return Err(VaultError::Rotation(format!(
                "{stale} records are still sealed with an older key; the older keys were kept in the key file, run the rotation again"
            )));
        }
        let inner = self.inner.clone();
        let file = key_file.to_path_buf();
        tokio::task::spawn_blocking(move || inner.keyring.write().retire_old_keys(&file))
            .await
            .map_err(|e| VaultError::Task(e.to_string()))??;
        tracing::info!(
            store = self.describe(),
            ?old_key_ids,
            new_key_id,
            resealed,
            "vault key rotated"
        );
        Ok(KeyRotation {
            old_key_ids,
            new_key_id,
            resealed,
        })
    }

    /// [`crate::vault::Store::shared_secret`]: the first insert wins, every replica reads it.
    pub(super) async fn read_or_store_secret(
        &self,
        name: &str,
        candidate: Option<&[u8]>,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, VaultError> {
        let record_key = shared_secret_record_key(name);
        if let Some(candidate) = candidate {
            // Of replicas starting together, the first insert wins; the others read it.
            let envelope = self.seal(META, &record_key, candidate)?;
            self.execute(
                "INSERT INTO vault_meta (record_key, value) VALUES ($1, $2)
                 ON CONFLICT (record_key) DO NOTHING",
                &[&record_key, &envelope],
            )
            .await?;
        }
        let row = self
            .query_opt(
                "SELECT value FROM vault_meta WHERE record_key = $1",
                &[&record_key],
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let envelope: Vec<u8> = row.get(0);
        self.open_envelope(META, &record_key, &envelope).map(Some)
    }
}
