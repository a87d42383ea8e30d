//! [`CallStats`]: the two things every step call counts (that it started,
//! and its latency), kept per thread so that counting costs no locked
//! instruction.
//!
//! Why: a relaxed `fetch_add` is still a locked read-modify-write on x86
//! (about 7 ns here, where a same-worker round trip is 200-400 ns), and a
//! step call did three (the call count, the latency bucket, the latency
//! sum). Each thread that counts claims a shard of its own for as long as
//! it lives, so it is that shard's only writer and updates it with a plain
//! load and store (`bump`); readers add the shards up. Threads beyond
//! [`SHARDS`] share one last shard, updated with `fetch_add` as before.
//! Measured with `benches/runtime.rs -- hop-loop`: a 4-step chain of
//! task-placed actors went from about 2,280 to 2,200 ns a call.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::metrics::{HistogramSnapshot, LATENCY_BUCKETS};

/// Shards owned by one thread each; one more is shared by any others.
const SHARDS: usize = 16;
const SHARED: usize = SHARDS;

/// [`LATENCY_BUCKETS`] in nanoseconds (a test checks they agree), found
/// with integer compares, smallest first (step calls are mostly short).
const BOUNDS_NS: [u64; 17] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// One thread's counts (the shared shard: several threads').
#[derive(Debug, Default)]
#[repr(align(128))] // one shard per cache line pair: no false sharing
struct Shard {
    started: AtomicU64,
    /// Per bucket (not cumulative), plus one for `+Inf`.
    counts: [AtomicU64; BOUNDS_NS.len() + 1],
    sum_micros: AtomicU64,
}

/// Adds `by` to `counter`: a plain load and store in a shard this thread
/// owns (its only writer), an atomic add in the shared one.
///
/// Release: a reader that sees a later count (a latency, an error) with
/// an acquire load then sees this one too, so a snapshot read in the
/// reverse order of the writes is consistent (no more ended, or failed,
/// than started). On x86 a release store is a plain store.
fn bump(counter: &AtomicU64, by: u64, owned: bool) {
    if owned {
        counter.store(
            counter.load(Ordering::Relaxed).wrapping_add(by),
            Ordering::Release,
        );
    } else {
        counter.fetch_add(by, Ordering::AcqRel);
    }
}

/// Calls started and their latencies, for one step node.
#[derive(Debug)]
pub(crate) struct CallStats {
    shards: Box<[Shard]>,
}

impl Default for CallStats {
    fn default() -> Self {
        CallStats {
            shards: (0..=SHARDS).map(|_| Shard::default()).collect(),
        }
    }
}

impl CallStats {
    fn shard(&self) -> (&Shard, bool) {
        let index = this_thread();
        (&self.shards[index], index != SHARED)
    }

    /// Counts a call as started.
    pub(crate) fn started(&self) {
        let (shard, owned) = self.shard();
        bump(&shard.started, 1, owned);
    }

    /// Counts a call as ended after `d`.
    pub(crate) fn ended(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_NS
            .iter()
            .position(|b| nanos <= *b)
            .unwrap_or(BOUNDS_NS.len());
        let (shard, owned) = self.shard();
        bump(&shard.counts[bucket], 1, owned);
        bump(&shard.sum_micros, nanos / 1000, owned);
    }

    /// The latencies of the calls ended. Read it before
    /// [`started`](Self::started) (and anything counted in between, such
    /// as errors): a call's start is counted before its end, by the same
    /// thread, so calls ending meanwhile only raise the later figures.
    pub(crate) fn latency(&self) -> HistogramSnapshot {
        let mut cumulative = vec![0; BOUNDS_NS.len() + 1];
        let mut sum = 0u64;
        for shard in self.shards.iter() {
            for (total, c) in cumulative.iter_mut().zip(shard.counts.iter()) {
                *total += c.load(Ordering::Acquire);
            }
            sum += shard.sum_micros.load(Ordering::Acquire);
        }
        for i in 1..cumulative.len() {
            cumulative[i] += cumulative[i - 1];
        }
        HistogramSnapshot {
            bounds: LATENCY_BUCKETS,
            cumulative,
            sum: sum as f64 / 1e6,
        }
    }

    /// Calls started.
    pub(crate) fn started_count(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.started.load(Ordering::Acquire))
            .sum()
    }
}

/// Shard indexes no live thread holds.
static FREE: Mutex<Vec<usize>> = Mutex::new(Vec::new());
/// Shard indexes handed out so far (those freed are reused first).
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The shard index this thread holds while it lives.
struct Claim(usize);

impl Claim {
    fn new() -> Self {
        let freed = FREE.lock().unwrap_or_else(PoisonError::into_inner).pop();
        Claim(freed.unwrap_or_else(|| {
            // Past the last, every thread gets SHARED (NEXT only grows).
            NEXT.fetch_add(1, Ordering::Relaxed).min(SHARED)
        }))
    }
}

impl Drop for Claim {
    /// Gives the index back as the thread ends. Its last writes happen
    /// before this unlock, the next holder's first read after its lock.
    fn drop(&mut self) {
        if self.0 != SHARED {
            FREE.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(self.0);
        }
    }
}

thread_local! {
    static CLAIM: Claim = Claim::new();
}

/// This thread's shard index; [`SHARED`] while its claim is being torn
/// down (a step call dropped by another thread-local's destructor).
fn this_thread() -> usize {
    CLAIM.try_with(|c| c.0).unwrap_or(SHARED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nanosecond_bounds_are_the_buckets() {
        let from_secs: Vec<u64> = LATENCY_BUCKETS
            .iter()
            .map(|b| (b * 1e9).round() as u64)
            .collect();
        assert_eq!(from_secs, BOUNDS_NS);
    }

    #[test]
    fn durations_land_in_the_buckets_their_seconds_do() {
        let stats = CallStats::default();
        let secs = [
            0.0,
            1e-9,
            49_999e-9,
            50_001e-9,
            1e-4,
            0.123_456_789,
            9.999,
            3600.0,
        ];
        for s in secs {
            stats.ended(Duration::from_secs_f64(s));
        }
        let latency = stats.latency();
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            let expected = secs.iter().filter(|s| **s <= *bound).count() as u64;
            assert_eq!(latency.cumulative[i], expected, "le {bound}");
        }
        assert_eq!(latency.count(), secs.len() as u64);
    }

    #[test]
    fn counts_from_many_threads_add_up() {
        // More threads than shards, all at once: owned shards and the
        // shared one both count every call.
        let stats = CallStats::default();
        let threads = SHARDS * 2;
        let barrier = std::sync::Barrier::new(threads);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    barrier.wait();
                    for _ in 0..1000 {
                        stats.started();
                        stats.ended(Duration::from_micros(10));
                    }
                });
            }
        });
        let (latency, started) = (stats.latency(), stats.started_count());
        let calls = (threads * 1000) as u64;
        assert_eq!((started, latency.count()), (calls, calls));
        assert_eq!(latency.cumulative[0], calls);
        assert!((latency.sum - calls as f64 * 1e-5).abs() < 1e-9);
    }
}
