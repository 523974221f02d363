//! Where secrets live: per-user downstream tokens, consent sessions and API keys (DESIGN 3.1).
//!
//! - [`Store`] is the small async trait the rest of the gateway uses (as `Arc<dyn Store>`), so
//!   a shared backend (PostgreSQL) can be added when one node is not enough.
//! - [`SledStore`] is the embedded implementation: sled trees `tokens`, `consents`, `api_keys`
//!   and `meta`, every value sealed with AES-256-GCM by `seal.rs`, the only code in the crate
//!   that touches AEAD. No plaintext token ever touches disk (DESIGN 3.2 invariant 5).
//! - [`PostgresStore`] is the shared implementation for several replicas (DESIGN 2.9): the same
//!   record keys and the same sealing, in PostgreSQL tables migrated at start.
//! - [`Keyring`] holds the AES keys: from the key file or `PORTCULLIS_VAULT_KEY`, rotated by
//!   `portcullis vault rotate-key` without a window where a record is unreadable.
//! - [`open_vault`] picks the configured backend and applies the start-up rule "never starts
//!   without a key" (DESIGN 2.2).
//!
//! Every error is a [`VaultError`]; none of its messages carries a secret, a key or a record's
//! plaintext (DESIGN 3.2 invariant 5).

pub mod admin;
pub mod buckets;
#[cfg(test)]
mod contract;
mod keyring;
mod open;
mod postgres_store;
mod refresh_lock;
mod seal;

mod sled_store;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

pub use crate::secret::Secret;
pub use keyring::Keyring;
pub use open::{Vault, load_keyring, open_sled_vault, open_vault};
pub use postgres_store::{DatabaseUrl, Migration, PostgresStore, TlsMode};
pub use refresh_lock::RefreshLock;
pub use sled_store::{KeyRotation, SledStore};

/// The `[vault]` section of the validated config (built by `config`).
#[derive(Debug, Clone)]
pub struct VaultConfig {
    pub backend: VaultBackend,
    /// The sled folder (unused by the PostgreSQL backend; `--dev` derives the key file from it).
    pub path: PathBuf,
    pub key_file: PathBuf,
}

/// `[vault].backend` (DESIGN 2.9): the embedded store for one process, or a shared database.
#[derive(Debug, Clone)]
pub enum VaultBackend {
    Sled,
    /// The URL came from `url_env` / `url_file`; its `Debug` never shows the password.
    Postgres(Box<DatabaseUrl>),
}

/// The environment variable that may hold the vault key (DESIGN 2.2); it wins over the file.
pub const KEY_ENV: &str = "PORTCULLIS_VAULT_KEY";

/// Whose token: the gateway's workload, the user (issuer and subject as the identity module
/// spells them) and the provider name from `[providers.*]` (DESIGN 3.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TokenKey {
    pub workload: String,
    pub user: String,
    pub provider: String,
}

impl TokenKey {
    /// Builds a key from its three parts.
    pub fn new(
        workload: impl Into<String>,
        user: impl Into<String>,
        provider: impl Into<String>,
    ) -> TokenKey {
        TokenKey {
            workload: workload.into(),
            user: user.into(),
            provider: provider.into(),
        }
    }
}

/// `workload/user/provider`, for logs and `portcullis vault list`.
impl fmt::Display for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.workload, self.user, self.provider)
    }
}

/// A user's downstream OAuth 2.0 token set (RFC 6749 section 5.1), as stored. Serialized as
/// JSON inside the sealed envelope; `Debug` redacts both tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub access_token: Secret,
    #[serde(default)]
    pub refresh_token: Option<Secret>,
    /// Usually `Bearer` (RFC 6750).
    pub token_type: String,
    /// Unix seconds; `None` when the provider did not say (`expires_in` absent).
    #[serde(default)]
    pub expires_at: Option<u64>,
    /// The scopes the provider granted (RFC 6749 section 5.1 `scope`), not the ones asked for.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Unix seconds when the first token of this grant was obtained.
    pub obtained_at: u64,
    /// Unix seconds of the last refresh, if any.
    #[serde(default)]
    pub refreshed_at: Option<u64>,
}

impl TokenRecord {
    /// What `list` shows: everything but the secrets.
    pub fn meta(&self) -> TokenMeta {
        TokenMeta {
            scopes: self.scopes.clone(),
            expires_at: self.expires_at,
            obtained_at: self.obtained_at,
            has_refresh_token: self.refresh_token.is_some(),
        }
    }
}

