//! The [`Store`] contract: what the gateway asks of wherever secrets live (DESIGN 3.1), met by
//! the sled and the PostgreSQL stores alike and checked for both by `contract.rs`.

use zeroize::Zeroizing;

use super::{
    ConsentRecord, RecordKind, RefreshLock, Secret, StoreUsage, TokenKey, TokenMeta, TokenRecord,
    VaultError,
};

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

    /// A secret every process sharing this store must use alike (the identity API's signing
    /// key, DESIGN 2.9), sealed like every record: the value stored under `name`. When none is
    /// and `candidate` is given, `candidate` is stored first, atomically, so that of replicas
    /// starting together every one ends up with the same (the first writer's). `None` only when
    /// nothing is stored and no candidate was given.
    ///
    /// ```
    /// # use portcullis::vault::{Store, VaultError};
    /// # async fn demo(store: &dyn Store, fresh_key: &[u8]) -> Result<(), VaultError> {
    /// let key = store.shared_secret("workload-token-key", Some(fresh_key)).await?;
    /// # Ok(()) }
    /// ```
    async fn shared_secret(
        &self,
        name: &str,
        candidate: Option<&[u8]>,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, VaultError>;

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
