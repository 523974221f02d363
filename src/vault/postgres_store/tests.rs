//! PostgreSQL-only behaviour against a real server: several replicas on one database, what the
//! database holds, an unreachable server, key rotation. The [`Store`] contract itself runs for
//! this backend in `vault/contract.rs`.

use std::sync::Arc;

use super::test_cluster::{self, Cluster, PASSWORD};
use super::*;
use crate::vault::unix_now;

/// The shared cluster and a fresh database on it.
async fn fresh_database() -> (Arc<Cluster>, String) {
    let cluster = tokio::task::spawn_blocking(test_cluster::shared)
        .await
        .unwrap();
    let database = {
        let cluster = cluster.clone();
        tokio::task::spawn_blocking(move || cluster.database())
            .await
            .unwrap()
    };
    (cluster, database)
}

/// A key file with one random key, as `open_vault` would read it.
fn key_file(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("vault.key");
    Keyring::generate_file(&path).unwrap();
    path
}

/// Two replicas: two stores on one database with the same key.
async fn two_replicas() -> (
    Arc<Cluster>,
    tempfile::TempDir,
    PostgresStore,
    PostgresStore,
) {
    let (cluster, database) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let file = key_file(&dir);
    let url = cluster.url(&database);
    let a = PostgresStore::open(&url, Keyring::load_file(&file).unwrap())
        .await
        .unwrap();
    let b = PostgresStore::open(&url, Keyring::load_file(&file).unwrap())
        .await
        .unwrap();
    (cluster, dir, a, b)
}

fn session(payload: &str) -> ConsentRecord {
    ConsentRecord::new(payload.as_bytes().to_vec(), unix_now() + 600)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_racing_swap_consent_exactly_one_wins() {
    let (_cluster, _dir, a, b) = two_replicas().await;
    for round in 0..20 {
        let id = format!("s{round}");
        let pending = session("pending");
        a.put_consent(RecordKind::Consent, &id, &pending)
            .await
            .unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let race = |store: PostgresStore, by: &'static str| {
            let (barrier, pending, id) = (barrier.clone(), pending.clone(), id.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .swap_consent(RecordKind::Consent, &id, &pending, Some(&session(by)))
                    .await
                    .unwrap()
            })
        };
        let (won_a, won_b) = (race(a.clone(), "a"), race(b.clone(), "b"));
        let (won_a, won_b) = (won_a.await.unwrap(), won_b.await.unwrap());
        assert!(won_a ^ won_b, "round {round}: a {won_a}, b {won_b}");
        let stored = b
            .get_consent(RecordKind::Consent, &id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.payload, if won_a { b"a" } else { b"b" });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_replicas_starting_at_once_all_open_and_the_schema_is_created_once() {
    let (cluster, database) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let file = key_file(&dir);
    let url = cluster.url(&database);
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let (url, keyring) = (url.clone(), Keyring::load_file(&file).unwrap());
            tokio::spawn(async move { PostgresStore::open(&url, keyring).await })
        })
        .collect();
    let mut stores = Vec::new();
    for open in opens {
        stores.push(open.await.unwrap().unwrap());
    }
    let client = stores[0].raw_client().await;
    let expected: Vec<i32> = (1..=schema::SCHEMA_VERSION).collect();
    assert_eq!(schema::applied_versions(&client).await, expected);
    let canaries: i64 = client
        .query_one("SELECT count(*) FROM vault_meta", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(canaries, 1);
    for store in &stores {
        store.check().await.unwrap();
    }
}

