//! The embedded byte store: each blob is one sparse file, `{root}/{key}`, created at the
//! document's full size. Uploads write into it positionally and a completed upload *is* the
//! document: nothing is ever copied or moved.
//!
//! Quota: with [`FsBlobStore::open_with_quota`], the store counts the declared size of every
//! blob (the file length, which is what a document will occupy once complete) and refuses a
//! `create` that would pass the limit with `StorageFull`. Counting declared rather than
//! written bytes means an accepted upload session can always be completed: its space is
//! reserved when it is created, and nothing is recorded for a session that does not fit.
//!
//! Durability: `create` syncs the file and its directory before returning, `BlobHandle::sync`
//! is `fdatasync`, and every sync error is reported (never ignored), so nothing is
//! acknowledged to a client before it is on disk. Concurrent creates and deletes share their
//! directory syncs (see `dir_sync`), as concurrent segments of one blob share `fdatasync`s.

mod block_pool;
mod dir_sync;
mod direct;
mod error;
mod handle;
mod quota;

use std::collections::{HashMap, VecDeque};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};
use upspool_domain::model::BlobKey;
use upspool_domain::store::{BlobError, BlobHandle, BlobStore};

use crate::dir_sync::DirSync;
use crate::direct::DirectIo;
use crate::error::{blocking, map_io};
use crate::handle::{Direct, FsBlobHandle};
use crate::quota::Quota;

pub use block_pool::set_limit as set_block_pool_limit;

/// Size of the chunks `read_stream` yields. Each chunk costs a trip to the blocking pool, a
/// `pread` and a zeroing of its buffer; at 512 KiB the trips are few (2 048 per GiB) while the
/// store's memory per download stays small: this plus [`READ_AHEAD`] chunks.
pub const READ_CHUNK_SIZE: usize = 512 * 1024;

/// Chunks `read_stream` reads ahead of the one being sent, so that the disk read of the next
/// chunk overlaps the network write of the current one.
const READ_AHEAD: usize = 1;

/// The longest key accepted.
const MAX_KEY_LEN: usize = 128;

/// Past this many entries, `open` drops the entries of handles nobody holds any more.
const PRUNE_OPEN_HANDLES_AT: usize = 1024;

/// Handles of the most recently opened blobs kept open when no request holds them, so that a
/// session's next segment (a client sends them one after another) skips opening the file
/// twice and probing it. Each costs two descriptors.
const KEEP_OPEN: usize = 16;

/// Blobs as files under one directory. Cheap to clone.
#[derive(Clone, Debug)]
pub struct FsBlobStore {
    root: Arc<Path>,
    quota: Option<Arc<Quota>>,
    /// The handle each blob has while any request holds it. Concurrent segments of one upload
    /// share it, so their syncs are grouped into one `fdatasync` (see `FsBlobHandle::sync`)
    /// instead of queueing one per request on the same file.
    open_handles: Arc<Mutex<HashMap<String, Weak<FsBlobHandle>>>>,
    /// The [`KEEP_OPEN`] most recently opened handles, most recent first; `delete` drops a
    /// blob's handle from here, so its space is freed at once.
    recent: Arc<Mutex<VecDeque<Arc<FsBlobHandle>>>>,
    /// Groups the directory syncs of concurrent creates and deletes.
    dir_sync: Arc<DirSync>,
    /// Whether whole pages are written without the page cache (see `direct`).
    direct_io: Arc<DirectIo>,
}

impl FsBlobStore {
    /// Opens (creating if needed, mode 0700) the store's directory and syncs it and its parent,
    /// so that its existence survives a crash. Blocking; meant for startup.
    pub fn open(root: &Path) -> Result<FsBlobStore, BlobError> {
        Self::open_with_quota(root, None)
    }

