//! The embedded [`Store`]: sled trees `tokens`, `consents`, `api_keys`, `meta`; every value
//! sealed by [`Sealer`] with its tree and key as associated data.

use std::path::Path;

use super::seal::Sealer;
use super::{ConsentRecord, Keyring, Secret, Store, TokenKey, TokenMeta, TokenRecord, VaultError};

const TOKENS: &str = "tokens";
const CONSENTS: &str = "consents";
const API_KEYS: &str = "api_keys";
const META: &str = "meta";
const CANARY_KEY: &[u8] = b"canary";
const CANARY: &[u8] = b"portcullis vault v1";

pub struct SledStore {
    db: sled::Db,
    pub(super) tokens: sled::Tree,
    consents: sled::Tree,
    api_keys: sled::Tree,
    meta: sled::Tree,
    sealer: Sealer,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("sealer", &self.sealer)
            .finish_non_exhaustive()
    }
}

impl SledStore {
    /// Opens (or creates) the database and checks the keyring against it.
    pub fn open(path: &Path, keyring: Keyring) -> Result<SledStore, VaultError> {
        let db = sled::Config::new()
            .path(path)
            .open()
            .map_err(|e| VaultError::Open {
                path: path.display().to_string(),
                reason: match e {
                    sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                        "it is locked by another process (is a gateway running with this vault?)"
                            .to_string()
                    }
                    other => other.to_string(),
                },
            })?;
        let store = SledStore {
            tokens: db.open_tree(TOKENS)?,
            consents: db.open_tree(CONSENTS)?,
            api_keys: db.open_tree(API_KEYS)?,
            meta: db.open_tree(META)?,
            sealer: Sealer::new(&keyring)?,
            db,
        };
        match store.meta.get(CANARY_KEY)? {
            Some(sealed) => {
                let opened = store.sealer.open(META, CANARY_KEY, &sealed).map_err(|_| {
                    VaultError::Key(format!(
                        "the vault key does not match the vault at {}",
                        path.display()
                    ))
                })?;
                if opened != CANARY {
                    return Err(VaultError::Corrupt("vault canary".into()));
                }
            }
            None => {
                store
                    .meta
                    .insert(CANARY_KEY, store.sealer.seal(META, CANARY_KEY, CANARY)?)?;
                store.db.flush()?;
            }
        }
        Ok(store)
    }

    fn tree(&self, name: &str) -> &sled::Tree {
        match name {
            TOKENS => &self.tokens,
            CONSENTS => &self.consents,
            API_KEYS => &self.api_keys,
            _ => &self.meta,
        }
    }

    fn put(&self, tree: &str, key: &[u8], value: &[u8]) -> Result<(), VaultError> {
        let sealed = self.sealer.seal(tree, key, value)?;
        self.tree(tree).insert(key, sealed)?;
        Ok(())
    }

    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, VaultError> {
        match self.tree(tree).get(key)? {
            Some(sealed) => self.sealer.open(tree, key, &sealed).map(Some),
            None => Ok(None),
        }
    }

    /// Re-seals every record not sealed with the current key (key rotation, see `keyring`).
    /// Returns how many records were re-sealed; flushed before returning.
    pub async fn reseal_all(&self) -> Result<usize, VaultError> {
        let current = self.sealer.current_key_id();
        let mut count = 0;
        for name in [TOKENS, CONSENTS, API_KEYS, META] {
            let tree = self.tree(name);
            for entry in tree.iter() {
                let (key, sealed) = entry?;
                if Sealer::key_id_of(&sealed) == Some(current) {
                    continue;
                }
                let plain = self.sealer.open(name, &key, &sealed)?;
                let resealed = self.sealer.seal(name, &key, &plain)?;
                // Compare-and-swap: a concurrent writer's newer value is never overwritten.
                if tree
                    .compare_and_swap(&key, Some(sealed), Some(resealed))?
                    .is_ok()
                {
                    count += 1;
                }
            }
        }
        self.db.flush_async().await?;
        Ok(count)
    }

    fn decode_token(&self, key: &[u8], sealed: &[u8]) -> Result<TokenRecord, VaultError> {
        let plain = self.sealer.open(TOKENS, key, sealed)?;
        serde_json::from_slice(&plain)
            .map_err(|e| VaultError::Corrupt(format!("token record: {e}")))
    }
}

fn consent_encode(record: &ConsentRecord) -> Vec<u8> {
    let mut bytes = record.expires_at.to_be_bytes().to_vec();
    bytes.extend_from_slice(&record.payload);
    bytes
}

