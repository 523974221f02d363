//! The [`Store`] contract, written against `&dyn Store` so that every backend runs the same
//! checks: the embedded sled store and the PostgreSQL store (a fresh database on the test
//! process's throwaway cluster, see `postgres_store/test_cluster.rs`).

use std::sync::Arc;

use super::postgres_store::test_cluster;
use super::*;

/// What keeps a backend alive while its test runs: the sled folder, or the cluster.
enum Fixture {
    Sled(#[allow(dead_code)] tempfile::TempDir),
    Postgres(#[allow(dead_code)] Arc<test_cluster::Cluster>),
}

/// Every backend under test, freshly opened and empty. The fixtures live as long as the stores.
async fn backends() -> Vec<(Fixture, Arc<dyn Store>)> {
    let dir = tempfile::tempdir().unwrap();
    let sled = SledStore::open(&dir.path().join("vault"), Keyring::generate().unwrap()).unwrap();
    let cluster = tokio::task::spawn_blocking(test_cluster::shared)
        .await
        .unwrap();
    let database = {
        let cluster = cluster.clone();
        tokio::task::spawn_blocking(move || cluster.database())
            .await
            .unwrap()
    };
    let postgres = PostgresStore::open(&cluster.url(&database), Keyring::generate().unwrap())
        .await
        .unwrap();
    vec![
        (Fixture::Sled(dir), Arc::new(sled)),
        (Fixture::Postgres(cluster), Arc::new(postgres)),
    ]
}

fn record(payload: &str, expires_at: u64) -> ConsentRecord {
    ConsentRecord::new(payload.as_bytes().to_vec(), expires_at)
}

#[tokio::test]
async fn swap_consent_replaces_only_the_expected_record() {
    for (_dir, store) in backends().await {
        let later = unix_now() + 600;
        let pending = record("pending", later);
        store
            .put_consent(RecordKind::Consent, "s", &pending)
            .await
            .unwrap();
        let bound = record("bound", later);
        assert!(
            store
                .swap_consent(RecordKind::Consent, "s", &pending, Some(&bound))
                .await
                .unwrap()
        );
        assert_eq!(
            store.get_consent(RecordKind::Consent, "s").await.unwrap(),
            Some(bound.clone())
        );
        // A stale copy cannot be written back over the newer one.
        let stale = record("stale", later);
        assert!(
            !store
                .swap_consent(RecordKind::Consent, "s", &pending, Some(&stale))
                .await
                .unwrap()
        );
        assert_eq!(
            store.get_consent(RecordKind::Consent, "s").await.unwrap(),
            Some(bound.clone())
        );
        // Removal is a swap to nothing; afterwards nothing can be swapped back in.
        assert!(
            store
                .swap_consent(RecordKind::Consent, "s", &bound, None)
                .await
                .unwrap()
        );
        assert_eq!(
            store.get_consent(RecordKind::Consent, "s").await.unwrap(),
            None
        );
        assert!(
            !store
                .swap_consent(RecordKind::Consent, "s", &bound, Some(&bound))
                .await
                .unwrap()
        );
        assert_eq!(
            store.get_consent(RecordKind::Consent, "s").await.unwrap(),
            None
        );
    }
}

#[tokio::test]
async fn a_taken_session_is_never_brought_back_by_a_swap() {
    for (_dir, store) in backends().await {
        let pending = record("pending", unix_now() + 600);
        store
            .put_consent(RecordKind::Consent, "s", &pending)
            .await
            .unwrap();
        let loaded = store
            .get_consent(RecordKind::Consent, "s")
            .await
            .unwrap()
            .unwrap();
        assert!(
            store
                .take_consent(RecordKind::Consent, "s")
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            !store
                .swap_consent(RecordKind::Consent, "s", &loaded, Some(&loaded))
                .await
                .unwrap()
        );
        assert_eq!(
            store.get_consent(RecordKind::Consent, "s").await.unwrap(),
            None
        );
    }
}

#[tokio::test]
async fn an_expired_session_cannot_be_swapped() {
    for (_dir, store) in backends().await {
        let expired = record("old", unix_now() - 1);
        store
            .put_consent(RecordKind::Consent, "s", &expired)
            .await
            .unwrap();
        let fresh = record("new", unix_now() + 600);
        assert!(
            !store
                .swap_consent(RecordKind::Consent, "s", &expired, Some(&fresh))
                .await
                .unwrap()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_concurrent_swaps_from_one_state_exactly_one_wins() {
    for (_dir, store) in backends().await {
        let later = unix_now() + 600;
        let pending = record("pending", later);
        store
            .put_consent(RecordKind::Consent, "s", &pending)
            .await
            .unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(20));
        let swaps: Vec<_> = (0..20)
            .map(|i| {
                let (store, barrier, pending) = (store.clone(), barrier.clone(), pending.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    let next = record(&format!("by {i}"), later);
                    store
                        .swap_consent(RecordKind::Consent, "s", &pending, Some(&next))
                        .await
                })
            })
            .collect();
        let mut winners = 0;
        for swap in swaps {
            winners += usize::from(swap.await.unwrap().unwrap());
        }
        assert_eq!(winners, 1);
    }
}

#[tokio::test]
async fn a_transient_envelope_opens_only_for_its_purpose_and_unaltered() {
    for (_dir, store) in backends().await {
        let sealed = store.seal_transient("login", b"state").unwrap();
        assert_eq!(
            &store.open_transient("login", &sealed).unwrap()[..],
            b"state"
        );
        assert!(store.open_transient("consent", &sealed).is_err());
        for i in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 1;
            assert!(
                store.open_transient("login", &tampered).is_err(),
                "byte {i}"
            );
        }
        assert!(store.open_transient("login", b"").is_err());
        // Sealed values never open as stored records, nor the other way round.
        assert_ne!(store.seal_transient("login", b"state").unwrap(), sealed);
    }
}

#[tokio::test]
async fn consent_usage_counts_live_records() {
    for (_dir, store) in backends().await {
        assert_eq!(store.consent_usage().await.unwrap(), StoreUsage::default());
        store
            .put_consent(RecordKind::Consent, "a", &record("x", unix_now() + 600))
            .await
            .unwrap();
        let usage = store.consent_usage().await.unwrap();
        assert_eq!(usage.records, 1);
        assert!(usage.bytes > 0);
        store.take_consent(RecordKind::Consent, "a").await.unwrap();
        assert_eq!(store.consent_usage().await.unwrap().records, 0);
    }
}

#[tokio::test]
async fn each_record_kind_is_its_own_key_space() {
    for (_dir, store) in backends().await {
        let later = unix_now() + 600;
        let kinds = [
            RecordKind::Consent,
            RecordKind::CallbackState,
            RecordKind::BrowserSession,
        ];
        for kind in kinds {
            let payload = record(kind.as_str(), later);
            store.put_consent(kind, "same-id", &payload).await.unwrap();
        }
        for kind in kinds {
            let stored = store.get_consent(kind, "same-id").await.unwrap().unwrap();
            assert_eq!(stored.payload, kind.as_str().as_bytes());
        }
        store
            .take_consent(RecordKind::Consent, "same-id")
            .await
            .unwrap();
        assert!(
            store
                .get_consent(RecordKind::BrowserSession, "same-id")
                .await
                .unwrap()
                .is_some()
        );
    }
}

#[tokio::test]
async fn a_freshly_opened_store_passes_its_check() {
    for (_dir, store) in backends().await {
        store.check().await.unwrap();
    }
}

fn token(access: &str) -> TokenRecord {
    TokenRecord {
        access_token: Secret::new(access),
        refresh_token: Some(Secret::new(format!("{access}-refresh"))),
        token_type: "Bearer".to_string(),
        expires_at: Some(4_000_000_000),
        scopes: vec!["read:user".to_string()],
        obtained_at: 1_700_000_000,
        refreshed_at: None,
    }
}

#[tokio::test]
async fn tokens_round_trip_list_by_user_and_delete() {
    for (_dir, store) in backends().await {
        let alice = TokenKey::new("portcullis", "https://idp|alice", "github");
        let alice_slack = TokenKey::new("portcullis", "https://idp|alice", "slack");
        let bob = TokenKey::new("portcullis", "https://idp|bob", "github");
        assert_eq!(store.get_token(&alice).await.unwrap(), None);
        store.put_token(&alice, &token("a1")).await.unwrap();
        store.put_token(&alice, &token("a2")).await.unwrap();
        store.put_token(&alice_slack, &token("s1")).await.unwrap();
        store.put_token(&bob, &token("b1")).await.unwrap();
        assert_eq!(store.get_token(&alice).await.unwrap(), Some(token("a2")));
        let listed: Vec<TokenKey> = store
            .list_tokens(Some("https://idp|alice"))
            .await
            .unwrap()
            .into_iter()
            .map(|(key, meta)| {
                assert!(meta.has_refresh_token);
                key
            })
            .collect();
        assert_eq!(listed, vec![alice.clone(), alice_slack.clone()]);
        assert_eq!(store.list_tokens(None).await.unwrap().len(), 3);
        assert!(store.delete_token(&alice).await.unwrap());
        assert!(!store.delete_token(&alice).await.unwrap());
        assert_eq!(store.get_token(&alice).await.unwrap(), None);
        assert_eq!(store.get_token(&bob).await.unwrap(), Some(token("b1")));
    }
}

#[tokio::test]
async fn api_keys_round_trip_per_workload() {
    for (_dir, store) in backends().await {
        assert!(store.get_api_key("gw", "weather").await.unwrap().is_none());
        store
            .put_api_key("gw", "weather", &Secret::new("wk_1"))
            .await
            .unwrap();
        store
            .put_api_key("gw", "weather", &Secret::new("wk_2"))
            .await
            .unwrap();
        let key = store.get_api_key("gw", "weather").await.unwrap().unwrap();
        assert_eq!(key.expose(), "wk_2");
        assert!(
            store
                .get_api_key("other", "weather")
                .await
                .unwrap()
                .is_none()
        );
    }
}

#[tokio::test]
async fn purge_removes_only_expired_sessions() {
    for (_dir, store) in backends().await {
        let now = unix_now();
        store
            .put_consent(RecordKind::Consent, "old", &record("old", now - 5))
            .await
            .unwrap();
        store
            .put_consent(
                RecordKind::CallbackState,
                "live",
                &record("live", now + 600),
            )
            .await
            .unwrap();
        assert_eq!(
            store.get_consent(RecordKind::Consent, "old").await.unwrap(),
            None
        );
        assert_eq!(store.purge_expired(now).await.unwrap(), 1);
        assert_eq!(store.consent_usage().await.unwrap().records, 1);
        assert!(
            store
                .get_consent(RecordKind::CallbackState, "live")
                .await
                .unwrap()
                .is_some()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_concurrent_takes_exactly_one_gets_the_session() {
    for (_dir, store) in backends().await {
        store
            .put_consent(RecordKind::Consent, "s", &record("once", unix_now() + 600))
            .await
            .unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(20));
        let takes: Vec<_> = (0..20)
            .map(|_| {
                let (store, barrier) = (store.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.take_consent(RecordKind::Consent, "s").await
                })
            })
            .collect();
        let mut winners = 0;
        for take in takes {
            winners += usize::from(take.await.unwrap().unwrap().is_some());
        }
        assert_eq!(winners, 1);
    }
}

#[tokio::test]
async fn a_refresh_lock_can_be_taken_again_once_dropped_and_links_do_not_share_one() {
    for (_dir, store) in backends().await {
        let alice = TokenKey::new("w", "alice", "github");
        let bob = TokenKey::new("w", "bob", "github");
        let held = store.lock_refresh(&alice).await.unwrap();
        // Another link's lock does not wait for alice's.
        drop(store.lock_refresh(&bob).await.unwrap());
        drop(held);
        drop(store.lock_refresh(&alice).await.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shared_secret_is_stored_once_and_every_racer_gets_the_first() {
    for (_dir, store) in backends().await {
        assert_eq!(store.shared_secret("signing", None).await.unwrap(), None);
        let racers = (0..8u8).map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .shared_secret("signing", Some(&[i; 32]))
                    .await
                    .unwrap()
                    .unwrap()
                    .to_vec()
            })
        });
        let got: Vec<Vec<u8>> = futures::future::join_all(racers)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert!(got.iter().all(|g| *g == got[0]), "{got:?}");
        // Never replaced afterwards, and readable without a candidate.
        let later = store
            .shared_secret("signing", Some(b"other"))
            .await
            .unwrap();
        assert_eq!(later.unwrap().to_vec(), got[0]);
        let read = store.shared_secret("signing", None).await.unwrap();
        assert_eq!(read.unwrap().to_vec(), got[0]);
        assert_eq!(store.shared_secret("another", None).await.unwrap(), None);
    }
}
