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
    let limits = RateLimits::new(vec![per_minute("billing___*", 3)]);
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
    let limits = RateLimits::new(vec![RateLimitRule {
        tools: "*".into(),
        per: LimitKey::User,
        rate: None,
        concurrent: Some(2),
    }]);
    let alice = caller("alice", json!({}));
    let first = limits.admit(&alice, "a___b").unwrap();
    let second = limits.admit(&alice, "a___c").unwrap();
    let refused = limits.admit(&alice, "a___b").err().unwrap();
    assert_eq!(refused.retry_after, None);
    drop(first);
    let third = limits.admit(&alice, "a___b").unwrap();
    drop((second, third));
    assert!(limits.state.lock().in_flight.is_empty(), "nothing leaks");
}

#[test]
fn a_claim_key_counts_a_whole_tenant_together() {
    let limits = RateLimits::new(vec![RateLimitRule {
        tools: "*".into(),
        per: LimitKey::Claim("tenant".into()),
        rate: Some((2, Duration::from_secs(1))),
        concurrent: None,
    }]);
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
    let limits = RateLimits::new(vec![per_minute("*", 10), per_minute("billing___*", 1)]);
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
