//! An open blob: positional reads and writes on one shared file descriptor.

use std::fs::File;
use std::io::IoSlice;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Mutex;
use upspool_domain::store::{BlobError, BlobHandle, BlockBuffer};

use crate::block_pool;
use crate::direct::{self, DirectIo, PageSplit};
use crate::error::{blocking, map_io};

/// A blob opened read+write. `pwrite`/`pread` carry their own offset, so any number of
/// reads and writes (on disjoint ranges) may run at once on the one descriptor.
pub(crate) struct FsBlobHandle {
    file: Arc<File>,
    /// The same file opened for direct writes (see `direct`), while the store writes so.
    direct: Option<Direct>,
    /// The blob's size when opened (set by `create`); writes and reads must stay inside it,
    /// so a completed upload is exactly the document.
    size: u64,
    key: Arc<str>,
    /// Counts `sync` calls as they arrive (tickets); see `sync`.
    arrivals: AtomicU64,
    sync_state: Arc<Mutex<SyncState>>,
    /// Mirrors `SyncState::failed`, readable without the async lock (see `sync_failed`).
    poisoned: Arc<AtomicBool>,
}

impl std::fmt::Debug for FsBlobHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsBlobHandle")
            .field("key", &self.key)
            .field("size", &self.size)
            .field("direct", &self.direct.is_some())
            .finish_non_exhaustive()
    }
}

/// A descriptor for direct writes and the store's switch that turns them off.
#[derive(Clone)]
pub(crate) struct Direct {
    pub file: Arc<File>,
    pub io: Arc<DirectIo>,
}

#[derive(Default)]
struct SyncState {
    /// Every `sync` whose ticket is at most this is covered by a successful `fdatasync`.
    synced_through: u64,
    /// Set forever once an `fdatasync` failed; see `sync`.
    failed: Option<SyncFailure>,
}

#[derive(Clone)]
struct SyncFailure {
    storage_full: bool,
    message: String,
}

impl FsBlobHandle {
    pub(crate) fn new(file: File, size: u64, key: &str) -> Self {
        FsBlobHandle {
            file: Arc::new(file),
            direct: None,
            size,
            key: key.into(),
            arrivals: AtomicU64::new(0),
            sync_state: Arc::default(),
            poisoned: Arc::default(),
        }
    }

    /// Writes whole pages through `direct` from now on.
    pub(crate) fn with_direct(mut self, direct: Direct) -> Self {
        self.direct = Some(direct);
        self
    }

    /// The blob's key.
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// Whether an `fdatasync` on this handle failed: the store then opens a fresh one for new
    /// requests instead of sharing this one.
    pub(crate) fn sync_failed(&self) -> bool {
        self.poisoned.load(Ordering::SeqCst)
    }

    fn check_range(&self, what: &str, offset: u64, len: u64) -> Result<(), BlobError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(BlobError::Io(format!(
                "{what} {}: range at {offset} of {len} bytes is outside the blob's {} bytes",
                self.key, self.size
            ))),
        }
    }
}

#[async_trait]
impl BlobHandle for FsBlobHandle {
    async fn write_at(&self, offset: u64, data: Bytes) -> Result<(), BlobError> {
        self.check_range("write", offset, data.len() as u64)?;
        if data.is_empty() {
            return Ok(());
        }
        let file = self.file.clone();
        let key = self.key.clone();
        blocking(move || {
            file.write_all_at(&data, offset)
                .map_err(|e| map_io(e, &format!("write {key}")))?;
            start_writeback(&file, offset, data.len() as u64);
            Ok(())
        })
        .await
    }

    /// Whole pages of a single aligned part go to the disk directly (see `direct`); whatever
    /// else is written with one `pwritev` per call where the kernel takes it all (it may write
    /// less; the rest follows), instead of copying the parts together first.
    async fn write_parts_at(&self, offset: u64, parts: Vec<Bytes>) -> Result<(), BlobError> {
        let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
        self.check_range("write", offset, len)?;
        if len == 0 {
            return Ok(());
        }
        let file = self.file.clone();
        let key = self.key.clone();
        let direct = self.direct.clone().filter(|d| d.io.is_on());
        blocking(move || {
            let what = || format!("write {key}");
            if let (Some(direct), [part]) = (direct, &parts[..]) {
                if let Some(split) = PageSplit::of(part.as_ptr() as usize, offset, part.len()) {
                    return write_split(&file, &direct, part, offset, split)
                        .map_err(|e| map_io(e, &what()));
                }
            }
            write_vectored(&file, &parts, offset).map_err(|e| map_io(e, &what()))?;
            start_writeback(&file, offset, len);
            Ok(())
        })
        .await
    }

