//! Vault behaviour, one test per promise of DESIGN 3.1 / 3.2.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};

use super::sled_store::{api_key_record_key, consent_record_key, token_record_key};
use super::*;

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
async fn the_wrong_key_is_refused_when_the_vault_opens() {
    let fx = Fixture::new();
    let store = fx.open().unwrap();
    store
        .put_token(&key("alice", "github"), &token("a", None))
        .await
        .unwrap();
    drop(store);

    let error = SledStore::open(&fx.vault, Keyring::generate().unwrap()).unwrap_err();
    assert!(matches!(error, VaultError::KeyMismatch { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("the vault key does not match this vault"),
        "{error}"
    );

    // A key with another id says which id the vault needs.
    let other = format!("7 {}", STANDARD.encode([9u8; 32]));
    let error = SledStore::open(&fx.vault, Keyring::from_env_base64(&other).unwrap()).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("key id 1"), "{message}");
    assert!(message.contains("the vault key does not match this vault"));

    // The right key still opens it: nothing was damaged by the failed attempts.
    assert!(fx.open().is_ok());
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

#[tokio::test]
async fn rotation_keeps_every_record_readable_and_the_old_key_is_no_longer_needed() {
    let fx = Fixture::new();
    let old_key_file = std::fs::read_to_string(&fx.key_file).unwrap();
    let store = fx.open().unwrap();
    let users: Vec<TokenKey> = (0..20)
        .map(|i| key(&format!("user{i}"), "github"))
        .collect();
    for (i, user) in users.iter().enumerate() {
        store
            .put_token(user, &token(&format!("access-{i}"), Some("refresh")))
            .await
            .unwrap();
    }
    let consent = ConsentRecord::new(b"pending".to_vec(), far_future());
    store
        .put_consent(RecordKind::Consent, "pending", &consent)
        .await
        .unwrap();
    store
        .put_api_key("w", "weather", &Secret::new("wk"))
        .await
        .unwrap();

    let rotation = store.rotate_key(&fx.key_file).await.unwrap();
    assert_eq!(rotation.old_key_ids, vec![1]);
    assert_eq!(rotation.new_key_id, 2);
    assert_eq!(rotation.resealed, 20 + 1 + 1 + 1); // tokens, consent, API key, canary
    assert_eq!(store.current_key_id(), 2);
    for (i, user) in users.iter().enumerate() {
        let record = store.get_token(user).await.unwrap().unwrap();
        assert_eq!(record.access_token.expose(), format!("access-{i}"));
    }

    // The key file now holds only the new key, still private.
    let text = std::fs::read_to_string(&fx.key_file).unwrap();
    assert_eq!(text.lines().count(), 1);
    assert!(text.starts_with("2 "));
    assert!(!text.contains(old_key_file.trim()));
    assert_private(&fx.key_file);
    drop(store);

    // Opening with only the new key works; the old key no longer opens the vault.
    let store = fx.open().unwrap();
    assert_eq!(store.list_tokens(None).await.unwrap().len(), 20);
    assert_eq!(
        store
            .get_consent(RecordKind::Consent, "pending")
            .await
            .unwrap(),
        Some(consent)
    );
    assert_eq!(
        store.get_api_key("w", "weather").await.unwrap(),
        Some(Secret::new("wk"))
    );
    drop(store);
    let old = Keyring::from_env_base64(&old_key_file).unwrap();
    assert!(matches!(
        SledStore::open(&fx.vault, old),
        Err(VaultError::KeyMismatch { .. })
    ));

    // And it rotates again (id 3).
    let store = fx.open().unwrap();
    assert_eq!(store.rotate_key(&fx.key_file).await.unwrap().new_key_id, 3);
}

#[tokio::test]
async fn a_crash_between_rotation_steps_leaves_every_record_readable() {
    let fx = Fixture::new();
    let store = fx.open().unwrap();
    store
        .put_token(&key("alice", "github"), &token("old", None))
        .await
        .unwrap();
    drop(store);

    // Crash after step 1: the file holds both keys, the records are under the old one.
    Keyring::load_file(&fx.key_file)
        .unwrap()
        .rotate(&fx.key_file)
        .unwrap();
    let store = fx.open().unwrap();
    assert_eq!(store.current_key_id(), 2);
    store
        .put_token(&key("bob", "github"), &token("new", None))
        .await
        .unwrap();
    assert_eq!(store.list_tokens(None).await.unwrap().len(), 2);

    // Crash after step 2: re-sealed, old key not yet retired.
    assert_eq!(store.reseal_all().await.unwrap(), 2); // alice + canary
    drop(store);
    let store = fx.open().unwrap();
    assert_eq!(store.list_tokens(None).await.unwrap().len(), 2);

    // Running the rotation again finishes the job.
    let rotation = store.rotate_key(&fx.key_file).await.unwrap();
    assert_eq!((rotation.old_key_ids, rotation.new_key_id), (vec![1, 2], 3));
    drop(store);
    let store = fx.open().unwrap();
    assert_eq!(store.list_tokens(None).await.unwrap().len(), 2);
}

#[tokio::test]
async fn rotation_refuses_a_key_file_that_does_not_hold_the_vaults_keys() {
    let fx = Fixture::new();
    let store = SledStore::open(&fx.vault, Keyring::generate().unwrap()).unwrap();
    let before = std::fs::read(&fx.key_file).unwrap();
    let error = store.rotate_key(&fx.key_file).await.unwrap_err();
    assert!(matches!(error, VaultError::Rotation(_)), "{error:?}");
    assert_eq!(std::fs::read(&fx.key_file).unwrap(), before);
    assert_eq!(store.current_key_id(), 1);
}

#[test]
fn debug_output_never_shows_secrets() {
    let record = token("gho_DEBUG_ACCESS", Some("ghr_DEBUG_REFRESH"));
    let shown = format!("{record:?} {record:#?}");
    assert!(!shown.contains("gho_DEBUG_ACCESS"), "{shown}");
    assert!(!shown.contains("ghr_DEBUG_REFRESH"), "{shown}");
    assert!(shown.contains("[redacted]"));

    let secret = Secret::new("sk_DEBUG");
    assert!(!format!("{secret:?} {secret}").contains("sk_DEBUG"));

    let material = STANDARD.encode([42u8; 32]);
    let keyring = Keyring::from_env_base64(&material).unwrap();
    let shown = format!("{keyring:?} {keyring:#?}");
    assert!(!shown.contains(&material), "{shown}");
    assert!(!shown.contains("42"), "{shown}");

    let consent = ConsentRecord::new(b"pkce_DEBUG_VERIFIER".to_vec(), 5);
    let shown = format!("{consent:?}");
    assert!(!shown.contains("pkce_DEBUG_VERIFIER"), "{shown}");
    assert!(!shown.contains("112, 107"), "{shown}"); // not as a byte list either

    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("v"), keyring).unwrap();
    let shown = format!("{store:?}");
    assert!(!shown.contains(&material), "{shown}");
}

/// DESIGN: no plaintext token ever touches disk.
#[tokio::test]
async fn no_plaintext_secret_touches_disk() {
    let secrets = [
        "gho_GREP_ACCESS_7f3a9c1e5b",
        "ghr_GREP_REFRESH_2d8e4b6a0c",
        "PKCE_GREP_VERIFIER_9b1d3f5e7a",
        "WK_GREP_API_KEY_4c6e8a0b2d",
    ];
    let fx = Fixture::new();
    let store = fx.open().unwrap();
    for i in 0..50 {
        store
            .put_token(
                &key(&format!("user{i}"), "github"),
                &token(secrets[0], Some(secrets[1])),
            )
            .await
            .unwrap();
    }
    store
        .put_consent(
            RecordKind::Consent,
            "c",
            &ConsentRecord::new(secrets[2].as_bytes().to_vec(), far_future()),
        )
        .await
        .unwrap();
    store
        .put_api_key("w", "weather", &Secret::new(secrets[3]))
        .await
        .unwrap();
    store.flush().await.unwrap();
    assert_no_secret_on_disk(&fx.vault, &secrets);
    drop(store);
    assert_no_secret_on_disk(&fx.vault, &secrets);
}

/// Control for the test above: the scan does find a secret written in plain text (sled does
/// not compress or otherwise hide it), so its silence means something.
#[tokio::test]
async fn the_disk_scan_finds_a_plaintext_secret_written_raw() {
    let fx = Fixture::new();
    let store = fx.open().unwrap();
    let secret = "RAW_CONTROL_SECRET_5e7a9c1b3d";
    let raw = format!("{{\"access_token\":\"{}\"}}", STANDARD.encode(secret));
    store
        .raw_tree("meta")
        .unwrap()
        .insert(b"raw", raw.as_bytes())
        .unwrap();
    store.flush().await.unwrap();
    drop(store);
    let found = std::panic::catch_unwind(|| assert_no_secret_on_disk(&fx.vault, &[secret]));
    assert!(found.is_err());
}

fn assert_no_secret_on_disk(dir: &Path, secrets: &[&str]) {
    let mut files = Vec::new();
    collect_files(dir, &mut files);
    assert!(!files.is_empty());
    let needles: Vec<(String, Vec<u8>)> = secrets
        .iter()
        .flat_map(|secret| {
            encodings(secret)
                .into_iter()
                .map(move |n| (secret.to_string(), n))
        })
        .collect();
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        for (secret, needle) in &needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
                "{secret} found in {} as {:?}",
                file.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }
}

