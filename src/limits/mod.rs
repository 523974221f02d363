//! Per-caller rate limits (issue 13): token buckets and concurrency caps on tool calls.
//!
//! A rule names the tools it covers (a glob over `<target>___<tool>`), whose calls it counts
//! together (per user, issuer + subject, or per value of a claim such as `client_id` or a tenant
//! claim), and its limits: a rate (`requests_per_second` or `requests_per_minute`, a token
//! bucket whose capacity is one window's worth, so a burst of a full window is allowed and the
//! bucket refills continuously) and / or a number of calls in flight at once. A call must pass
//! every rule that covers it; the first that refuses says how long to wait.
//!
//! Counts live in this process: with several replicas each enforces its own (documented),
//! unless a rule is `shared`: then its rate is counted in the vault's PostgreSQL database,
//! one bucket for all replicas, taken atomically by one statement per call (on the database's
//! clock, so the replicas' clocks do not matter). A shared rule whose database cannot be
//! reached falls back to this replica's own bucket for the rule (so during an outage the
//! limit holds per replica, at most N times the rate with N replicas) and logs a warning.
//! Concurrency counts are always per replica. Buckets of keys unseen for an hour are dropped
//! as the table grows, so memory follows the number of active callers.
//!
//! Owns: the rules, the buckets, the in-flight counts. May use: `inbound` (the caller),
//! `vault` (the shared buckets).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::inbound::Caller;
use crate::vault::buckets::{BucketTake, SharedBuckets};

/// Whose calls a rule counts together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKey {
    /// The user: issuer + subject.
    User,
    /// The value of this claim (its JSON text unless a string); callers without it share the
    /// key of the missing claim.
    Claim(String),
}

/// One `[[rate_limits]]` rule as validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitRule {
    /// Glob over qualified tool names: `*` matches any run of characters.
    pub tools: String,
    pub per: LimitKey,
    /// Calls per window and the window, when the rule limits the rate.
    pub rate: Option<(u32, Duration)>,
    /// Calls in flight at once, when the rule limits concurrency.
    pub concurrent: Option<u32>,
    /// Whether the rate is counted across replicas (in the PostgreSQL vault).
    pub shared: bool,
}

/// Why a call may not run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// The rule's position in the config, for the metric and the log.
    pub rule: usize,
    /// When a retry can succeed; `None` for a concurrency limit (when a call in flight ends).
    pub retry_after: Option<Duration>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Default)]
struct State {
    buckets: HashMap<(usize, String), Bucket>,
    in_flight: HashMap<(usize, String), u32>,
}

/// Buckets kept before idle ones are dropped.
const PRUNE_ABOVE: usize = 100_000;
/// A bucket unused this long is full again anyway and can go.
const IDLE: Duration = Duration::from_secs(3600);

/// The rules and their counts.
pub struct RateLimits {
    rules: Vec<RateLimitRule>,
    state: Arc<Mutex<State>>,
    /// Where `shared` rules count; `None` counts them here too.
    shared: Option<Arc<dyn SharedBuckets>>,
}

/// Holds a call's places in the concurrency counts; dropping it frees them.
#[must_use]
pub struct Permit {
    state: Arc<Mutex<State>>,
    held: Vec<(usize, String)>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self.state.lock();
        for key in self.held.drain(..) {
            if let Some(count) = state.in_flight.get_mut(&key) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    state.in_flight.remove(&key);
                }
            }
        }
    }
}

