//! Grouped `fsync`s of the store's directory.
//!
//! Creating or deleting a blob is durable only once its directory is synced, and with many
//! sessions created at once those syncs queued one after another on the same directory. Here
//! a caller takes a ticket when it arrives (after its own create or unlink finished); syncs run
//! one at a time, and a caller whose ticket is covered by a sync that *started* after it
//! arrived returns without syncing again: that sync already made its directory entry durable.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::Mutex;
use upspool_domain::store::BlobError;

use crate::error::{blocking, map_io};

#[derive(Debug)]
pub(crate) struct DirSync {
    dir: Arc<Path>,
    /// Counts `sync` calls as they arrive (tickets).
    arrivals: AtomicU64,
    /// Every ticket up to this is covered by a successful `fsync`.
    synced_through: Arc<Mutex<u64>>,
}

impl DirSync {
    pub(crate) fn new(dir: Arc<Path>) -> DirSync {
        DirSync {
            dir,
            arrivals: AtomicU64::new(0),
            synced_through: Arc::default(),
        }
    }

    /// Makes every change to the directory made before this call durable. A failed `fsync`
    /// covers nobody: each caller waiting behind it then syncs again itself.
    pub(crate) async fn sync(&self) -> Result<(), BlobError> {
        let ticket = self.arrivals.fetch_add(1, Ordering::SeqCst) + 1;
        let mut synced = self.synced_through.clone().lock_owned().await;
        if *synced >= ticket {
            return Ok(());
        }
        // Every caller counted here finished its change before it arrived.
        let covers = self.arrivals.load(Ordering::SeqCst);
        let dir = self.dir.clone();
        // The lock moves into the blocking task, so no second fsync starts before this one
        // ended, even if this future is dropped.
        blocking(move || {
            super::sync_dir(&dir).map_err(|e| map_io(e, "sync the byte store directory"))?;
            *synced = covers;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Concurrent callers share syncs: all succeed, and every caller's ticket is covered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_syncs_all_return_covered() {
        let dir = tempfile::tempdir().unwrap();
        let sync = Arc::new(DirSync::new(dir.path().into()));
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let sync = sync.clone();
                tokio::spawn(async move { sync.sync().await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(*sync.synced_through.lock().await, 32);
    }

    #[tokio::test]
    async fn a_missing_directory_fails_the_sync() {
        let dir = tempfile::tempdir().unwrap();
        let sync = DirSync::new(dir.path().join("gone").into());
        assert!(sync.sync().await.is_err());
    }
}
