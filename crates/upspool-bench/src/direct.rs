//! The machine's own limits: the same bytes written to (or read from) the same filesystem
//! with the same pattern and the same sync policy as upspool, without upspool. Blocking; each
//! call runs its own threads.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use memmap2::MmapMut;

/// How item 1's direct writers put bytes into the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// Positional writes through the page cache (the limit as the issue first described it).
    Buffered,
    /// The same, starting each piece's writeback as soon as it is written
    /// (`sync_file_range`), as upspool's byte store did before it wrote uncached.
    Writeback,
    /// As upspool's byte store writes now: each segment's space allocated first
    /// (`fallocate`), then its pieces written with `O_DIRECT` from memory in huge pages
    /// ([`aligned_copy`]), up to [`UNCACHED_IN_FLIGHT`] at once, each by a thread.
    Uncached,
    /// The same writes queued on an `io_uring` by one thread instead (where the kernel has
    /// none, the same as `Uncached`): not the byte store's pattern, but a faster direct way
    /// to write on some machines (BENCHMARKS.md, finding 26), so part of the limit.
    UncachedRing,
}

/// Pieces of one segment written at once in [`WriteMode::Uncached`], as upspool's engine
/// keeps that many block writes of one request in flight.
pub const UNCACHED_IN_FLIGHT: usize = 8;

/// Direct I/O needs memory, offsets and lengths aligned to this.
const PAGE: usize = 4096;

/// A transparent huge page (x86-64, aarch64 with 4 KiB pages).
const HUGE_PAGE: usize = 2 << 20;

/// How item 1 writes a document, shared by the direct and the loopback baselines.
#[derive(Clone, Copy, Debug)]
pub struct Segments {
    /// The document's size.
    pub size: u64,
    /// Each segment is made durable (`fdatasync`) before its writer takes the next.
    pub segment: usize,
    /// Writers taking the next segment in turn.
    pub streams: usize,
    /// Positional write size within a segment (as upspool's engine writes).
    pub io: usize,
    pub mode: WriteMode,
}

/// A file opened for one of the write modes: the buffered descriptor (for syncs, and for
/// writes unless uncached) and, for [`WriteMode::Uncached`], an `O_DIRECT` one.
pub struct Target {
    file: File,
    direct: Option<File>,
}

