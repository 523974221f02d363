//! One async lock per key, created on demand and dropped when nobody holds it: the
//! single-flight behind token refresh (DESIGN 3.1).

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

#[derive(Default)]
pub struct KeyedLocks {
    locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl KeyedLocks {
    /// The lock for `key`; everyone asking for the same key while it is alive gets the same one.
    pub fn get(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock();
        if let Some(lock) = locks.get(key).and_then(Weak::upgrade) {
            return lock;
        }
        if locks.len() >= 1024 {
            locks.retain(|_, weak| weak.strong_count() > 0);
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(key.to_string(), Arc::downgrade(&lock));
        lock
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_lock_until_released() {
        let locks = KeyedLocks::default();
        let a = locks.get("k");
        let b = locks.get("k");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &locks.get("other")));
        drop((a, b));
        assert_eq!(locks.locks.lock().get("k").map(Weak::strong_count), Some(0));
    }
}