    /// `fallocate` of the range (keeping the file's size), so a full disk fails here, before
    /// any byte is written, and direct writes into the range overwrite allocated blocks, which
    /// ext4 lets run concurrently (writes that allocate hold the inode lock exclusively).
    /// Filesystems without `fallocate` are left to allocate as they write.
    async fn allocate(&self, offset: u64, len: u64) -> Result<(), BlobError> {
        self.check_range("allocate", offset, len)?;
        if len == 0 {
            return Ok(());
        }
        let file = self.file.clone();
        let key = self.key.clone();
        blocking(move || {
            match rustix::fs::fallocate(&*file, rustix::fs::FallocateFlags::KEEP_SIZE, offset, len)
            {
                Ok(()) => Ok(()),
                Err(e) if direct::unsupported(&e.into()) => Ok(()),
                Err(e) => Err(map_io(e.into(), &format!("allocate {key}"))),
            }
        })
        .await
    }

    fn write_alignment(&self) -> Option<usize> {
        self.direct
            .as_ref()
            .filter(|d| d.io.is_on())
            .map(|_| direct::PAGE)
    }

    /// Blocks from huge pages (see `block_pool`), for direct writes only: buffered writes
    /// copy into the page cache, where the source memory's layout does not matter.
    fn block_buffer(&self) -> Option<BlockBuffer> {
        self.write_alignment().and_then(|_| block_pool::lend())
    }