impl RateLimits {
    pub fn new(rules: Vec<RateLimitRule>, shared: Option<Arc<dyn SharedBuckets>>) -> RateLimits {
        RateLimits {
            rules,
            state: Arc::default(),
            shared,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Admits one call of `tool` by `caller` now, or says which rule refused and when to retry.
    /// Shared rules cost one database round trip; the others none.
    pub async fn admit(&self, caller: &Caller, tool: &str) -> Result<Permit, Limited> {
        let Some(buckets) = self.shared.as_ref().filter(|_| !self.rules.is_empty()) else {
            return self.admit_at(caller, tool, Instant::now());
        };
        let covering = self.covering(caller, tool);
        let shared: Vec<&(usize, &RateLimitRule, String)> = covering
            .iter()
            .filter(|(_, rule, _)| rule.shared && rule.rate.is_some())
            .collect();
        if shared.is_empty() {
            return self.admit_local(&covering, Instant::now(), true);
        }
        // What this replica counts is checked first, so a call it refuses takes no shared
        // token; then the shared buckets, all or none; then the local counts are taken.
        self.check_local(&self.state.lock(), &covering, Instant::now(), false)?;
        let takes: Vec<BucketTake> = shared
            .iter()
            .filter_map(|(_, rule, key)| {
                let (calls, window) = rule.rate?;
                Some(BucketTake {
                    key: shared_key(rule, key),
                    capacity: f64::from(calls),
                    per_second: f64::from(calls) / window.as_secs_f64(),
                })
            })
            .collect();
        let counted_here = match buckets.take_tokens(&takes).await {
            Ok(Ok(())) => false,
            Ok(Err(empty)) => {
                return Err(Limited {
                    rule: shared.get(empty.index).map_or(0, |(index, _, _)| *index),
                    retry_after: Some(empty.retry_after),
                });
            }
            Err(error) => {
                tracing::warn!(%error, tool, "shared rate limits unavailable; counting on this replica");
                true
            }
        };
        self.admit_local(&covering, Instant::now(), counted_here)
    }

    fn covering<'a>(
        &'a self,
        caller: &Caller,
        tool: &str,
    ) -> Vec<(usize, &'a RateLimitRule, String)> {
        self.rules
            .iter()
            .enumerate()
            .filter(|(_, rule)| glob_matches(&rule.tools, tool))
            .map(|(index, rule)| (index, rule, key_of(rule, caller)))
            .collect()
    }

    fn admit_at(&self, caller: &Caller, tool: &str, now: Instant) -> Result<Permit, Limited> {
        // Without rules a call costs nothing here: no lock, no allocation.
        if self.rules.is_empty() {
            return Ok(Permit {
                state: self.state.clone(),
                held: Vec::new(),
            });
        }
        let covering = self.covering(caller, tool);
        self.admit_local(&covering, now, true)
    }

    /// Checks and takes what this replica counts: every concurrency limit, and the rates of
    /// rules that are not shared (of shared ones too with `shared_here`).
    fn admit_local(
        &self,
        covering: &[(usize, &RateLimitRule, String)],
        now: Instant,
        shared_here: bool,
    ) -> Result<Permit, Limited> {
        let mut state = self.state.lock();
        if state.buckets.len() > PRUNE_ABOVE {
            state
                .buckets
                .retain(|_, bucket| now.saturating_duration_since(bucket.updated) < IDLE);
        }
        // Check every rule before taking anything, so a refused call costs no one a token.
        self.check_local(&state, covering, now, shared_here)?;
        let mut held = Vec::new();
        for (index, rule, key) in covering {
            let (index, key) = (*index, key.clone());
            if let Some((calls, window)) = rule.rate
                && (shared_here || !rule.shared)
            {
                let tokens = refilled(&state.buckets, (index, &key), calls, window, now);
                state.buckets.insert(
                    (index, key.clone()),
                    Bucket {
                        tokens: tokens - 1.0,
                        updated: now,
                    },
                );
            }
            if rule.concurrent.is_some() {
                *state.in_flight.entry((index, key.clone())).or_insert(0) += 1;
                held.push((index, key));
            }
        }
        Ok(Permit {
            state: self.state.clone(),
            held,
        })
    }

    /// The first rule this replica counts that refuses the call now, without taking anything.
    fn check_local(
        &self,
        state: &State,
        covering: &[(usize, &RateLimitRule, String)],
        now: Instant,
        shared_here: bool,
    ) -> Result<(), Limited> {
        for (index, rule, key) in covering {
            if let Some(limit) = rule.concurrent
                && state
                    .in_flight
                    .get(&(*index, key.clone()))
                    .is_some_and(|n| *n >= limit)
            {
                return Err(Limited {
                    rule: *index,
                    retry_after: None,
                });
            }
            if let Some((calls, window)) = rule.rate
                && (shared_here || !rule.shared)
            {
                let bucket = refilled(&state.buckets, (*index, key), calls, window, now);
                if bucket < 1.0 {
                    let per_token = window.as_secs_f64() / f64::from(calls);
                    return Err(Limited {
                        rule: *index,
                        retry_after: Some(Duration::from_secs_f64((1.0 - bucket) * per_token)),
                    });
                }
            }
        }
        Ok(())
    }
}

/// A shared bucket's key: the same rule (its tools, key kind and rate, not its position, which
/// may differ between replicas' configs during a rollout) and the same caller key on every
/// replica; hashed, so the database holds no user name.
fn shared_key(rule: &RateLimitRule, key: &str) -> [u8; 32] {
    let (calls, window) = rule.rate.unwrap_or_default();
    let text = format!(
        "rate\n{}\n{:?}\n{calls}/{}ms\n{key}",
        rule.tools,
        rule.per,
        window.as_millis()
    );
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    key
}

/// The tokens of a bucket at `now` (a new bucket is full).
fn refilled(
    buckets: &HashMap<(usize, String), Bucket>,
    (index, key): (usize, &String),
    calls: u32,
    window: Duration,
    now: Instant,
) -> f64 {
    let capacity = f64::from(calls);
    match buckets.get(&(index, key.clone())) {
        None => capacity,
        Some(bucket) => {
            let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
            (bucket.tokens + elapsed * capacity / window.as_secs_f64()).min(capacity)
        }
    }
}

fn key_of(rule: &RateLimitRule, caller: &Caller) -> String {
    match &rule.per {
        LimitKey::User => caller.user_id(),
        LimitKey::Claim(name) => match caller.claims.get(name) {
            Some(serde_json::Value::String(value)) => format!("={value}"),
            Some(other) => format!("={other}"),
            None => "(none)".to_string(),
        },
    }
}

/// `*` matches any run of characters (none included); everything else matches itself.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return name.is_empty();
    };
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests;