fn consent_decode(bytes: &[u8]) -> Option<ConsentRecord> {
    let (expiry, payload) = bytes.split_at_checked(8)?;
    Some(ConsentRecord {
        expires_at: u64::from_be_bytes(expiry.try_into().ok()?),
        payload: payload.to_vec(),
    })
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn api_key_id(workload: &str, name: &str) -> Vec<u8> {
    [workload.as_bytes(), name.as_bytes()].join(&0u8)
}

#[async_trait::async_trait]
impl Store for SledStore {
    async fn get_token(&self, key: &TokenKey) -> Result<Option<TokenRecord>, VaultError> {
        let id = key.to_bytes();
        match self.tokens.get(&id)? {
            Some(sealed) => self.decode_token(&id, &sealed).map(Some),
            None => Ok(None),
        }
    }

    async fn put_token(&self, key: &TokenKey, record: &TokenRecord) -> Result<(), VaultError> {
        let plain = serde_json::to_vec(record).map_err(|e| VaultError::Storage(e.to_string()))?;
        self.put(TOKENS, &key.to_bytes(), &plain)?;
        self.tokens.flush_async().await?;
        Ok(())
    }

    async fn delete_token(&self, key: &TokenKey) -> Result<bool, VaultError> {
        let removed = self.tokens.remove(key.to_bytes())?.is_some();
        self.tokens.flush_async().await?;
        Ok(removed)
    }

    async fn list_tokens(
        &self,
        user: Option<&str>,
    ) -> Result<Vec<(TokenKey, TokenMeta)>, VaultError> {
        let mut links = Vec::new();
        for entry in self.tokens.iter() {
            let (id, sealed) = entry?;
            let Some(key) = TokenKey::from_bytes(&id) else {
                continue;
            };
            if user.is_some_and(|u| u != key.user) {
                continue;
            }
            let record = self.decode_token(&id, &sealed)?;
            links.push((
                key,
                TokenMeta {
                    scopes: record.scopes.clone(),
                    expires_at: record.expires_at,
                    obtained_at: record.obtained_at,
                    has_refresh_token: record.refresh_token.is_some(),
                },
            ));
        }
        Ok(links)
    }

    async fn put_consent(&self, id: &str, record: &ConsentRecord) -> Result<(), VaultError> {
        self.put(CONSENTS, id.as_bytes(), &consent_encode(record))?;
        self.consents.flush_async().await?;
        Ok(())
    }

    async fn get_consent(&self, id: &str) -> Result<Option<ConsentRecord>, VaultError> {
        Ok(self
            .get(CONSENTS, id.as_bytes())?
            .and_then(|b| consent_decode(&b))
            .filter(|r| r.expires_at > now()))
    }

    async fn take_consent(&self, id: &str) -> Result<Option<ConsentRecord>, VaultError> {
        // sled's remove is atomic: of many concurrent takers exactly one sees the value.
        let Some(sealed) = self.consents.remove(id.as_bytes())? else {
            return Ok(None);
        };
        self.consents.flush_async().await?;
        let plain = self.sealer.open(CONSENTS, id.as_bytes(), &sealed)?;
        Ok(consent_decode(&plain).filter(|r| r.expires_at > now()))
    }

    async fn put_api_key(
        &self,
        workload: &str,
        name: &str,
        key: &Secret,
    ) -> Result<(), VaultError> {
        self.put(
            API_KEYS,
            &api_key_id(workload, name),
            key.expose().as_bytes(),
        )?;
        self.api_keys.flush_async().await?;
        Ok(())
    }

    async fn get_api_key(&self, workload: &str, name: &str) -> Result<Option<Secret>, VaultError> {
        self.get(API_KEYS, &api_key_id(workload, name))?
            .map(|bytes| {
                String::from_utf8(bytes)
                    .map(Secret::new)
                    .map_err(|_| VaultError::Corrupt("api key".into()))
            })
            .transpose()
    }

    async fn purge_expired(&self, now: u64) -> Result<usize, VaultError> {
        let mut removed = 0;
        for entry in self.consents.iter() {
            let (id, sealed) = entry?;
            let expired = self
                .sealer
                .open(CONSENTS, &id, &sealed)
                .ok()
                .and_then(|plain| consent_decode(&plain))
                .is_none_or(|record| record.expires_at <= now);
            if expired
                && self
                    .consents
                    .compare_and_swap(&id, Some(sealed), None::<&[u8]>)?
                    .is_ok()
            {
                removed += 1;
            }
        }
        self.consents.flush_async().await?;
        Ok(removed)
    }
}
