use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::*;

fn keyring(byte: u8) -> Keyring {
    Keyring::parse(&STANDARD.encode([byte; 32]), "test").unwrap()
}

fn key(user: &str) -> TokenKey {
    TokenKey {
        workload: "portcullis".into(),
        user: format!("https://idp.example.com/#{user}"),
        provider: "github".into(),
    }
}

fn record(secret: &str) -> TokenRecord {
    TokenRecord {
        access_token: Secret::new(format!("access-{secret}")),
        refresh_token: Some(Secret::new(format!("refresh-{secret}"))),
        token_type: "Bearer".into(),
        expires_at: Some(4_000_000_000),
        scopes: vec!["repo".into()],
        obtained_at: 1,
        refreshed_at: None,
    }
}

#[tokio::test]
async fn tokens_round_trip_and_list_by_user() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("v"), keyring(1)).unwrap();
    store.put_token(&key("alice"), &record("a")).await.unwrap();
    store.put_token(&key("bob"), &record("b")).await.unwrap();
    let got = store.get_token(&key("alice")).await.unwrap().unwrap();
    assert_eq!(got.access_token.expose(), "access-a");
    let alice = store
        .list_tokens(Some("https://idp.example.com/#alice"))
        .await
        .unwrap();
    assert_eq!(alice.len(), 1);
    assert_eq!(alice[0].0, key("alice"));
    assert!(alice[0].1.has_refresh_token);
    assert_eq!(store.list_tokens(None).await.unwrap().len(), 2);
    assert!(store.delete_token(&key("alice")).await.unwrap());
    assert!(store.get_token(&key("alice")).await.unwrap().is_none());
}

#[tokio::test]
async fn a_record_moved_under_another_users_key_does_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("v"), keyring(1)).unwrap();
    store.put_token(&key("alice"), &record("a")).await.unwrap();
    let sealed = store.tokens.get(key("alice").to_bytes()).unwrap().unwrap();
    store.tokens.insert(key("bob").to_bytes(), sealed).unwrap();
    let error = store.get_token(&key("bob")).await.unwrap_err().to_string();
    assert!(error.contains("failed authentication"), "{error}");
}

#[tokio::test]
async fn tampered_ciphertext_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("v"), keyring(1)).unwrap();
    store.put_token(&key("alice"), &record("a")).await.unwrap();
    let mut sealed = store
        .tokens
        .get(key("alice").to_bytes())
        .unwrap()
        .unwrap()
        .to_vec();
    let last = sealed.len() - 1;
    sealed[last] ^= 1;
    store
        .tokens
        .insert(key("alice").to_bytes(), sealed)
        .unwrap();
    assert!(store.get_token(&key("alice")).await.is_err());
    store
        .tokens
        .insert(key("alice").to_bytes(), vec![9u8])
        .unwrap();
    assert!(store.get_token(&key("alice")).await.is_err());
}

#[tokio::test]
async fn the_wrong_key_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(SledStore::open(&dir.path().join("v"), keyring(1)).unwrap());
    let error = SledStore::open(&dir.path().join("v"), keyring(2))
        .unwrap_err()
        .to_string();
    assert!(error.contains("does not match"), "{error}");
}

#[tokio::test]
async fn consents_are_single_use_under_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(&dir.path().join("v"), keyring(1)).unwrap());
    let record = ConsentRecord {
        payload: b"session".to_vec(),
        expires_at: 4_000_000_000,
    };
    store.put_consent("c1", &record).await.unwrap();
    let takers = (0..50).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.take_consent("c1").await.unwrap() })
    });
    let winners = futures::future::join_all(takers)
        .await
        .into_iter()
        .filter(|r| r.as_ref().unwrap().is_some())
        .count();
    assert_eq!(winners, 1);
}

#[tokio::test]
async fn expired_consents_are_never_returned_and_get_purged() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("v"), keyring(1)).unwrap();
    let old = ConsentRecord {
        payload: b"old".to_vec(),
        expires_at: 10,
    };
    store.put_consent("old", &old).await.unwrap();
    assert!(store.get_consent("old").await.unwrap().is_none());
    assert_eq!(store.purge_expired(100).await.unwrap(), 1);
    assert!(store.take_consent("old").await.unwrap().is_none());
}

#[tokio::test]
async fn rotation_reseals_everything_and_the_old_key_is_no_longer_needed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let old = keyring(1);
    let store = SledStore::open(
        &path,
        Keyring::parse(&STANDARD.encode([1u8; 32]), "t").unwrap(),
    )
    .unwrap();
    store.put_token(&key("alice"), &record("a")).await.unwrap();
    store
        .put_api_key("w", "weather", &Secret::new("k".into()))
        .await
        .unwrap();
    drop(store);
    let both = old.with_new_key().unwrap();
    let new_only = both.current_only();
    let store = SledStore::open(&path, both).unwrap();
    assert_eq!(
        store.reseal_all().await.unwrap(),
        3,
        "token, api key and canary"
    );
    drop(store);
    let store = SledStore::open(&path, new_only).unwrap();
    assert_eq!(
        store
            .get_token(&key("alice"))
            .await
            .unwrap()
            .unwrap()
            .access_token
            .expose(),
        "access-a"
    );
    assert_eq!(
        store
            .get_api_key("w", "weather")
            .await
            .unwrap()
            .unwrap()
            .expose(),
        "k"
    );
    drop(store);
    assert!(
        SledStore::open(&path, old).is_err(),
        "the retired key opens nothing"
    );
}

#[test]
fn debug_output_never_shows_secrets() {
    let text = format!("{:?}", record("s3cr3t"));
    assert!(!text.contains("s3cr3t"), "{text}");
}

/// DESIGN: no plaintext token ever touches disk.
#[tokio::test]
async fn the_vault_directory_holds_no_plaintext_secret() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("v"), keyring(1)).unwrap();
    for i in 0..20 {
        store
            .put_token(&key(&format!("user{i}")), &record(&format!("zq8Xv{i}Kp")))
            .await
            .unwrap();
    }
    store
        .put_api_key("w", "k", &Secret::new("apikey-zq8XvKp".into()))
        .await
        .unwrap();
    drop(store);
    let needles: Vec<Vec<u8>> = ["zq8Xv", "access-", "refresh-", "apikey-"]
        .iter()
        .flat_map(|n| {
            [
                n.as_bytes().to_vec(),
                STANDARD.encode(n).trim_end_matches('=').as_bytes().to_vec(),
            ]
        })
        .collect();
    let mut files = vec![dir.path().join("v")];
    let mut scanned = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        scanned += bytes.len();
        for needle in &needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
                "{} contains {:?}",
                path.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }
    assert!(scanned > 0);
}

#[tokio::test]
async fn no_key_means_no_vault() {
    let dir = tempfile::tempdir().unwrap();
    let error = open_vault(
        &dir.path().join("v"),
        Some(&dir.path().join("missing.key")),
        None,
        false,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(error.contains("head -c32 /dev/urandom"), "{error}");
    let generated = open_vault(
        &dir.path().join("v"),
        Some(&dir.path().join("dev.key")),
        None,
        true,
    )
    .await;
    assert!(generated.is_ok());
}
