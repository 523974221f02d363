//! Vault lookup latency at 100k stored links, against the same lookup in a 1k-link vault
//! measured in the same run (`cargo bench --bench vault`). Each lookup is a sled read plus an
//! AES-256-GCM open plus JSON decoding, through the `Store` trait the gateway uses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use portcullis::vault::{Keyring, Secret, SledStore, Store, TokenKey, TokenRecord};

const KEY: &str = "c2VjcmV0LXZhdWx0LWtleS0zMi1ieXRlcy1sb25nISE=";
const LOOKUPS: usize = 20_000;

fn key(i: usize) -> TokenKey {
    TokenKey {
        workload: "portcullis".into(),
        user: format!("https://idp.example.com#user-{i:06}"),
        provider: if i.is_multiple_of(2) {
            "github"
        } else {
            "google"
        }
        .into(),
    }
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

async fn seeded(links: usize) -> (tempfile::TempDir, Arc<SledStore>, f64) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SledStore::open(
            &dir.path().join("v"),
            Keyring::from_env_base64(KEY).unwrap(),
        )
        .unwrap(),
    );
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
    (dir, store, started.elapsed().as_secs_f64())
}

/// p50 / p99 / p99.9 in microseconds of `LOOKUPS` random lookups.
async fn lookups(store: &SledStore, links: usize) -> (f64, f64, f64) {
    let mut samples = Vec::with_capacity(LOOKUPS);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..LOOKUPS {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = (x % links as u64) as usize;
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
    (at(0.5), at(0.99), at(0.999))
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (_small_dir, small, small_seed) = seeded(1_000).await;
        let (_large_dir, large, large_seed) = seeded(100_000).await;
        let (s50, s99, s999) = lookups(&small, 1_000).await;
        let (l50, l99, l999) = lookups(&large, 100_000).await;
        println!("vault seeding (durable put_token, 64 writers): 1k links {small_seed:.1}s, 100k links {large_seed:.1}s ({:.0} writes/s)", 100_000.0 / large_seed);
        println!("vault lookup,   1k links: p50 {s50:.1} us  p99 {s99:.1} us  p99.9 {s999:.1} us");
        println!("vault lookup, 100k links: p50 {l50:.1} us  p99 {l99:.1} us  p99.9 {l999:.1} us");
        println!("ratio 100k/1k: p50 {:.2}x  p99 {:.2}x", l50 / s50, l99 / s99);
    });
}
