//! glibc's allocator, set up for libtorch on worker threads.
//!
//! libtorch allocates every activation of a forward pass with `malloc` and
//! frees it at the end. On the main thread glibc keeps that memory for the
//! next pass; on any other thread (an actor replica's) it serves it from a
//! per-thread arena whose heaps are at most 64 MiB, hands freed memory back
//! to the kernel, and faults it in again on the next pass. Measured with
//! resnet18 on a 2-core machine: about 2,600 page faults per image on a
//! replica thread against about 90 on the main thread, and 12% fewer
//! images per second. [`tune_malloc`] removes that difference.

/// What [`tune_malloc`] asks of glibc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MallocTuning {
    /// One arena for every thread (`M_ARENA_MAX`): the main arena, which
    /// grows without the 64 MiB heap limit of per-thread arenas.
    pub arenas: i32,
    /// Blocks at least this large are mapped on their own
    /// (`M_MMAP_THRESHOLD`; glibc allows at most 32 MiB). Smaller blocks
    /// are reused from the heap.
    pub mmap_threshold: i32,
    /// Free memory at the top of the heap is returned to the kernel only
    /// beyond this (`M_TRIM_THRESHOLD`): the process holds its peak,
    /// as PyTorch's caching allocators do, instead of faulting it in again.
    pub trim_threshold: i32,
}

impl Default for MallocTuning {
    fn default() -> Self {
        MallocTuning {
            arenas: 1,
            mmap_threshold: 32 << 20,
            trim_threshold: 1 << 30,
        }
    }
}

/// Sets glibc's allocator up for libtorch models on replica threads (see
/// [`MallocTuning`] for what changes) and says whether glibc took every
/// setting. Call it first thing in `main`, before any thread starts:
/// threads that have already allocated keep their arenas.
///
/// This changes the whole process, so it is the binary's choice and
/// nothing calls it for you. The same settings can come from the
/// environment instead: `MALLOC_ARENA_MAX=1 MALLOC_MMAP_THRESHOLD_=33554432
/// MALLOC_TRIM_THRESHOLD_=1073741824`. On other C libraries it does nothing
/// and returns `false`.
///
/// ```
/// // first thing in `main`:
/// let tuned = pipeline_core::torch::tune_malloc();
/// assert_eq!(tuned, cfg!(all(target_os = "linux", target_env = "gnu")));
/// // then build and deploy the pipeline ...
/// ```
pub fn tune_malloc() -> bool {
    tune_malloc_with(MallocTuning::default())
}

/// [`tune_malloc`] with chosen values.
pub fn tune_malloc_with(tuning: MallocTuning) -> bool {
    imp::apply(tuning)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    use super::MallocTuning;

    #[allow(unsafe_code)]
    pub(super) fn apply(tuning: MallocTuning) -> bool {
        let settings = [
            (libc::M_ARENA_MAX, tuning.arenas),
            (libc::M_MMAP_THRESHOLD, tuning.mmap_threshold),
            (libc::M_TRIM_THRESHOLD, tuning.trim_threshold),
        ];
        // `&` not `&&`: every setting is tried even if one is refused.
        settings.into_iter().fold(true, |all, (param, value)| {
            // SAFETY: mallopt only changes glibc's allocator parameters; it
            // is thread-safe and returns 0 for a value it refuses.
            all & (unsafe { libc::mallopt(param, value) } == 1)
        })
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    use super::MallocTuning;

    pub(super) fn apply(_: MallocTuning) -> bool {
        false
    }
}
