//! `portcullis vault migrate --from sled --to postgres`: copies a sled vault's records into the
//! database, sealed envelopes as they are.
//!
//! Both stores seal under the same tree names and record keys (see the parent module), so an
//! envelope opens in the database exactly as it did in sled: nothing is decrypted to be moved
//! (each envelope is opened once, to check that the vault key opens it before it is copied).
//! The copy is one transaction: a record that does not open, or a failure half way, leaves the
//! database as it was. A record already in the database (written by a running PostgreSQL
//! gateway) is kept, never overwritten; expired consent records are not copied.

use super::{CONSENTS, PostgresStore};
use crate::vault::sled_store::{
    API_KEYS, RawRecord, TOKENS, decode_api_key_record_key, decode_token_key, describe,
    token_record_key,
};
use crate::vault::{ConsentRecord, VaultError};

/// What [`PostgresStore::import_records`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Migration {
    pub tokens: usize,
    pub consents: usize,
    pub api_keys: usize,
    /// Records the database already held (kept as they were).
    pub kept: usize,
    /// Consent records that had expired (not copied).
    pub expired: usize,
}

impl PostgresStore {
    /// Copies `records` (from [`crate::vault::SledStore::export_records`]) in one transaction.
    pub(in crate::vault) async fn import_records(
        &self,
        records: &[RawRecord],
    ) -> Result<Migration, VaultError> {
        let now = crate::vault::unix_now();
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(|e| self.error(&e))?;
        let mut report = Migration::default();
        for record in records {
            let corrupt = |reason: &str| VaultError::Corrupt {
                record: describe(record.tree, &record.record_key),
                reason: reason.to_string(),
            };
            // Opens, or the migration stops here with nothing written.
            let plaintext =
                self.open_envelope(record.tree, &record.record_key, &record.envelope)?;
            let (rows, copied) = match record.tree {
                TOKENS => {
                    let key = decode_token_key(&record.record_key)
                        .filter(|key| token_record_key(key) == record.record_key)
                        .ok_or_else(|| corrupt("not a workload/user/provider key"))?;
                    let rows = transaction
                        .execute(
                            "INSERT INTO vault_tokens (record_key, user_key, workload, provider, value)
                             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (record_key) DO NOTHING",
                            &[
                                &record.record_key,
                                &key.user,
                                &key.workload,
                                &key.provider,
                                &record.envelope,
                            ],
                        )
                        .await
                        .map_err(|e| self.error(&e))?;
                    (rows, &mut report.tokens)
                }
                CONSENTS => {
                    let consent = ConsentRecord::decode(&plaintext)
                        .ok_or_else(|| corrupt("shorter than its expiry field"))?;
                    if consent.is_expired(now) {
                        report.expired += 1;
                        continue;
                    }
                    let rows = transaction
                        .execute(
                            "INSERT INTO vault_consents (record_key, expires_at, value)
                             VALUES ($1, $2, $3) ON CONFLICT (record_key) DO NOTHING",
                            &[
                                &record.record_key,
                                &super::to_bigint(consent.expires_at),
                                &record.envelope,
                            ],
                        )
                        .await
                        .map_err(|e| self.error(&e))?;
                    (rows, &mut report.consents)
                }
                API_KEYS => {
                    let (workload, name) = decode_api_key_record_key(&record.record_key)
                        .ok_or_else(|| corrupt("not a workload/name key"))?;
                    let rows = transaction
                        .execute(
                            "INSERT INTO vault_api_keys (record_key, workload, name, value)
                             VALUES ($1, $2, $3, $4) ON CONFLICT (record_key) DO NOTHING",
                            &[&record.record_key, &workload, &name, &record.envelope],
                        )
                        .await
                        .map_err(|e| self.error(&e))?;
                    (rows, &mut report.api_keys)
                }
                _ => return Err(corrupt("a record of an unknown tree")),
            };
            if rows == 1 {
                *copied += 1;
            } else {
                report.kept += 1;
            }
        }
        transaction.commit().await.map_err(|e| self.error(&e))?;
        Ok(report)
    }
}