    async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes, BlobError> {
        self.check_range("read", offset, len as u64)?;
        if len == 0 {
            return Ok(Bytes::new());
        }
        let file = self.file.clone();
        let key = self.key.clone();
        blocking(move || {
            let mut buf = vec![0; len];
            file.read_exact_at(&mut buf, offset)
                .map_err(|e| map_io(e, &format!("read {key}")))?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    /// `fdatasync`, with two twists.
    ///
    /// Once an `fdatasync` fails, the kernel may have dropped the dirty pages and reports the
    /// error to each open descriptor only once, so a later (or concurrent) `fdatasync` on the
    /// same descriptor may succeed although earlier writes are lost. So syncs of a handle run
    /// one at a time, and after a failure every later `sync` fails too: the caller must drop
    /// the handle, open the blob again and rewrite whatever it had not acknowledged.
    ///
    /// Running them one at a time costs little: a caller that waited while another sync ran
    /// takes a ticket on arrival, and if a sync that started after its arrival succeeded, its
    /// writes (all finished before it called `sync`) are already durable (group commit).
    async fn sync(&self) -> Result<(), BlobError> {
        let ticket = self.arrivals.fetch_add(1, Ordering::SeqCst) + 1;
        let mut state = self.sync_state.clone().lock_owned().await;
        if let Some(failure) = &state.failed {
            return Err(if failure.storage_full {
                BlobError::StorageFull
            } else {
                BlobError::Io(format!(
                    "an earlier sync of blob {} failed ({}); reopen it",
                    self.key, failure.message
                ))
            });
        }
        if state.synced_through >= ticket {
            return Ok(());
        }
        // Every caller counted here finished its writes before it arrived.
        let covers = self.arrivals.load(Ordering::SeqCst);
        let file = self.file.clone();
        let key = self.key.clone();
        let poisoned = self.poisoned.clone();
        // The lock moves into the blocking task, so that the state is updated even if this
        // future is dropped, and no second fdatasync starts before this one ended.
        blocking(move || match file.sync_data() {
            Ok(()) => {
                state.synced_through = covers;
                Ok(())
            }
            Err(e) => {
                let err = map_io(e, &format!("sync {key}"));
                tracing::error!(blob = %key, error = %err, "fdatasync failed; handle is now unusable for syncs");
                poisoned.store(true, Ordering::SeqCst);
                state.failed = Some(SyncFailure {
                    storage_full: matches!(err, BlobError::StorageFull),
                    message: err.to_string(),
                });
                Err(err)
            }
        })
        .await
    }
}

/// Writes `data` (at `offset`) as `split` says: the partial pages at either end through the
/// page cache, the whole pages between directly. If the filesystem refuses the direct write,
/// direct writes are switched off for the store and the pages go through the page cache.
fn write_split(
    file: &File,
    direct: &Direct,
    data: &[u8],
    offset: u64,
    split: PageSplit,
) -> std::io::Result<()> {
    let (head, rest) = data.split_at(split.head);
    let (pages, tail) = rest.split_at(split.pages);
    let (pages_at, tail_at) = (
        offset + head.len() as u64,
        offset + (head.len() + pages.len()) as u64,
    );
    if !head.is_empty() {
        file.write_all_at(head, offset)?;
        start_writeback(file, offset, head.len() as u64);
    }
    let written = match direct::write_pages(&direct.file, pages, pages_at) {
        Ok(n) => n,
        Err(e) if direct::unsupported(&e) => {
            direct.io.refused(&e);
            0
        }
        Err(e) => return Err(e),
    };
    let buffered = [&pages[written..], tail];
    let mut at = pages_at + written as u64;
    for part in buffered.into_iter().filter(|p| !p.is_empty()) {
        file.write_all_at(part, at)?;
        start_writeback(file, at, part.len() as u64);
        at += part.len() as u64;
    }
    debug_assert_eq!(at, tail_at + tail.len() as u64);
    Ok(())
}

/// One `pwritev` per call where the kernel takes it all.
fn write_vectored(file: &File, parts: &[Bytes], offset: u64) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
    let mut bufs = &mut slices[..];
    let mut at = offset;
    while !bufs.is_empty() {
        match rustix::io::pwritev(file, bufs, at) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                IoSlice::advance_slices(&mut bufs, n);
                at += n as u64;
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Asks the kernel to start writing `len` bytes at `offset` to the disk now, without waiting.
///
/// A segment's bytes arrive over many blocks and are acknowledged only after `fdatasync`; if
/// nothing is written back before that, the disk idles while the body is received and the
/// whole segment is then written while the client waits. Starting writeback per block lets
/// the disk work while the rest of the body arrives, so the final `fdatasync` waits only for
/// the tail. Durability is unchanged: acknowledgement still waits for `fdatasync`, and
/// `SYNC_FILE_RANGE_WRITE` alone neither waits nor consumes a writeback error (only the
/// `WAIT_*` flags check the file's error state), so a failed write still fails that sync.
/// A hint: if it fails, the sync does the work.
fn start_writeback(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: a plain syscall on a descriptor `file` keeps open; no memory is passed.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/dev/full` answers every write with ENOSPC: a cheap real disk-full case.
    #[tokio::test]
    async fn write_to_a_full_device_is_storage_full() {
        let Ok(file) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/full")
        else {
            eprintln!("no /dev/full here; skipped");
            return;
        };
        let handle = FsBlobHandle::new(file, 1 << 20, "full");
        let err = handle
            .write_at(4096, Bytes::from_static(b"hello"))
            .await
            .unwrap_err();
        assert!(matches!(err, BlobError::StorageFull), "{err:?}");
    }

    /// Parts land one after another, across many iovecs, and a full device is still
    /// `StorageFull` on the vectored path.
    #[tokio::test]
    async fn parts_are_written_in_order_at_their_offset() {
        let file = tempfile::tempfile().unwrap();
        file.set_len(1 << 20).unwrap();
        let data: Vec<u8> = (0..300_000).map(|i| (i % 253) as u8).collect();
        let parts: Vec<Bytes> = data.chunks(7_000).map(Bytes::copy_from_slice).collect();
        let handle = FsBlobHandle::new(file, 1 << 20, "parts");
        handle.write_parts_at(4097, parts).await.unwrap();
        assert_eq!(handle.read_at(4097, data.len()).await.unwrap(), data);
        assert_eq!(handle.read_at(0, 4097).await.unwrap(), vec![0u8; 4097]);
        let outside = handle
            .write_parts_at((1 << 20) - 10, vec![Bytes::from_static(b"0123456789x")])
            .await;
        assert!(outside.is_err(), "a write past the blob's size is refused");

        if let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") {
            let handle = FsBlobHandle::new(full, 1 << 20, "full");
            let err = handle
                .write_parts_at(0, vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")])
                .await
                .unwrap_err();
            assert!(matches!(err, BlobError::StorageFull), "{err:?}");
        }
    }

    #[tokio::test]
    async fn a_failed_sync_poisons_the_handle() {
        // fdatasync on a character device fails with EINVAL.
        let Ok(file) = File::open("/dev/null") else {
            eprintln!("no /dev/null here; skipped");
            return;
        };
        let handle = FsBlobHandle::new(file, 0, "null");
        assert!(matches!(handle.sync().await, Err(BlobError::Io(_))));
        let again = handle.sync().await.unwrap_err();
        assert!(again.to_string().contains("earlier sync"), "{again}");
    }
}
