//! Per-step live counters: what `Pipeline::metrics` reports and the HTTP
//! ingress exports. Updated with relaxed atomics (what every step call
//! counts, with no locked instruction: `call_stats.rs`); read without
//! stopping anything. On the hop path every nanosecond shows (see
//! `benches/runtime.rs`). The clock is
//! `quanta`'s, which reads the CPU's invariant TSC where the kernel trusts
//! it (12 ns a read on these VMs, against 31 for `std::time::Instant`'s
//! vDSO call) and falls back to the OS clock elsewhere.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use quanta::Instant;

use super::call_stats::CallStats;

/// Latency bucket bounds, seconds (Prometheus' `le`).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];
/// Batch size bucket bounds (calls per batch).
pub const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// A fixed-bucket histogram of non-negative values.
#[derive(Debug)]
pub(crate) struct Histogram {
    bounds: &'static [f64],
    /// Per bucket (not cumulative), plus one for `+Inf`.
    counts: Box<[AtomicU64]>,
    /// Sum of observations, in millionths.
    sum_micros: AtomicU64,
}

impl Histogram {
    pub(crate) fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub(crate) fn observe(&self, value: f64) {
        let i = self.bounds.partition_point(|b| *b < value);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = Vec::with_capacity(self.counts.len());
        let mut total = 0;
        for c in self.counts.iter() {
            total += c.load(Ordering::Relaxed);
            cumulative.push(total);
        }
        HistogramSnapshot {
            bounds: self.bounds,
            cumulative,
            sum: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// A histogram read at one moment, in Prometheus' shape.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Upper bounds of the buckets (`le`), without `+Inf`.
    pub bounds: &'static [f64],
    /// Cumulative counts: `cumulative[i]` observations were `<= bounds[i]`;
    /// the last entry (one past `bounds`) is the total count (`+Inf`).
    pub cumulative: Vec<u64>,
    /// The sum of all observations.
    pub sum: f64,
}

impl HistogramSnapshot {
    /// How many observations.
    pub fn count(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }
}

/// Live counters of one step node, shared by its evaluator (calls,
/// latency), its runner (queue, replicas) and the pipeline's reports.
#[derive(Debug)]
pub(crate) struct StepCounters {
    /// Replicas taking calls now where no pool reads them (1 for local and
    /// tasks, the workers known for a remote step): see `replicas_up`.
    pub(crate) replicas: AtomicUsize,
    /// Replicas the step is heading for (differs while autoscaling).
    pub(crate) target_replicas: AtomicUsize,
    pub(crate) rebuilds: AtomicU64,
    pub(crate) replicas_down: AtomicUsize,
    pub(crate) batches: AtomicU64,
    pub(crate) batched_calls: AtomicU64,
    /// Calls started, and the latencies of those ended.
    calls: CallStats,
    pub(crate) errors: AtomicU64,
    /// Of `errors`: calls refused because a queue was full.
    pub(crate) overloaded: AtomicU64,
    /// Reads the step's queue depth (its replicas' mailboxes); none for
    /// steps without a queue.
    queue_depth: std::sync::OnceLock<Gauge>,
    /// Reads the replicas taking calls (an actor pool's, whose replicas
    /// may be down rebuilding); none for the other runners.
    replicas_up: std::sync::OnceLock<Gauge>,
    /// Remote steps: calls a worker refused and that were sent again.
    pub(crate) remote_retries: AtomicU64,
    /// Remote steps: refusals by workers (full or leaving), retried or not.
    pub(crate) remote_refused: AtomicU64,
    pub(crate) batch_size: Histogram,
}

impl Default for StepCounters {
    fn default() -> Self {
        // The clock calibrates itself against the OS clock on first use (a
        // few milliseconds): at deploy, not in a step call.
        let _ = Instant::now();
        StepCounters {
            replicas: AtomicUsize::new(1),
            target_replicas: AtomicUsize::new(1),
            rebuilds: AtomicU64::new(0),
            replicas_down: AtomicUsize::new(0),
            batches: AtomicU64::new(0),
            batched_calls: AtomicU64::new(0),
            calls: CallStats::default(),
            errors: AtomicU64::new(0),
            overloaded: AtomicU64::new(0),
            queue_depth: std::sync::OnceLock::new(),
            replicas_up: std::sync::OnceLock::new(),
            remote_retries: AtomicU64::new(0),
            remote_refused: AtomicU64::new(0),
            batch_size: Histogram::new(BATCH_BUCKETS),
        }
    }
}

impl StepCounters {
    /// Replicas built and taking calls now: an actor pool's live replicas
    /// less those rebuilding after a panic (its reader), else `replicas`.
    pub(crate) fn replicas_up(&self) -> usize {
        match self.replicas_up.get() {
            Some(up) => (up.0)(),
            None => self.replicas.load(Ordering::SeqCst),
        }
    }

    /// How [`replicas_up`](Self::replicas_up) is read (an actor pool's).
    pub(crate) fn read_replicas_up_with(&self, up: impl Fn() -> usize + Send + Sync + 'static) {
        let _ = self.replicas_up.set(Gauge(Box::new(up)));
    }

    /// Where this thread's clock handoff stands: take it before each poll
    /// of a step's inputs, and give it to [`start_after`](Self::start_after)
    /// when they are ready (in that same poll).
    pub(crate) fn clock_mark() -> u64 {
        HANDOFF.with(|h| h.get().seq)
    }

    /// Counts a call of `call` (the call's identity, its `CallCx` address)
    /// as started; the guard ends it (also when the call's future is
    /// dropped).
    ///
    /// Its latency starts when its last input was produced: if a step of
    /// the same call ended on this thread since `mark` (so inside this very
    /// poll, with no await in between), that step's end time is reused,
    /// else the clock is read. A chain then reads the clock once per hop,
    /// not twice (a clock read costs 20 to 50 ns on these VMs, a fifth of
    /// a bare same-worker round trip).
    pub(crate) fn start_after(&self, mark: u64, call: usize) -> CallGuard<'_> {
        self.calls.started();
        let handed = HANDOFF.with(|h| h.get());
        let start = match handed.at {
            Some(at) if handed.seq != mark && handed.call == call => at,
            _ => Instant::now(),
        };
        CallGuard {
            counters: self,
            start,
            call,
            finished: false,
        }
    }

    pub(crate) fn snapshot(&self, step: &'static str) -> StepMetrics {
        // In flight: started and not yet counted out. Every call started is
        // counted out exactly once, into the latency histogram, so no
        // counter of its own is kept (two atomics fewer per step call).
        // Read in the reverse order of a call's counts (started, failed,
        // overloaded, ended), each count written with release and read
        // with acquire: calls moving on meanwhile only raise the figures
        // read later, so one snapshot never shows more ended, failed or
        // overloaded calls than started ones.
        let latency = self.calls.latency();
        let overloaded = self.overloaded.load(Ordering::Acquire);
        let errors = self.errors.load(Ordering::Acquire);
        let requests = self.calls.started_count();
        StepMetrics {
            step,
            replicas: self.replicas_up(),
            target_replicas: self.target_replicas.load(Ordering::Relaxed),
            requests,
            errors,
            overloaded,
            in_flight: requests.saturating_sub(latency.count()),
            queued: self.queue_depth.get().map_or(0, |depth| (depth.0)() as u64),
            rebuilds: self.rebuilds.load(Ordering::Relaxed),
            remote_retries: self.remote_retries.load(Ordering::Relaxed),
            remote_refused: self.remote_refused.load(Ordering::Relaxed),
            remote: None,
            replicas_down: self.replicas_down.load(Ordering::Relaxed),
            latency,
            batch_size: self.batch_size.snapshot(),
        }
    }
}

impl StepCounters {
    /// Has the queue gauge read `depth` (a runner with mailboxes sets it
    /// once, when it starts).
    pub(crate) fn read_queue_depth_with(&self, depth: impl Fn() -> usize + Send + Sync + 'static) {
        let _ = self.queue_depth.set(Gauge(Box::new(depth)));
    }

