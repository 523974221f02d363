//! The [`Store`] contract for session transitions and browser-held values, written against
//! `&dyn Store` so that every backend runs the same checks (today the sled store).

use std::sync::Arc;

use super::*;

/// Every backend under test, freshly opened. The fixtures live as long as the stores.
fn backends() -> Vec<(tempfile::TempDir, Arc<dyn Store>)> {
    let dir = tempfile::tempdir().unwrap();
    let sled = SledStore::open(&dir.path().join("vault"), Keyring::generate().unwrap()).unwrap();
    vec![(dir, Arc::new(sled))]
}

fn record(payload: &str, expires_at: u64) -> ConsentRecord {
    ConsentRecord::new(payload.as_bytes().to_vec(), expires_at)
}

#[tokio::test]
async fn swap_consent_replaces_only_the_expected_record() {
    for (_dir, store) in backends() {
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
    for (_dir, store) in backends() {
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
    for (_dir, store) in backends() {
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
    for (_dir, store) in backends() {
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

#[test]
fn a_transient_envelope_opens_only_for_its_purpose_and_unaltered() {
    for (_dir, store) in backends() {
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
    for (_dir, store) in backends() {
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
    for (_dir, store) in backends() {
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
    for (_dir, store) in backends() {
        store.check().await.unwrap();
    }
}
