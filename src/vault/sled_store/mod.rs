//! [`SledStore`]: the embedded [`Store`] on sled 0.34 (DESIGN 3.1).
//!
//! Trees and record keys (the record key is also part of each value's associated data, see
//! `seal.rs`, so a value only opens where it was written):
//!
//! | tree | record key | value (sealed) |
//! |---|---|---|
//! | `tokens` | length-prefixed `user`, `workload`, `provider` | [`TokenRecord`] as JSON |
//! | `consents` | the record kind's tag byte, then the SHA-256 of its id | expiry (8 bytes BE) + payload |
//! | `api_keys` | length-prefixed `workload`, `name` | the key |
//! | `meta` | `canary` | a fixed text proving the keyring matches the vault |
//!
//! Token keys start with the user so that `list_tokens(Some(user))` is a prefix scan; each part
//! is prefixed with its length (u32 BE) so no user name can forge another's prefix. Consent ids
//! are bearer-like (they are the `/oauth2/connect/<id>` URL), so only their hash is on disk.
//!
//! sled is synchronous. Writes block on disk (`flush` fsyncs: writes that must survive a
//! crash — tokens, revocations, API keys, consumed consents — flush before returning), so they
//! run on tokio's blocking pool. The two reads on the tool-call path (`get_token`,
//! `get_api_key`) run inline on the async worker: sled serves them from its page cache, and a
//! cold read pages in one node, a short bounded wait, while the hand-off to the blocking pool
//! cost ~24 us of CPU in thread wake-ups on every call (issue 5, scenario 2: +27 us per vaulted
//! call with the hand-off, +3-7 us inline).
//!
//! Key rotation takes the keyring's write lock only to swap keys; every write holds the read
//! lock from sealing to insertion, so once the new key is current no write can still be
//! sealing with the old one, and one re-seal pass reaches every record.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use zeroize::Zeroizing;

use super::keyring::{Keyring, create_private_dir};
mod keys;
mod maintenance;
pub(crate) use maintenance::canary_holds;

use self::keys::encode_parts;
pub(super) use self::keys::{
    api_key_record_key, consent_record_key, decode_api_key_record_key, decode_token_key, describe,
    shared_secret_record_key, token_record_key,
};
use super::seal;
use super::{
    ConsentRecord, RecordKind, RefreshLock, Secret, Store, StoreUsage, TokenKey, TokenMeta,
    TokenRecord, VaultError,
};

// The tree names are part of every envelope's associated data (`seal.rs`); the PostgreSQL store
// seals under the same names and record keys, so an envelope means the same in both backends.
pub(super) const TOKENS: &str = "tokens";
pub(super) const CONSENTS: &str = "consents";
pub(super) const API_KEYS: &str = "api_keys";
pub(super) const META: &str = "meta";
/// Not a tree: the associated-data domain of [`Store::seal_transient`] envelopes, which live in
/// browsers, so that no transient envelope opens as a stored record or the other way round.
pub(super) const TRANSIENT: &str = "transient";
pub(super) const CANARY_KEY: &[u8] = b"canary";
pub(super) const CANARY_TEXT: &[u8] = b"portcullis vault canary, format 1";

/// The sled-backed vault. Cheap to clone (shared handle); `Debug` shows the path and key ids.
#[derive(Clone)]
pub struct SledStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    db: sled::Db,
    tokens: sled::Tree,
    consents: sled::Tree,
    api_keys: sled::Tree,
    meta: sled::Tree,
    keyring: RwLock<Keyring>,
}

/// One stored record as it is on disk: its tree, record key and sealed envelope. What
/// `portcullis vault migrate` copies; the envelope is never opened on the way.
pub(super) struct RawRecord {
    pub tree: &'static str,
    pub record_key: Vec<u8>,
    pub envelope: Vec<u8>,
}

