//! Opening the configured vault: the backend `[vault]` names (DESIGN 2.9) and the key rule
//! "never starts without a key" (DESIGN 2.2).

use std::path::Path;
use std::sync::Arc;

use zeroize::Zeroizing;

use super::{
    KEY_ENV, KeyRotation, Keyring, PostgresStore, SledStore, Store, VaultBackend, VaultConfig,
    VaultError,
};

/// A store opened from `[vault]`: the backend is known, for the commands that need more than
/// the [`Store`] trait (`portcullis vault rotate-key`).
#[derive(Debug, Clone)]
pub enum Vault {
    Sled(SledStore),
    Postgres(PostgresStore),
}

impl Vault {
    /// The store as the gateway holds it.
    pub fn into_store(self) -> Arc<dyn Store> {
        match self {
            Vault::Sled(store) => Arc::new(store),
            Vault::Postgres(store) => Arc::new(store),
        }
    }

    /// The rate-limit buckets every replica shares, on a backend several replicas use.
    pub fn shared_buckets(&self) -> Option<Arc<dyn super::buckets::SharedBuckets>> {
        match self {
            Vault::Sled(_) => None,
            Vault::Postgres(store) => Some(Arc::new(store.clone())),
        }
    }

    /// The store behind the trait, for one-off commands.
    pub fn as_store(&self) -> &dyn Store {
        match self {
            Vault::Sled(store) => store,
            Vault::Postgres(store) => store,
        }
    }

    /// `portcullis vault rotate-key` on either backend (see [`Keyring`] for the steps).
    pub async fn rotate_key(&self, key_file: &Path) -> Result<KeyRotation, VaultError> {
        match self {
            Vault::Sled(store) => store.rotate_key(key_file).await,
            Vault::Postgres(store) => store.rotate_key(key_file).await,
        }
    }
}

/// Opens the configured backend (DESIGN 2.2, 2.9) with the key chosen as [`load_keyring`]
/// says; a key that does not match an existing vault fails here, not on the first request.
/// A PostgreSQL server that cannot be reached is [`VaultError::Unavailable`].
pub async fn open_vault(
    config: &VaultConfig,
    env_key: Option<String>,
    dev: bool,
) -> Result<Vault, VaultError> {
    match &config.backend {
        VaultBackend::Sled => open_sled_vault(&config.path, Some(&config.key_file), env_key, dev)
            .await
            .map(Vault::Sled),
        VaultBackend::Postgres(url) => {
            let path = config.path.clone();
            let key_file = config.key_file.clone();
            let keyring = tokio::task::spawn_blocking(move || {
                load_keyring(&path, Some(&key_file), env_key, dev)
            })
            .await
            .map_err(|e| VaultError::Task(e.to_string()))??;
            PostgresStore::open(url, keyring).await.map(Vault::Postgres)
        }
    }
}

/// Opens the sled vault at `path` with the key chosen as [`load_keyring`] says.
pub async fn open_sled_vault(
    path: &Path,
    key_file: Option<&Path>,
    env_key: Option<String>,
    dev: bool,
) -> Result<SledStore, VaultError> {
    let path = path.to_path_buf();
    let key_file = key_file.map(Path::to_path_buf);
    tokio::task::spawn_blocking(move || {
        let keyring = load_keyring(&path, key_file.as_deref(), env_key, dev)?;
        SledStore::open(&path, keyring)
    })
    .await
    .map_err(|e| VaultError::Task(e.to_string()))?
}

/// The vault never starts without a key (DESIGN 2.2):
///
/// 1. `env_key` (the value of `PORTCULLIS_VAULT_KEY`), when set, wins over the file;
/// 2. otherwise `key_file` must exist with mode 0600; if it is missing the error names it and
///    how to create one, except with `dev`, where a fresh key is generated there (0600);
/// 3. with neither, `dev` generates `<path>.key` (`data/vault` -> `data/vault.key`, the
///    documented default) and anything else is [`VaultError::NoKey`].
///
/// Blocks on file I/O.
pub fn load_keyring(
    path: &Path,
    key_file: Option<&Path>,
    env_key: Option<String>,
    dev: bool,
) -> Result<Keyring, VaultError> {
    let env_key = env_key.map(Zeroizing::new);
    let key_file = key_file
        .map(Path::to_path_buf)
        .or_else(|| dev.then(|| path.with_extension("key")));
    match (env_key, key_file) {
        (Some(value), _) => {
            tracing::info!(source = KEY_ENV, "vault key loaded");
            Keyring::from_env_base64(&value)
        }
        (None, Some(file)) => match Keyring::load_file(&file) {
            Err(VaultError::KeyFileMissing { .. }) if dev => {
                tracing::warn!(
                    file = %file.display(),
                    "dev mode: generated a new vault key; do not use this vault in production"
                );
                Keyring::generate_file(&file)
            }
            loaded => {
                let keyring = loaded?;
                tracing::info!(file = %file.display(), key_id = keyring.current_key_id(), "vault key loaded");
                Ok(keyring)
            }
        },
        (None, None) => Err(VaultError::NoKey),
    }
}
