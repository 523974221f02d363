//! Vault behaviour, one test per promise of DESIGN 3.1 / 3.2.

use std::path::PathBuf;
use std::sync::Arc;

use super::sled_store::{api_key_record_key, consent_record_key, token_record_key};
use super::*;

mod disk;
mod keys;

fn token(access: &str, refresh: Option<&str>) -> TokenRecord {
    TokenRecord {
        access_token: Secret::new(access),
        refresh_token: refresh.map(Secret::new),
        token_type: "Bearer".to_string(),
        expires_at: Some(4_000_000_000),
        scopes: vec!["read:user".to_string(), "repo".to_string()],
        obtained_at: 1_700_000_000,
        refreshed_at: None,
    }
}

fn key(user: &str, provider: &str) -> TokenKey {
    TokenKey::new("portcullis", user, provider)
}

/// A vault folder and a key file beside it (not inside: the grep test scans the vault folder).
struct Fixture {
    _dir: tempfile::TempDir,
    vault: PathBuf,
    key_file: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let vault = dir.path().join("vault");
        let key_file = dir.path().join("vault.key");
        Keyring::generate_file(&key_file).unwrap();
        Fixture {
            _dir: dir,
            vault,
            key_file,
        }
    }

    /// Opens the vault. sled finishes background writes of a dropped handle on its own thread
    /// pool, which briefly keeps the file lock; a reopen in the same process waits for that
    /// (bounded), as a restarted process never has to.
    fn open(&self) -> Result<SledStore, VaultError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match SledStore::open(&self.vault, Keyring::load_file(&self.key_file)?) {
                Err(VaultError::Open { reason, .. })
                    if reason.contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::yield_now();
                }
                other => return other,
            }
        }
    }
}

fn far_future() -> u64 {
    unix_now() + 600
}

#[tokio::test]
async fn round_trip_of_tokens_consents_and_api_keys_through_dyn_store() {
    let fx = Fixture::new();
    let store: Arc<dyn Store> = Arc::new(fx.open().unwrap());
    let alice = key("alice", "github");
    let record = token("gho_alice_access", Some("ghr_alice_refresh"));
    assert_eq!(store.get_token(&alice).await.unwrap(), None);
    store.put_token(&alice, &record).await.unwrap();
    assert_eq!(store.get_token(&alice).await.unwrap(), Some(record.clone()));

    let consent = ConsentRecord::new(b"session payload".to_vec(), far_future());
    store
        .put_consent(RecordKind::Consent, "consent-1", &consent)
        .await
        .unwrap();
    assert_eq!(
        store
            .get_consent(RecordKind::Consent, "consent-1")
            .await
            .unwrap(),
        Some(consent.clone())
    );
    assert_eq!(
        store
            .get_consent(RecordKind::Consent, "consent-2")
            .await
            .unwrap(),
        None
    );

    store
        .put_api_key("portcullis", "weather", &Secret::new("wk_123"))
        .await
        .unwrap();
    assert_eq!(
        store.get_api_key("portcullis", "weather").await.unwrap(),
        Some(Secret::new("wk_123"))
    );
    assert_eq!(store.get_api_key("other", "weather").await.unwrap(), None);

    // Survives a restart.
    drop(store);
    let store = fx.open().unwrap();
    assert_eq!(store.get_token(&alice).await.unwrap(), Some(record));
    assert_eq!(
        store
            .get_consent(RecordKind::Consent, "consent-1")
            .await
            .unwrap(),
        Some(consent)
    );
}

#[tokio::test]
async fn delete_token_reports_whether_there_was_one() {
    let fx = Fixture::new();
    let store = fx.open().unwrap();
    let alice = key("alice", "github");
    store.put_token(&alice, &token("a", None)).await.unwrap();
    assert!(store.delete_token(&alice).await.unwrap());
    assert!(!store.delete_token(&alice).await.unwrap());
    assert_eq!(store.get_token(&alice).await.unwrap(), None);
}

