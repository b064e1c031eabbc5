//! Mapping of `std::io::Error` and blocking-task failures to `BlobError`.

use std::io;

use tokio::task::JoinError;
use upspool_domain::store::BlobError;

/// ENOSPC on every Unix we care about.
const ENOSPC: i32 = 28;
/// EDQUOT on Linux (a per-user or per-project quota, which for us is just "full").
const EDQUOT: i32 = 122;

/// Whether `e` means the disk (or a quota) is full: those must reach the client as
/// "storage full", not as an internal error.
pub(crate) fn is_storage_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull
        || matches!(e.raw_os_error(), Some(ENOSPC))
        || (cfg!(target_os = "linux") && e.raw_os_error() == Some(EDQUOT))
}

/// Maps an I/O error of operation `what` (e.g. "write s-123") to a `BlobError`.
pub(crate) fn map_io(e: io::Error, what: &str) -> BlobError {
    if is_storage_full(&e) {
        BlobError::StorageFull
    } else if e.kind() == io::ErrorKind::NotFound {
        BlobError::NotFound
    } else {
        BlobError::Io(format!("{what}: {e}"))
    }
}

fn map_join(e: JoinError) -> BlobError {
    if e.is_cancelled() {
        // Only happens while the runtime shuts down.
        BlobError::Unavailable("byte store task canceled".into())
    } else {
        BlobError::Io(format!("byte store task panicked: {e}"))
    }
}

/// Runs blocking file I/O on tokio's blocking pool.
///
/// The closure runs to completion even if the returned future is dropped: callers must not
/// assume a canceled write did not happen.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, BlobError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, BlobError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(map_join)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_disk_and_quota_are_storage_full() {
        let full = map_io(io::Error::from_raw_os_error(ENOSPC), "write");
        assert!(matches!(full, BlobError::StorageFull));
        #[cfg(target_os = "linux")]
        assert!(matches!(
            map_io(io::Error::from_raw_os_error(EDQUOT), "write"),
            BlobError::StorageFull
        ));
        assert!(matches!(
            map_io(io::ErrorKind::NotFound.into(), "open"),
            BlobError::NotFound
        ));
        assert!(matches!(
            map_io(io::Error::from_raw_os_error(5), "sync"),
            BlobError::Io(_)
        ));
    }
}
