//! Memory for the blocks the upload engine gathers for direct writes, carved from huge pages.
//!
//! A direct write hands the disk the pages of the process's own buffer. Memory from the
//! allocator comes in 4 KiB pages scattered over physical memory, so a 256 KiB block reaches
//! the disk as 64 pieces, and a virtio disk (this project's VMs run Firecracker) pays for each
//! piece: 256 KiB direct writes from such memory ran at 372-384 MiB/s where the same writes
//! from one 2 MiB huge page ran at 752-782 (BENCHMARKS.md, finding 22). So the store lends
//! the engine blocks carved from transparent huge pages, asked for with `madvise`. Where the
//! kernel gives none (THP off, or no free huge page), the blocks are ordinary pages and only
//! the speed differs.
//!
//! The pool grows one huge page at a time up to [`POOL_MAX`] and keeps what it made for the
//! life of the process, so a block's memory is touched once rather than once per upload.
//! Once every block is lent it lends nothing and the engine allocates its own, as it did
//! before: memory stays bounded whatever the number of uploads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use upspool_domain::store::{BlockBuffer, BlockMemory};
use upspool_domain::upload::IO_BUFFER;

/// The size (and alignment) of an x86-64 or aarch64 (4 KiB-page) transparent huge page.
const HUGE_PAGE: usize = 2 << 20;

/// Most memory the pool holds by default: 128 blocks of 256 KiB, enough for 14 uploads
/// streaming at once (each holds at most nine blocks: eight being written and one being
/// gathered). [`set_limit`] changes it.
pub const POOL_MAX: usize = 32 << 20;

/// Blocks to lend, and how much memory the pool has made so far.
pub(crate) struct BlockPool {
    max: AtomicUsize,
    state: Mutex<State>,
}

struct State {
    free: Vec<&'static mut [u8]>,
    made: usize,
}

/// The process's pool, shared by every store (they all write to disks of one machine).
static POOL: BlockPool = BlockPool::new(POOL_MAX);

/// Lends a block from the process's pool, if it has one to spare.
pub(crate) fn lend() -> Option<BlockBuffer> {
    POOL.lend()
}

/// Sets the most memory the process's pool may hold, rounded down to whole huge pages (0: no
/// pool, every block from the heap). Meant for startup: the pool never gives back memory it
/// made, so a lower limit only stops it growing. Returns the limit in effect.
pub fn set_limit(bytes: usize) -> usize {
    POOL.set_max(bytes)
}

impl BlockPool {
    const fn new(max: usize) -> Self {
        BlockPool {
            max: AtomicUsize::new(max),
            state: Mutex::new(State {
                free: Vec::new(),
                made: 0,
            }),
        }
    }

    /// A free block, making another huge page's worth when none is free and the pool may grow.
    pub(crate) fn lend(&'static self) -> Option<BlockBuffer> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.free.is_empty() && state.made + HUGE_PAGE <= self.max.load(Ordering::Relaxed) {
            match huge_page() {
                Some(page) => {
                    state.free.extend(page.chunks_exact_mut(IO_BUFFER));
                    state.made += HUGE_PAGE;
                }
                None => tracing::debug!("no memory for the block pool; blocks come from the heap"),
            }
        }
        let mem = state.free.pop()?;
        Some(Box::new(Lent { mem, pool: self }))
    }

    fn set_max(&self, bytes: usize) -> usize {
        let max = bytes / HUGE_PAGE * HUGE_PAGE;
        self.max.store(max, Ordering::Relaxed);
        max
    }

    fn give_back(&self, mem: &'static mut [u8]) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .free
            .push(mem);
    }
}

/// A lent block; dropping it returns the memory to its pool.
struct Lent {
    mem: &'static mut [u8],
    pool: &'static BlockPool,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        self.mem
    }
}

impl AsMut<[u8]> for Lent {
    fn as_mut(&mut self) -> &mut [u8] {
        self.mem
    }
}

impl BlockMemory for Lent {}

impl Drop for Lent {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.mem));
    }
}