/// What [`SledStore::rotate_key`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRotation {
    /// Key ids held before the rotation (all retired now).
    pub old_key_ids: Vec<u8>,
    /// The new (and only) key id.
    pub new_key_id: u8,
    /// How many records were re-sealed, the canary included.
    pub resealed: usize,
}

impl fmt::Debug for SledStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.inner.path)
            .field("keyring", &*self.inner.keyring.read())
            .finish_non_exhaustive()
    }
}

impl SledStore {
    /// Opens (or creates, as a 0700 folder) the vault at `path` with `keyring`, and checks the
    /// keyring against the vault's sealed canary so that a wrong key fails here with "the
    /// vault key does not match this vault" instead of on every record. Blocks on disk I/O:
    /// call it at start-up or from `spawn_blocking` ([`super::open_vault`] does).
    pub fn open(path: &Path, keyring: Keyring) -> Result<SledStore, VaultError> {
        create_private_dir(path)?;
        let opened = |source: sled::Error| VaultError::Open {
            path: path.to_path_buf(),
            reason: source.to_string(),
        };
        let db = sled::Config::new().path(path).open().map_err(opened)?;
        let tree = |name: &str| db.open_tree(name).map_err(opened);
        let inner = Inner {
            path: path.to_path_buf(),
            tokens: tree(TOKENS)?,
            consents: tree(CONSENTS)?,
            api_keys: tree(API_KEYS)?,
            meta: tree(META)?,
            db,
            keyring: RwLock::new(keyring),
        };
        inner.check_canary()?;
        Ok(SledStore {
            inner: Arc::new(inner),
        })
    }

    /// Closes the store and waits (bounded) until sled has released the database file lock.
    ///
    /// Dropping a handle is enough when the process exits, but sled finishes background writes
    /// on its own threads, which keep the lock a moment longer; whoever opens the vault next
    /// from this process or a child it starts (tests, `vault` commands) calls this first.
    pub async fn close(self) -> Result<(), VaultError> {
        let db_file = self.inner.path.join("db");
        self.flush().await?;
        drop(self);
        tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                // sled holds an exclusive flock on `<path>/db` while open.
                let Ok(file) = std::fs::File::open(&db_file) else {
                    return;
                };
                if file.try_lock().is_ok() || std::time::Instant::now() > deadline {
                    return;
                }
                std::thread::yield_now();
            }
        })
        .await
        .map_err(|e| VaultError::Task(e.to_string()))
    }

    /// The vault folder.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The id of the key sealing new records.
    pub fn current_key_id(&self) -> u8 {
        self.inner.keyring.read().current_key_id()
    }

    /// Writes everything to disk (fsync).
    pub async fn flush(&self) -> Result<(), VaultError> {
        self.blocking(|inner| inner.flush()).await
    }

    /// Rotation step 2 (see [`Keyring`]): re-seals every record not sealed with the current
    /// key, then flushes. Fails, naming the record, if any record cannot be opened; the old
    /// key must then stay. Returns how many records were re-sealed.
    pub async fn reseal_all(&self) -> Result<usize, VaultError> {
        self.blocking(|inner| inner.reseal_all()).await
    }

    /// `portcullis vault rotate-key`: the three crash-safe steps described on [`Keyring`].
    /// `key_file` must be the file the keyring was loaded from; a key from
    /// `PORTCULLIS_VAULT_KEY` cannot be rotated in place (refused, nothing changed).
    pub async fn rotate_key(&self, key_file: &Path) -> Result<KeyRotation, VaultError> {
        let key_file = key_file.to_path_buf();
        self.blocking(move |inner| inner.rotate_key(&key_file))
            .await
    }

    /// Runs a read inline (see the module docs for why reads do not go to the blocking pool).
    fn read<T>(&self, f: impl FnOnce(&Inner) -> Result<T, VaultError>) -> Result<T, VaultError> {
        f(&self.inner)
    }

    /// Runs `f` on the blocking pool (writes fsync).
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, VaultError> + Send + 'static,
    ) -> Result<T, VaultError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| VaultError::Task(e.to_string()))?
    }

    /// The raw sled tree, for tests that tamper with stored bytes.
    #[cfg(test)]
    pub(super) fn raw_tree(&self, name: &str) -> Option<sled::Tree> {
        self.inner
            .trees()
            .into_iter()
            .find(|(tree_name, _)| *tree_name == name)
            .map(|(_, tree)| tree.clone())
    }
}

