//! Writing whole pages without the page cache (`O_DIRECT`).
//!
//! A buffered write copies every byte into the page cache, whose pages must first be found,
//! zeroed and accounted, then written back by the kernel and synced; on a VM whose host
//! reclaims freed guest memory, touching those pages costs more than the copy itself
//! (BENCHMARKS.md, finding 10). A direct write hands the process's own buffer to the disk,
//! and the `fdatasync` that follows only commits metadata and flushes the disk's cache. So
//! the byte store writes every whole, aligned page of a block directly and only the partial
//! pages at a segment's edges through the page cache.
//!
//! Mixing the two on one file is safe on Linux: before a direct write the kernel writes back
//! and drops any cached pages of its range, and the upload engine never writes or reads a
//! page from two requests at once (a page written directly lies wholly inside one request's
//! new bytes, and comparisons read only committed bytes, which never share a page with such
//! a write). The one way a page could still be cached while it is written directly is
//! read-ahead past a comparison's bytes, so the shared descriptor reads without read-ahead
//! (`POSIX_FADV_RANDOM`). Durability does not change: a direct write's errors are returned by the write
//! itself, and the segment is still acknowledged only after `fdatasync`, which also flushes
//! the disk's volatile cache.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Direct writes cover whole pages of this size, from memory aligned the same way (enough
/// for any logical block size up to 4 KiB, and for the memory alignment the kernel asks).
pub const PAGE: usize = 4096;

/// Whether a store writes directly. On by default; switched off for good (with one warning)
/// when the filesystem refuses `O_DIRECT`, since buffered writes are then the only way.
#[derive(Debug)]
pub(crate) struct DirectIo {
    on: AtomicBool,
    /// The store's directory: where the probe writes, and what the warning names.
    root: PathBuf,
}

impl DirectIo {
    pub(crate) fn new(on: bool, root: &Path) -> Self {
        DirectIo {
            on: AtomicBool::new(on),
            root: root.to_path_buf(),
        }
    }

    pub(crate) fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Turns direct writes off after the filesystem refused one (`why`).
    pub(crate) fn refused(&self, why: &io::Error) {
        if self.on.swap(false, Ordering::Relaxed) {
            tracing::warn!(dir = %self.root.display(), error = %why,
                "the filesystem refuses direct I/O; blobs are written through the page cache");
        }
    }

    /// Tries one direct write of a page in the store's directory (a probe file, removed
    /// again), so that a
    /// filesystem without direct I/O is found at startup rather than on the first upload.
    /// Only a refusal switches direct writes off; other failures leave the decision to the
    /// first real open.
    pub(crate) fn probe(&self) {
        if !self.is_on() {
            return;
        }
        // A dot file: never a blob key, so never taken for a blob (or counted in the quota).
        let path = self.root.join(".direct-io-probe");
        // Left over if a previous start died right here.
        let _ = std::fs::remove_file(&path);
        let result = open_direct_new(&path).and_then(|file| {
            let buf = vec![0u8; 2 * PAGE];
            let start = buf.as_ptr().align_offset(PAGE);
            write_pages(&file, &buf[start..start + PAGE], 0).map(drop)
        });
        let _ = std::fs::remove_file(&path);
        match result {
            Err(e) if unsupported(&e) => self.refused(&e),
            Err(e) => tracing::debug!(error = %e, "direct I/O probe failed; deciding on first use"),
            Ok(()) => {}
        }
    }

    /// Opens `path` for direct writes. `Ok(None)`: the filesystem has no direct I/O (direct
    /// writes are now off for the store); other errors are the open's own.
    pub(crate) fn open(&self, path: &Path) -> io::Result<Option<File>> {
        if !self.is_on() {
            return Ok(None);
        }
        match open_direct(path) {
            Ok(f) => Ok(Some(f)),
            Err(e) if unsupported(&e) => {
                self.refused(&e);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// Whether an error means "no direct I/O here" rather than a failed write.
pub(crate) fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == libc::EINVAL || code == libc::EOPNOTSUPP
    ) || e.kind() == io::ErrorKind::Unsupported
}

#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_: &Path) -> io::Result<File> {
    Err(io::ErrorKind::Unsupported.into())
}

/// A new file (an existing one is never touched) opened for direct writes.
#[cfg(target_os = "linux")]
fn open_direct_new(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_DIRECT)
        .open(path)
}

#[cfg(not(target_os = "linux"))]
fn open_direct_new(_: &Path) -> io::Result<File> {
    Err(io::ErrorKind::Unsupported.into())
}

/// How `len` bytes at file offset `offset`, held in memory at `addr`, split into a partial
/// page before, whole pages that can be written directly, and a partial page after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PageSplit {
    /// Bytes before the first whole page.
    pub head: usize,
    /// Bytes of whole pages (a multiple of [`PAGE`], never 0).
    pub pages: usize,
}

impl PageSplit {
    /// `None` when no whole page can be written directly: the memory is not aligned like the
    /// file offset, or the range holds no whole page.
    pub(crate) fn of(addr: usize, offset: u64, len: usize) -> Option<PageSplit> {
        let page = PAGE as u64;
        if addr as u64 % page != offset % page {
            return None;
        }
        let end = offset.checked_add(len as u64)?;
        let first = offset.div_ceil(page) * page;
        let last = end / page * page;
        (last > first).then(|| PageSplit {
            head: (first - offset) as usize,
            pages: (last - first) as usize,
        })
    }
}

/// Writes all of `data` at `offset` on a descriptor opened with `O_DIRECT`. A short write
/// that leaves a partial page (never seen in practice) returns how much was written, so the
/// caller writes the rest through the page cache.
pub(crate) fn write_pages(direct: &File, data: &[u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < data.len() {
        match rustix::io::pwrite(direct, &data[done..], offset + done as u64) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                done += n;
                if done % PAGE != 0 {
                    break;
                }
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_page_boundaries_when_memory_and_offset_agree() {
        let p = PAGE;
        // Aligned start and length: all pages.
        assert_eq!(
            PageSplit::of(8 * p, 0, 3 * p),
            Some(PageSplit {
                head: 0,
                pages: 3 * p
            })
        );
        // Unaligned both ends, memory shifted like the offset.
        assert_eq!(
            PageSplit::of(100, 100, 3 * p),
            Some(PageSplit {
                head: p - 100,
                pages: 2 * p
            })
        );
        // Memory not shifted like the offset: nothing direct.
        assert_eq!(PageSplit::of(0, 100, 3 * p), None);
        // No whole page inside.
        assert_eq!(PageSplit::of(100, 100, p), None);
        assert_eq!(PageSplit::of(0, 0, p - 1), None);
        assert_eq!(PageSplit::of(0, u64::MAX - 10, 100), None);
    }
}