/// A token record without its secrets: what `portcullis vault list` and `/connections` show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenMeta {
    pub scopes: Vec<String>,
    pub expires_at: Option<u64>,
    pub obtained_at: u64,
    pub has_refresh_token: bool,
}

/// What a record of the consent tree is. Each kind is its own key space: an id of one kind
/// can never name a record of another (no string prefixes to collide).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// A consent session, by the id of its `/oauth2/connect/<id>` URL or completion id.
    Consent,
    /// The provider callback's `state` -> the consent session's id.
    CallbackState,
    /// A browser signed in at the gateway, by its session cookie.
    BrowserSession,
    /// A legacy MCP session (`Mcp-Session-Id`): its owner and `initialize` parameters, so that
    /// any replica on a shared store can serve it (DESIGN 2.9).
    McpSession,
}

impl RecordKind {
    /// The byte that starts a record key of this kind (stable: part of the stored format).
    pub fn tag(self) -> u8 {
        match self {
            RecordKind::Consent => 1,
            RecordKind::CallbackState => 2,
            RecordKind::BrowserSession => 3,
            RecordKind::McpSession => 4,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Consent => "consent session",
            RecordKind::CallbackState => "callback state",
            RecordKind::BrowserSession => "browser session",
            RecordKind::McpSession => "MCP session",
        }
    }
}

/// A pending consent session (DESIGN 2.6). The vault does not interpret `payload`: the identity
/// module serializes its session (binding, PKCE verifier, `state`) into it. It is sealed like
/// every other value; `Debug` shows only its length, and it is zeroed on drop because it holds
/// the PKCE verifier.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsentRecord {
    pub payload: Vec<u8>,
    /// Unix seconds; the record is never returned at or after this instant.
    pub expires_at: u64,
}

impl ConsentRecord {
    /// Builds a record.
    pub fn new(payload: Vec<u8>, expires_at: u64) -> ConsentRecord {
        ConsentRecord {
            payload,
            expires_at,
        }
    }

    /// Whether the record has expired at `now` (unix seconds).
    pub fn is_expired(&self, now: u64) -> bool {
        now >= self.expires_at
    }

    /// Moves the payload out (the type zeroes its buffer on drop, so fields cannot be moved).
    pub fn into_payload(mut self) -> Vec<u8> {
        std::mem::take(&mut self.payload)
    }

    /// Stored form: expiry as 8 big-endian bytes, then the payload.
    fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut bytes = Zeroizing::new(Vec::with_capacity(8 + self.payload.len()));
        bytes.extend_from_slice(&self.expires_at.to_be_bytes());
        bytes.extend_from_slice(&self.payload);
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<ConsentRecord> {
        let (expiry, payload) = bytes.split_first_chunk::<8>()?;
        Some(ConsentRecord {
            payload: payload.to_vec(),
            expires_at: u64::from_be_bytes(*expiry),
        })
    }
}

impl fmt::Debug for ConsentRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsentRecord")
            .field(
                "payload",
                &format_args!("[{} bytes redacted]", self.payload.len()),
            )
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl Drop for ConsentRecord {
    fn drop(&mut self) {
        self.payload.zeroize();
    }
}

/// What [`Store::consent_usage`] counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreUsage {
    pub records: usize,
    /// Sum of the stored (sealed) value sizes.
    pub bytes: usize,
}

