//! Where secrets live (DESIGN 3.1): per-user downstream tokens, consent sessions and API keys,
//! every value sealed with AES-256-GCM (see `seal`), on an embedded sled database.
//!
//! [`Store`] is the extension point: a handful of async methods, so a shared backend
//! (PostgreSQL) can replace sled when one node is not enough.

pub mod admin;
mod keyring;
mod seal;
mod secret;
mod sled_store;

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use keyring::Keyring;
pub use secret::Secret;
pub use sled_store::SledStore;

/// The environment variable that may hold the vault key (base64 of 32 bytes).
pub const VAULT_KEY_ENV: &str = "PORTCULLIS_VAULT_KEY";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("vault key: {0}")]
    Key(String),
    #[error("cannot open the vault at {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("vault storage: {0}")]
    Storage(String),
    #[error("vault record unreadable: {0}")]
    Corrupt(String),
    #[error("vault crypto: {0}")]
    Crypto(String),
}

impl From<sled::Error> for VaultError {
    fn from(error: sled::Error) -> Self {
        VaultError::Storage(error.to_string())
    }
}

/// Whose token: workload / user (issuer#subject) / provider.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenKey {
    pub workload: String,
    pub user: String,
    pub provider: String,
}

impl fmt::Display for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.workload, self.user, self.provider)
    }
}

impl TokenKey {
    /// Storage key: NUL-separated, because user ids (issuer URLs) contain `/`.
    fn to_bytes(&self) -> Vec<u8> {
        [
            self.workload.as_bytes(),
            self.user.as_bytes(),
            self.provider.as_bytes(),
        ]
        .join(&0u8)
    }

    fn from_bytes(bytes: &[u8]) -> Option<TokenKey> {
        let mut parts = bytes
            .split(|b| *b == 0)
            .map(|p| String::from_utf8(p.to_vec()).ok());
        let key = TokenKey {
            workload: parts.next()??,
            user: parts.next()??,
            provider: parts.next()??,
        };
        parts.next().is_none().then_some(key)
    }
}

/// A user's token for one provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    pub token_type: String,
    /// Unix seconds.
    pub expires_at: Option<u64>,
    /// Scopes granted.
    pub scopes: Vec<String>,
    pub obtained_at: u64,
    pub refreshed_at: Option<u64>,
}

/// What `vault list` and `/connections` show: no secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenMeta {
    pub scopes: Vec<String>,
    pub expires_at: Option<u64>,
    pub obtained_at: u64,
    pub has_refresh_token: bool,
}

/// A consent-flow record, opaque to the vault (the identity module owns its shape).
#[derive(Debug, Clone)]
pub struct ConsentRecord {
    pub payload: Vec<u8>,
    /// Unix seconds; expired records are never returned.
    pub expires_at: u64,
}

#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    async fn get_token(&self, key: &TokenKey) -> Result<Option<TokenRecord>, VaultError>;
    /// Durable before returning: a rotated refresh token must be on disk before the new
    /// access token is used (DESIGN 3.1).
    async fn put_token(&self, key: &TokenKey, record: &TokenRecord) -> Result<(), VaultError>;
    async fn delete_token(&self, key: &TokenKey) -> Result<bool, VaultError>;
    /// All links, or one user's.
    async fn list_tokens(
        &self,
        user: Option<&str>,
    ) -> Result<Vec<(TokenKey, TokenMeta)>, VaultError>;
    async fn put_consent(&self, id: &str, record: &ConsentRecord) -> Result<(), VaultError>;
    async fn get_consent(&self, id: &str) -> Result<Option<ConsentRecord>, VaultError>;
    /// Atomically removes and returns: exactly one caller gets a record (single use).
    async fn take_consent(&self, id: &str) -> Result<Option<ConsentRecord>, VaultError>;
    async fn put_api_key(&self, workload: &str, name: &str, key: &Secret)
    -> Result<(), VaultError>;
    async fn get_api_key(&self, workload: &str, name: &str) -> Result<Option<Secret>, VaultError>;
    /// Removes expired consent records; returns how many.
    async fn purge_expired(&self, now: u64) -> Result<usize, VaultError>;
}

/// Opens the vault, never without a key (DESIGN 2.2): `PORTCULLIS_VAULT_KEY` wins over the key
/// file; with `dev` a missing key file is generated.
pub async fn open_vault(
    path: &Path,
    key_file: Option<&Path>,
    env_key: Option<String>,
    dev: bool,
) -> Result<SledStore, VaultError> {
    let keyring = match (env_key, key_file) {
        (Some(value), _) => Keyring::parse(&value, VAULT_KEY_ENV)?,
        (None, Some(file)) if file.exists() => Keyring::load_file(file)?,
        (None, Some(file)) if dev => {
            tracing::warn!(file = %file.display(), "generated a development vault key");
            Keyring::generate_file(file)?
        }
        (None, file) => {
            let file = file.map_or_else(|| "the key file".to_string(), |f| f.display().to_string());
            return Err(VaultError::Key(format!(
                "no vault key: {file} does not exist and {VAULT_KEY_ENV} is not set; create one with \
                 `head -c32 /dev/urandom | base64 > {file} && chmod 600 {file}`"
            )));
        }
    };
    SledStore::open(path, keyring)
}

#[cfg(test)]
mod tests;