/// A huge page's worth of fresh memory, aligned to a huge page and advised to be backed by
/// one. Never unmapped: the pool keeps it for the life of the process.
fn huge_page() -> Option<&'static mut [u8]> {
    // Twice the size, so that an aligned huge page lies inside; the rest is never touched and
    // so never backed by memory.
    let map = memmap2::MmapMut::map_anon(2 * HUGE_PAGE).ok()?;
    let skip = map.as_ptr().align_offset(HUGE_PAGE);
    // Only advice: where the kernel refuses it, the memory is ordinary pages.
    #[cfg(target_os = "linux")]
    let _ = map.advise_range(memmap2::Advice::HugePage, skip, HUGE_PAGE);
    let map: &'static mut memmap2::MmapMut = Box::leak(Box::new(map));
    Some(&mut map[skip..skip + HUGE_PAGE])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(max: usize) -> &'static BlockPool {
        Box::leak(Box::new(BlockPool::new(max)))
    }

    fn addr(b: &BlockBuffer) -> usize {
        (**b).as_ref().as_ptr() as usize
    }

    /// Blocks are whole, aligned for direct writes, distinct and writable.
    #[test]
    fn blocks_are_aligned_distinct_and_writable() {
        let pool = pool(HUGE_PAGE);
        let mut blocks: Vec<BlockBuffer> = (0..HUGE_PAGE / IO_BUFFER)
            .map(|_| pool.lend().expect("a block"))
            .collect();
        let mut seen = std::collections::HashSet::new();
        for (i, b) in blocks.iter_mut().enumerate() {
            assert_eq!((**b).as_ref().len(), IO_BUFFER);
            assert_eq!(addr(b) % IO_BUFFER, 0, "aligned to the block size");
            assert!(seen.insert(addr(b)), "each block lent once");
            (**b).as_mut().fill(i as u8);
        }
        for (i, b) in blocks.iter().enumerate() {
            assert!(
                (**b).as_ref().iter().all(|&x| x == i as u8),
                "blocks overlap"
            );
        }
    }

    /// Where the kernel gives transparent huge pages on request, a block's memory lies in one:
    /// the speed of direct writes from it depends on that (finding 22).
    #[test]
    fn blocks_lie_in_a_huge_page_where_the_kernel_gives_them() {
        let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .unwrap_or_default();
        if !mode.contains("[always]") && !mode.contains("[madvise]") {
            eprintln!("skipped: this kernel gives no huge pages on request ({mode:?})");
            return;
        }
        let pool = pool(HUGE_PAGE);
        let mut block = pool.lend().expect("a block");
        (*block).as_mut().fill(1);
        let huge_kib = anon_huge_kib_at(addr(&block));
        assert!(
            huge_kib >= 2048,
            "the block's mapping has {huge_kib} KiB in huge pages"
        );
    }

    /// `AnonHugePages` of the mapping holding `addr`, from /proc/self/smaps.
    fn anon_huge_kib_at(addr: usize) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let mut inside = false;
        for line in smaps.lines() {
            let head = line.split_whitespace().next().unwrap_or("");
            if let Some((from, to)) = head.split_once('-') {
                if let (Ok(from), Ok(to)) = (
                    usize::from_str_radix(from, 16),
                    usize::from_str_radix(to, 16),
                ) {
                    inside = (from..to).contains(&addr);
                    continue;
                }
            }
            if inside {
                if let Some(kib) = line.strip_prefix("AnonHugePages:") {
                    return kib
                        .trim()
                        .trim_end_matches(" kB")
                        .trim()
                        .parse()
                        .expect("a number");
                }
            }
        }
        panic!("no mapping holds {addr:#x}");
    }

    /// A pool's limit is whole huge pages; lowered, it stops growing; at 0 it lends nothing.
    #[test]
    fn a_limit_bounds_what_the_pool_makes() {
        let pool = pool(4 * HUGE_PAGE);
        assert_eq!(pool.set_max(HUGE_PAGE + 5), HUGE_PAGE, "rounded down");
        let blocks: Vec<BlockBuffer> = std::iter::from_fn(|| pool.lend()).collect();
        assert_eq!(blocks.len(), HUGE_PAGE / IO_BUFFER);
        let pool = pool_of_none();
        assert!(pool.lend().is_none(), "a pool of 0 lends nothing");
    }

    fn pool_of_none() -> &'static BlockPool {
        let pool = pool(HUGE_PAGE);
        assert_eq!(pool.set_max(HUGE_PAGE - 1), 0);
        pool
    }

    /// A pool lends at most its size; a block dropped is lent again.
    #[test]
    fn an_exhausted_pool_lends_again_what_comes_back() {
        let pool = pool(HUGE_PAGE);
        let mut blocks: Vec<BlockBuffer> = std::iter::from_fn(|| pool.lend()).collect();
        assert_eq!(blocks.len(), HUGE_PAGE / IO_BUFFER);
        assert!(pool.lend().is_none(), "nothing past the pool's size");
        let back = addr(&blocks.pop().unwrap());
        let again = pool.lend().expect("the returned block");
        assert_eq!(addr(&again), back);
        assert!(pool.lend().is_none());
    }
}