    /// [`FsBlobStore::open`], with at most `quota` bytes of declared blob sizes (see the module
    /// docs). Counts the blobs already there. Blocking; meant for startup.
    pub fn open_with_quota(root: &Path, quota: Option<u64>) -> Result<FsBlobStore, BlobError> {
        let what = format!("open byte store {}", root.display());
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|e| map_io(e, &what))?;
        sync_dir(root).map_err(|e| map_io(e, &what))?;
        let parent = match root.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        sync_dir(parent).map_err(|e| map_io(e, &what))?;
        let quota = match quota {
            Some(limit) => Some(Arc::new(Quota::new(
                limit,
                declared_bytes(root).map_err(|e| map_io(e, &what))?,
            ))),
            None => None,
        };
        let root: Arc<Path> = root.into();
        Ok(FsBlobStore {
            dir_sync: Arc::new(DirSync::new(root.clone())),
            direct_io: Arc::new(DirectIo::new(true, &root)),
            root,
            quota,
            open_handles: Arc::default(),
            recent: Arc::default(),
        })
    }

    /// Whether whole pages are written directly to the disk, bypassing the page cache (the
    /// default; see the `direct` module). Off writes everything through the page cache. When
    /// on, one page is written directly to a probe file in the store's directory at once, and
    /// a filesystem that refuses direct I/O (then, or on any later write) switches it off for
    /// good with one warning. Blocking; meant for startup.
    pub fn direct_io(self, on: bool) -> Self {
        let direct_io = DirectIo::new(on, &self.root);
        direct_io.probe();
        FsBlobStore {
            direct_io: Arc::new(direct_io),
            ..self
        }
    }

    /// Whether writes currently bypass the page cache.
    pub fn writes_directly(&self) -> bool {
        self.direct_io.is_on()
    }

    /// Declared bytes of all blobs, as counted against the quota (`None` without a quota).
    pub fn quota_used(&self) -> Option<u64> {
        self.quota.as_ref().map(|q| q.used())
    }

    /// The directory holding the blobs.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of `key`, once the key is known to be a single harmless path component.
    fn path_of(&self, key: &BlobKey) -> Result<PathBuf, BlobError> {
        let k = key.0.as_str();
        let valid = (1..=MAX_KEY_LEN).contains(&k.len())
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(BlobError::Io("invalid blob key".into()));
        }
        Ok(self.root.join(k))
    }
}

/// The summed lengths of the regular files in `dir`.
fn declared_bytes(dir: &Path) -> io::Result<u64> {
    let mut total = 0u64;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        // Blob keys never start with a dot (see `path_of`); such files are the store's own.
        if entry.file_name().as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let meta = entry.metadata()?;
        if meta.is_file() {
            total = total.saturating_add(meta.len());
        }
    }
    Ok(total)
}

impl FsBlobStore {
    /// The live, usable handle of `key` some request (or the recent list) already holds.
    fn shared_handle(&self, key: &str) -> Option<Arc<FsBlobHandle>> {
        let handles = self
            .open_handles
            .lock()
            .expect("open handles lock poisoned");
        let h = handles.get(key).and_then(Weak::upgrade)?;
        (!h.sync_failed()).then_some(h)
    }

    /// Puts `handle` first in the recent list, dropping its older entry, handles whose sync
    /// failed (they are never shared again) and whatever falls off the end.
    fn keep_open(&self, handle: &Arc<FsBlobHandle>) {
        let mut recent = self.recent.lock().expect("recent handles lock poisoned");
        recent.retain(|h| !Arc::ptr_eq(h, handle) && !h.sync_failed());
        recent.push_front(handle.clone());
        recent.truncate(KEEP_OPEN);
    }
}

/// Reads `n` bytes at `pos`; a file that ends early is an error. The bytes are read straight
/// into the new buffer's uninitialised memory (rustix's safe `pread` into spare capacity), so
/// no pass zeroes it first: that `memset` was a few percent of a download's CPU time.
async fn read_chunk(
    file: Arc<File>,
    key: Arc<str>,
    pos: u64,
    n: usize,
) -> Result<Bytes, BlobError> {
    blocking(move || {
        let mut buf = Vec::with_capacity(n);
        while buf.len() < n {
            let at = pos + buf.len() as u64;
            match rustix::io::pread(&*file, rustix::buffer::spare_capacity(&mut buf), at) {
                Ok(0) => {
                    return Err(BlobError::Io(format!(
                        "read {key}: blob ends before {}",
                        pos + n as u64
                    )))
                }
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(map_io(e.into(), &format!("read {key}"))),
            }
        }
        // The allocator may have given more room than asked, and pread filled what it could.
        buf.truncate(n);
        Ok(Bytes::from(buf))
    })
    .await
}

/// Removes a blob file whose creation failed half-way.
fn remove_half_created(path: &Path, key: &str) {
    if let Err(rm) = fs::remove_file(path) {
        tracing::warn!(blob = %key, error = %rm, "could not remove a half-created blob");
    }
}

