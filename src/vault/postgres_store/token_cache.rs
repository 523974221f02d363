//! A bounded, invalidated cache of token records, so that a call with a vaulted token pays no
//! database round trip when nothing changed (DESIGN 2.9, "hot path").
//!
//! Invalidation is pushed by the database: a trigger on `vault_tokens` (migration 3) runs
//! `pg_notify('portcullis_tokens', <hex SHA-256 of the record key>)` for every insert, update
//! and delete, from any writer (a replica refreshing, `portcullis vault revoke`, a migration),
//! and PostgreSQL delivers it at commit to every replica's listener (`listener.rs`), which
//! drops that entry. So a revocation on one replica is honoured by all as soon as its
//! notification arrives, and the cache is only used while the listener is connected: when it
//! is not (database restart, lost connection), the cache is emptied and every read goes to the
//! database until the listener is back. [`MAX_AGE`] bounds an entry's life regardless.
//!
//! Reads race with invalidations: a read that started before a notification could put the
//! old value in after the notification removed nothing. Every invalidation therefore bumps a
//! generation counter, and a read only fills the cache if no invalidation happened while it was
//! at the database.
//!
//! A refresh bypasses the cache: taking a link's refresh lock drops its entry, so the re-read
//! under the lock sees what another replica stored (`locks.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use parking_lot::Mutex;

use crate::vault::{TokenKey, TokenRecord};

/// The most entries kept: tokens of the links in use at once.
const CAPACITY: usize = 10_000;
/// The longest an entry is used without a database read, whatever the notifications say.
pub(super) const MAX_AGE: Duration = Duration::from_secs(30);

/// The channel the trigger notifies and the listener listens on.
pub(super) const CHANNEL: &str = "portcullis_tokens";

/// The notification payload naming a record: the hex SHA-256 of its record key.
pub(super) fn record_hash(record_key: &[u8]) -> String {
    let hash = digest::digest(&digest::SHA256, record_key);
    hash.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

struct Entry {
    key: TokenKey,
    record: TokenRecord,
    read_at: Instant,
}

#[derive(Default)]
pub(super) struct TokenCache {
    entries: Mutex<HashMap<String, Entry>>,
    /// The listener is connected and listening: notifications are arriving.
    live: AtomicBool,
    generation: AtomicU64,
}

/// What a read saw of the cache before going to the database.
pub(super) struct ReadTicket {
    generation: u64,
}

impl TokenCache {
    /// The cached record of `key` (under `hash`), if the cache is live and the entry young.
    pub(super) fn get(&self, hash: &str, key: &TokenKey) -> Option<TokenRecord> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        let entries = self.entries.lock();
        let entry = entries.get(hash)?;
        (entry.key == *key && entry.read_at.elapsed() < MAX_AGE).then(|| entry.record.clone())
    }

    /// Taken before a database read whose result may be cached with [`TokenCache::fill`].
    pub(super) fn ticket(&self) -> ReadTicket {
        ReadTicket {
            generation: self.generation.load(Ordering::Acquire),
        }
    }

    /// Caches what a read found, unless an invalidation happened since its ticket.
    pub(super) fn fill(
        &self,
        ticket: ReadTicket,
        hash: String,
        key: &TokenKey,
        record: &TokenRecord,
    ) {
        if !self.live.load(Ordering::Acquire) {
            return;
        }
        let mut entries = self.entries.lock();
        if self.generation.load(Ordering::Acquire) != ticket.generation {
            return;
        }
        if entries.len() >= CAPACITY {
            entries.retain(|_, entry| entry.read_at.elapsed() < MAX_AGE);
            // Still full of young entries: drop an arbitrary quarter (hash order), so that
            // more links in use than fit still find most of theirs instead of none.
            let mut drop = entries.len().saturating_sub(CAPACITY * 3 / 4);
            entries.retain(|_, _| {
                let keep = drop == 0;
                drop = drop.saturating_sub(1);
                keep
            });
        }
        entries.insert(
            hash,
            Entry {
                key: key.clone(),
                record: record.clone(),
                read_at: Instant::now(),
            },
        );
    }

    /// The record under `hash` changed (a notification, or this replica's own write).
    pub(super) fn invalidate(&self, hash: &str) {
        let mut entries = self.entries.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.remove(hash);
    }

    /// The listener connected (`true`) or lost its connection (`false`: notifications may be
    /// missed from now on, so everything cached goes).
    pub(super) fn set_live(&self, live: bool) {
        let mut entries = self.entries.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
        self.live.store(live, Ordering::Release);
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::Secret;

    fn record(token: &str) -> TokenRecord {
        TokenRecord {
            access_token: Secret::new(token),
            refresh_token: None,
            token_type: "Bearer".into(),
            expires_at: None,
            scopes: vec![],
            obtained_at: 0,
            refreshed_at: None,
        }
    }

    #[test]
    fn entries_are_used_only_while_live_and_a_read_racing_an_invalidation_is_not_cached() {
        let cache = TokenCache::default();
        let key = TokenKey::new("w", "alice", "github");
        let hash = record_hash(b"alice");
        // Not live yet: nothing is cached.
        cache.fill(cache.ticket(), hash.clone(), &key, &record("a"));
        assert!(cache.get(&hash, &key).is_none());

        cache.set_live(true);
        cache.fill(cache.ticket(), hash.clone(), &key, &record("a"));
        assert_eq!(cache.get(&hash, &key).unwrap().access_token.expose(), "a");
        // Another key with the same hash slot is not served this entry.
        assert!(
            cache
                .get(&hash, &TokenKey::new("w", "bob", "github"))
                .is_none()
        );

        // A read that began before an invalidation does not put its (old) value back.
        let ticket = cache.ticket();
        cache.invalidate(&hash);
        cache.fill(ticket, hash.clone(), &key, &record("old"));
        assert!(cache.get(&hash, &key).is_none());

        // Losing the listener empties the cache and stops its use.
        cache.fill(cache.ticket(), hash.clone(), &key, &record("b"));
        cache.set_live(false);
        assert_eq!(cache.len(), 0);
        cache.fill(cache.ticket(), hash.clone(), &key, &record("c"));
        assert!(cache.get(&hash, &key).is_none());
    }

    #[test]
    fn a_full_cache_drops_a_quarter_not_everything() {
        let cache = TokenCache::default();
        cache.set_live(true);
        for i in 0..=CAPACITY {
            let key = TokenKey::new("w", format!("user-{i}"), "github");
            cache.fill(
                cache.ticket(),
                record_hash(key.user.as_bytes()),
                &key,
                &record("t"),
            );
        }
        assert!(cache.len() <= CAPACITY, "{}", cache.len());
        assert!(cache.len() > CAPACITY / 2, "{}", cache.len());
    }
}
