//! Recent callers' [`CallEntities`], so that a caller's repeated calls of a tool do not build
//! the same principal (one tag per claim) and entity set each time: about half the cost of a
//! decision (benches/policy.rs).
//!
//! A caller is recognised by its claims: the verified-token cache in `inbound` hands every
//! request with the same token the same `Arc` of claims, and an entry holds that `Arc`, so the
//! address cannot be reused by another token while the entry lives. Memory is bounded: a full
//! cache is simply cleared (as the verified-token cache is).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::entities::CallEntities;
use crate::inbound::Caller;

/// Callers kept; each is small (its claims are shared with the token cache).
const MAX_CALLERS: usize = 4_096;
/// Tools kept per caller.
const MAX_TOOLS_PER_CALLER: usize = 256;

#[derive(Default)]
pub struct EntityCache {
    callers: parking_lot::Mutex<HashMap<usize, CallerEntry>>,
}

struct CallerEntry {
    claims: Arc<Map<String, Value>>,
    subject: Arc<str>,
    tools: HashMap<String, Arc<CallEntities>>,
}

impl EntityCache {
    /// The entities of `caller` calling `tool` on `gateway`, built once per caller and tool.
    /// (`gateway` is fixed per `Policies`, so it is not part of the key.)
    pub fn get(
        &self,
        caller: &Caller,
        tool: &str,
        gateway: &str,
    ) -> Result<Arc<CallEntities>, String> {
        let key = Arc::as_ptr(&caller.claims) as usize;
        if let Some(entry) = self.callers.lock().get(&key)
            && Arc::ptr_eq(&entry.claims, &caller.claims)
            && entry.subject == caller.subject
            && let Some(found) = entry.tools.get(tool)
        {
            return Ok(found.clone());
        }
        let built = Arc::new(CallEntities::new(caller, tool, gateway)?);
        let mut callers = self.callers.lock();
        if callers.len() >= MAX_CALLERS && !callers.contains_key(&key) {
            callers.clear();
        }
        let entry = callers.entry(key).or_insert_with(|| CallerEntry {
            claims: caller.claims.clone(),
            subject: caller.subject.clone(),
            tools: HashMap::new(),
        });
        if !Arc::ptr_eq(&entry.claims, &caller.claims) || entry.subject != caller.subject {
            // Unreachable while the entry holds its claims; kept as a guard.
            *entry = CallerEntry {
                claims: caller.claims.clone(),
                subject: caller.subject.clone(),
                tools: HashMap::new(),
            };
        }
        if entry.tools.len() >= MAX_TOOLS_PER_CALLER {
            entry.tools.clear();
        }
        entry.tools.insert(tool.to_string(), built.clone());
        Ok(built)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_entry_serves_only_the_token_it_was_built_for() {
        let cache = EntityCache::default();
        let alice = crate::inbound::test_caller("alice", json!({"department": "finance"}));
        let first = cache.get(&alice, "a___t", "gw").unwrap();
        let again = cache.get(&alice.clone(), "a___t", "gw").unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "the same token reuses its entities"
        );
        // Equal claims in another token are another entry; so is another tool.
        let twin = crate::inbound::test_caller("alice", json!({"department": "finance"}));
        assert!(!Arc::ptr_eq(
            &first,
            &cache.get(&twin, "a___t", "gw").unwrap()
        ));
        assert!(!Arc::ptr_eq(
            &first,
            &cache.get(&alice, "a___u", "gw").unwrap()
        ));
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = EntityCache::default();
        let callers: Vec<Caller> = (0..MAX_CALLERS + 10)
            .map(|i| crate::inbound::test_caller(&format!("u{i}"), json!({})))
            .collect();
        for caller in &callers {
            cache.get(caller, "a___t", "gw").unwrap();
        }
        assert!(cache.callers.lock().len() <= MAX_CALLERS);
        let alice = &callers[0];
        for i in 0..MAX_TOOLS_PER_CALLER + 10 {
            cache.get(alice, &format!("a___t{i}"), "gw").unwrap();
        }
        let callers_now = cache.callers.lock();
        let entry = callers_now
            .get(&(Arc::as_ptr(&alice.claims) as usize))
            .unwrap();
        assert!(entry.tools.len() <= MAX_TOOLS_PER_CALLER);
    }
}
