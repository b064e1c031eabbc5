//! The filesystem byte store against the `BlobStore` / `BlobHandle` contract.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::TryStreamExt;
use upspool_blob_fs::{FsBlobStore, READ_CHUNK_SIZE};
use upspool_domain::model::BlobKey;
use upspool_domain::store::{BlobError, BlobStore};
use uuid::Uuid;

/// Deterministic pseudo-random bytes (splitmix64), so failures reproduce.
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn new_key() -> BlobKey {
    BlobKey::for_session(Uuid::new_v4())
}

fn store() -> (tempfile::TempDir, FsBlobStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(&dir.path().join("data").join("blobs")).unwrap();
    (dir, store)
}

async fn read_all(store: &FsBlobStore, key: &BlobKey, offset: u64, len: u64) -> Vec<u8> {
    let chunks: Vec<Bytes> = store
        .read_stream(key, offset, len)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(chunks.iter().all(|c| c.len() <= READ_CHUNK_SIZE));
    chunks.concat()
}

#[tokio::test]
async fn open_creates_the_root() {
    let (_dir, store) = store();
    assert!(store.root().is_dir());
    // Opening again is fine.
    FsBlobStore::open(store.root()).unwrap();
}

#[tokio::test]
async fn created_blob_has_its_size_and_reads_as_zeros() {
    let (_dir, store) = store();
    let key = new_key();
    let size = 3 * READ_CHUNK_SIZE as u64 + 17;
    store.create(&key, size).await.unwrap();
    let meta = std::fs::metadata(store.root().join(&key.0)).unwrap();
    assert_eq!(meta.len(), size);
    let bytes = read_all(&store, &key, 0, size).await;
    assert_eq!(bytes.len() as u64, size);
    assert!(bytes.iter().all(|&b| b == 0));
    let handle = store.open(&key).await.unwrap();
    let tail = handle.read_at(size - 100, 100).await.unwrap();
    assert_eq!(&tail[..], &[0u8; 100][..]);
}

#[tokio::test]
async fn empty_blob() {
    let (_dir, store) = store();
    let key = new_key();
    store.create(&key, 0).await.unwrap();
    assert!(read_all(&store, &key, 0, 0).await.is_empty());
    let handle = store.open(&key).await.unwrap();
    assert!(handle.read_at(0, 0).await.unwrap().is_empty());
    handle.sync().await.unwrap();
}

