//! Keys: the wrong key, rotation, key files, and never starting without one.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::*;

#[tokio::test]
async fn the_wrong_key_is_refused_when_the_vault_opens() {
    let fx = Fixture::new();
    let store = fx.open().unwrap();
    store
        .put_token(&key("alice", "github"), &token("a", None))
        .await
        .unwrap();
    store.close().await.unwrap();

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
    store.close().await.unwrap();

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
    store.close().await.unwrap();
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
    store.close().await.unwrap();

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
    store.close().await.unwrap();
    let store = fx.open().unwrap();
    assert_eq!(store.list_tokens(None).await.unwrap().len(), 2);

    // Running the rotation again finishes the job.
    let rotation = store.rotate_key(&fx.key_file).await.unwrap();
    assert_eq!((rotation.old_key_ids, rotation.new_key_id), (vec![1, 2], 3));
    store.close().await.unwrap();
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
    let error = open_sled_vault(&vault, Some(&key_file), None, false)
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
        open_sled_vault(&vault, None, None, false).await,
        Err(VaultError::NoKey)
    ));

    // --dev generates it (0600) and reuses it next time.
    let store = open_sled_vault(&vault, Some(&key_file), None, true)
        .await
        .unwrap();
    assert_private(&key_file);
    store
        .put_token(&key("alice", "github"), &token("t", None))
        .await
        .unwrap();
    store.close().await.unwrap();
    let store = open_sled_vault(&vault, Some(&key_file), None, false)
        .await
        .unwrap();
    assert!(
        store
            .get_token(&key("alice", "github"))
            .await
            .unwrap()
            .is_some()
    );
    store.close().await.unwrap();

    // The environment wins over the file: a different env key is refused by this vault...
    let env = STANDARD.encode([3u8; 32]);
    let error = open_sled_vault(&vault, Some(&key_file), Some(env.clone()), false)
        .await
        .unwrap_err();
    assert!(matches!(error, VaultError::KeyMismatch { .. }), "{error:?}");
    assert!(!error.to_string().contains(&env));
    // ...and opens a fresh vault even though the key file does not exist.
    let other = dir.path().join("other");
    let missing = dir.path().join("missing.key");
    assert!(
        open_sled_vault(&other, Some(&missing), Some(env), false)
            .await
            .is_ok()
    );
    assert!(!missing.exists());
    assert!(
        open_sled_vault(&other, None, Some(String::new()), true)
            .await
            .is_err()
    );

    // --dev without a configured key file uses <vault>.key.
    let third = dir.path().join("third");
    assert!(open_sled_vault(&third, None, None, true).await.is_ok());
    assert_private(&dir.path().join("third.key"));
}
