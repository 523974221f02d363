//! [`RefreshLock`]: what [`super::Store::lock_refresh`] hands out, so that of all the processes
//! sharing one store only one refreshes a given token at a time (DESIGN 2.9, 3.1).
//!
//! A provider that rotates refresh tokens (RFC 6749 section 10.4, OAuth 2.0 Security BCP
//! section 4.14.2) accepts each one once: two replicas refreshing the same link together would
//! have one of them refused, and a refused refresh asks the user to consent again. Within one
//! process the identity module's keyed locks serialize refreshes; this lock extends that to
//! every replica on a shared store.

use std::fmt;

/// Held while its owner refreshes one token; dropping it lets the next waiter in. `Send`, so
/// it can be held across the refresh's network calls.
#[must_use = "the lock is released as soon as it is dropped"]
pub struct RefreshLock {
    _held: Option<Box<dyn Send + Sync>>,
}

impl RefreshLock {
    /// The lock of a store that only one process can open (sled holds its folder's file lock):
    /// the process's own keyed locks already exclude every other refresher.
    pub fn single_process() -> RefreshLock {
        RefreshLock { _held: None }
    }

    /// A lock whose release is `held`'s `Drop` (a database session holding an advisory lock).
    pub fn held(held: impl Send + Sync + 'static) -> RefreshLock {
        RefreshLock {
            _held: Some(Box::new(held)),
        }
    }
}

impl fmt::Debug for RefreshLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self._held.is_some() {
            "RefreshLock(shared)"
        } else {
            "RefreshLock(single process)"
        })
    }
}
