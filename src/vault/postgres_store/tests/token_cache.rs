//! The token cache against a real server (`token_cache.rs`, `listener.rs`): reads are served
//! from memory while nothing changed, a change by another replica (or anyone) reaches every
//! cache through the trigger's notification, and a lost listener stops the cache's use.

use super::*;
use crate::vault::postgres_store::token_cache::record_hash;

fn token(access: &str) -> TokenRecord {
    TokenRecord {
        access_token: Secret::new(access),
        refresh_token: None,
        token_type: "Bearer".to_string(),
        expires_at: None,
        scopes: vec![],
        obtained_at: 1,
        refreshed_at: None,
    }
}

/// The access token `store` reads for `key` ("" for none).
async fn read(store: &PostgresStore, key: &TokenKey) -> String {
    store
        .get_token(key)
        .await
        .unwrap()
        .map(|r| r.access_token.expose().to_string())
        .unwrap_or_default()
}

/// Waits (bounded, well under the cache's `MAX_AGE`) until `store` reads `expected`.
async fn until_read(store: &PostgresStore, key: &TokenKey, expected: &str) {
    for _ in 0..500 {
        if read(store, key).await == expected {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!(
        "still reads {:?}, expected {expected:?}",
        read(store, key).await
    );
}

/// Reads `key` on `store` until the read is in its cache: a read that raced the notification
/// of the write before it is not cached (the generation rule), the next one is.
async fn until_cached(store: &PostgresStore, key: &TokenKey) {
    let hash = record_hash(&crate::vault::sled_store::token_record_key(key));
    for _ in 0..500 {
        read(store, key).await;
        if store.inner.tokens.get(&hash, key).is_some() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the token was never cached");
}

/// Waits until `b`'s listener has handled the notifications of every write `a` made so far:
/// they arrive in commit order on one connection, so once a marker written after them has
/// left `b`'s cache, they have been handled too.
async fn settle(a: &PostgresStore, b: &PostgresStore) {
    let marker = TokenKey::new("portcullis", "marker", "settle");
    let hash = record_hash(&crate::vault::sled_store::token_record_key(&marker));
    a.put_token(&marker, &token("m1")).await.unwrap();
    until_cached(b, &marker).await;
    a.put_token(&marker, &token("m2")).await.unwrap();
    for _ in 0..500 {
        if b.inner.tokens.get(&hash, &marker).is_none() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("b never heard of the marker's change");
}

/// Waits until both stores' listeners are connected (their caches are live).
async fn until_listening(store: &PostgresStore, count: i64) {
    let client = store.raw_client().await;
    for _ in 0..500 {
        let row = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
                 AND application_name = $1 AND query LIKE 'LISTEN%'",
                &[&super::super::listener::APPLICATION_NAME],
            )
            .await
            .unwrap();
        if row.get::<_, i64>(0) == count {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the token listeners did not connect");
}

fn database_of(store: &PostgresStore) -> String {
    store.describe().rsplit('/').next().unwrap().to_string()
}

async fn superuser(cluster: &Arc<Cluster>, database: String, sql: &'static str) {
    let cluster = cluster.clone();
    tokio::task::spawn_blocking(move || cluster.superuser_sql(&database, sql))
        .await
        .unwrap();
}

/// `a` links `key` ("v1") and `b` caches it; then, with the trigger off, `a` writes "v2",
/// which reaches the table while no cache hears of it: `b` still answers "v1" from memory,
/// without reading the row. Returns the database (its trigger still off).
async fn cached_then_changed_unannounced(
    cluster: &Arc<Cluster>,
    a: &PostgresStore,
    b: &PostgresStore,
    key: &TokenKey,
) -> String {
    until_listening(a, 2).await;
    a.put_token(key, &token("v1")).await.unwrap();
    assert_eq!(read(b, key).await, "v1");
    settle(a, b).await;
    until_cached(b, key).await;
    let database = database_of(a);
    superuser(
        cluster,
        database.clone(),
        "ALTER TABLE vault_tokens DISABLE TRIGGER vault_tokens_changed",
    )
    .await;
    a.put_token(key, &token("v2")).await.unwrap();
    assert_eq!(read(b, key).await, "v1", "b served its cached copy");
    database
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cached_token_is_served_from_memory_and_a_change_anywhere_reaches_every_replica() {
    let (cluster, _dir, a, b) = two_replicas().await;
    let key = TokenKey::new("portcullis", "https://idp|alice", "github");
    let database = cached_then_changed_unannounced(&cluster, &a, &b, &key).await;
    assert_eq!(read(&a, &key).await, "v2", "the writer's own entry went");
    superuser(
        &cluster,
        database,
        "ALTER TABLE vault_tokens ENABLE TRIGGER vault_tokens_changed",
    )
    .await;

    // A revocation on a: b's cache hears of it and b stops using the token.
    assert!(a.delete_token(&key).await.unwrap());
    until_read(&b, &key, "").await;
    // And a new link on b reaches a.
    assert_eq!(read(&a, &key).await, "");
    b.put_token(&key, &token("v3")).await.unwrap();
    until_read(&a, &key, "v3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_whose_listener_is_cut_off_reads_the_database_again() {
    let (cluster, _dir, a, b) = two_replicas().await;
    let key = TokenKey::new("portcullis", "https://idp|alice", "github");
    // A change b is not told about, then b's listener loses its connection: from then on b
    // may have missed anything, so it reads the row.
    let database = cached_then_changed_unannounced(&cluster, &a, &b, &key).await;
    superuser(
        &cluster,
        database,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'portcullis token listener'",
    )
    .await;
    until_read(&b, &key, "v2").await;
}
