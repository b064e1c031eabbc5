//! Keeps the server's freed buffers for reuse instead of handing them back to the kernel.
//!
//! Every upload body arrives in fresh receive buffers and every download in 512 KiB chunks.
//! With glibc's defaults, buffers above its (adaptive) mmap threshold are mapped and unmapped
//! one by one and freed heap tops are trimmed, so the server took 6 000-52 000 page faults per
//! GiB uploaded, each a freshly zeroed page (and on a VM that returns freed memory to its
//! host, possibly a host fault too). With a 1 MiB mmap threshold and a 32 MiB trim threshold
//! it takes a few hundred at start and then almost none (BENCHMARKS.md, fifth round). The
//! cost: up to 32 MiB of freed memory per malloc arena stays with the process after a burst;
//! peak memory is unchanged.

/// Allocations below this come from the heap, so their memory is reused.
const MMAP_THRESHOLD: i32 = 1024 * 1024;
/// Free memory at a heap's top beyond this is returned to the kernel.
const TRIM_THRESHOLD: i32 = 32 * 1024 * 1024;

/// Applies the thresholds, unless the operator tuned glibc's malloc through `GLIBC_TUNABLES`
/// (their choice wins). Called at start, before the runtime allocates its buffers. Returns
/// whether it applied them.
pub fn apply() -> bool {
    wanted(std::env::var("GLIBC_TUNABLES").ok().as_deref()) && set_thresholds()
}

/// Whether to set the thresholds, given `GLIBC_TUNABLES`.
fn wanted(tunables: Option<&str>) -> bool {
    !tunables.is_some_and(|t| t.contains("glibc.malloc."))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds() -> bool {
    // SAFETY: mallopt takes glibc's own locks and only changes global allocator parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() -> bool {
    let _ = (MMAP_THRESHOLD, TRIM_THRESHOLD);
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operators_malloc_tunables_win() {
        assert!(wanted(None));
        assert!(wanted(Some("glibc.pthread.rseq=0")));
        assert!(!wanted(Some("glibc.malloc.trim_threshold=0")));
        assert!(!wanted(Some(
            "glibc.pthread.rseq=0:glibc.malloc.arena_max=2"
        )));
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_accepts_the_thresholds() {
        assert!(set_thresholds());
    }
}
