use serde_json::{Value, json};

use super::*;

fn caller(sub: &str, claims: Value) -> Caller {
    crate::inbound::test_caller(sub, claims)
}

fn per_minute(tools: &str, calls: u32) -> RateLimitRule {
    RateLimitRule {
        tools: tools.into(),
        per: LimitKey::User,
        rate: Some((calls, Duration::from_secs(60))),
        concurrent: None,
        shared: false,
    }
}

#[test]
fn globs_match_whole_names() {
    assert!(glob_matches("*", "a___b"));
    assert!(glob_matches("billing___*", "billing___charge"));
    assert!(!glob_matches("billing___*", "xbilling___charge"));
    assert!(glob_matches("*___delete_*", "crm___delete_account"));
    assert!(!glob_matches("*___delete_*", "crm___undelete"));
    assert!(glob_matches("crm___get", "crm___get"));
    assert!(!glob_matches("crm___get", "crm___get_all"));
    assert!(glob_matches("a*a", "aa"));
    assert!(!glob_matches("a*a", "a"));
}

#[test]
fn a_burst_over_the_limit_is_refused_with_the_delay_and_others_are_unaffected() {
    let limits = RateLimits::new(vec![per_minute("billing___*", 3)], None);
    let alice = caller("alice", json!({}));
    let bob = caller("bob", json!({}));
    let start = Instant::now();
    for _ in 0..3 {
        drop(limits.admit_at(&alice, "billing___charge", start).unwrap());
    }
    let refused = limits
        .admit_at(&alice, "billing___charge", start)
        .err()
        .unwrap();
    assert_eq!(refused.rule, 0);
    // One token comes back every 20 s.
    assert_eq!(refused.retry_after, Some(Duration::from_secs(20)));
    // Other users, and tools the rule does not cover, are not limited.
    assert!(limits.admit_at(&bob, "billing___charge", start).is_ok());
    assert!(limits.admit_at(&alice, "crm___get", start).is_ok());
    // Recovery: after the delay one more call passes, then the limit holds again.
    let later = start + Duration::from_secs(20);
    assert!(limits.admit_at(&alice, "billing___charge", later).is_ok());
    assert!(limits.admit_at(&alice, "billing___charge", later).is_err());
    // A full window later the whole burst is available again, no more.
    let much_later = later + Duration::from_secs(600);
    for _ in 0..3 {
        assert!(
            limits
                .admit_at(&alice, "billing___charge", much_later)
                .is_ok()
        );
    }
    assert!(
        limits
            .admit_at(&alice, "billing___charge", much_later)
            .is_err()
    );
}

#[test]
fn concurrency_limits_count_calls_in_flight() {
    let limits = RateLimits::new(
        vec![RateLimitRule {
            tools: "*".into(),
            per: LimitKey::User,
            rate: None,
            concurrent: Some(2),
            shared: false,
        }],
        None,
    );
    let alice = caller("alice", json!({}));
    let first = limits.admit_at(&alice, "a___b", Instant::now()).unwrap();
    let second = limits.admit_at(&alice, "a___c", Instant::now()).unwrap();
    let refused = limits
        .admit_at(&alice, "a___b", Instant::now())
        .err()
        .unwrap();
    assert_eq!(refused.retry_after, None);
    drop(first);
    let third = limits.admit_at(&alice, "a___b", Instant::now()).unwrap();
    drop((second, third));
    assert!(limits.state.lock().in_flight.is_empty(), "nothing leaks");
}

#[test]
fn a_claim_key_counts_a_whole_tenant_together() {
    let limits = RateLimits::new(
        vec![RateLimitRule {
            tools: "*".into(),
            per: LimitKey::Claim("tenant".into()),
            rate: Some((2, Duration::from_secs(1))),
            concurrent: None,
            shared: false,
        }],
        None,
    );
    let now = Instant::now();
    let a1 = caller("a1", json!({"tenant": "acme"}));
    let a2 = caller("a2", json!({"tenant": "acme"}));
    let g1 = caller("g1", json!({"tenant": "globex"}));
    assert!(limits.admit_at(&a1, "x___y", now).is_ok());
    assert!(limits.admit_at(&a2, "x___y", now).is_ok());
    assert!(
        limits.admit_at(&a1, "x___y", now).is_err(),
        "acme shares one bucket"
    );
    assert!(limits.admit_at(&g1, "x___y", now).is_ok());
}