    /// Counts an error that came after the call answered (a stream step's
    /// stream ending with one).
    pub(crate) fn count_error(&self) {
        self.errors.fetch_add(1, Ordering::Release);
    }
}

/// How a step's queue depth is read.
/// A gauge read when it is read (a queue's depth, replicas up).
struct Gauge(Box<dyn Fn() -> usize + Send + Sync>);

impl std::fmt::Debug for Gauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gauge")
    }
}

/// The last step end on this thread: which call, when, and a sequence
/// number that changes with every end recorded.
#[derive(Clone, Copy)]
struct Handoff {
    seq: u64,
    call: usize,
    at: Option<Instant>,
}

thread_local! {
    static HANDOFF: Cell<Handoff> = const {
        Cell::new(Handoff {
            seq: 0,
            call: 0,
            at: None,
        })
    };
}

/// One call inside a step; counts it out when finished or dropped.
pub(crate) struct CallGuard<'a> {
    counters: &'a StepCounters,
    start: Instant,
    call: usize,
    finished: bool,
}

impl CallGuard<'_> {
    pub(crate) fn failed(&self, error: &crate::error::PipelineError) {
        self.counters.errors.fetch_add(1, Ordering::Release);
        if matches!(error, crate::error::PipelineError::Overloaded { .. }) {
            self.counters.overloaded.fetch_add(1, Ordering::Release);
        }
    }

    /// The call answered: counts it out and hands its end time to the
    /// step that takes its output (see [`StepCounters::start_after`]).
    pub(crate) fn finish(mut self) {
        let end = Instant::now();
        self.end(end);
        self.finished = true;
        HANDOFF.with(|h| {
            let seq = h.get().seq.wrapping_add(1);
            h.set(Handoff {
                seq,
                call: self.call,
                at: Some(end),
            });
        });
    }

    fn end(&self, end: Instant) {
        self.counters
            .calls
            .ended(end.saturating_duration_since(self.start));
    }
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        // Dropped unfinished: the call was cancelled.
        if !self.finished {
            self.end(Instant::now());
        }
    }
}