/// Everything that can go wrong in the vault. Messages name files, key ids and token keys
/// (`workload/user/provider`), never a secret, a key or decrypted content (invariant 5).
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "the vault needs a key: set [vault].key_file or {KEY_ENV} (the base64 of 32 random bytes)"
    )]
    NoKey,
    #[error(
        "the vault key file {file} does not exist; create one with `head -c32 /dev/urandom | base64 > {file} && chmod 600 {file}`, or set {KEY_ENV}",
        file = .path.display()
    )]
    KeyFileMissing { path: PathBuf },
    #[error(
        "the vault key file {file} may be read by group or others (mode {mode:03o}); run `chmod 600 {file}`",
        file = .path.display()
    )]
    KeyFilePermissions { path: PathBuf, mode: u32 },
    #[error("the vault key file {}: {reason}", .path.display())]
    KeyFileFormat { path: PathBuf, reason: String },
    #[error("{KEY_ENV}: {reason}")]
    EnvKey { reason: String },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The backend's server cannot be reached right now: connection refused or lost, or no
    /// pooled connection within the pool's timeout. Backend-neutral, so that callers can answer
    /// "try again later" (`/readyz` 503) without knowing the store; `store` names it by host,
    /// port and database, never by a URL with its password (invariant 5).
    #[error("the vault store {store} is unavailable: {reason}")]
    Unavailable { store: String, reason: String },
    /// The backend could not open its database (sled: the folder; PostgreSQL: the server).
    #[error("cannot open the vault database {}: {reason}", .path.display())]
    Open { path: PathBuf, reason: String },
    #[error("the vault key does not match this vault ({}): {detail}", .path.display())]
    KeyMismatch { path: PathBuf, detail: String },
    /// A read or write failed in the backend; `backend` names it (`sled`, `postgres`).
    #[error("vault storage error ({backend}): {reason}")]
    Storage {
        backend: &'static str,
        reason: String,
    },
    /// A stored value failed to open: wrong key, tampering, or a value moved between records.
    #[error("{record} cannot be opened: {reason}")]
    Unseal { record: String, reason: String },
    /// A value opened but is not a record this build understands.
    #[error("{record} is not a valid record: {reason}")]
    Corrupt { record: String, reason: String },
    #[error("vault encryption failed: {0}")]
    Seal(String),
    #[error("cannot rotate the vault key: {0}")]
    Rotation(String),
    #[error("the vault worker thread failed: {0}")]
    Task(String),
}

impl VaultError {
    fn seal(reason: impl fmt::Display) -> VaultError {
        VaultError::Seal(reason.to_string())
    }

    /// A serde_json error without its message: messages may quote the input ("invalid type:
    /// string \"ghp_...\""), which here is decrypted content.
    fn corrupt(record: String, error: &serde_json::Error) -> VaultError {
        VaultError::Corrupt {
            record,
            reason: format!(
                "{:?} error at line {} column {}",
                error.classify(),
                error.line(),
                error.column()
            ),
        }
    }
}

