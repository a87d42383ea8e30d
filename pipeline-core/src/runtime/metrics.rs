//! Per-step live counters: what `Pipeline::metrics` reports and the HTTP
//! ingress exports. Updated with relaxed atomics on every step call (a few
//! nanoseconds); read without stopping anything.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

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
    /// Replicas built and taking calls now (1 for local and tasks).
    pub(crate) replicas: AtomicUsize,
    /// Replicas the step is heading for (differs while autoscaling).
    pub(crate) target_replicas: AtomicUsize,
    pub(crate) rebuilds: AtomicU64,
    pub(crate) replicas_down: AtomicUsize,
    pub(crate) batches: AtomicU64,
    pub(crate) batched_calls: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) in_flight: AtomicI64,
    pub(crate) queued: AtomicI64,
    pub(crate) latency: Histogram,
    pub(crate) batch_size: Histogram,
}

impl Default for StepCounters {
    fn default() -> Self {
        StepCounters {
            replicas: AtomicUsize::new(1),
            target_replicas: AtomicUsize::new(1),
            rebuilds: AtomicU64::new(0),
            replicas_down: AtomicUsize::new(0),
            batches: AtomicU64::new(0),
            batched_calls: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            queued: AtomicI64::new(0),
            latency: Histogram::new(LATENCY_BUCKETS),
            batch_size: Histogram::new(BATCH_BUCKETS),
        }
    }
}

impl StepCounters {
    /// Counts a call as started; the guard ends it (also when the call's
    /// future is dropped).
    pub(crate) fn start(&self) -> CallGuard<'_> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        CallGuard {
            counters: self,
            start: std::time::Instant::now(),
        }
    }

    pub(crate) fn snapshot(&self, step: &'static str) -> StepMetrics {
        StepMetrics {
            step,
            replicas: self.replicas.load(Ordering::Relaxed),
            target_replicas: self.target_replicas.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed).max(0) as u64,
            queued: self.queued.load(Ordering::Relaxed).max(0) as u64,
            rebuilds: self.rebuilds.load(Ordering::Relaxed),
            replicas_down: self.replicas_down.load(Ordering::Relaxed),
            latency: self.latency.snapshot(),
            batch_size: self.batch_size.snapshot(),
        }
    }
}

/// One call inside a step; counts it out when dropped.
pub(crate) struct CallGuard<'a> {
    counters: &'a StepCounters,
    start: std::time::Instant,
}

impl CallGuard<'_> {
    pub(crate) fn failed(&self) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        self.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
        let elapsed: Duration = self.start.elapsed();
        self.counters.latency.observe(elapsed.as_secs_f64());
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
    /// Calls inside the step now (queued or running).
    pub in_flight: u64,
    /// Calls waiting in its replicas' mailboxes now.
    pub queued: u64,
    /// Replicas rebuilt after a panic.
    pub rebuilds: u64,
    /// Replicas down (rebuilding) now.
    pub replicas_down: usize,
    /// Time from reaching the step to its answer, seconds.
    pub latency: HistogramSnapshot,
    /// Calls per batch (batched steps).
    pub batch_size: HistogramSnapshot,
}
