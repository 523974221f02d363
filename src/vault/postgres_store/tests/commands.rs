//! The key rotation and `portcullis vault` commands against the database.

use super::*;

#[tokio::test]
async fn rotate_key_reseals_every_record_in_the_database_and_retires_the_old_key() {
    let (cluster, database) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let file = key_file(&dir);
    let url = cluster.url(&database);
    let store = PostgresStore::open(&url, Keyring::load_file(&file).unwrap())
        .await
        .unwrap();
    let key = TokenKey::new("portcullis", "alice", "github");
    let record = TokenRecord {
        access_token: Secret::new("gho_before_rotation"),
        refresh_token: None,
        token_type: "Bearer".to_string(),
        expires_at: None,
        scopes: vec![],
        obtained_at: 1,
        refreshed_at: None,
    };
    store.put_token(&key, &record).await.unwrap();
    store
        .put_api_key("portcullis", "weather", &Secret::new("wk"))
        .await
        .unwrap();
    store
        .put_consent(RecordKind::Consent, "s", &session("pending"))
        .await
        .unwrap();
    let old_id = store.current_key_id();

    let rotation = store.rotate_key(&file).await.unwrap();
    assert_eq!(rotation.old_key_ids, vec![old_id]);
    assert_eq!(rotation.resealed, 4, "three records and the canary");
    assert_eq!(store.current_key_id(), rotation.new_key_id);
    assert_eq!(store.get_token(&key).await.unwrap(), Some(record.clone()));

    // The key file now holds only the new key, and a replica started with it opens everything.
    let reloaded = Keyring::load_file(&file).unwrap();
    assert_eq!(reloaded.key_ids(), vec![rotation.new_key_id]);
    let replica = PostgresStore::open(&url, reloaded).await.unwrap();
    assert_eq!(replica.get_token(&key).await.unwrap(), Some(record));
    assert!(
        replica
            .get_consent(RecordKind::Consent, "s")
            .await
            .unwrap()
            .is_some()
    );
    let client = replica.raw_client().await;
    for (table, _) in TABLES {
        let old: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE get_byte(value, 1) <> $1"),
                &[&i32::from(rotation.new_key_id)],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(old, 0, "{table}");
    }
}

#[tokio::test]
async fn the_vault_commands_run_against_the_database_while_a_gateway_has_it_open() {
    let (cluster, database) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let file = key_file(&dir);
    let url = cluster.url(&database);
    // The "gateway": a store that stays open throughout.
    let gateway = PostgresStore::open(&url, Keyring::load_file(&file).unwrap())
        .await
        .unwrap();
    let key = TokenKey::new("portcullis", "https://idp|alice", "github");
    let record = TokenRecord {
        access_token: Secret::new("gho_listed_never_shown"),
        refresh_token: None,
        token_type: "Bearer".to_string(),
        expires_at: None,
        scopes: vec!["repo".to_string()],
        obtained_at: 1,
        refreshed_at: None,
    };
    gateway.put_token(&key, &record).await.unwrap();
    let config = crate::vault::VaultConfig {
        backend: crate::vault::VaultBackend::Postgres(Box::new(url.clone())),
        path: dir.path().join("unused-sled"),
        key_file: file.clone(),
    };
    let run = |action| crate::vault::admin::run(&config, "portcullis", action);
    use crate::vault::admin::Action;

    let listed = run(Action::List { user: None }).await.unwrap();
    assert!(
        listed.contains("https://idp|alice") && listed.contains("1 link(s)"),
        "{listed}"
    );
    assert!(!listed.contains("gho_listed_never_shown"));
    let rotated = run(Action::RotateKey).await.unwrap();
    assert!(rotated.contains("re-sealed 2 record(s)"), "{rotated}");
    let revoked = run(Action::Revoke {
        user: "https://idp|alice".to_string(),
        provider: "github".to_string(),
    })
    .await
    .unwrap();
    assert_eq!(revoked, "revoked portcullis/https://idp|alice/github\n");
    // The gateway sees the revocation at once (its next read), and no sled folder was made.
    assert_eq!(gateway.get_token(&key).await.unwrap(), None);
    assert!(!dir.path().join("unused-sled").exists());
}