#[tokio::test]
async fn scattered_out_of_order_writes_read_back_exactly() {
    let (_dir, store) = store();
    let key = new_key();
    let size = 3 * 1024 * 1024 + 12_345;
    let data = random_bytes(1, size);
    store.create(&key, size as u64).await.unwrap();
    let handle = store.open(&key).await.unwrap();

    // Segments of uneven sizes, written in a shuffled order, leaving two holes.
    let mut bounds = vec![0usize];
    let mut at = 0;
    for (i, r) in random_bytes(2, 64).chunks(2).enumerate() {
        at += 1 + (u16::from_le_bytes([r[0], r[1]]) as usize * 3) + i;
        if at >= size {
            break;
        }
        bounds.push(at);
    }
    bounds.push(size);
    let mut segments: Vec<(usize, usize)> = bounds.windows(2).map(|w| (w[0], w[1])).collect();
    assert!(segments.len() > 8);
    let holes = [segments.remove(3), segments.remove(6)];
    let order = random_bytes(3, segments.len());
    let mut shuffled: Vec<_> = segments.iter().zip(order).collect();
    shuffled.sort_by_key(|(_, o)| *o);

    let mut model = vec![0u8; size];
    for ((start, end), _) in shuffled {
        let chunk = Bytes::copy_from_slice(&data[*start..*end]);
        handle.write_at(*start as u64, chunk).await.unwrap();
        model[*start..*end].copy_from_slice(&data[*start..*end]);
    }
    handle.sync().await.unwrap();

    let read = read_all(&store, &key, 0, size as u64).await;
    assert_eq!(read.len(), size);
    assert!(read == model, "content differs from the model");
    for (start, end) in holes {
        assert!(read[start..end].iter().all(|&b| b == 0));
    }

    // Fill the holes through a second handle; the blob is now exactly the data.
    let other = store.open(&key).await.unwrap();
    for (start, end) in holes {
        other
            .write_at(start as u64, Bytes::copy_from_slice(&data[start..end]))
            .await
            .unwrap();
    }
    other.sync().await.unwrap();
    assert!(read_all(&store, &key, 0, size as u64).await == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_disjoint_writes_through_separate_handles() {
    let (_dir, store) = store();
    let key = new_key();
    let tasks = 32;
    let piece = 100_003; // not aligned to pages or chunks
    let size = tasks * piece;
    let data = Bytes::from(random_bytes(4, size));
    store.create(&key, size as u64).await.unwrap();

    let mut joins = Vec::new();
    for i in 0..tasks {
        let store = store.clone();
        let key = key.clone();
        let data = data.clone();
        joins.push(tokio::spawn(async move {
            let handle = store.open(&key).await.unwrap();
            // Each task writes its piece in two halves, back half first.
            let (start, mid, end) = (i * piece, i * piece + piece / 2, (i + 1) * piece);
            handle
                .write_at(mid as u64, data.slice(mid..end))
                .await
                .unwrap();
            handle
                .write_at(start as u64, data.slice(start..mid))
                .await
                .unwrap();
            handle.sync().await.unwrap();
        }));
    }
    for j in joins {
        j.await.unwrap();
    }
    assert!(read_all(&store, &key, 0, size as u64).await == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_and_syncs_through_one_handle() {
    let (_dir, store) = store();
    let key = new_key();
    let tasks = 32;
    let piece = 65_537;
    let size = tasks * piece;
    let data = Bytes::from(random_bytes(5, size));
    store.create(&key, size as u64).await.unwrap();
    let handle = store.open(&key).await.unwrap();

    let mut joins = Vec::new();
    for i in 0..tasks {
        let handle = Arc::clone(&handle);
        let data = data.clone();
        joins.push(tokio::spawn(async move {
            let start = i * piece;
            handle
                .write_at(start as u64, data.slice(start..start + piece))
                .await
                .unwrap();
            handle.sync().await.unwrap();
        }));
    }
    for j in joins {
        j.await.unwrap();
    }
    assert!(handle.read_at(0, size).await.unwrap() == data);
}

#[tokio::test]
async fn read_at_returns_exact_lengths() {
    let (_dir, store) = store();
    let key = new_key();
    let size = 10_000;
    let data = random_bytes(6, size);
    store.create(&key, size as u64).await.unwrap();
    let handle = store.open(&key).await.unwrap();
    handle
        .write_at(0, Bytes::copy_from_slice(&data[..6_000]))
        .await
        .unwrap();
    for (offset, len) in [(0, 1), (0, size), (5_999, 2), (1_234, 4_321), (9_999, 1)] {
        let got = handle.read_at(offset as u64, len).await.unwrap();
        assert_eq!(got.len(), len);
        for (i, b) in got.iter().enumerate() {
            let want = if offset + i < 6_000 {
                data[offset + i]
            } else {
                0
            };
            assert_eq!(*b, want, "byte {}", offset + i);
        }
    }
    // Past the end is refused, not a short read.
    assert!(handle.read_at(9_999, 2).await.is_err());
    assert!(handle.read_at(u64::MAX, 1).await.is_err());
}

#[tokio::test]
async fn writes_outside_the_blob_are_refused() {
    let (_dir, store) = store();
    let key = new_key();
    store.create(&key, 100).await.unwrap();
    let handle = store.open(&key).await.unwrap();
    assert!(handle
        .write_at(99, Bytes::from_static(b"ab"))
        .await
        .is_err());
    assert!(handle
        .write_at(u64::MAX, Bytes::from_static(b"a"))
        .await
        .is_err());
    handle
        .write_at(98, Bytes::from_static(b"ab"))
        .await
        .unwrap();
    assert_eq!(
        std::fs::metadata(store.root().join(&key.0)).unwrap().len(),
        100
    );
}

#[tokio::test]
async fn read_stream_of_a_sub_range_spans_chunks() {
    let (_dir, store) = store();
    let key = new_key();
    let size = 5 * READ_CHUNK_SIZE + 999;
    let data = random_bytes(7, size);
    store.create(&key, size as u64).await.unwrap();
    let handle = store.open(&key).await.unwrap();
    handle.write_at(0, Bytes::from(data.clone())).await.unwrap();
    handle.sync().await.unwrap();

    let c = READ_CHUNK_SIZE;
    for (offset, len) in [
        (c - 1, 2),
        (c - 10, 2 * c + 20),
        (1, size - 1),
        (3 * c, c),
        (size - 1, 1),
        (size, 0),
        (12_345, 3 * c + 7),
    ] {
        let got = read_all(&store, &key, offset as u64, len as u64).await;
        assert_eq!(got.len(), len, "offset {offset} len {len}");
        assert!(
            got == data[offset..offset + len],
            "offset {offset} len {len}"
        );
    }
}

#[tokio::test]
async fn read_stream_past_the_end_fails() {
    let (_dir, store) = store();
    let key = new_key();
    store.create(&key, 1_000).await.unwrap();
    assert!(matches!(
        store.read_stream(&key, 500, 501).await,
        Err(BlobError::Io(_))
    ));
    assert!(store.read_stream(&key, u64::MAX, 2).await.is_err());
    assert!(matches!(
        store.read_stream(&new_key(), 0, 1).await,
        Err(BlobError::NotFound)
    ));
}

#[tokio::test]
async fn read_stream_errors_if_the_file_shrinks_meanwhile() {
    let (_dir, store) = store();
    let key = new_key();
    let size = 4 * READ_CHUNK_SIZE as u64;
    store.create(&key, size).await.unwrap();
    let mut s = store.read_stream(&key, 0, size).await.unwrap();
    let first = s.try_next().await.unwrap().unwrap();
    assert_eq!(first.len(), READ_CHUNK_SIZE);
    std::fs::OpenOptions::new()
        .write(true)
        .open(store.root().join(&key.0))
        .unwrap()
        .set_len(2 * READ_CHUNK_SIZE as u64 + 1)
        .unwrap();
    assert_eq!(s.try_next().await.unwrap().unwrap().len(), READ_CHUNK_SIZE);
    assert!(s.try_next().await.is_err());
    assert!(
        s.try_next().await.unwrap().is_none(),
        "stream ends after an error"
    );
}

#[tokio::test]
async fn create_on_an_existing_key_fails_and_keeps_the_data() {
    let (_dir, store) = store();
    let key = new_key();
    store.create(&key, 10).await.unwrap();
    let handle = store.open(&key).await.unwrap();
    handle
        .write_at(0, Bytes::from_static(b"0123456789"))
        .await
        .unwrap();
    handle.sync().await.unwrap();
    assert!(store.create(&key, 10).await.is_err());
    assert!(store.create(&key, 0).await.is_err());
    assert_eq!(read_all(&store, &key, 0, 10).await, b"0123456789");
}

#[tokio::test]
async fn delete_is_idempotent_and_open_after_delete_is_not_found() {
    let (_dir, store) = store();
    let key = new_key();
    store.create(&key, 10).await.unwrap();
    store.delete(&key).await.unwrap();
    store.delete(&key).await.unwrap();
    assert!(!store.root().join(&key.0).exists());
    assert!(matches!(store.open(&key).await, Err(BlobError::NotFound)));
    assert!(matches!(
        store.read_stream(&key, 0, 0).await,
        Err(BlobError::NotFound)
    ));
    store.delete(&new_key()).await.unwrap();
}

#[tokio::test]
async fn invalid_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(&dir.path().join("blobs")).unwrap();
    let long = "a".repeat(129);
    for bad in [
        "../x",
        "a/b",
        "",
        "..",
        ".",
        "/etc/passwd",
        "a\0b",
        "a b",
        "é",
        &long,
    ] {
        let key = BlobKey(bad.to_string());
        let invalid = |r: Result<(), BlobError>| matches!(r, Err(BlobError::Io(m)) if m == "invalid blob key");
        assert!(invalid(store.create(&key, 1).await), "{bad:?}");
        assert!(invalid(store.open(&key).await.map(|_| ())), "{bad:?}");
        assert!(
            invalid(store.read_stream(&key, 0, 0).await.map(|_| ())),
            "{bad:?}"
        );
        assert!(invalid(store.delete(&key).await), "{bad:?}");
    }
    // Nothing was created anywhere: the temp dir holds only the (empty) root.
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(entries.len(), 1);
    assert_eq!(std::fs::read_dir(store.root()).unwrap().count(), 0);
    // The longest valid key works.
    let max = BlobKey("Z".repeat(128));
    store.create(&max, 1).await.unwrap();
    store.delete(&max).await.unwrap();
}

/// A real full disk. Needs a small filesystem, so it runs only when `UPSPOOL_TEST_SMALL_FS`
/// names a writable directory on one (at most 8 MiB free), e.g. as an unprivileged user:
///
/// ```sh
/// unshare --user --map-root-user --mount sh -c \
///   'mkdir -p /tmp/small && mount -t tmpfs -o size=1m tmpfs /tmp/small &&
///    UPSPOOL_TEST_SMALL_FS=/tmp/small cargo test -p upspool-blob-fs --test fs_store disk_full'
/// ```
#[tokio::test]
async fn disk_full_is_storage_full() {
    let Some(dir) = std::env::var_os("UPSPOOL_TEST_SMALL_FS") else {
        eprintln!("UPSPOOL_TEST_SMALL_FS not set; skipped");
        return;
    };
    let store = FsBlobStore::open(&std::path::Path::new(&dir).join("blobs")).unwrap();
    let key = new_key();
    let size = 16 * 1024 * 1024;
    // Sparse: creating succeeds whatever the free space.
    store.create(&key, size as u64).await.unwrap();
    let handle = store.open(&key).await.unwrap();
    let data = Bytes::from(random_bytes(8, size));
    let mut result = Ok(());
    for start in (0..size).step_by(1024 * 1024) {
        result = handle
            .write_at(start as u64, data.slice(start..start + 1024 * 1024))
            .await;
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        result = handle.sync().await;
    }
    assert!(matches!(result, Err(BlobError::StorageFull)), "{result:?}");
    drop(handle);
    store.delete(&key).await.unwrap();
}

#[tokio::test]
async fn the_quota_counts_declared_sizes_and_frees_them_on_delete() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("blobs");
    let store = FsBlobStore::open_with_quota(&root, Some(1000)).unwrap();
    let (a, b, c) = (new_key(), new_key(), new_key());
    store.create(&a, 600).await.unwrap();
    assert!(matches!(
        store.create(&b, 401).await,
        Err(BlobError::StorageFull)
    ));
    assert!(
        !root.join(&b.0).exists(),
        "nothing created for a refused blob"
    );
    store.create(&b, 400).await.unwrap();
    assert_eq!(store.quota_used(), Some(1000));

    // Reopening counts what is there.
    let reopened = FsBlobStore::open_with_quota(&root, Some(1000)).unwrap();
    assert_eq!(reopened.quota_used(), Some(1000));
    assert!(matches!(
        reopened.create(&c, 1).await,
        Err(BlobError::StorageFull)
    ));
    reopened.delete(&a).await.unwrap();
    reopened.delete(&a).await.unwrap();
    assert_eq!(
        reopened.quota_used(),
        Some(400),
        "a second delete frees nothing"
    );
    reopened.create(&c, 600).await.unwrap();
    // A failed create (existing key) gives its reservation back.
    assert!(reopened.create(&c, 1).await.is_err());
    assert_eq!(reopened.quota_used(), Some(1000));
}

/// Which of a file's pages are in the page cache (`mincore` over a read-only mapping).
fn cached_pages(path: &std::path::Path) -> Vec<bool> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).unwrap();
    let len = file.metadata().unwrap().len() as usize;
    let page = 4096;
    // SAFETY: a fresh read-only shared mapping of an open file, unmapped below; mincore
    // writes one byte per page into a vector of exactly that many bytes.
    unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(addr, libc::MAP_FAILED);
        let mut vec = vec![0u8; len.div_ceil(page)];
        assert_eq!(libc::mincore(addr, len, vec.as_mut_ptr()), 0);
        libc::munmap(addr, len);
        vec.into_iter().map(|b| b & 1 == 1).collect()
    }
}

