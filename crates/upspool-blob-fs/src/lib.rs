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
//! acknowledged to a client before it is on disk.

mod error;
mod handle;
mod quota;

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};
use upspool_domain::model::BlobKey;
use upspool_domain::store::{BlobError, BlobHandle, BlobStore};

use crate::error::{blocking, map_io};
use crate::handle::FsBlobHandle;
use crate::quota::Quota;

/// Size of the chunks `read_stream` yields. One chunk is in flight per stream, so this is the
/// store's memory per download; 128 KiB is large enough that the per-chunk cost (one trip to
/// the blocking pool and one `pread`) is small next to the copy.
pub const READ_CHUNK_SIZE: usize = 128 * 1024;

/// The longest key accepted.
const MAX_KEY_LEN: usize = 128;

/// Blobs as files under one directory. Cheap to clone.
#[derive(Clone, Debug)]
pub struct FsBlobStore {
    root: Arc<Path>,
    quota: Option<Arc<Quota>>,
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
        Ok(FsBlobStore {
            root: root.into(),
            quota,
        })
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
        let meta = entry?.metadata()?;
        if meta.is_file() {
            total = total.saturating_add(meta.len());
        }
    }
    Ok(total)
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
        let root = self.root.clone();
        let key = key.0.clone();
        let reservation = match &self.quota {
            Some(q) => Some(q.reserve(size).ok_or(BlobError::StorageFull)?),
            None => None,
        };
        blocking(move || {
            let what = format!("create {key}");
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
            let made = file
                .set_len(size)
                .and_then(|()| file.sync_all())
                .and_then(|()| sync_dir(&root));
            if let Err(e) = made {
                drop(file);
                if let Err(rm) = fs::remove_file(&path) {
                    tracing::warn!(blob = %key, error = %rm, "could not remove a half-created blob");
                }
                return Err(map_io(e, &what));
            }
            // The blob exists: its size stays counted until it is deleted.
            if let Some(r) = reservation {
                r.keep();
            }
            Ok(())
        })
        .await
    }

    async fn open(&self, key: &BlobKey) -> Result<Arc<dyn BlobHandle>, BlobError> {
        let path = self.path_of(key)?;
        let key = key.0.clone();
        blocking(move || {
            let what = format!("open {key}");
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| map_io(e, &what))?;
            let size = file.metadata().map_err(|e| map_io(e, &what))?.len();
            Ok(Arc::new(FsBlobHandle::new(file, size, &key)) as Arc<dyn BlobHandle>)
        })
        .await
    }

    /// Checks up front that the file holds the whole range (so a short blob fails the call
    /// rather than truncating a download), then reads `READ_CHUNK_SIZE` chunks one at a time,
    /// each only when the previous one was taken. Should the file shrink meanwhile, the stream
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
                match offset.checked_add(len) {
                    Some(end) if end <= size => Ok(Arc::new(file)),
                    _ => Err(BlobError::Io(format!(
                        "{what}: range at {offset} of {len} bytes is outside the blob's {size} bytes"
                    ))),
                }
            })
            .await?
        };
        let chunks = stream::try_unfold((offset, len), move |(pos, remaining)| {
            let file = file.clone();
            let key = key.clone();
            async move {
                if remaining == 0 {
                    return Ok(None);
                }
                let n = remaining.min(READ_CHUNK_SIZE as u64) as usize;
                let chunk = blocking(move || {
                    let mut buf = vec![0; n];
                    file.read_exact_at(&mut buf, pos).map_err(|e| {
                        if e.kind() == io::ErrorKind::UnexpectedEof {
                            BlobError::Io(format!(
                                "read {key}: blob ends before {}",
                                pos + n as u64
                            ))
                        } else {
                            map_io(e, &format!("read {key}"))
                        }
                    })?;
                    Ok(Bytes::from(buf))
                })
                .await?;
                Ok(Some((chunk, (pos + n as u64, remaining - n as u64))))
            }
        });
        Ok(chunks.boxed())
    }

    /// Removes the file and syncs the directory, so a deleted blob cannot come back after a
    /// crash (by then nothing references it, and it would leak).
    async fn delete(&self, key: &BlobKey) -> Result<(), BlobError> {
        let path = self.path_of(key)?;
        let root = self.root.clone();
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
                }
                // Missing: maybe an earlier delete removed it but failed to sync; sync anyway.
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(map_io(e, &what)),
                Err(_) => {}
            }
            sync_dir(&root).map_err(|e| map_io(e, &what))
        })
        .await
    }
}