/// The secret as raw bytes, hex, and standard and URL-safe base64 at each of the three
/// alignments it could have inside a longer base64 text (edge characters dropped).
fn encodings(secret: &str) -> Vec<Vec<u8>> {
    let mut needles = vec![
        secret.as_bytes().to_vec(),
        secret
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            .into_bytes(),
    ];
    for shift in 0..3 {
        let mut shifted = vec![0u8; shift];
        shifted.extend_from_slice(secret.as_bytes());
        for engine in [&STANDARD, &URL_SAFE] {
            let encoded = engine.encode(&shifted);
            // Skip the characters mixing in the shift bytes or the padding.
            let inner = &encoded.as_bytes()[4..encoded.len() - 4];
            needles.push(inner.to_vec());
        }
    }
    needles
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_files(&path, files);
        } else {
            files.push(path);
        }
    }
}

#[cfg(unix)]
fn assert_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", path.display());
}

#[cfg(not(unix))]
fn assert_private(_path: &Path) {}

#[cfg(unix)]
#[test]
fn a_key_file_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault.key");
    let material = STANDARD.encode([1u8; 32]);
    std::fs::write(&path, format!("{material}\n")).unwrap();
    for mode in [0o644, 0o640, 0o604, 0o660] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let error = Keyring::load_file(&path).unwrap_err();
        assert!(
            matches!(error, VaultError::KeyFilePermissions { .. }),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(
            message.contains(&format!("chmod 600 {}", path.display())),
            "{message}"
        );
        assert!(!message.contains(&material));
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(Keyring::load_file(&path).unwrap().key_ids(), vec![1]);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    assert!(Keyring::load_file(&path).is_ok());
}