#[tokio::test]
async fn vault_migrate_copies_a_sled_vault_into_the_database_sealed_as_it_was() {
    use crate::vault::admin::{Action, BackendName};
    let (cluster, database) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let file = key_file(&dir);
    let sled_path = dir.path().join("vault");
    let url = cluster.url(&database);
    let token = |access: &str| TokenRecord {
        access_token: Secret::new(access),
        refresh_token: Some(Secret::new("ghr_migrated")),
        token_type: "Bearer".to_string(),
        expires_at: Some(4_000_000_000),
        scopes: vec!["repo".to_string()],
        obtained_at: 1,
        refreshed_at: None,
    };
    let (alice, bob) = (
        TokenKey::new("portcullis", "https://idp|alice", "github"),
        TokenKey::new("portcullis", "https://idp|bob", "github"),
    );
    {
        let sled =
            crate::vault::SledStore::open(&sled_path, Keyring::load_file(&file).unwrap()).unwrap();
        sled.put_token(&alice, &token("gho_alice_sled"))
            .await
            .unwrap();
        sled.put_token(&bob, &token("gho_bob_sled")).await.unwrap();
        sled.put_api_key("portcullis", "weather", &Secret::new("wk_sled"))
            .await
            .unwrap();
        sled.put_consent(RecordKind::Consent, "live", &session("pending"))
            .await
            .unwrap();
        let old = ConsentRecord::new(b"old".to_vec(), unix_now() - 1);
        sled.put_consent(RecordKind::Consent, "old", &old)
            .await
            .unwrap();
        sled.close().await.unwrap();
    }
    // A PostgreSQL gateway already stored a newer token for bob: migration keeps it.
    let gateway = PostgresStore::open(&url, Keyring::load_file(&file).unwrap())
        .await
        .unwrap();
    gateway
        .put_token(&bob, &token("gho_bob_newer"))
        .await
        .unwrap();

    let config = crate::vault::VaultConfig {
        backend: crate::vault::VaultBackend::Postgres(Box::new(url.clone())),
        path: sled_path.clone(),
        key_file: file.clone(),
    };
    let migrate = Action::Migrate {
        from: BackendName::Sled,
        to: BackendName::Postgres,
    };
    let output = crate::vault::admin::run(&config, "portcullis", migrate)
        .await
        .unwrap();
    assert!(
        output.starts_with("copied 1 token(s), 1 consent record(s) and 1 API key(s)"),
        "{output}"
    );
    assert!(
        output.contains("kept 1 record(s)") && output.contains("skipped 1 expired"),
        "{output}"
    );
    assert!(!output.contains(PASSWORD), "{output}");

    assert_eq!(
        gateway.get_token(&alice).await.unwrap(),
        Some(token("gho_alice_sled"))
    );
    assert_eq!(
        gateway.get_token(&bob).await.unwrap(),
        Some(token("gho_bob_newer"))
    );
    let key = gateway.get_api_key("portcullis", "weather").await.unwrap();
    assert_eq!(key.unwrap().expose(), "wk_sled");
    let taken = gateway
        .take_consent(RecordKind::Consent, "live")
        .await
        .unwrap();
    assert_eq!(taken.unwrap().payload, b"pending");
    gateway.check().await.unwrap();

    // The other directions are refused, and so is a config without a database.
    let backwards = Action::Migrate {
        from: BackendName::Postgres,
        to: BackendName::Sled,
    };
    assert!(
        crate::vault::admin::run(&config, "portcullis", backwards)
            .await
            .is_err()
    );
    let sled_only = crate::vault::VaultConfig {
        backend: crate::vault::VaultBackend::Sled,
        ..config.clone()
    };
    let migrate = Action::Migrate {
        from: BackendName::Sled,
        to: BackendName::Postgres,
    };
    assert!(
        crate::vault::admin::run(&sled_only, "portcullis", migrate)
            .await
            .is_err()
    );
}