#[async_trait::async_trait]
impl Store for SledStore {
    async fn get_token(&self, key: &TokenKey) -> Result<Option<TokenRecord>, VaultError> {
        self.read(|inner| {
            let record_key = token_record_key(key);
            let Some(envelope) = inner.tokens.get(&record_key)? else {
                return Ok(None);
            };
            let plaintext = inner.open(TOKENS, &record_key, &envelope)?;
            parse_token(&plaintext, key).map(Some)
        })
    }

    async fn put_token(&self, key: &TokenKey, record: &TokenRecord) -> Result<(), VaultError> {
        let record_key = token_record_key(key);
        // Sized up front so that, for ordinary tokens, the buffer does not reallocate: that
        // would leave an un-zeroed partial copy of the plaintext behind (best effort).
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
        self.blocking(move |inner| {
            inner.seal_insert(&inner.tokens, TOKENS, &record_key, &plaintext)?;
            inner.flush()
        })
        .await
    }

    /// sled's folder lock keeps every other process out of this vault: the identity module's
    /// per-process lock is the whole single-flight.
    async fn lock_refresh(&self, _key: &TokenKey) -> Result<RefreshLock, VaultError> {
        Ok(RefreshLock::single_process())
    }

    async fn delete_token(&self, key: &TokenKey) -> Result<bool, VaultError> {
        let record_key = token_record_key(key);
        self.blocking(move |inner| {
            let removed = inner.tokens.remove(&record_key)?.is_some();
            if removed {
                inner.flush()?;
            }
            Ok(removed)
        })
        .await
    }

    async fn list_tokens(
        &self,
        user: Option<&str>,
    ) -> Result<Vec<(TokenKey, TokenMeta)>, VaultError> {
        let prefix = user.map(|u| encode_parts(&[u])).unwrap_or_default();
        self.blocking(move |inner| {
            let mut listed = Vec::new();
            for item in inner.tokens.scan_prefix(&prefix) {
                let (record_key, envelope) = item?;
                let key = decode_token_key(&record_key).ok_or_else(|| VaultError::Corrupt {
                    record: "a token record key".to_string(),
                    reason: "not a workload/user/provider key".to_string(),
                })?;
                let plaintext = inner.open(TOKENS, &record_key, &envelope)?;
                let meta = parse_token(&plaintext, &key)?.meta();
                listed.push((key, meta));
            }
            listed.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(listed)
        })
        .await
    }

    async fn put_consent(
        &self,
        kind: RecordKind,
        id: &str,
        record: &ConsentRecord,
    ) -> Result<(), VaultError> {
        let record_key = consent_record_key(kind, id);
        let plaintext = record.encode();
        self.blocking(move |inner| {
            inner.seal_insert(&inner.consents, CONSENTS, &record_key, &plaintext)?;
            inner.flush()
        })
        .await
    }

    async fn get_consent(
        &self,
        kind: RecordKind,
        id: &str,
    ) -> Result<Option<ConsentRecord>, VaultError> {
        let record_key = consent_record_key(kind, id);
        self.blocking(move |inner| {
            let Some(envelope) = inner.consents.get(&record_key)? else {
                return Ok(None);
            };
            let record = inner.open_consent(&record_key, &envelope)?;
            Ok((!record.is_expired(super::unix_now())).then_some(record))
        })
        .await
    }

