//! The configured storage quota: declared bytes of all blobs against a limit.

use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub(crate) struct Quota {
    limit: u64,
    used: Mutex<u64>,
}

/// Bytes set aside for a blob being created; given back on drop unless [`Reservation::keep`]
/// is called, so a failed or abandoned `create` never leaks quota.
pub(crate) struct Reservation {
    quota: Arc<Quota>,
    bytes: u64,
}

impl Quota {
    pub(crate) fn new(limit: u64, used: u64) -> Self {
        Quota {
            limit,
            used: Mutex::new(used),
        }
    }

    pub(crate) fn used(&self) -> u64 {
        *self.lock()
    }

    /// Sets `bytes` aside, or `None` when they do not fit under the limit.
    pub(crate) fn reserve(self: &Arc<Self>, bytes: u64) -> Option<Reservation> {
        let mut used = self.lock();
        let after = used.checked_add(bytes).filter(|&a| a <= self.limit)?;
        *used = after;
        Some(Reservation {
            quota: Arc::clone(self),
            bytes,
        })
    }

    /// Gives back the bytes of a deleted blob.
    pub(crate) fn release(&self, bytes: u64) {
        let mut used = self.lock();
        *used = used.saturating_sub(bytes);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, u64> {
        self.used.lock().expect("quota lock poisoned")
    }
}

impl Reservation {
    /// The blob was created: its bytes stay counted.
    pub(crate) fn keep(mut self) {
        self.bytes = 0;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.quota.release(self.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_fit_the_limit_and_are_returned_unless_kept() {
        let q = Arc::new(Quota::new(100, 10));
        let a = q.reserve(60).expect("fits");
        assert!(q.reserve(31).is_none(), "10 + 60 + 31 > 100");
        let b = q.reserve(30).expect("exactly fits");
        assert_eq!(q.used(), 100);
        drop(b);
        assert_eq!(q.used(), 70);
        a.keep();
        assert_eq!(q.used(), 70);
        q.release(60);
        assert_eq!(q.used(), 10);
        assert!(q.reserve(u64::MAX).is_none(), "no overflow");
    }
}