#[tokio::test]
async fn a_record_copied_under_bobs_key_does_not_open() {
    let fx = Fixture::new();
    let store = fx.open().unwrap();
    let (alice, bob) = (key("alice", "github"), key("bob", "github"));
    store
        .put_token(&alice, &token("gho_only_for_alice", None))
        .await
        .unwrap();
    let tokens = store.raw_tree("tokens").unwrap();
    let stolen = tokens.get(token_record_key(&alice)).unwrap().unwrap();
    tokens.insert(token_record_key(&bob), stolen).unwrap();

    let error = store.get_token(&bob).await.unwrap_err();
    assert!(matches!(error, VaultError::Unseal { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("portcullis/bob/github"), "{message}");
    assert!(!message.contains("gho_only_for_alice"), "{message}");
    // Alice's own record is untouched.
    assert!(store.get_token(&alice).await.unwrap().is_some());

    // The same holds for consent sessions and API keys.
    store
        .put_consent(
            RecordKind::Consent,
            "alices-session",
            &ConsentRecord::new(vec![1, 2, 3], far_future()),
        )
        .await
        .unwrap();
    let consents = store.raw_tree("consents").unwrap();
    let copied = consents
        .get(consent_record_key(RecordKind::Consent, "alices-session"))
        .unwrap()
        .unwrap();
    consents
        .insert(
            consent_record_key(RecordKind::Consent, "bobs-session"),
            copied,
        )
        .unwrap();
    assert!(
        store
            .take_consent(RecordKind::Consent, "bobs-session")
            .await
            .is_err()
    );

    store
        .put_api_key("w", "alice-key", &Secret::new("k"))
        .await
        .unwrap();
    let api_keys = store.raw_tree("api_keys").unwrap();
    let copied = api_keys
        .get(api_key_record_key("w", "alice-key"))
        .unwrap()
        .unwrap();
    api_keys
        .insert(api_key_record_key("w", "bob-key"), copied)
        .unwrap();
    assert!(store.get_api_key("w", "bob-key").await.is_err());
}

#[tokio::test]
async fn tampered_ciphertext_is_an_error_not_a_panic() {
    let fx = Fixture::new();
    let store = fx.open().unwrap();
    let alice = key("alice", "github");
    store
        .put_token(&alice, &token("gho_x", Some("ghr_y")))
        .await
        .unwrap();
    let tokens = store.raw_tree("tokens").unwrap();
    let original = tokens
        .get(token_record_key(&alice))
        .unwrap()
        .unwrap()
        .to_vec();
    for index in [0, 1, 2, 13, 14, original.len() / 2, original.len() - 1] {
        let mut tampered = original.clone();
        tampered[index] ^= 0x80;
        tokens.insert(token_record_key(&alice), tampered).unwrap();
        assert!(store.get_token(&alice).await.is_err(), "byte {index}");
        assert!(store.list_tokens(None).await.is_err(), "byte {index}");
    }
    for len in [0, 1, 20, original.len() - 1] {
        tokens
            .insert(token_record_key(&alice), &original[..len])
            .unwrap();
        assert!(store.get_token(&alice).await.is_err(), "length {len}");
    }
    tokens.insert(token_record_key(&alice), original).unwrap();
    assert!(store.get_token(&alice).await.unwrap().is_some());

    // A tampered consent is an error for take, and purge leaves it rather than failing.
    store
        .put_consent(
            RecordKind::Consent,
            "c",
            &ConsentRecord::new(vec![7; 40], 1),
        )
        .await
        .unwrap();
    let consents = store.raw_tree("consents").unwrap();
    let mut value = consents
        .get(consent_record_key(RecordKind::Consent, "c"))
        .unwrap()
        .unwrap()
        .to_vec();
    value[20] ^= 1;
    consents
        .insert(consent_record_key(RecordKind::Consent, "c"), value)
        .unwrap();
    assert_eq!(store.purge_expired(unix_now()).await.unwrap(), 0);
    assert!(store.take_consent(RecordKind::Consent, "c").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn take_consent_is_single_use_under_50_concurrent_takers() {
    let fx = Fixture::new();
    let store: Arc<dyn Store> = Arc::new(fx.open().unwrap());
    store
        .put_consent(
            RecordKind::Consent,
            "once",
            &ConsentRecord::new(b"pkce".to_vec(), far_future()),
        )
        .await
        .unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let takers: Vec<_> = (0..50)
        .map(|_| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.take_consent(RecordKind::Consent, "once").await
            })
        })
        .collect();
    let mut winners = 0;
    for taker in takers {
        if let Some(record) = taker.await.unwrap().unwrap() {
            assert_eq!(record.payload, b"pkce");
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(
        store
            .get_consent(RecordKind::Consent, "once")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .take_consent(RecordKind::Consent, "once")
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn an_expired_consent_is_never_returned() {
    let fx = Fixture::new();
    let store = fx.open().unwrap();
    let now = unix_now();
    let expired = ConsentRecord::new(b"old".to_vec(), now - 1);
    store
        .put_consent(RecordKind::Consent, "expired", &expired)
        .await
        .unwrap();
    store
        .put_consent(
            RecordKind::Consent,
            "expires-now",
            &ConsentRecord::new(b"x".to_vec(), now),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .get_consent(RecordKind::Consent, "expired")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .get_consent(RecordKind::Consent, "expires-now")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .take_consent(RecordKind::Consent, "expired")
            .await
            .unwrap(),
        None
    );
    // Taking it removed it: not there even for a clock set back.
    assert_eq!(store.raw_tree("consents").unwrap().len(), 1);
}

#[tokio::test]
async fn purge_expired_removes_only_expired_consents() {
    let fx = Fixture::new();
    let store = fx.open().unwrap();
    for (id, expires_at) in [("a", 100), ("b", 200), ("c", 300), ("d", 10_000)] {
        store
            .put_consent(
                RecordKind::Consent,
                id,
                &ConsentRecord::new(id.as_bytes().to_vec(), expires_at),
            )
            .await
            .unwrap();
    }
    assert_eq!(store.purge_expired(200).await.unwrap(), 2);
    assert_eq!(store.purge_expired(200).await.unwrap(), 0);
    let consents = store.raw_tree("consents").unwrap();
    assert!(
        consents
            .get(consent_record_key(RecordKind::Consent, "c"))
            .unwrap()
            .is_some()
    );
    assert!(
        consents
            .get(consent_record_key(RecordKind::Consent, "d"))
            .unwrap()
            .is_some()
    );
    assert!(
        consents
            .get(consent_record_key(RecordKind::Consent, "a"))
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn list_tokens_filters_by_user() {
    let fx = Fixture::new();
    let store = fx.open().unwrap();
    // "al" is a string prefix of "alice": the length prefix keeps their records apart.
    for (user, provider) in [
        ("alice", "github"),
        ("alice", "google"),
        ("al", "github"),
        ("bob", "slack"),
    ] {
        store
            .put_token(&key(user, provider), &token("t", Some("r")))
            .await
            .unwrap();
    }
    let alices = store.list_tokens(Some("alice")).await.unwrap();
    let keys: Vec<String> = alices.iter().map(|(k, _)| k.to_string()).collect();
    assert_eq!(keys, ["portcullis/alice/github", "portcullis/alice/google"]);
    assert_eq!(
        alices[0].1,
        TokenMeta {
            scopes: vec!["read:user".to_string(), "repo".to_string()],
            expires_at: Some(4_000_000_000),
            obtained_at: 1_700_000_000,
            has_refresh_token: true,
        }
    );
    assert_eq!(store.list_tokens(Some("al")).await.unwrap().len(), 1);
    assert_eq!(store.list_tokens(Some("nobody")).await.unwrap(), vec![]);
    assert_eq!(store.list_tokens(None).await.unwrap().len(), 4);
}