/// `data` in memory whose address is congruent to `offset` modulo 4096, as the upload engine
/// gathers blocks for a store that asks for that alignment.
fn aligned_like(offset: u64, data: &[u8]) -> Bytes {
    let mut buf = bytes::BytesMut::with_capacity(data.len() + 4096);
    let pad = (offset as usize % 4096 + 4096 - buf.as_ptr() as usize % 4096) % 4096;
    buf.resize(pad, 0);
    buf.extend_from_slice(data);
    buf.freeze().slice(pad..)
}

/// Whole pages of an aligned write bypass the page cache; the partial pages at its edges go
/// through it; the bytes read back exactly either way. Fails if direct writes silently fall
/// back to buffered ones (every page would then be cached).
#[tokio::test]
async fn whole_pages_are_written_uncached_and_edges_through_the_cache() {
    let (_dir, store) = store();
    assert!(store.writes_directly(), "direct I/O is the default");
    let key = new_key();
    let size = 64 * 4096;
    store.create(&key, size as u64).await.unwrap();
    let handle = store.open(&key).await.unwrap();
    assert_eq!(handle.write_alignment(), Some(4096));
    assert!(
        store.writes_directly(),
        "this test's filesystem takes O_DIRECT (ext4 or tmpfs on Linux >= 6.6)"
    );
    let data = random_bytes(21, size);
    // From the middle of page 1 to the middle of page 40: pages 2..=39 are whole.
    let (from, to) = (4096 + 100, 40 * 4096 + 7);
    let part = aligned_like(from as u64, &data[from..to]);
    handle
        .write_parts_at(from as u64, vec![part])
        .await
        .unwrap();
    handle.sync().await.unwrap();
    let cached = cached_pages(&store.root().join(&key.0));
    assert!(cached[1] && cached[40], "edge pages went through the cache");
    let whole: Vec<usize> = (2..40).filter(|&p| cached[p]).collect();
    assert!(whole.is_empty(), "whole pages were cached: {whole:?}");
    let mut expected = vec![0u8; size];
    expected[from..to].copy_from_slice(&data[from..to]);
    assert_eq!(read_all(&store, &key, 0, size as u64).await, expected);

    // Memory not aligned like the offset: written through the cache, still exact.
    let unaligned = Bytes::copy_from_slice(&data[48 * 4096 + 1..60 * 4096 + 1]);
    let unaligned = if (unaligned.as_ptr() as usize).is_multiple_of(4096) {
        unaligned.slice(1..)
    } else {
        unaligned
    };
    let at = 48 * 4096;
    handle
        .write_parts_at(at as u64, vec![unaligned.clone()])
        .await
        .unwrap();
    handle.sync().await.unwrap();
    assert!(cached_pages(&store.root().join(&key.0))[50]);
    expected[at..at + unaligned.len()].copy_from_slice(&unaligned);
    assert_eq!(read_all(&store, &key, 0, size as u64).await, expected);
}

