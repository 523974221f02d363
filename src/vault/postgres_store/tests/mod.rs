//! PostgreSQL-only behaviour against a real server: several replicas on one database, what the
//! database holds, an unreachable server, key rotation. The [`Store`] contract itself runs for
//! this backend in `vault/contract.rs`.

use std::sync::Arc;

use super::test_cluster::{self, Cluster, PASSWORD};
use super::*;
use crate::vault::unix_now;

mod buckets;
mod commands;
mod locks;
mod tls;
mod token_cache;

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
async fn a_role_that_may_only_use_the_tables_opens_a_migrated_vault() {
    let (cluster, database) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let file = key_file(&dir);
    // The owner migrates once (a deploy step)...
    PostgresStore::open(&cluster.url(&database), Keyring::load_file(&file).unwrap())
        .await
        .unwrap();
    // ...and the gateways run as a role without CREATE (nor ownership).
    let role = format!("gw_{}", uuid::Uuid::new_v4().simple());
    let grants = format!(
        "CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}';
         REVOKE CREATE ON SCHEMA public FROM PUBLIC;
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};"
    );
    {
        let (cluster, database) = (cluster.clone(), database.clone());
        tokio::task::spawn_blocking(move || cluster.superuser_sql(&database, &grants))
            .await
            .unwrap();
    }
    let url = DatabaseUrl::parse(&Secret::new(format!(
        "postgres://{role}:{PASSWORD}@127.0.0.1:{}/{database}",
        cluster.port()
    )))
    .unwrap();
    let store = PostgresStore::open(&url, Keyring::load_file(&file).unwrap())
        .await
        .unwrap();
    store
        .put_consent(RecordKind::Consent, "s", &session("least privilege"))
        .await
        .unwrap();
    assert!(
        store
            .take_consent(RecordKind::Consent, "s")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_server_that_stops_answering_is_unavailable_not_a_hang_and_the_store_recovers() {
    let cluster = Arc::new(tokio::task::spawn_blocking(Cluster::start).await.unwrap());
    let database = {
        let cluster = cluster.clone();
        tokio::task::spawn_blocking(move || cluster.database())
            .await
            .unwrap()
    };
    let store = PostgresStore::open(&cluster.url(&database), Keyring::generate().unwrap())
        .await
        .unwrap();
    store.check().await.unwrap();

    cluster.signal_server("STOP");
    let error = store.check().await.unwrap_err();
    cluster.signal_server("CONT");
    assert!(matches!(error, VaultError::Unavailable { .. }), "{error:?}");
    assert!(!error.to_string().contains(PASSWORD), "{error}");
    // Back: the pool replaces whatever connection timed out, without reopening the store.
    let mut recovered = false;
    for _ in 0..3 {
        if store.check().await.is_ok() {
            recovered = true;
            break;
        }
    }
    assert!(recovered);
}
