//! Key maintenance of the sled vault: the canary that proves the keyring is this vault's,
//! re-sealing every record under the current key, and key rotation (see the parent module's
//! docs on how rotation and concurrent writes interleave).

use std::path::Path;

use super::keys::describe;
use super::{CANARY_KEY, CANARY_TEXT, Inner, KeyRotation, META, RawRecord, SledStore};
use crate::vault::VaultError;
use crate::vault::seal::{self, SealError};

impl Inner {
    /// Fails fast when the keyring is not this vault's; writes the canary on a new vault.
    pub(super) fn check_canary(&self) -> Result<(), VaultError> {
        let mismatch = |detail: String| VaultError::KeyMismatch {
            path: self.path.clone(),
            detail,
        };
        let keyring = self.keyring.read();
        if let Some(envelope) = self.meta.get(CANARY_KEY)? {
            return canary_holds(&keyring, &envelope).map_err(mismatch);
        }
        // No canary yet: a new vault. If records exist anyway, the key must open them.
        for (tree_name, tree) in self.trees() {
            if let Some((record_key, envelope)) = tree.first()? {
                seal::open(&keyring, tree_name, &record_key, &envelope).map_err(|_| {
                    mismatch(format!(
                        "it cannot open {}",
                        describe(tree_name, &record_key)
                    ))
                })?;
            }
        }
        let envelope =
            seal::seal(&keyring, META, CANARY_KEY, CANARY_TEXT).map_err(VaultError::seal)?;
        self.meta.insert(CANARY_KEY, envelope)?;
        drop(keyring);
        self.flush()
    }

    pub(super) fn reseal_all(&self) -> Result<usize, VaultError> {
        let mut resealed = 0;
        for (tree_name, tree) in self.trees() {
            for item in tree.iter() {
                let (record_key, envelope) = item?;
                let keyring = self.keyring.read();
                if seal::envelope_key_id(&envelope) == Some(keyring.current_key_id()) {
                    continue;
                }
                let plaintext =
                    seal::open(&keyring, tree_name, &record_key, &envelope).map_err(|e| {
                        VaultError::Unseal {
                            record: describe(tree_name, &record_key),
                            reason: e.to_string(),
                        }
                    })?;
                let fresh = seal::seal(&keyring, tree_name, &record_key, &plaintext)
                    .map_err(VaultError::seal)?;
                // A concurrent write since our read already used the current key: keep it.
                let swapped = tree.compare_and_swap(&record_key, Some(&envelope), Some(fresh))?;
                resealed += usize::from(swapped.is_ok());
            }
        }
        self.flush()?;
        Ok(resealed)
    }

    pub(super) fn rotate_key(&self, key_file: &Path) -> Result<KeyRotation, VaultError> {
        let (old_key_ids, new_key_id) = {
            let mut keyring = self.keyring.write();
            let old = keyring.key_ids();
            let new = keyring.rotate(key_file)?;
            (old, new)
        };
        let resealed = self.reseal_all()?;
        let mut stale = 0usize;
        for (_, tree) in self.trees() {
            for item in tree.iter() {
                let (_, envelope) = item?;
                stale += usize::from(seal::envelope_key_id(&envelope) != Some(new_key_id));
            }
        }
        if stale > 0 {
            return Err(VaultError::Rotation(format!(
                "{stale} records are still sealed with an older key; the older keys were kept in the key file, run the rotation again"
            )));
        }
        self.keyring.write().retire_old_keys(key_file)?;
        tracing::info!(?old_key_ids, new_key_id, resealed, "vault key rotated");
        Ok(KeyRotation {
            old_key_ids,
            new_key_id,
            resealed,
        })
    }
}

impl SledStore {
    /// Every record but the canary, sealed as stored: the source of `portcullis vault migrate`.
    pub(in crate::vault) async fn export_records(&self) -> Result<Vec<RawRecord>, VaultError> {
        self.blocking(|inner| {
            let mut records = Vec::new();
            for (tree_name, tree) in inner.trees() {
                if tree_name == META {
                    continue;
                }
                for item in tree.iter() {
                    let (record_key, envelope) = item?;
                    records.push(RawRecord {
                        tree: tree_name,
                        record_key: record_key.to_vec(),
                        envelope: envelope.to_vec(),
                    });
                }
            }
            Ok(records)
        })
        .await
    }
}

/// Whether `envelope` is the canary sealed under `keyring`, and if not, why (the same words for
/// every backend: which key ids, which format version, or a key that is simply not this vault's).
pub(crate) fn canary_holds(keyring: &crate::vault::Keyring, envelope: &[u8]) -> Result<(), String> {
    match seal::open(keyring, META, CANARY_KEY, envelope) {
        Ok(text) if text.as_slice() == CANARY_TEXT => Ok(()),
        Err(SealError::UnknownKeyId(id)) => Err(format!(
            "the vault is sealed with key id {id}, the key holds key ids {:?}",
            keyring.key_ids()
        )),
        Err(SealError::UnknownVersion(version)) => Err(format!(
            "the vault uses format version {version}, unknown to this build"
        )),
        _ => Err(
            "it cannot open the vault's canary record; use the key this vault was created with"
                .to_string(),
        ),
    }
}