    async fn take_consent(
        &self,
        kind: RecordKind,
        id: &str,
    ) -> Result<Option<ConsentRecord>, VaultError> {
        let record_key = consent_record_key(kind, id);
        self.blocking(move |inner| {
            // sled's remove is atomic: of concurrent takers exactly one sees the old value.
            let Some(envelope) = inner.consents.remove(&record_key)? else {
                return Ok(None);
            };
            // Durable, so a crash cannot bring a used session back (DESIGN 3.2 invariant 4).
            inner.flush()?;
            let record = inner.open_consent(&record_key, &envelope)?;
            Ok((!record.is_expired(super::unix_now())).then_some(record))
        })
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
        let expected = expected.clone();
        let new = new.map(ConsentRecord::encode);
        self.blocking(move |inner| {
            let Some(envelope) = inner.consents.get(&record_key)? else {
                return Ok(false);
            };
            let current = inner.open_consent(&record_key, &envelope)?;
            if current != expected || current.is_expired(super::unix_now()) {
                return Ok(false);
            }
            // Sealed under the keyring's read lock, then swapped against the exact envelope we
            // opened: a concurrent take, put or rotation in between makes the swap fail.
            let replacement = match &new {
                Some(plaintext) => {
                    let keyring = inner.keyring.read();
                    Some(
                        seal::seal(&keyring, CONSENTS, &record_key, plaintext)
                            .map_err(VaultError::seal)?,
                    )
                }
                None => None,
            };
            let swapped = inner
                .consents
                .compare_and_swap(&record_key, Some(&envelope), replacement)?
                .is_ok();
            if swapped {
                inner.flush()?;
            }
            Ok(swapped)
        })
        .await
    }

    fn seal_transient(&self, purpose: &str, plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
        let keyring = self.inner.keyring.read();
        seal::seal(&keyring, TRANSIENT, purpose.as_bytes(), plaintext).map_err(VaultError::seal)
    }

    fn open_transient(
        &self,
        purpose: &str,
        envelope: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        self.inner.open(TRANSIENT, purpose.as_bytes(), envelope)
    }