/// fsyncs a directory, making the creation or removal of its entries durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[async_trait]
impl BlobStore for FsBlobStore {
    /// Creates the file exclusively (an existing blob is never truncated) at its full size,
    /// sparse, and syncs it and the directory. On failure the new file is removed again.
    async fn create(&self, key: &BlobKey, size: u64) -> Result<(), BlobError> {
        let path = self.path_of(key)?;
        let name = key.0.clone();
        let reservation = match &self.quota {
            Some(q) => Some(q.reserve(size).ok_or(BlobError::StorageFull)?),
            None => None,
        };
        let made = {
            let path = path.clone();
            blocking(move || {
                let what = format!("create {name}");
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| match e.kind() {
                        io::ErrorKind::AlreadyExists => {
                            BlobError::Io(format!("{what}: blob already exists"))
                        }
                        _ => map_io(e, &what),
                    })?;
                if let Err(e) = file.set_len(size).and_then(|()| file.sync_all()) {
                    drop(file);
                    remove_half_created(&path, &name);
                    return Err(map_io(e, &what));
                }
                Ok(())
            })
            .await
        };
        made?;
        // The directory entry, synced together with those of concurrent creates.
        if let Err(e) = self.dir_sync.sync().await {
            let name = key.0.clone();
            blocking(move || {
                remove_half_created(&path, &name);
                Ok(())
            })
            .await?;
            return Err(e);
        }
        // The blob exists: its size stays counted until it is deleted.
        if let Some(r) = reservation {
            r.keep();
        }
        Ok(())
    }

    /// Shares the handle other requests hold for the blob, unless an `fdatasync` on it failed
    /// (then a fresh descriptor is opened, as the handle's contract asks).
    async fn open(&self, key: &BlobKey) -> Result<Arc<dyn BlobHandle>, BlobError> {
        let path = self.path_of(key)?;
        if let Some(h) = self.shared_handle(&key.0) {
            self.keep_open(&h);
            return Ok(h);
        }
        let name = key.0.clone();
        let direct_io = self.direct_io.clone();
        let opened = blocking(move || {
            let what = format!("open {name}");
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| map_io(e, &what))?;
            let size = file.metadata().map_err(|e| map_io(e, &what))?.len();
            if direct_io.is_on() {
                // No read-ahead through this descriptor: a comparison read must not bring
                // pages into the cache that another request is writing directly, or a stale
                // copy could outlive that write (see `direct`). Only advice.
                let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::Random);
            }
            let handle = FsBlobHandle::new(file, size, &name);
            let handle = match direct_io.open(&path).map_err(|e| map_io(e, &what))? {
                Some(file) => handle.with_direct(Direct {
                    file: Arc::new(file),
                    io: direct_io,
                }),
                None => handle,
            };
            Ok(Arc::new(handle))
        })
        .await?;
        let handle = {
            let mut handles = self
                .open_handles
                .lock()
                .expect("open handles lock poisoned");
            // Another request may have opened the blob meanwhile: join its handle.
            match handles.get(&key.0).and_then(Weak::upgrade) {
                Some(h) if !h.sync_failed() => h,
                _ => {
                    if handles.len() >= PRUNE_OPEN_HANDLES_AT {
                        handles.retain(|_, w| w.strong_count() > 0);
                    }
                    handles.insert(key.0.clone(), Arc::downgrade(&opened));
                    opened
                }
            }
        };
        self.keep_open(&handle);
        Ok(handle)
    }

    /// Checks up front that the file holds the whole range (so a short blob fails the call
    /// rather than truncating a download), then reads `READ_CHUNK_SIZE` chunks in order, at
    /// most `READ_AHEAD` ahead of the one taken. Should the file shrink meanwhile, the stream
    /// yields an error and ends.
    async fn read_stream(
        &self,
        key: &BlobKey,
        offset: u64,
        len: u64,
    ) -> Result<BoxStream<'static, Result<Bytes, BlobError>>, BlobError> {
        let path = self.path_of(key)?;
        let key: Arc<str> = key.0.as_str().into();
        let file = {
            let key = key.clone();
            blocking(move || {
                let what = format!("read {key}");
                let file = File::open(&path).map_err(|e| map_io(e, &what))?;
                let size = file.metadata().map_err(|e| map_io(e, &what))?.len();
                // Read in order start to end: a larger kernel read-ahead keeps the disk busy
                // when the blob is not cached. Only advice, so a failure changes nothing.
                let _ = rustix::fs::fadvise(
                    &file,
                    offset,
                    std::num::NonZeroU64::new(len),
                    rustix::fs::Advice::Sequential,
                );
                match offset.checked_add(len) {
                    Some(end) if end <= size => Ok(Arc::new(file)),
                    _ => Err(BlobError::Io(format!(
                        "{what}: range at {offset} of {len} bytes is outside the blob's {size} bytes"
                    ))),
                }
            })
            .await?
        };
        let chunk_size = READ_CHUNK_SIZE as u64;
        let pieces = (0..len.div_ceil(chunk_size)).map(move |i| {
            let at = i * chunk_size;
            (offset + at, (len - at).min(chunk_size) as usize)
        });
        let mut failed = false;
        let chunks = stream::iter(pieces)
            .map(move |(pos, n)| read_chunk(file.clone(), key.clone(), pos, n))
            // One chunk is read ahead while the previous one is being sent.
            .buffered(READ_AHEAD + 1)
            .take_while(move |r| {
                let go = !failed;
                failed |= r.is_err();
                std::future::ready(go)
            });
        Ok(chunks.boxed())
    }

    /// Removes the file and syncs the directory, so a deleted blob cannot come back after a
    /// crash (by then nothing references it, and it would leak).
    async fn delete(&self, key: &BlobKey) -> Result<(), BlobError> {
        let path = self.path_of(key)?;
        // Its descriptors close once no request holds them, and with them the file's space.
        self.recent
            .lock()
            .expect("recent handles lock poisoned")
            .retain(|h| h.key() != key.0);
        let key = key.0.clone();
        let quota = self.quota.clone();
        blocking(move || {
            let what = format!("delete {key}");
            let size = fs::metadata(&path).map(|m| m.len());
            match fs::remove_file(&path) {
                Ok(()) => {
                    if let (Some(q), Ok(size)) = (&quota, size) {
                        q.release(size);
                    }
                    Ok(())
                }
                // Missing: maybe an earlier delete removed it but failed to sync; sync anyway.
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(map_io(e, &what)),
                Err(_) => Ok(()),
            }
        })
        .await?;
        self.dir_sync.sync().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(a: &Arc<dyn BlobHandle>, b: &Arc<dyn BlobHandle>) -> bool {
        std::ptr::eq(Arc::as_ptr(a).cast::<()>(), Arc::as_ptr(b).cast::<()>())
    }

    /// Requests on one blob at the same time share its handle (and so its grouped syncs);
    /// once nobody holds it, the next open gets a new descriptor.
    #[tokio::test]
    async fn concurrent_opens_of_a_blob_share_one_handle() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(&dir.path().join("blobs")).unwrap();
        let (a, b) = (BlobKey("a".into()), BlobKey("b".into()));
        store.create(&a, 10).await.unwrap();
        store.create(&b, 10).await.unwrap();
        let first = store.open(&a).await.unwrap();
        let second = store.open(&a).await.unwrap();
        assert!(same(&first, &second));
        assert!(!same(&first, &store.open(&b).await.unwrap()));
        first.write_at(0, Bytes::from_static(b"hi")).await.unwrap();
        second.sync().await.unwrap();
        drop(second);
        // Kept open for the next segment while it is among the most recent...
        let again = store.open(&a).await.unwrap();
        assert!(same(&first, &again));
        assert_eq!(&again.read_at(0, 2).await.unwrap()[..], b"hi");
        drop((first, again));
        for i in 0..KEEP_OPEN {
            let other = BlobKey(format!("k{i}"));
            store.create(&other, 1).await.unwrap();
            store.open(&other).await.unwrap();
        }
        // ...and closed once it is not, or once its blob is deleted.
        let fresh = store.open(&a).await.unwrap();
        assert_eq!(
            Arc::strong_count(&fresh),
            2,
            "held here and in the recent list"
        );
        assert_eq!(&fresh.read_at(0, 2).await.unwrap()[..], b"hi");
        drop(fresh);
        store.delete(&a).await.unwrap();
        assert!(store.recent.lock().unwrap().iter().all(|h| h.key() != "a"));
    }
}