#[tokio::test]
async fn a_consent_started_on_one_replica_is_finished_on_another() {
    let (_cluster, _dir, a, b) = two_replicas().await;
    a.put_consent(RecordKind::Consent, "c0ffee", &session("flow"))
        .await
        .unwrap();
    let taken = b.take_consent(RecordKind::Consent, "c0ffee").await.unwrap();
    assert_eq!(taken.unwrap().payload, b"flow");
    assert!(
        a.take_consent(RecordKind::Consent, "c0ffee")
            .await
            .unwrap()
            .is_none()
    );
    // A token written by one replica is read by the other.
    let key = TokenKey::new("portcullis", "https://idp|alice", "github");
    let record = TokenRecord {
        access_token: Secret::new("gho_shared"),
        refresh_token: None,
        token_type: "Bearer".to_string(),
        expires_at: None,
        scopes: vec![],
        obtained_at: 1,
        refreshed_at: None,
    };
    a.put_token(&key, &record).await.unwrap();
    assert_eq!(b.get_token(&key).await.unwrap(), Some(record));
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn the_database_never_holds_a_plaintext_token_secret_or_consent_id() {
    let (cluster, database) = fresh_database().await;
    let store = PostgresStore::open(&cluster.url(&database), Keyring::generate().unwrap())
        .await
        .unwrap();
    let canaries = [
        "gho_plaintext_canary_123",
        "ghr_refresh_canary_456",
        "wk_api_key_canary_789",
        "pkce_verifier_canary_000",
        "consent_id_canary_abc",
    ];
    let key = TokenKey::new("portcullis", "https://idp|alice", "github");
    let record = TokenRecord {
        access_token: Secret::new(canaries[0]),
        refresh_token: Some(Secret::new(canaries[1])),
        token_type: "Bearer".to_string(),
        expires_at: Some(4_000_000_000),
        scopes: vec!["repo".to_string()],
        obtained_at: 1,
        refreshed_at: None,
    };
    store.put_token(&key, &record).await.unwrap();
    store
        .put_api_key("portcullis", "weather", &Secret::new(canaries[2]))
        .await
        .unwrap();
    store
        .put_consent(RecordKind::Consent, canaries[4], &session(canaries[3]))
        .await
        .unwrap();

    let client = store.raw_client().await;
    let mut raw = Vec::new();
    for (table, _) in TABLES {
        for row in client
            .query(&format!("SELECT record_key, value FROM {table}"), &[])
            .await
            .unwrap()
        {
            raw.push(row.get::<_, Vec<u8>>(0));
            raw.push(row.get::<_, Vec<u8>>(1));
        }
    }
    assert_eq!(raw.len(), 8, "three records and the canary");
    let dump = {
        let (cluster, database) = (cluster.clone(), database.clone());
        tokio::task::spawn_blocking(move || cluster.pg_dump(&database))
            .await
            .unwrap()
    };
    assert!(dump.contains("vault_tokens"), "{dump}");
    let lower = dump.to_lowercase();
    for canary in canaries {
        for bytes in &raw {
            assert!(
                !contains(bytes, canary.as_bytes()),
                "{canary} in a stored value"
            );
        }
        assert!(!dump.contains(canary), "{canary} in pg_dump");
        assert!(
            !lower.contains(&hex(canary.as_bytes())),
            "{canary} as hex in pg_dump"
        );
    }
    // What is in clear is what sled keeps in its keys: the names, as documented.
    assert!(dump.contains("https://idp|alice"));
}

#[tokio::test]
async fn a_token_row_moved_to_another_user_does_not_open() {
    let (cluster, database) = fresh_database().await;
    let store = PostgresStore::open(&cluster.url(&database), Keyring::generate().unwrap())
        .await
        .unwrap();
    let alice = TokenKey::new("portcullis", "alice", "github");
    let bob = TokenKey::new("portcullis", "bob", "github");
    let record = TokenRecord {
        access_token: Secret::new("gho_alice"),
        refresh_token: None,
        token_type: "Bearer".to_string(),
        expires_at: None,
        scopes: vec![],
        obtained_at: 1,
        refreshed_at: None,
    };
    store.put_token(&alice, &record).await.unwrap();
    let client = store.raw_client().await;
    client
        .execute(
            "UPDATE vault_tokens SET record_key = $1, user_key = 'bob'",
            &[&crate::vault::sled_store::token_record_key(&bob)],
        )
        .await
        .unwrap();
    let error = store.get_token(&bob).await.unwrap_err();
    assert!(matches!(error, VaultError::Unseal { .. }), "{error:?}");
    assert!(store.list_tokens(None).await.is_err());
}

#[tokio::test]
async fn a_different_key_is_refused_at_open() {
    let (cluster, database) = fresh_database().await;
    let url = cluster.url(&database);
    PostgresStore::open(&url, Keyring::generate().unwrap())
        .await
        .unwrap();
    let error = PostgresStore::open(&url, Keyring::generate().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(error, VaultError::KeyMismatch { .. }), "{error:?}");
    assert!(!error.to_string().contains(PASSWORD), "{error}");
}

#[tokio::test]
async fn a_closed_port_is_unavailable_and_the_error_names_no_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = DatabaseUrl::parse(&Secret::new(format!(
        "postgres://gw:{PASSWORD}@127.0.0.1:{port}/vault"
    )))
    .unwrap();
    let error = PostgresStore::open(&url, Keyring::generate().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(error, VaultError::Unavailable { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(&format!("127.0.0.1:{port}/vault")),
        "{message}"
    );
    assert!(!message.contains(PASSWORD), "{message}");
    assert!(!format!("{error:?}").contains(PASSWORD));
}

#[tokio::test]
async fn a_stopped_server_is_unavailable_and_the_same_store_recovers_when_it_is_back() {
    // A private cluster: stopping the shared one would break the tests running beside.
    let cluster = tokio::task::spawn_blocking(Cluster::start).await.unwrap();
    let cluster = Arc::new(cluster);
    let database = {
        let cluster = cluster.clone();
        tokio::task::spawn_blocking(move || cluster.database())
            .await
            .unwrap()
    };
    let store = PostgresStore::open(&cluster.url(&database), Keyring::generate().unwrap())
        .await
        .unwrap();
    store
        .put_consent(RecordKind::Consent, "s", &session("kept"))
        .await
        .unwrap();
    store.check().await.unwrap();

    let stopping = cluster.clone();
    tokio::task::spawn_blocking(move || stopping.stop())
        .await
        .unwrap();
    let error = store.check().await.unwrap_err();
    assert!(matches!(error, VaultError::Unavailable { .. }), "{error:?}");
    assert!(!error.to_string().contains(PASSWORD), "{error}");
    assert!(
        error
            .to_string()
            .contains(&format!("127.0.0.1:{}/{database}", cluster.port())),
        "{error}"
    );
    let error = store
        .get_consent(RecordKind::Consent, "s")
        .await
        .unwrap_err();
    assert!(matches!(error, VaultError::Unavailable { .. }), "{error:?}");

    let starting = cluster.clone();
    tokio::task::spawn_blocking(move || starting.restart())
        .await
        .unwrap();
    // pg_ctl -w returned once the server accepts connections; the pool drops its dead
    // connections on checkout (verified recycling), so the very next call succeeds.
    store.check().await.unwrap();
    let kept = store.get_consent(RecordKind::Consent, "s").await.unwrap();
    assert_eq!(kept.unwrap().payload, b"kept");
}

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