    async fn shared_secret(
        &self,
        name: &str,
        candidate: Option<&[u8]>,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, VaultError> {
        let record_key = shared_secret_record_key(name);
        let candidate = candidate.map(|c| Zeroizing::new(c.to_vec()));
        self.blocking(move |inner| {
            if let Some(candidate) = candidate {
                let envelope = seal::seal(&inner.keyring.read(), META, &record_key, &candidate)
                    .map_err(VaultError::seal)?;
                // Only if absent: a stored secret is never replaced.
                let _ = inner
                    .meta
                    .compare_and_swap(&record_key, None::<&[u8]>, Some(envelope))?;
                inner.flush()?;
            }
            let Some(envelope) = inner.meta.get(&record_key)? else {
                return Ok(None);
            };
            inner.open(META, &record_key, &envelope).map(Some)
        })
        .await
    }

    async fn check(&self) -> Result<(), VaultError> {
        self.read(|inner| {
            let envelope = inner
                .meta
                .get(CANARY_KEY)?
                .ok_or_else(|| VaultError::Corrupt {
                    record: "the vault canary".to_string(),
                    reason: "missing".to_string(),
                })?;
            let text = inner.open(META, CANARY_KEY, &envelope)?;
            if text.as_slice() == CANARY_TEXT {
                Ok(())
            } else {
                Err(VaultError::Corrupt {
                    record: "the vault canary".to_string(),
                    reason: "unexpected content".to_string(),
                })
            }
        })
    }

    async fn consent_usage(&self) -> Result<StoreUsage, VaultError> {
        self.blocking(|inner| {
            let mut usage = StoreUsage::default();
            for item in inner.consents.iter() {
                let (_, envelope) = item?;
                usage.records += 1;
                usage.bytes += envelope.len();
            }
            Ok(usage)
        })
        .await
    }

    async fn put_api_key(
        &self,
        workload: &str,
        name: &str,
        key: &Secret,
    ) -> Result<(), VaultError> {
        let record_key = api_key_record_key(workload, name);
        let plaintext = Zeroizing::new(key.expose().as_bytes().to_vec());
        self.blocking(move |inner| {
            inner.seal_insert(&inner.api_keys, API_KEYS, &record_key, &plaintext)?;
            inner.flush()
        })
        .await
    }

    async fn get_api_key(&self, workload: &str, name: &str) -> Result<Option<Secret>, VaultError> {
        let record_key = api_key_record_key(workload, name);
        let record = format!("API key {workload}/{name}");
        self.read(|inner| {
            let Some(envelope) = inner.api_keys.get(&record_key)? else {
                return Ok(None);
            };
            let plaintext = inner.open(API_KEYS, &record_key, &envelope)?;
            let text = std::str::from_utf8(&plaintext).map_err(|_| VaultError::Corrupt {
                record,
                reason: "not UTF-8".to_string(),
            })?;
            Ok(Some(Secret::new(text)))
        })
    }

    async fn purge_expired(&self, now: u64) -> Result<usize, VaultError> {
        self.blocking(move |inner| {
            let mut purged = 0;
            for item in inner.consents.iter() {
                let (record_key, envelope) = item?;
                match inner.open_consent(&record_key, &envelope) {
                    Ok(record) if record.is_expired(now) => {
                        // Only if unchanged since read: a concurrent take or put wins.
                        let swapped = inner.consents.compare_and_swap(
                            &record_key,
                            Some(&envelope),
                            None as Option<&[u8]>,
                        )?;
                        purged += usize::from(swapped.is_ok());
                    }
                    Ok(_) => {}
                    // Kept: never lose stored data on a read problem (DESIGN 3.2 invariant 6).
                    Err(error) => tracing::warn!(%error, "consent record left in place"),
                }
            }
            if purged > 0 {
                inner.flush()?;
            }
            Ok(purged)
        })
        .await
    }
}

impl Inner {
    fn trees(&self) -> [(&'static str, &sled::Tree); 4] {
        [
            (TOKENS, &self.tokens),
            (CONSENTS, &self.consents),
            (API_KEYS, &self.api_keys),
            (META, &self.meta),
        ]
    }

    fn flush(&self) -> Result<(), VaultError> {
        self.db.flush()?;
        Ok(())
    }

    /// Seals and inserts under the keyring's read lock (see the module docs on rotation).
    fn seal_insert(
        &self,
        tree: &sled::Tree,
        tree_name: &str,
        record_key: &[u8],
        plaintext: &[u8],
    ) -> Result<(), VaultError> {
        let keyring = self.keyring.read();
        let envelope =
            seal::seal(&keyring, tree_name, record_key, plaintext).map_err(VaultError::seal)?;
        tree.insert(record_key, envelope)?;
        Ok(())
    }

    fn open(
        &self,
        tree_name: &str,
        record_key: &[u8],
        envelope: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let keyring = self.keyring.read();
        seal::open(&keyring, tree_name, record_key, envelope).map_err(|e| VaultError::Unseal {
            record: describe(tree_name, record_key),
            reason: e.to_string(),
        })
    }

    fn open_consent(
        &self,
        record_key: &[u8],
        envelope: &[u8],
    ) -> Result<ConsentRecord, VaultError> {
        let plaintext = self.open(CONSENTS, record_key, envelope)?;
        ConsentRecord::decode(&plaintext).ok_or_else(|| VaultError::Corrupt {
            record: describe(CONSENTS, record_key),
            reason: "shorter than its expiry field".to_string(),
        })
    }
}

/// sled's errors become the backend-neutral [`VaultError::Storage`]; messages name files and
/// I/O problems, never record contents.
impl From<sled::Error> for VaultError {
    fn from(error: sled::Error) -> VaultError {
        VaultError::Storage {
            backend: "sled",
            reason: error.to_string(),
        }
    }
}

fn parse_token(plaintext: &[u8], key: &TokenKey) -> Result<TokenRecord, VaultError> {
    serde_json::from_slice(plaintext).map_err(|e| VaultError::corrupt(format!("token {key}"), &e))
}