/// One step's live counters, from [`Pipeline::metrics`](crate::Pipeline::metrics).
///
/// ```
/// use pipeline_core::prelude::*;
///
/// #[step]
/// fn half(x: i64) -> Result<i64, String> {
///     if x % 2 == 0 { Ok(x / 2) } else { Err(format!("{x} is odd")) }
/// }
///
/// let p = half(Input::<i64>::new()).deploy()?;
/// p.call(4)?;
/// assert!(p.call(3).is_err());
/// let m = &p.metrics()[0];
/// assert_eq!((m.step, m.requests, m.errors, m.in_flight), ("half", 2, 1, 0));
/// assert_eq!(m.latency.count(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct StepMetrics {
    /// The step's name.
    pub step: &'static str,
    /// How many replicas it runs now (1 unless actors).
    pub replicas: usize,
    /// How many it is heading for: differs from `replicas` while an
    /// autoscaled step adds or drains replicas.
    pub target_replicas: usize,
    /// Calls that reached the step.
    pub requests: u64,
    /// Calls it failed (error, panic, overload, lost replica).
    pub errors: u64,
    /// Of `errors`: calls refused at once because its queue (or in-flight
    /// bound) was full.
    pub overloaded: u64,
    /// Calls inside the step now (queued or running).
    pub in_flight: u64,
    /// Calls waiting in its replicas' mailboxes now.
    pub queued: u64,
    /// Replicas rebuilt after a panic.
    pub rebuilds: u64,
    /// Remote steps: calls sent again after a worker refused them.
    pub remote_retries: u64,
    /// Remote steps: refusals by workers (queue full or leaving).
    pub remote_refused: u64,
    /// Where the step is served, if by remote workers (`replicas` then
    /// counts the workers this pipeline knows of).
    pub remote: Option<&'static str>,
    /// Replicas down (rebuilding) now.
    pub replicas_down: usize,
    /// Time from reaching the step to its answer, seconds.
    pub latency: HistogramSnapshot,
    /// Calls per batch (batched steps).
    pub batch_size: HistogramSnapshot,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_in_flight_until_finished_or_dropped() {
        let counters = StepCounters::default();
        let in_flight = || counters.snapshot("s").in_flight;
        let a = counters.start_after(StepCounters::clock_mark(), 1);
        let b = counters.start_after(StepCounters::clock_mark(), 2);
        assert_eq!(in_flight(), 2);
        a.finish();
        drop(b); // cancelled
        let m = counters.snapshot("s");
        assert_eq!((m.requests, m.in_flight, m.latency.count()), (2, 0, 2));
    }

    #[test]
    fn a_step_end_is_handed_only_to_the_same_call_in_the_same_poll() {
        let counters = StepCounters::default();
        let mark = StepCounters::clock_mark();
        let upstream = counters.start_after(mark, 7);
        upstream.finish();
        let ended = HANDOFF.with(|h| h.get().at).unwrap();
        // Until the clock has moved on, a fresh reading could equal `ended`.
        while Instant::now() <= ended {
            std::hint::spin_loop();
        }
        // Same call, ended since the mark: its end is this call's start.
        assert_eq!(counters.start_after(mark, 7).start, ended);
        // Another call, or a mark taken after that end: the clock is read.
        assert_ne!(counters.start_after(mark, 8).start, ended);
        let later = StepCounters::clock_mark();
        assert_ne!(counters.start_after(later, 7).start, ended);
    }
}