#[test]
fn a_refusal_by_one_rule_takes_no_token_from_another() {
    let limits = RateLimits::new(
        vec![per_minute("*", 10), per_minute("billing___*", 1)],
        None,
    );
    let alice = caller("alice", json!({}));
    let now = Instant::now();
    assert!(limits.admit_at(&alice, "billing___charge", now).is_ok());
    for _ in 0..5 {
        assert!(limits.admit_at(&alice, "billing___charge", now).is_err());
    }
    // The global rule spent one token (the admitted call), not six.
    for _ in 0..9 {
        assert!(limits.admit_at(&alice, "crm___get", now).is_ok());
    }
    assert_eq!(
        limits
            .admit_at(&alice, "crm___get", now)
            .err()
            .unwrap()
            .rule,
        0
    );
}

/// Shared buckets that answer as told, and count what they were asked.
struct ScriptedBuckets {
    answer: Result<Result<(), crate::vault::buckets::BucketEmpty>, ()>,
    asked: parking_lot::Mutex<Vec<Vec<BucketTake>>>,
}

#[async_trait::async_trait]
impl SharedBuckets for ScriptedBuckets {
    async fn take_tokens(
        &self,
        buckets: &[BucketTake],
    ) -> Result<Result<(), crate::vault::buckets::BucketEmpty>, crate::vault::VaultError> {
        self.asked.lock().push(buckets.to_vec());
        self.answer
            .map_err(|()| crate::vault::VaultError::Unavailable {
                store: "db".into(),
                reason: "down".into(),
            })
    }
}

fn shared(tools: &str, calls: u32) -> RateLimitRule {
    RateLimitRule {
        shared: true,
        ..per_minute(tools, calls)
    }
}

fn with_buckets(
    rules: Vec<RateLimitRule>,
    answer: Result<Result<(), crate::vault::buckets::BucketEmpty>, ()>,
) -> (RateLimits, Arc<ScriptedBuckets>) {
    let buckets = Arc::new(ScriptedBuckets {
        answer,
        asked: parking_lot::Mutex::default(),
    });
    (RateLimits::new(rules, Some(buckets.clone())), buckets)
}

#[tokio::test]
async fn shared_rules_count_in_the_store_and_local_rules_here() {
    let (limits, buckets) = with_buckets(
        vec![per_minute("*", 100), shared("billing___*", 2)],
        Ok(Ok(())),
    );
    let alice = caller("alice", json!({}));
    for _ in 0..5 {
        assert!(limits.admit(&alice, "billing___refund").await.is_ok());
    }
    let asked = buckets.asked.lock().clone();
    assert_eq!(asked.len(), 5, "one round trip per call");
    assert_eq!(asked[0].len(), 1, "only the shared rule goes to the store");
    assert_eq!(asked[0][0].capacity, 2.0);
    // The same rule and caller give the same key on every replica; another caller another.
    let bob = shared_key(
        &shared("billing___*", 2),
        &caller("bob", json!({})).user_id(),
    );
    assert_eq!(asked[0][0].key, asked[4][0].key);
    assert_ne!(asked[0][0].key, bob);
    // The local rule counted the five calls here; the shared one took nothing here.
    assert!(limits.admit(&alice, "crm___get").await.is_ok());
    assert_eq!(
        buckets.asked.lock().len(),
        5,
        "no shared rule covers crm___get"
    );
}

#[tokio::test]
async fn a_store_refusal_names_the_shared_rule_and_its_delay() {
    let empty = crate::vault::buckets::BucketEmpty {
        index: 0,
        retry_after: Duration::from_secs(12),
    };
    let (limits, _) = with_buckets(
        vec![per_minute("*", 100), shared("billing___*", 2)],
        Ok(Err(empty)),
    );
    let refused = limits
        .admit(&caller("alice", json!({})), "billing___refund")
        .await
        .err()
        .unwrap();
    assert_eq!(refused.rule, 1);
    assert_eq!(refused.retry_after, Some(Duration::from_secs(12)));
}

#[tokio::test]
async fn an_unreachable_store_falls_back_to_this_replicas_count() {
    let (limits, buckets) = with_buckets(vec![shared("*", 2)], Err(()));
    let alice = caller("alice", json!({}));
    assert!(limits.admit(&alice, "a___b").await.is_ok());
    assert!(limits.admit(&alice, "a___b").await.is_ok());
    let refused = limits.admit(&alice, "a___b").await.err().unwrap();
    assert!(
        refused.retry_after.is_some(),
        "the rate holds per replica meanwhile"
    );
    assert_eq!(buckets.asked.lock().len(), 3);
}
