//! Remembers tokens that passed every check, so a client reusing its token (every MCP client
//! does, for every request) pays for one signature verification, not one per request.
//!
//! Safety: an entry is keyed by the SHA-256 of the whole token, holds only the derived
//! [`Caller`], is used only until the token's `exp` (with the configured leeway, exactly as
//! validation would), and only while the issuer's key set is the one it was verified against —
//! a JWKS refresh or rotation empties it. Refusals are never cached, so garbage cannot crowd
//! out good entries. Memory is bounded: a full cache is simply cleared.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::digest;
use parking_lot::Mutex;

use super::Caller;
use super::jwks::KeySnapshot;

const CAPACITY: usize = 16_384;

type TokenHash = [u8; 32];

pub struct VerifiedCache {
    entries: Mutex<Entries>,
}

struct Entries {
    /// The key set the entries were verified against.
    keys: Option<Arc<KeySnapshot>>,
    map: HashMap<TokenHash, Caller>,
}

fn hash(token: &str) -> TokenHash {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
    out
}

impl Default for VerifiedCache {
    fn default() -> Self {
        VerifiedCache {
            entries: Mutex::new(Entries {
                keys: None,
                map: HashMap::new(),
            }),
        }
    }
}

impl VerifiedCache {
    /// The caller for `token`, if it was verified against `keys` and has not expired.
    pub fn get(
        &self,
        token: &str,
        keys: &Arc<KeySnapshot>,
        now: u64,
        leeway: u64,
    ) -> Option<Caller> {
        let mut entries = self.entries.lock();
        if !entries.keys.as_ref().is_some_and(|k| Arc::ptr_eq(k, keys)) {
            entries.map.clear();
            entries.keys = Some(keys.clone());
            return None;
        }
        let key = hash(token);
        match entries.map.get(&key) {
            Some(caller) if now < caller.expires_at.saturating_add(leeway) => Some(caller.clone()),
            Some(_) => {
                entries.map.remove(&key);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, token: &str, keys: &Arc<KeySnapshot>, caller: &Caller) {
        let mut entries = self.entries.lock();
        if !entries.keys.as_ref().is_some_and(|k| Arc::ptr_eq(k, keys)) {
            entries.map.clear();
            entries.keys = Some(keys.clone());
        }
        if entries.map.len() >= CAPACITY {
            entries.map.clear();
        }
        entries.map.insert(hash(token), caller.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(expires_at: u64) -> Caller {
        Caller {
            issuer: "https://idp".into(),
            subject: "alice".into(),
            client_id: None,
            scopes: Arc::from(Vec::<String>::new()),
            expires_at,
            claims: Default::default(),
        }
    }

    #[test]
    fn hits_until_expiry_and_only_for_the_same_key_set() {
        let cache = VerifiedCache::default();
        let keys = Arc::new(KeySnapshot::default());
        assert!(cache.get("t", &keys, 100, 0).is_none());
        cache.insert("t", &keys, &caller(200));
        assert_eq!(cache.get("t", &keys, 150, 0), Some(caller(200)));
        assert!(cache.get("other", &keys, 150, 0).is_none());
        assert!(cache.get("t", &keys, 200, 0).is_none(), "expired");
        cache.insert("t", &keys, &caller(200));
        let rotated = Arc::new(KeySnapshot::default());
        assert!(
            cache.get("t", &rotated, 150, 0).is_none(),
            "a new key set empties the cache"
        );
        assert!(cache.get("t", &keys, 150, 0).is_none());
    }
}