impl Target {
    /// `fdatasync` of the file: a segment's durability, whichever way it was written.
    pub(crate) fn sync_data(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

impl Segments {
    /// Hands out the next segment to whichever writer asks.
    fn cursor(&self) -> Cursor {
        Cursor {
            next: AtomicU64::new(0),
            size: self.size,
            segment: self.segment as u64,
        }
    }

    /// Opens `path` (already created) for this plan's mode.
    pub(crate) fn open(&self, file: File, path: &Path) -> anyhow::Result<Target> {
        let direct = match self.mode {
            WriteMode::Uncached | WriteMode::UncachedRing => Some(
                OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_DIRECT)
                    .open(path)
                    .with_context(|| format!("open {} with O_DIRECT", path.display()))?,
            ),
            _ => None,
        };
        Ok(Target { file, direct })
    }

    /// Writes `piece` at `pos` as the mode says. `piece` must be page-aligned in memory when
    /// uncached (see [`aligned_copy`]).
    pub(crate) fn write_piece(&self, t: &Target, piece: &[u8], pos: u64) -> std::io::Result<()> {
        match (&t.direct, self.mode) {
            (Some(direct), _)
                if piece.len().is_multiple_of(PAGE) && pos.is_multiple_of(PAGE as u64) =>
            {
                direct.write_all_at(piece, pos)
            }
            (_, mode) => {
                t.file.write_all_at(piece, pos)?;
                if mode != WriteMode::Buffered {
                    start_writeback(&t.file, pos, piece.len());
                }
                Ok(())
            }
        }
    }

    /// In [`WriteMode::Uncached`], allocates `len` bytes at `at` (keeping the file's size),
    /// as the byte store does before writing a segment of more than one piece.
    pub(crate) fn allocate(&self, t: &Target, at: u64, len: usize) -> std::io::Result<()> {
        if !matches!(self.mode, WriteMode::Uncached | WriteMode::UncachedRing) {
            return Ok(());
        }
        // SAFETY: a syscall on an open descriptor; no memory is passed.
        let rc = unsafe {
            libc::fallocate(
                t.file.as_raw_fd(),
                libc::FALLOC_FL_KEEP_SIZE,
                at as i64,
                len as i64,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Writes `data` at `at` in `io`-sized direct writes, [`UNCACHED_IN_FLIGHT`] at a time,
    /// queued on an `io_uring` and reaped by this thread; a piece that is not whole pages is
    /// written as [`Self::write_piece`] does. `false` (nothing written) where the kernel
    /// offers no ring: the caller writes with threads instead.
    fn write_through_ring(&self, t: &Target, data: &[u8], at: u64) -> std::io::Result<bool> {
        use io_uring::{opcode, types, IoUring};
        let Some(direct) = &t.direct else {
            return Ok(false);
        };
        let Ok(mut ring) = IoUring::new(2 * UNCACHED_IN_FLIGHT as u32) else {
            return Ok(false);
        };
        let pieces: Vec<(usize, usize)> = (0..data.len())
            .step_by(self.io)
            .map(|from| (from, (from + self.io).min(data.len())))
            .collect();
        let (mut next, mut in_flight, mut failed) = (0, 0, None);
        while next < pieces.len() || in_flight > 0 {
            while failed.is_none() && in_flight < UNCACHED_IN_FLIGHT && next < pieces.len() {
                let (from, to) = pieces[next];
                next += 1;
                let piece = &data[from..to];
                if !piece.len().is_multiple_of(PAGE) {
                    if let Err(e) = self.write_piece(t, piece, at + from as u64) {
                        failed.get_or_insert(e);
                    }
                    continue;
                }
                let entry = opcode::Write::new(
                    types::Fd(direct.as_raw_fd()),
                    piece.as_ptr(),
                    piece.len() as u32,
                )
                .offset(at + from as u64)
                .build()
                .user_data(from as u64);
                // SAFETY: `data` outlives the ring's use of it: every queued write is
                // reaped below before this function returns, also after a failure.
                unsafe { ring.submission().push(&entry) }
                    .expect("the ring has room for every write in flight");
                in_flight += 1;
            }
            if in_flight == 0 {
                if failed.is_some() {
                    break;
                }
                continue;
            }
            if let Err(e) = ring.submit_and_wait(1) {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                // Nothing more can be reaped, and returning would let the caller free
                // `data` while the kernel may still read it.
                panic!("io_uring wait failed with writes in flight: {e}");
            }
            let done: Vec<(u64, i32)> = ring
                .completion()
                .map(|c| (c.user_data(), c.result()))
                .collect();
            for (from, result) in done {
                in_flight -= 1;
                if result < 0 {
                    failed.get_or_insert(std::io::Error::from_raw_os_error(-result));
                    continue;
                }
                let (from, to) = pieces[from as usize / self.io];
                let written = result as usize;
                if from + written < to {
                    let rest = &data[from + written..to];
                    if let Err(e) = self.write_piece(t, rest, at + (from + written) as u64) {
                        failed.get_or_insert(e);
                    }
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(true),
        }
    }

    /// Writes one segment (`data` at `at`) in `io`-sized pieces and makes it durable.
    fn write_segment(&self, t: &Target, data: &[u8], at: u64) -> std::io::Result<()> {
        if matches!(self.mode, WriteMode::Uncached | WriteMode::UncachedRing) {
            self.allocate(t, at, data.len())?;
            if self.mode == WriteMode::UncachedRing && self.write_through_ring(t, data, at)? {
                return t.file.sync_data();
            }
            let next = AtomicU64::new(0);
            std::thread::scope(|s| {
                let writers: Vec<_> = (0..UNCACHED_IN_FLIGHT)
                    .map(|_| {
                        s.spawn(|| -> std::io::Result<()> {
                            loop {
                                let from = next.fetch_add(self.io as u64, Ordering::Relaxed);
                                if from >= data.len() as u64 {
                                    return Ok(());
                                }
                                let from = from as usize;
                                let piece = &data[from..(from + self.io).min(data.len())];
                                self.write_piece(t, piece, at + from as u64)?;
                            }
                        })
                    })
                    .collect();
                writers
                    .into_iter()
                    .try_for_each(|w| w.join().expect("writer thread"))
            })?;
        } else {
            for (i, piece) in data.chunks(self.io).enumerate() {
                self.write_piece(t, piece, at + (i * self.io) as u64)?;
            }
        }
        t.file.sync_data()
    }
}

/// `data` copied into memory aligned to a huge page and advised to be backed by huge pages,
/// as the byte store's blocks are (direct I/O reads the writer's memory itself, and a virtio
/// disk pays per physically contiguous piece of it: BENCHMARKS.md, finding 22). Returns the
/// mapping and where the copy starts in it.
pub fn aligned_copy(data: &[u8]) -> anyhow::Result<(MmapMut, usize)> {
    // Whole huge pages: the kernel backs only a whole, aligned 2 MiB range with one.
    let huge = data.len().next_multiple_of(HUGE_PAGE);
    let mut buf = MmapMut::map_anon(huge + HUGE_PAGE).context("map anonymous memory")?;
    let start = buf.as_ptr().align_offset(HUGE_PAGE);
    #[cfg(target_os = "linux")]
    let _ = buf.advise_range(memmap2::Advice::HugePage, start, huge);
    buf[start..start + data.len()].copy_from_slice(data);
    Ok((buf, start))
}

/// The next segment's offset, shared by the writers of one run.
struct Cursor {
    next: AtomicU64,
    size: u64,
    segment: u64,
}

impl Cursor {
    /// `(offset, length)` of the next segment, or `None` when all are taken.
    fn take(&self) -> Option<(u64, usize)> {
        let at = self.next.fetch_add(self.segment, Ordering::Relaxed);
        (at < self.size).then(|| (at, (self.size - at).min(self.segment) as usize))
    }
}

/// A scratch directory beside the servers' data directories, removed when dropped.
pub struct Scratch(tempfile::TempDir);

impl Scratch {
    pub fn new(parent: &Path) -> anyhow::Result<Self> {
        Ok(Scratch(
            tempfile::Builder::new()
                .prefix("upspool-bench-direct-")
                .tempdir_in(parent)?,
        ))
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    /// What `FsBlobStore::create` does: a new sparse file at full size, synced with its
    /// directory.
    pub(crate) fn create(&self, name: &str, size: u64) -> anyhow::Result<File> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(self.path(name))?;
        f.set_len(size)?;
        f.sync_all()?;
        File::open(self.0.path())?.sync_all()?;
        Ok(f)
    }

    /// A document written as `plan` says by `plan.streams` threads, each segment `fdatasync`ed
    /// before its thread takes the next: what a client sees as "acknowledged means durable".
    /// Returns the time for all of it.
    pub fn write_segments(&self, plan: Segments, data: &[u8]) -> anyhow::Result<Duration> {
        let name = format!("segments-{}", plan.streams);
        let target = plan.open(self.create(&name, plan.size)?, &self.path(&name))?;
        let (aligned, start) = aligned_copy(&data[..plan.segment])?;
        let data = &aligned[start..start + plan.segment];
        let cursor = plan.cursor();
        let started = Instant::now();
        std::thread::scope(|s| -> anyhow::Result<()> {
            let workers: Vec<_> = (0..plan.streams)
                .map(|_| {
                    s.spawn(|| -> anyhow::Result<()> {
                        while let Some((at, len)) = cursor.take() {
                            plan.write_segment(&target, &data[..len], at)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for w in workers {
                w.join().expect("writer thread")?;
            }
            Ok(())
        })?;
        let took = started.elapsed();
        std::fs::remove_file(self.path(&name))?;
        Ok(took)
    }

    /// What item 3 times, done directly: a new `size`-byte file is written but for its last
    /// `tail` bytes in `segment`-sized pieces (each synced), then the tail is written and
    /// synced; returns the time of that last write and sync.
    pub fn final_write(
        &self,
        size: u64,
        segment: usize,
        tail: usize,
        data: &[u8],
    ) -> anyhow::Result<Duration> {
        let file = self.create("final", size)?;
        let body = size - tail as u64;
        let mut at = 0;
        while at < body {
            let len = (body - at).min(segment as u64) as usize;
            file.write_all_at(&data[..len], at)?;
            file.sync_data()?;
            at += len as u64;
        }
        let started = Instant::now();
        file.write_all_at(&data[..tail], body)?;
        file.sync_data()?;
        let took = started.elapsed();
        std::fs::remove_file(self.path("final"))?;
        Ok(took)
    }

    /// `threads` threads, each with its own file of `per_thread` pieces of `data`, each piece
    /// written and `fdatasync`ed: the total time and every piece's latency.
    pub fn small_writes(
        &self,
        threads: usize,
        per_thread: usize,
        data: &[u8],
    ) -> anyhow::Result<(Duration, Vec<Duration>)> {
        let size = (per_thread * data.len()) as u64;
        let files: Vec<File> = (0..threads)
            .map(|i| self.create(&format!("small-{i}"), size))
            .collect::<anyhow::Result<_>>()?;
        let started = Instant::now();
        let lat = std::thread::scope(|s| -> anyhow::Result<Vec<Duration>> {
            let workers: Vec<_> = files
                .iter()
                .map(|f| {
                    s.spawn(move || -> anyhow::Result<Vec<Duration>> {
                        let mut v = Vec::with_capacity(per_thread);
                        for i in 0..per_thread {
                            let t = Instant::now();
                            f.write_all_at(data, (i * data.len()) as u64)?;
                            f.sync_data()?;
                            v.push(t.elapsed());
                        }
                        Ok(v)
                    })
                })
                .collect();
            let mut all = Vec::new();
            for w in workers {
                all.extend(w.join().expect("writer thread")?);
            }
            Ok(all)
        })?;
        let took = started.elapsed();
        for i in 0..threads {
            std::fs::remove_file(self.path(&format!("small-{i}")))?;
        }
        Ok((took, lat))
    }

    /// The irreducible I/O of `count` new documents of `data.len()` bytes by `threads` threads:
    /// create the file (as the byte store does), write the bytes, `fdatasync`. With an empty
    /// `data` it is just the creation (the I/O of createUploadSession). Returns the total time
    /// and each document's latency.
    pub fn documents(
        &self,
        count: usize,
        threads: usize,
        data: &[u8],
    ) -> anyhow::Result<(Duration, Vec<Duration>)> {
        let next = AtomicU64::new(0);
        let started = Instant::now();
        let lat = std::thread::scope(|s| -> anyhow::Result<Vec<Duration>> {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| -> anyhow::Result<Vec<Duration>> {
                        let mut v = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= count as u64 {
                                return Ok(v);
                            }
                            let t = Instant::now();
                            let f = self.create(&format!("doc-{i}"), data.len().max(1) as u64)?;
                            if !data.is_empty() {
                                f.write_all_at(data, 0)?;
                                f.sync_data()?;
                            }
                            v.push(t.elapsed());
                        }
                    })
                })
                .collect();
            let mut all = Vec::new();
            for w in workers {
                all.extend(w.join().expect("document thread")?);
            }
            Ok(all)
        })?;
        let took = started.elapsed();
        for i in 0..count {
            std::fs::remove_file(self.path(&format!("doc-{i}")))?;
        }
        Ok((took, lat))
    }
}

/// Reads a whole file in `chunk`-sized reads; returns the byte count and the time taken.
pub fn read_file(path: &Path, chunk: usize) -> anyhow::Result<(u64, Duration)> {
    let mut f = File::open(path).with_context(|| format!("open {}", path.display()))?;
    // The same advice upspool's byte store gives for a download: read in order.
    // SAFETY: a syscall on an open descriptor; no memory is passed.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL) };
    let mut buf = vec![0u8; chunk];
    let mut n = 0u64;
    let started = Instant::now();
    loop {
        match f.read(&mut buf)? {
            0 => break,
            k => n += k as u64,
        }
    }
    Ok((n, started.elapsed()))
}

/// Starts writing a just-written piece to the disk without waiting for it, as upspool's byte
/// store does after each block (see `upspool-blob-fs`); the `fdatasync` still follows.
fn start_writeback(file: &File, offset: u64, len: usize) {
    // SAFETY: a syscall on an open descriptor; no memory is passed.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as i64,
            len as i64,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// Drops a file's cached pages (they are clean: written and synced), so that the next read
/// comes from the disk.
pub fn evict(path: &Path) -> anyhow::Result<()> {
    let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    // SAFETY: a syscall on an open descriptor; no memory is passed.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    anyhow::ensure!(
        rc == 0,
        "posix_fadvise(DONTNEED) on {}: {rc}",
        path.display()
    );
    Ok(())
}

/// A scratch directory for tests: beside the crate, not in /tmp, which may be a tmpfs
/// without `O_DIRECT`.
#[cfg(test)]
pub(crate) fn test_scratch() -> Scratch {
    Scratch::new(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("scratch directory")
}

/// A small plan for tests: three segments of 1 MiB and a last one of 1 000 bytes (neither
/// whole pages nor a whole block), one stream.
#[cfg(test)]
pub(crate) fn test_plan(mode: WriteMode) -> Segments {
    Segments {
        size: 3 * (1 << 20) + 1000,
        segment: 1 << 20,
        streams: 1,
        io: 256 << 10,
        mode,
    }
}

/// Test check: the file at `path` holds `plan.size` bytes, every segment of it the first
/// bytes of `data` (each writer sends `data[..len]` as every segment).
#[cfg(test)]
pub(crate) fn assert_each_segment_is(path: &Path, plan: Segments, data: &[u8], what: &str) {
    let written = std::fs::read(path).expect("the written file");
    assert_eq!(written.len() as u64, plan.size, "{what}: file size");
    for (i, segment) in written.chunks(plan.segment).enumerate() {
        assert!(
            segment == &data[..segment.len()],
            "{what}: segment {i} differs"
        );
    }
}

/// The network part of the machine's limit: upspool's clients reach it over TCP, and on
/// loopback every byte is copied by the sender into the socket and by the receiver out of it,
/// on the same cores as the disk writes. These baselines do that and the same file I/O with no
/// HTTP, no metadata and no upspool, so the ratio beside them is upspool's own overhead.
pub mod loopback {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::{mpsc, Mutex};

    use super::*;

    /// Like [`Scratch::write_segments`], but every segment first crosses a loopback TCP
    /// connection per stream: the sender writes a 16-byte header (offset, length) and the
    /// bytes; the receiver reads them in `plan.io`-sized pieces straight into aligned buffers
    /// in huge pages ([`aligned_copy`]) and hands each to [`UNCACHED_IN_FLIGHT`] writer
    /// threads while it reads the next (as upspool's engine overlaps receiving and writing),
    /// then waits for the segment's writes, `fdatasync`s and answers one byte, which the
    /// sender waits for before its next segment (request, durable write, acknowledgement).
    /// One copy per byte on each side of the socket, no HTTP, no metadata: the fastest a
    /// networked writer of this pattern gets here.
    pub fn write_segments(
        scratch: &Scratch,
        plan: Segments,
        data: &[u8],
    ) -> anyhow::Result<Duration> {
        let name = format!("tcp-segments-{}", plan.streams);
        let took = send_segments(scratch, &name, plan, data)?;
        std::fs::remove_file(scratch.path(&name))?;
        Ok(took)
    }

    /// [`write_segments`] into the scratch file `name`, which is left for the caller.
    fn send_segments(
        scratch: &Scratch,
        name: &str,
        plan: Segments,
        data: &[u8],
    ) -> anyhow::Result<Duration> {
        let target = plan.open(scratch.create(name, plan.size)?, &scratch.path(name))?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let cursor = plan.cursor();
        let started = Instant::now();
        std::thread::scope(|s| -> anyhow::Result<()> {
            let mut threads = Vec::new();
            for _ in 0..plan.streams {
                let mut conn = TcpStream::connect(addr)?;
                let (peer, _) = listener.accept()?;
                // Like hyper's server and reqwest: small writes go out at once.
                conn.set_nodelay(true)?;
                peer.set_nodelay(true)?;
                let (target, cursor) = (&target, &cursor);
                threads.push(s.spawn(move || receive(peer, plan, target)));
                threads.push(s.spawn(move || -> anyhow::Result<()> {
                    let mut ack = [0u8; 1];
                    while let Some((at, len)) = cursor.take() {
                        let len = len as u64;
                        // One write for the header: two small writes would wait on Nagle's
                        // algorithm and the peer's delayed ACK (40 ms a segment).
                        let mut header = [0u8; 16];
                        header[..8].copy_from_slice(&at.to_le_bytes());
                        header[8..].copy_from_slice(&len.to_le_bytes());
                        conn.write_all(&header)?;
                        conn.write_all(&data[..len as usize])?;
                        conn.read_exact(&mut ack)?;
                    }
                    conn.shutdown(std::net::Shutdown::Write)?;
                    Ok(())
                }));
            }
            for t in threads {
                t.join().expect("loopback thread")?;
            }
            Ok(())
        })?;
        Ok(started.elapsed())
    }

    /// One stream's receiving end of [`write_segments`].
    fn receive(mut peer: TcpStream, plan: Segments, target: &Target) -> anyhow::Result<()> {
        // A piece being read plus the ones being written.
        let (free_tx, free_rx) = mpsc::channel::<(MmapMut, usize)>();
        for _ in 0..=UNCACHED_IN_FLIGHT {
            free_tx.send(aligned_copy(&vec![0u8; plan.io])?)?;
        }
        let (work_tx, work_rx) = mpsc::channel::<((MmapMut, usize), usize, u64)>();
        let work_rx = Mutex::new(work_rx);
        let (done_tx, done_rx) = mpsc::channel::<std::io::Result<()>>();
        std::thread::scope(|s| -> anyhow::Result<()> {
            for _ in 0..UNCACHED_IN_FLIGHT {
                let (work_rx, free_tx, done_tx) = (&work_rx, free_tx.clone(), done_tx.clone());
                s.spawn(move || loop {
                    let next = work_rx.lock().expect("work queue").recv();
                    let Ok(((buf, start), len, at)) = next else {
                        return;
                    };
                    let wrote = plan.write_piece(target, &buf[start..start + len], at);
                    // The receiver may be gone after an error; nothing then waits for these.
                    let _ = free_tx.send((buf, start));
                    let _ = done_tx.send(wrote);
                });
            }
            let result = (|| -> anyhow::Result<()> {
                let mut header = [0u8; 16];
                loop {
                    match peer.read_exact(&mut header) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                        Err(e) => return Err(e.into()),
                    }
                    let at = u64::from_le_bytes(header[..8].try_into()?);
                    let len = u64::from_le_bytes(header[8..].try_into()?) as usize;
                    plan.allocate(target, at, len)?;
                    let mut pieces = 0;
                    for from in (0..len).step_by(plan.io) {
                        let n = (len - from).min(plan.io);
                        let (mut buf, start) = free_rx.recv()?;
                        peer.read_exact(&mut buf[start..start + n])?;
                        work_tx.send(((buf, start), n, at + from as u64))?;
                        pieces += 1;
                    }
                    for _ in 0..pieces {
                        done_rx.recv()??;
                    }
                    target.file.sync_data()?;
                    peer.write_all(&[1])?;
                }
            })();
            // Closing the queue ends the writer threads.
            drop(work_tx);
            result
        })
    }

    /// A file sent over one loopback TCP connection: `chunk`-sized positional reads, one
    /// thread reading up to two chunks ahead of the one writing them to the socket (as upspool
    /// reads ahead of what it sends), the other end reading and discarding. Returns the byte
    /// count and the time.
    pub fn send_file(path: &Path, chunk: usize) -> anyhow::Result<(u64, Duration)> {
        let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let mut conn = TcpStream::connect(listener.local_addr()?)?;
        let (mut peer, _) = listener.accept()?;
        let started = Instant::now();
        // Three buffers go round: one being read, up to two waiting or being sent.
        let (full_tx, full_rx) = mpsc::channel::<(Vec<u8>, usize)>();
        let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
        for _ in 0..3 {
            free_tx.send(vec![0u8; chunk])?;
        }
        let reader = std::thread::spawn(move || -> anyhow::Result<()> {
            let mut at = 0u64;
            // The sender hands every buffer back until it stops.
            while let Ok(mut buf) = free_rx.recv() {
                let n = file.read_at(&mut buf, at)?;
                if n == 0 {
                    return Ok(());
                }
                at += n as u64;
                if full_tx.send((buf, n)).is_err() {
                    return Ok(());
                }
            }
            Ok(())
        });
        let sender = std::thread::spawn(move || -> anyhow::Result<()> {
            for (buf, n) in full_rx {
                peer.write_all(&buf[..n])?;
                // The reader may have finished; then nothing needs the buffer.
                let _ = free_tx.send(buf);
            }
            Ok(())
        });
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            match conn.read(&mut buf)? {
                0 => break,
                k => n += k as u64,
            }
        }
        let took = started.elapsed();
        reader.join().expect("reader thread")?;
        sender.join().expect("sender thread")?;
        Ok((n, took))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// Every segment lands at its offset whole, whatever the stream and the write mode
        /// (so the baseline's speed is that of the real work), including a last segment and
        /// piece that are not whole pages.
        #[test]
        fn every_byte_arrives_at_its_offset() {
            let data: Vec<u8> = (0..(1 << 20) + 4096).map(|i| (i * 7 % 251) as u8).collect();
            for (mode, streams) in [(WriteMode::Uncached, 3), (WriteMode::Buffered, 1)] {
                let scratch = test_scratch();
                let plan = Segments {
                    size: 5 * (1 << 20) + 1000,
                    segment: 1 << 20,
                    streams,
                    io: 256 << 10,
                    mode,
                };
                send_segments(&scratch, "t", plan, &data).unwrap();
                assert_each_segment_is(&scratch.path("t"), plan, &data, &format!("{mode:?}"));
            }
        }

        #[test]
        fn a_file_goes_through_whole() {
            let scratch = test_scratch();
            let path = scratch.path("f");
            std::fs::write(&path, vec![3u8; 3 * (512 << 10) + 17]).unwrap();
            let (n, _) = send_file(&path, 512 << 10).unwrap();
            assert_eq!(n, 3 * (512 << 10) + 17);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each direct writer puts every segment at its offset whole, including a last segment
    /// and piece that are not whole pages (so a writer's speed is that of the real work).
    #[test]
    fn direct_writers_put_every_byte_at_its_offset() {
        let data: Vec<u8> = (0..(1 << 20)).map(|i| (i * 13 % 253) as u8).collect();
        let (aligned, start) = aligned_copy(&data).unwrap();
        let data = &aligned[start..start + data.len()];
        for mode in [
            WriteMode::Buffered,
            WriteMode::Writeback,
            WriteMode::Uncached,
            WriteMode::UncachedRing,
        ] {
            let scratch = test_scratch();
            let plan = test_plan(mode);
            let target = plan
                .open(scratch.create("w", plan.size).unwrap(), &scratch.path("w"))
                .unwrap();
            let cursor = plan.cursor();
            while let Some((at, len)) = cursor.take() {
                plan.write_segment(&target, &data[..len], at).unwrap();
            }
            assert_each_segment_is(&scratch.path("w"), plan, data, &format!("{mode:?}"));
        }
    }
}