/// With direct I/O switched off, every write goes through the page cache and the engine is
/// not asked for aligned blocks.
#[tokio::test]
async fn direct_io_can_be_switched_off() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(&dir.path().join("blobs"))
        .unwrap()
        .direct_io(false);
    assert!(!store.writes_directly());
    let key = new_key();
    store.create(&key, 16 * 4096).await.unwrap();
    let handle = store.open(&key).await.unwrap();
    assert_eq!(handle.write_alignment(), None);
    let data = random_bytes(22, 16 * 4096);
    handle
        .write_parts_at(0, vec![aligned_like(0, &data)])
        .await
        .unwrap();
    handle.sync().await.unwrap();
    let cached = cached_pages(&store.root().join(&key.0));
    assert!(cached.iter().all(|&c| c), "{cached:?}");
    assert_eq!(read_all(&store, &key, 0, data.len() as u64).await, data);
}

/// `allocate` gives a range its blocks without changing the blob's size or its bytes, and
/// refuses ranges outside the blob.
#[tokio::test]
async fn allocate_reserves_blocks_and_keeps_size_and_bytes() {
    use std::os::unix::fs::MetadataExt;
    let (_dir, store) = store();
    let key = new_key();
    let size = 8 << 20;
    store.create(&key, size).await.unwrap();
    let path = store.root().join(&key.0);
    let before = std::fs::metadata(&path).unwrap();
    let handle = store.open(&key).await.unwrap();
    handle
        .write_at(100, Bytes::from_static(b"kept"))
        .await
        .unwrap();
    handle.allocate(0, 4 << 20).await.unwrap();
    let after = std::fs::metadata(&path).unwrap();
    assert_eq!(after.len(), size);
    // st_blocks counts 512-byte units.
    assert!(
        after.blocks() * 512 >= 4 << 20,
        "allocated {} bytes, had {}",
        after.blocks() * 512,
        before.blocks() * 512
    );
    assert_eq!(&handle.read_at(100, 4).await.unwrap()[..], b"kept");
    assert_eq!(&handle.read_at(0, 100).await.unwrap()[..], &[0u8; 100][..]);
    assert!(handle.allocate(size - 1, 2).await.is_err());
}

/// Switching direct I/O on probes the filesystem with a file of the store's own (a dot file,
/// never a blob), which is removed again, also when a crashed start left it behind; such files
/// never count against the quota.
#[tokio::test]
async fn the_direct_io_probe_leaves_nothing_and_is_not_a_blob() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("blobs");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join(".direct-io-probe"), [7u8; 100]).unwrap();
    let store = FsBlobStore::open_with_quota(&root, Some(10)).unwrap();
    assert_eq!(store.quota_used(), Some(0));
    let store = store.direct_io(true);
    assert!(store.writes_directly());
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
    store.create(&new_key(), 10).await.unwrap();
    assert_eq!(store.quota_used(), Some(10));
}
