//! Vault lookups on the PostgreSQL store against sled, in the same run (`cargo bench --bench
//! vault_postgres`; issue 12). A throwaway cluster is started (the tests' own,
//! `src/vault/postgres_store/test_cluster.rs`) and both stores are seeded with the same links
//! (`VAULT_BENCH_LINKS`, default 100,000), then for each store: `LOOKUPS` lookups of distinct
//! links not read before (PostgreSQL: a pooled round trip each, the cache missing) and the
//! same lookups again (PostgreSQL: served by the token cache, kept valid by the database's
//! notifications). Each lookup is `Store::get_token`, as the gateway calls it per tool call.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../src/vault/postgres_store/test_cluster.rs"]
#[allow(dead_code)]
mod pg_cluster;

use std::sync::Arc;
use std::time::Instant;

use portcullis::vault::{
    DatabaseUrl, Keyring, PostgresStore, Secret, SledStore, Store, TokenKey, TokenRecord,
};

const KEY: &str = "c2VjcmV0LXZhdWx0LWtleS0zMi1ieXRlcy1sb25nISE=";
/// Distinct links looked up per pass: within the token cache's capacity (10,000), as the links in
/// use at once would be.
const LOOKUPS: usize = 5_000;

fn key(i: usize) -> TokenKey {
    TokenKey::new(
        "portcullis",
        format!("https://idp.example.com#user-{i:07}"),
        if i.is_multiple_of(2) {
            "github"
        } else {
            "google"
        },
    )
}

fn record(i: usize) -> TokenRecord {
    TokenRecord {
        access_token: Secret::new(format!("gho_{i:0>36}")),
        refresh_token: Some(Secret::new(format!("ghr_{i:0>76}"))),
        token_type: "Bearer".into(),
        expires_at: Some(4_000_000_000),
        scopes: vec!["repo".into(), "read:user".into()],
        obtained_at: 1,
        refreshed_at: None,
    }
}

/// Seeds `links` links with 64 concurrent writers; the seconds it took.
async fn seed(store: Arc<dyn Store>, links: usize) -> f64 {
    let started = Instant::now();
    let workers = 64;
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in (w..links).step_by(workers) {
                    store.put_token(&key(i), &record(i)).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed().as_secs_f64()
}

/// p50 / p99 in microseconds of one lookup of each of `LOOKUPS` distinct links, in a
/// scattered order (the same order for every store).
async fn lookups(store: &dyn Store, links: usize) -> (f64, f64) {
    let stride = (links / LOOKUPS).max(1);
    let mut order: Vec<usize> = (0..LOOKUPS.min(links)).map(|n| n * stride).collect();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let mut samples = Vec::with_capacity(order.len());
    for i in order {
        let started = Instant::now();
        let found = store.get_token(&key(i)).await.unwrap();
        samples.push(started.elapsed().as_secs_f64() * 1e6);
        assert_eq!(
            found.unwrap().access_token.expose(),
            record(i).access_token.expose(),
            "wrong answer"
        );
    }
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    (at(0.5), at(0.99))
}

fn main() {
    let links: usize = std::env::var("VAULT_BENCH_LINKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let cluster = pg_cluster::Cluster::start();
    let database = cluster.database();
    let url = DatabaseUrl::parse(&Secret::new(cluster.url_text(&database))).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let sled: Arc<dyn Store> = Arc::new(
            SledStore::open(&dir.path().join("v"), Keyring::from_env_base64(KEY).unwrap())
                .unwrap(),
        );
        let postgres: Arc<dyn Store> = Arc::new(
            PostgresStore::open(&url, Keyring::from_env_base64(KEY).unwrap())
                .await
                .unwrap(),
        );
        let sled_seed = seed(sled.clone(), links).await;
        let pg_seed = seed(postgres.clone(), links).await;
        println!(
            "seeding {links} links (durable put_token, 64 writers): sled {sled_seed:.1} s, postgres {pg_seed:.1} s ({:.0} writes/s)",
            links as f64 / pg_seed
        );
        let (s_cold50, s_cold99) = lookups(sled.as_ref(), links).await;
        let (s50, s99) = lookups(sled.as_ref(), links).await;
        let (p_cold50, p_cold99) = lookups(postgres.as_ref(), links).await;
        let (p50, p99) = lookups(postgres.as_ref(), links).await;
        println!("sled lookup, first read:        p50 {s_cold50:.1} us  p99 {s_cold99:.1} us");
        println!("sled lookup, again:             p50 {s50:.1} us  p99 {s99:.1} us");
        println!("postgres lookup, database read: p50 {p_cold50:.1} us  p99 {p_cold99:.1} us");
        println!("postgres lookup, token cache:   p50 {p50:.1} us  p99 {p99:.1} us");
        println!(
            "ratio postgres/sled (again): p50 {:.2}x  p99 {:.2}x; database read/sled p50 {:.1}x",
            p50 / s50,
            p99 / s99,
            p_cold50 / s_cold50
        );
    });
}