/// Where per-user secrets are kept. Object safe: the gateway holds an `Arc<dyn Store>`.
///
/// Every method is one short, independent operation; refresh single-flight and the re-read
/// after taking a key's lock (DESIGN 3.1) are the identity module's job, built on these.
///
/// ```
/// use std::sync::Arc;
/// use portcullis::vault::{Keyring, SledStore, Store, TokenKey, TokenRecord, Secret};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.path().join("vault"), Keyring::generate()?)?);
/// let key = TokenKey::new("portcullis", "https://idp.example.com|alice", "github");
/// let record = TokenRecord {
///     access_token: Secret::new("gho_example"),
///     refresh_token: None,
///     token_type: "Bearer".into(),
///     expires_at: Some(1_900_000_000),
///     scopes: vec!["read:user".into()],
///     obtained_at: 1_800_000_000,
///     refreshed_at: None,
/// };
/// store.put_token(&key, &record).await?;
/// assert_eq!(store.get_token(&key).await?, Some(record));
/// # Ok(()) }
/// ```
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The token stored for `key`, if any.
    ///
    /// ```
    /// # use portcullis::vault::{Store, TokenKey, VaultError};
    /// # async fn demo(store: &dyn Store) -> Result<(), VaultError> {
    /// let key = TokenKey::new("portcullis", "alice", "github");
    /// match store.get_token(&key).await? {
    ///     Some(record) => println!("token for {key}, expires {:?}", record.expires_at),
    ///     None => println!("{key}: consent needed"),
    /// }
    /// # Ok(()) }
    /// ```
    async fn get_token(&self, key: &TokenKey) -> Result<Option<TokenRecord>, VaultError>;

    /// Stores (or replaces) the token for `key`, durable before returning (sled flush): a
    /// rotated refresh token must be on disk before the new access token is used (DESIGN 3.1).
    ///
    /// ```
    /// # use portcullis::vault::{Secret, Store, TokenKey, TokenRecord, VaultError};
    /// # async fn demo(store: &dyn Store, key: TokenKey, mut record: TokenRecord) -> Result<(), VaultError> {
    /// record.refresh_token = Some(Secret::new("rotated-refresh-token"));
    /// store.put_token(&key, &record).await?; // on disk now; safe to use the new access token
    /// # Ok(()) }
    /// ```
    async fn put_token(&self, key: &TokenKey, record: &TokenRecord) -> Result<(), VaultError>;

    /// Removes the token for `key` (durably); `true` if there was one.
    ///
    /// ```
    /// # use portcullis::vault::{Store, TokenKey, VaultError};
    /// # async fn demo(store: &dyn Store) -> Result<(), VaultError> {
    /// let revoked = store.delete_token(&TokenKey::new("portcullis", "alice", "github")).await?;
    /// # Ok(()) }
    /// ```
    async fn delete_token(&self, key: &TokenKey) -> Result<bool, VaultError>;

    /// Every stored token's key and metadata (no secrets), only `user`'s when given, in a
    /// deterministic order.
    ///
    /// ```
    /// # use portcullis::vault::{Store, VaultError};
    /// # async fn demo(store: &dyn Store) -> Result<(), VaultError> {
    /// for (key, meta) in store.list_tokens(Some("alice")).await? {
    ///     println!("{} {:?} refresh={}", key.provider, meta.scopes, meta.has_refresh_token);
    /// }
    /// # Ok(()) }
    /// ```
    async fn list_tokens(
        &self,
        user: Option<&str>,
    ) -> Result<Vec<(TokenKey, TokenMeta)>, VaultError>;

    /// Waits until no other process sharing this store is refreshing `key`'s token, and keeps
    /// them out until the lock is dropped (see [`RefreshLock`]). The caller re-reads the token
    /// after taking it: whoever held it before may have refreshed already (DESIGN 3.1). A
    /// process that dies holding the lock releases it with its connection.
    ///
    /// ```
    /// # use portcullis::vault::{Store, TokenKey, VaultError};
    /// # async fn demo(store: &dyn Store, key: TokenKey) -> Result<(), VaultError> {
    /// let _lock = store.lock_refresh(&key).await?;
    /// let current = store.get_token(&key).await?; // re-read: another replica may have refreshed
    /// # Ok(()) }
    /// ```
    async fn lock_refresh(&self, key: &TokenKey) -> Result<RefreshLock, VaultError>;

    /// Stores a consent session under its id (the `<id>` of `/oauth2/connect/<id>`).
    ///
    /// ```
    /// # use portcullis::vault::{ConsentRecord, RecordKind, Store, VaultError};
    /// # async fn demo(store: &dyn Store, now: u64) -> Result<(), VaultError> {
    /// let session = br#"{"user":"alice","provider":"github"}"#.to_vec();
    /// store.put_consent(RecordKind::Consent, "c0ffee", &ConsentRecord::new(session, now + 600)).await?;
    /// # Ok(()) }
    /// ```
    async fn put_consent(
        &self,
        kind: RecordKind,
        id: &str,
        record: &ConsentRecord,
    ) -> Result<(), VaultError>;

    /// The consent session `id` without consuming it; `None` if absent or expired.
    ///
    /// ```
    /// # use portcullis::vault::{RecordKind, Store, VaultError};
    /// # async fn demo(store: &dyn Store) -> Result<(), VaultError> {
    /// let pending = store.get_consent(RecordKind::Consent, "c0ffee").await?.is_some();
    /// # Ok(()) }
    /// ```
    async fn get_consent(
        &self,
        kind: RecordKind,
        id: &str,
    ) -> Result<Option<ConsentRecord>, VaultError>;

    /// Atomically removes and returns the consent session `id`: of any number of concurrent
    /// callers at most one gets it (DESIGN 3.2 invariant 4). Expired records are removed but
    /// never returned.
    ///
    /// ```
    /// # use portcullis::vault::{RecordKind, Store, VaultError};
    /// # async fn demo(store: &dyn Store) -> Result<(), VaultError> {
    /// let Some(session) = store.take_consent(RecordKind::Consent, "c0ffee").await? else {
    ///     return Ok(()); // unknown, expired or already used
    /// };
    /// let payload = session.into_payload();
    /// # Ok(()) }
    /// ```
    async fn take_consent(
        &self,
        kind: RecordKind,
        id: &str,
    ) -> Result<Option<ConsentRecord>, VaultError>;

    /// Stores the API key `name` (from `[api_keys.<name>]`) for `workload`.
    ///
    /// ```
    /// # use portcullis::vault::{Secret, Store, VaultError};
    /// # async fn demo(store: &dyn Store) -> Result<(), VaultError> {
    /// store.put_api_key("portcullis", "weather", &Secret::new("wk_example")).await?;
    /// # Ok(()) }
    /// ```
    async fn put_api_key(&self, workload: &str, name: &str, key: &Secret)
    -> Result<(), VaultError>;

    /// The API key `name` for `workload`, if stored.
    ///
    /// ```
    /// # use portcullis::vault::{Store, VaultError};
    /// # async fn demo(store: &dyn Store) -> Result<(), VaultError> {
    /// if let Some(key) = store.get_api_key("portcullis", "weather").await? {
    ///     let header_value = key.expose();
    /// }
    /// # Ok(()) }
    /// ```
    async fn get_api_key(&self, workload: &str, name: &str) -> Result<Option<Secret>, VaultError>;

    /// Replaces consent session `id` with `new` (removes it when `new` is `None`), but only if
    /// it still holds exactly `expected`: the compare-and-swap behind every session transition
    /// (DESIGN 3.2 invariant 4), so that a page that loaded a session cannot write back a stale
    /// copy over a callback that consumed or advanced it meanwhile. `false`, and nothing
    /// written, when the session changed, expired or is gone.
    ///
    /// ```
    /// # use portcullis::vault::{ConsentRecord, RecordKind, Store, VaultError};
    /// # async fn demo(store: &dyn Store, now: u64) -> Result<(), VaultError> {
    /// let Some(loaded) = store.get_consent(RecordKind::Consent, "c0ffee").await? else { return Ok(()) };
    /// let bound = ConsentRecord::new(b"{...with a browser nonce...}".to_vec(), loaded.expires_at);
    /// if !store.swap_consent(RecordKind::Consent, "c0ffee", &loaded, Some(&bound)).await? {
    ///     // someone else moved the session on first: show "already used"
    /// }
    /// # Ok(()) }
    /// ```
    async fn swap_consent(
        &self,
        kind: RecordKind,
        id: &str,
        expected: &ConsentRecord,
        new: Option<&ConsentRecord>,
    ) -> Result<bool, VaultError>;

    /// Seals a short-lived value that is kept by a browser instead of the store (a pre-auth
    /// cookie), with the vault's current key; the envelope only opens for the same `purpose`.
    /// State an unauthenticated request creates thus costs the store nothing (DESIGN 3.2
    /// invariant 9). Expiry is the caller's business: put it inside `plaintext`.
    ///
    /// ```
    /// # use portcullis::vault::{Store, VaultError};
    /// # fn demo(store: &dyn Store) -> Result<(), VaultError> {
    /// let sealed = store.seal_transient("login", b"state and PKCE verifier")?;
    /// assert_eq!(&store.open_transient("login", &sealed)?[..], b"state and PKCE verifier");
    /// assert!(store.open_transient("other purpose", &sealed).is_err());
    /// # Ok(()) }
    /// ```
    fn seal_transient(&self, purpose: &str, plaintext: &[u8]) -> Result<Vec<u8>, VaultError>;

    /// Opens an envelope made by [`Store::seal_transient`] for the same `purpose`; an error
    /// for anything else (tampered, another purpose, a key the vault no longer holds).
    fn open_transient(
        &self,
        purpose: &str,
        envelope: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError>;

    /// How many consent-tree records (sessions, their `state` index, browser sessions) are
    /// stored and their sealed size: what `/metrics` reports and the flood test bounds.
    ///
    /// ```
    /// # use portcullis::vault::{Store, VaultError};
    /// # async fn demo(store: &dyn Store) -> Result<(), VaultError> {
    /// let usage = store.consent_usage().await?;
    /// println!("{} records, {} bytes", usage.records, usage.bytes);
    /// # Ok(()) }
    /// ```
    async fn consent_usage(&self) -> Result<StoreUsage, VaultError>;

    /// Proves the store answers and the keyring opens it (a sealed read): what `/readyz`
    /// asks (DESIGN 2.4). Cheap; no secret is returned.
    ///
    /// ```
    /// # use portcullis::vault::{Store, VaultError};
    /// # async fn demo(store: &dyn Store) -> Result<(), VaultError> {
    /// store.check().await?; // the vault is usable
    /// # Ok(()) }
    /// ```
    async fn check(&self) -> Result<(), VaultError>;

    /// Whether other processes share this store (several replicas on one database): then
    /// what a later request needs must be written here rather than kept in memory.
    fn is_shared(&self) -> bool {
        false
    }

    /// Removes consent sessions expired at `now` (unix seconds); returns how many.
    ///
    /// ```
    /// # use portcullis::vault::{Store, VaultError, unix_now};
    /// # async fn demo(store: &dyn Store) -> Result<(), VaultError> {
    /// let purged = store.purge_expired(unix_now()).await?;
    /// # Ok(()) }
    /// ```
    async fn purge_expired(&self, now: u64) -> Result<usize, VaultError>;
}

/// The current time in unix seconds (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
