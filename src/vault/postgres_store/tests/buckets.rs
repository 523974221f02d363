//! Rate-limit buckets shared by replicas, on a real server.

use std::time::Duration;

use super::two_replicas;
use crate::vault::buckets::{BucketTake, SharedBuckets};

fn bucket(name: &str, per_minute: f64) -> BucketTake {
    let mut key = [0u8; 32];
    key[..name.len()].copy_from_slice(name.as_bytes());
    BucketTake {
        key,
        capacity: per_minute,
        per_second: per_minute / 60.0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_share_one_bucket_and_a_refusal_takes_nothing() {
    let (_cluster, _dir, a, b) = two_replicas().await;
    let alice = bucket("alice", 3.0);
    // The tenant's bucket refills so slowly that the test's own pace cannot show in its count.
    let tenant = BucketTake {
        per_second: 1e-9,
        ..bucket("tenant", 100.0)
    };
    // Three calls a minute between both replicas, whichever serves them.
    for store in [&a, &b, &a] {
        assert_eq!(
            store
                .take_tokens(&[tenant.clone(), alice.clone()])
                .await
                .unwrap(),
            Ok(())
        );
    }
    let refused = b
        .take_tokens(&[tenant.clone(), alice.clone()])
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        refused.index, 1,
        "the caller's bucket refused, named by position"
    );
    assert!(
        refused.retry_after > Duration::from_secs(15)
            && refused.retry_after <= Duration::from_secs(20),
        "one token every 20 s: {:?}",
        refused.retry_after
    );
    // All or none: the refused call took nothing from the tenant's bucket (97 left).
    let client = a.client().await.unwrap();
    let tokens: f64 = client
        .query_one(
            "SELECT tokens FROM rate_buckets WHERE bucket = $1",
            &[&tenant.key.to_vec()],
        )
        .await
        .unwrap()
        .get(0);
    assert!((97.0..97.001).contains(&tokens), "{tokens}");
    // No user name reaches the database: keys are what the caller hashed.
    let names: i64 = client
        .query_one(
            "SELECT count(*) FROM rate_buckets WHERE encode(bucket, 'escape') LIKE '%@%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(names, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_on_two_replicas_take_exactly_the_capacity() {
    let (_cluster, _dir, a, b) = two_replicas().await;
    let shared = bucket("burst", 10.0);
    let other = bucket("other", 1000.0);
    let calls: Vec<_> = (0..40)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            // Half of the calls name the buckets in the other order: no deadlock either way.
            let takes = if i % 4 < 2 {
                vec![shared.clone(), other.clone()]
            } else {
                vec![other.clone(), shared.clone()]
            };
            tokio::spawn(async move { store.take_tokens(&takes).await.unwrap().is_ok() })
        })
        .collect();
    let mut admitted = 0;
    for call in calls {
        admitted += usize::from(call.await.unwrap());
    }
    assert_eq!(admitted, 10);
}
