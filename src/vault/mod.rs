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
mod store;
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
pub use store::Store;

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

/// The current time in unix seconds (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
