//! What the benchmarks and tests read about this process from `/proc`:
//! resident memory and minor page faults, of the process or of the
//! calling thread (Linux; 0 elsewhere).

/// Resident memory of this process, MiB (`/proc/self/statm`).
///
/// ```
/// assert!(pipeline_examples::process::rss_mib() >= 0.0);
/// ```
pub fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / (1024.0 * 1024.0)
}

/// Minor page faults of this process so far (`/proc/self/stat` field 10):
/// memory the allocator gives back to the kernel and takes again shows
/// here. Counted, not timed, so repeatable on a busy machine.
///
/// ```
/// let before = pipeline_examples::process::minor_faults();
/// assert!(pipeline_examples::process::minor_faults() >= before);
/// ```
pub fn minor_faults() -> u64 {
    minor_faults_in("/proc/self/stat")
}

/// Minor page faults of the calling thread so far
/// (`/proc/thread-self/stat` field 10): what this thread's own
/// allocations cost, whatever the other threads do meanwhile.
///
/// ```
/// let before = pipeline_examples::process::thread_minor_faults();
/// assert!(pipeline_examples::process::thread_minor_faults() >= before);
/// ```
pub fn thread_minor_faults() -> u64 {
    minor_faults_in("/proc/thread-self/stat")
}

/// Field 10 (minflt) of a `/proc/.../stat` file; 0 if it cannot be read.
fn minor_faults_in(path: &str) -> u64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold
    // spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    rest.split_whitespace()
        .nth(7)
        .and_then(|f| f.parse().ok())
        .unwrap_or(0)
}