#[test]
fn key_file_syntax() {
    let a = STANDARD.encode([1u8; 32]);
    let b = STANDARD.encode([2u8; 32]);
    let parse = |text: &str| Keyring::from_env_base64(text).map(|k| k.key_ids());

    assert_eq!(parse(&a).unwrap(), vec![1]);
    assert_eq!(parse(&format!("  {a}  \n")).unwrap(), vec![1]);
    assert_eq!(parse(a.trim_end_matches('=')).unwrap(), vec![1]);
    assert_eq!(
        parse(&format!("# comment\n\n3 {a}\n7 {b}\n")).unwrap(),
        vec![3, 7]
    );
    // A bare first line is id 1, so a rotated hand-made file keeps working.
    assert_eq!(parse(&format!("{a}\n2 {b}\n")).unwrap(), vec![1, 2]);
    let current = Keyring::from_env_base64(&format!("9 {a}\n4 {b}")).unwrap();
    assert_eq!(current.current_key_id(), 4);

    let short = STANDARD.encode([1u8; 31]);
    for bad in [
        String::new(),
        "# only a comment".to_string(),
        "not base64!".to_string(),
        short.clone(),
        format!("0 {a}"),
        format!("256 {a}"),
        format!("x {a}"),
        format!("1 {a}\n1 {b}"),
        format!("1 {a}\n{b}"),
        format!("1 {a} extra"),
    ] {
        let error = Keyring::from_env_base64(&bad).unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(error, VaultError::EnvKey { .. }),
            "{bad}: {error:?}"
        );
        assert!(!message.contains(&a) && !message.contains(&b) && !message.contains(&short));
    }
}

#[tokio::test]
async fn open_vault_never_starts_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let vault = dir.path().join("vault");
    let key_file = dir.path().join("vault.key");

    // Missing key file: the error names it and says how to create one; nothing is created.
    let error = open_vault(&vault, Some(&key_file), None, false)
        .await
        .unwrap_err();
    let message = error.to_string();
    let file = key_file.display().to_string();
    assert!(
        matches!(error, VaultError::KeyFileMissing { .. }),
        "{error:?}"
    );
    assert!(
        message.contains(&format!(
            "head -c32 /dev/urandom | base64 > {file} && chmod 600 {file}"
        )),
        "{message}"
    );
    assert!(!vault.exists());
    assert!(matches!(
        open_vault(&vault, None, None, false).await,
        Err(VaultError::NoKey)
    ));

    // --dev generates it (0600) and reuses it next time.
    let store = open_vault(&vault, Some(&key_file), None, true)
        .await
        .unwrap();
    assert_private(&key_file);
    store
        .put_token(&key("alice", "github"), &token("t", None))
        .await
        .unwrap();
    drop(store);
    let store = open_vault(&vault, Some(&key_file), None, false)
        .await
        .unwrap();
    assert!(
        store
            .get_token(&key("alice", "github"))
            .await
            .unwrap()
            .is_some()
    );
    drop(store);

    // The environment wins over the file: a different env key is refused by this vault...
    let env = STANDARD.encode([3u8; 32]);
    let error = open_vault(&vault, Some(&key_file), Some(env.clone()), false)
        .await
        .unwrap_err();
    assert!(matches!(error, VaultError::KeyMismatch { .. }), "{error:?}");
    assert!(!error.to_string().contains(&env));
    // ...and opens a fresh vault even though the key file does not exist.
    let other = dir.path().join("other");
    let missing = dir.path().join("missing.key");
    assert!(
        open_vault(&other, Some(&missing), Some(env), false)
            .await
            .is_ok()
    );
    assert!(!missing.exists());
    assert!(
        open_vault(&other, None, Some(String::new()), true)
            .await
            .is_err()
    );

    // --dev without a configured key file uses <vault>.key.
    let third = dir.path().join("third");
    assert!(open_vault(&third, None, None, true).await.is_ok());
    assert_private(&dir.path().join("third.key"));
}
