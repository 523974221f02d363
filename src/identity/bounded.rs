//! A map with a hard size bound and per-entry expiry, for the identity module's in-memory
//! state (client-credentials tokens, sessions waiting for a consent, pending consents per
//! user): nothing a caller does may grow memory without bound (DESIGN 3.2 invariant 9).
//!
//! Inserting into a full map first drops expired entries, then the entry that expires
//! soonest. The scans are linear, and only happen when the map is full; these maps sit on
//! consent and token-minting paths, never on the per-call hot path.

use std::collections::HashMap;
use std::hash::Hash;

pub struct BoundedMap<K, V> {
    entries: HashMap<K, (V, u64)>,
    capacity: usize,
}

impl<K: Eq + Hash + Clone, V> BoundedMap<K, V> {
    pub fn new(capacity: usize) -> BoundedMap<K, V> {
        BoundedMap {
            entries: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// The value of `key` unless it expired at `now`.
    pub fn get(&self, key: &K, now: u64) -> Option<&V> {
        self.entries
            .get(key)
            .filter(|(_, expires)| *expires > now)
            .map(|(value, _)| value)
    }

    /// Inserts (or replaces) `key`, evicting as the module docs say when full; returns what
    /// was evicted to make room.
    pub fn insert(&mut self, key: K, value: V, expires_at: u64, now: u64) -> Vec<(K, V)> {
        let mut evicted = Vec::new();
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            let expired: Vec<K> = self
                .entries
                .iter()
                .filter(|(_, (_, expires))| *expires <= now)
                .map(|(k, _)| k.clone())
                .collect();
            for k in expired {
                if let Some((v, _)) = self.entries.remove(&k) {
                    evicted.push((k, v));
                }
            }
            if self.entries.len() >= self.capacity {
                let soonest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, expires))| *expires)
                    .map(|(k, _)| k.clone());
                if let Some(k) = soonest
                    && let Some((v, _)) = self.entries.remove(&k)
                {
                    evicted.push((k, v));
                }
            }
        }
        self.entries.insert(key, (value, expires_at));
        evicted
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.entries.remove(key).map(|(value, _)| value)
    }

    /// Keeps the entries for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        self.entries.retain(|k, (v, _)| keep(k, v));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_map_drops_expired_entries_then_the_soonest_to_expire() {
        let mut map = BoundedMap::new(3);
        map.insert("a", 1, 10, 0);
        map.insert("b", 2, 30, 0);
        map.insert("c", 3, 20, 0);
        assert_eq!(map.insert("d", 4, 40, 0), vec![("a", 1)]);
        assert_eq!(map.len(), 3);
        // At t=25 "c" has expired: it goes, nothing else.
        assert_eq!(map.insert("e", 5, 50, 25), vec![("c", 3)]);
        assert_eq!(map.get(&"b", 25), Some(&2));
        assert_eq!(
            map.get(&"b", 30),
            None,
            "expired entries are never returned"
        );
        // Replacing a key never evicts.
        assert!(map.insert("e", 6, 60, 25).is_empty());
        assert_eq!(map.len(), 3);
    }

    #[test]
    fn ten_thousand_inserts_stay_within_the_bound() {
        let mut map = BoundedMap::new(100);
        for i in 0..10_000u64 {
            map.insert(i, i, 1_000_000 + i, 0);
            assert!(map.len() <= 100);
        }
        assert_eq!(map.capacity(), 100);
    }
}
