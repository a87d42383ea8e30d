//! An outsider's hostile tests of dynamic batching, written from the docs
//! alone (README "Batching", the `#[step]` attribute table): thread
//! replicas with sync bodies and `&mut self` state, callers on many tasks
//! and many OS threads, callers giving up while queued or while their
//! batch runs, wrong output counts under concurrency, panics and rebuilt
//! state, extreme `max_size` / `wait_ms`, replicas and autoscaling,
//! batched steps inside bigger graphs, deploy options, metrics after a
//! known workload, shutdown and drop with batches queued or forming.
//!
//! No sleep waits for work: the tests hold batch bodies at a latch the
//! test opens, wait on the pipeline's own counters (`support::wait_until`)
//! and on channels, each wait bounded by `support::GUARD` so a hang fails.

mod support;

use std::collections::BTreeSet;
use std::error::Error as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use pipeline_core::prelude::*;
use pipeline_core::{AutoscalePolicy, OptionsError, StepHealth, StepMetrics, BATCH_BUCKETS};
use support::{metric, recv, wait_until, Latch, GUARD};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

// ============================================================== helpers

/// Marks on an input's high bits: what the batch holding it does.
const HOLD: u64 = 1 << 60;
const FEWER: u64 = 1 << 59;
const MORE: u64 = 1 << 58;
const PANIC: u64 = 1 << 57;
/// What a good batch answers for `x`: `x + OFF` (distinct per input, so a
/// caller handed someone else's answer is caught).
const OFF: u64 = 1_000_000_000;

/// Shared by a batched model's replicas and the test.
/// Each batch a replica ran: its index and the items.
type BatchLog = Vec<(usize, Vec<u64>)>;

#[derive(Clone)]
struct Kit {
    /// Each batch the body ran, with the index of the replica that ran it.
    log: Arc<Mutex<BatchLog>>,
    /// Batches holding a `HOLD` input wait here.
    latch: Latch,
    /// A batch holding a `HOLD` input says so here before it waits.
    started: Arc<Mutex<Sender<Vec<u64>>>>,
    /// (index, replicas) of each model built.
    builds: Arc<Mutex<Vec<(usize, usize)>>>,
    /// Models dropped.
    drops: Arc<AtomicUsize>,
}

impl Kit {
    fn new() -> (Kit, Receiver<Vec<u64>>) {
        let (tx, rx) = channel();
        let kit = Kit {
            log: Arc::default(),
            latch: Latch::default(),
            started: Arc::new(Mutex::new(tx)),
            builds: Arc::default(),
            drops: Arc::default(),
        };
        (kit, rx)
    }
    fn batches(&self) -> Vec<Vec<u64>> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b.clone())
            .collect()
    }
    fn sizes(&self) -> Vec<usize> {
        self.batches().iter().map(Vec::len).collect()
    }
    /// Every input any batch ran, sorted (duplicates kept).
    fn items(&self) -> Vec<u64> {
        let mut all: Vec<u64> = self.batches().concat();
        all.sort_unstable();
        all
    }
    fn builds(&self) -> Vec<(usize, usize)> {
        self.builds.lock().unwrap().clone()
    }
    fn built(&self, ctx: &ReplicaContext) {
        self.builds
            .lock()
            .unwrap()
            .push((ctx.index(), ctx.replicas()));
    }
}

/// The batch body every model below shares.
fn body(kit: &Kit, index: usize, xs: Vec<u64>) -> Vec<u64> {
    kit.log.lock().unwrap().push((index, xs.clone()));
    if xs.iter().any(|x| x & HOLD != 0) {
        let _ = kit.started.lock().unwrap().send(xs.clone());
        kit.latch.wait();
    }
    if xs.iter().any(|x| x & PANIC != 0) {
        panic!("a batch panicked on purpose");
    }
    let mut out: Vec<u64> = xs.iter().map(|x| x + OFF).collect();
    if xs.iter().any(|x| x & FEWER != 0) {
        out.pop();
    }
    if xs.iter().any(|x| x & MORE != 0) {
        out.push(7);
        out.push(8);
    }
    out
}

/// Silences the panics these tests cause on purpose.
fn quiet_expected_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let p = info.payload();
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            if !msg.contains("on purpose") && p.downcast_ref::<u32>().is_none() {
                default(info);
            }
        }));
    });
}

fn multi_rt() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

type Call<O> = (u64, JoinHandle<Result<O, PipelineError>>);

/// Each input called from a task of its own on `rt`.
fn spawn_calls<O: Send + 'static>(
    rt: &Runtime,
    p: &Pipeline<u64, O>,
    xs: impl IntoIterator<Item = u64>,
) -> Vec<Call<O>> {
    xs.into_iter()
        .map(|x| {
            let p = p.clone();
            (x, rt.spawn(async move { p.call_async(x).await }))
        })
        .collect()
}

/// A spawned call's answer, failing after the guard.
fn answer<O: Send + 'static>(
    rt: &Runtime,
    h: JoinHandle<Result<O, PipelineError>>,
) -> Result<O, PipelineError> {
    rt.block_on(async { tokio::time::timeout(GUARD, h).await })
        .expect("the call hung")
        .expect("the calling task panicked")
}

/// A blocking call on a thread of its own; its answer comes on the channel.
fn call_on_thread<O: Send + 'static>(
    p: &Pipeline<u64, O>,
    x: u64,
) -> Receiver<Result<O, PipelineError>> {
    let (tx, rx) = channel();
    let p = p.clone();
    std::thread::spawn(move || {
        let _ = tx.send(p.call(x));
    });
    rx
}

fn health_of<I: Send + 'static, O: Send + 'static>(p: &Pipeline<I, O>, step: &str) -> StepHealth {
    p.health()
        .steps
        .into_iter()
        .find(|s| s.step == step)
        .unwrap_or_else(|| panic!("no step {step}"))
}

fn metrics_of<I: Send + 'static, O: Send + 'static>(p: &Pipeline<I, O>, step: &str) -> StepMetrics {
    metric(&p.metrics(), step).clone()
}

/// Waits until no call is queued or inside the step.
fn settled<I: Send + 'static, O: Send + 'static>(p: &Pipeline<I, O>, step: &str) {
    wait_until("the step's gauges return to zero", || {
        let m = metrics_of(p, step);
        (m.queued, m.in_flight) == (0, 0)
    });
}

/// The batch-size histogram a list of batch sizes must give.
fn expected_cumulative(sizes: &[usize]) -> Vec<u64> {
    let mut c: Vec<u64> = BATCH_BUCKETS
        .iter()
        .map(|&b| sizes.iter().filter(|&&s| s as f64 <= b).count() as u64)
        .collect();
    c.push(sizes.len() as u64);
    c
}

// ================================================================ models

/// Thread replica (sync body), `&mut self`, batches of up to 8 leaving
/// 5 ms after their first call.
struct Eight {
    kit: Kit,
    index: usize,
}

#[step(mode = "actors", batch(max_size = 8, wait_ms = 5))]
impl Eight {
    fn new(ctx: &ReplicaContext, kit: Kit) -> Self {
        kit.built(ctx);
        Eight {
            kit,
            index: ctx.index(),
        }
    }
    fn call(&mut self, xs: Vec<u64>) -> Vec<u64> {
        body(&self.kit, self.index, xs)
    }
}

impl Drop for Eight {
    fn drop(&mut self) {
        self.kit.drops.fetch_add(1, Ordering::SeqCst);
    }
}

/// Up to 4, and a lone call waits 10 minutes for company: in practice
/// only full batches leave.
struct Four {
    kit: Kit,
}

#[step(mode = "actors", batch(max_size = 4, wait_ms = 600000))]
impl Four {
    fn new(kit: Kit) -> Self {
        Four { kit }
    }
    fn call(&self, xs: Vec<u64>) -> Vec<u64> {
        body(&self.kit, 0, xs)
    }
}

/// A batch waits an hour for company.
struct Patient {
    kit: Kit,
}

#[step(mode = "actors", batch(max_size = 64, wait_ms = 3600000))]
impl Patient {
    fn new(kit: Kit) -> Self {
        Patient { kit }
    }
    fn call(&mut self, xs: Vec<u64>) -> Vec<u64> {
        body(&self.kit, 0, xs)
    }
}

/// A huge batch that never waits: takes what is queued.
struct Greedy {
    kit: Kit,
}

#[step(mode = "actors", batch(max_size = 100000, wait_ms = 0))]
impl Greedy {
    fn new(kit: Kit) -> Self {
        Greedy { kit }
    }
    fn call(&mut self, xs: Vec<u64>) -> Vec<u64> {
        body(&self.kit, 0, xs)
    }
}

/// The largest `max_size` there is.
struct Boundless {
    kit: Kit,
}

#[step(mode = "actors", batch(max_size = 18446744073709551615, wait_ms = 1))]
impl Boundless {
    fn new(kit: Kit) -> Self {
        Boundless { kit }
    }
    fn call(&mut self, xs: Vec<u64>) -> Vec<u64> {
        body(&self.kit, 0, xs)
    }
}

/// A thread replica whose batches wait for ever (`u64::MAX` ms) for a
/// second call.
struct Forever {
    kit: Kit,
}

#[step(mode = "actors", batch(max_size = 2, wait_ms = 18446744073709551615))]
impl Forever {
    fn new(kit: Kit) -> Self {
        Forever { kit }
    }
    fn call(&mut self, xs: Vec<u64>) -> Vec<u64> {
        body(&self.kit, 0, xs)
    }
}

/// Batches of one on two thread replicas.
struct Single {
    kit: Kit,
    index: usize,
}

#[step(mode = "actors", replicas = 2, batch(max_size = 1, wait_ms = 1000))]
impl Single {
    fn new(ctx: &ReplicaContext, kit: Kit) -> Self {
        Single {
            kit,
            index: ctx.index(),
        }
    }
    fn call(&mut self, xs: Vec<u64>) -> Vec<u64> {
        body(&self.kit, self.index, xs)
    }
}

/// Autoscaled and batched.
struct Scaled {
    kit: Kit,
    index: usize,
}

#[step(
    mode = "actors",
    autoscale(
        min_replicas = 1,
        max_replicas = 3,
        target_ongoing_requests = 2,
        upscale_delay_ms = 0,
        downscale_delay_ms = 0
    ),
    batch(max_size = 4, wait_ms = 1)
)]
impl Scaled {
    fn new(ctx: &ReplicaContext, kit: Kit) -> Self {
        kit.built(ctx);
        Scaled {
            kit,
            index: ctx.index(),
        }
    }
    fn call(&mut self, xs: Vec<u64>) -> Vec<u64> {
        body(&self.kit, self.index, xs)
    }
}

/// Numbers every item it sees, in the order it sees them (state kept
/// across batches in `&mut self`).
struct Numberer {
    next: u64,
}

#[step(mode = "actors", batch(max_size = 16, wait_ms = 1))]
impl Numberer {
    fn new() -> Self {
        Numberer { next: 0 }
    }
    fn call(&mut self, xs: Vec<u64>) -> Vec<(u64, u64)> {
        xs.into_iter()
            .map(|x| {
                self.next += 1;
                (x, self.next - 1)
            })
            .collect()
    }
}

/// Counts the items its model served; panics on `PANIC` (a string) or
/// `PANIC | 1` (not a string).
struct Stateful {
    served: u64,
    builds: Arc<AtomicUsize>,
}

#[step(mode = "actors", batch(max_size = 4, wait_ms = 1))]
impl Stateful {
    fn new(builds: Arc<AtomicUsize>) -> Self {
        builds.fetch_add(1, Ordering::SeqCst);
        Stateful { served: 0, builds }
    }
    fn call(&mut self, xs: Vec<u64>) -> Vec<(u64, u64)> {
        let _ = &self.builds;
        if xs.contains(&(PANIC | 1)) {
            std::panic::panic_any(7u32);
        }
        if xs.iter().any(|x| x & PANIC != 0) {
            panic!("a stateful batch panicked on purpose");
        }
        xs.into_iter()
            .map(|x| {
                self.served += 1;
                (x, self.served)
            })
            .collect()
    }
}

/// An `async fn` batch body on a thread replica, using tokio's timer.
#[step(
    mode = "actors",
    placement = "thread",
    batch(max_size = 8, wait_ms = 2)
)]
async fn snooze(xs: Vec<u64>) -> Vec<u64> {
    tokio::time::sleep(Duration::from_micros(50)).await;
    xs.into_iter().map(|x| x + OFF).collect()
}

// Stateless steps for the graph tests.

#[step(mode = "actors", batch(max_size = 4, wait_ms = 2))]
fn times_ten(xs: Vec<u64>) -> Vec<u64> {
    xs.into_iter().map(|x| x * 10).collect()
}

#[step(mode = "actors", replicas = 2, batch(max_size = 16, wait_ms = 1))]
async fn plus_seven(xs: Vec<u64>) -> Vec<u64> {
    tokio::task::yield_now().await;
    xs.into_iter().map(|x| x + 7).collect()
}

#[step]
fn pair(a: u64, b: u64) -> (u64, u64) {
    (a, b)
}

#[step]
fn parity(x: u64) -> u64 {
    x % 2
}

#[step(mode = "tasks")]
fn minus_one(x: u64) -> u64 {
    x - 1
}

/// A stream of `n` items, the first one holding its batch.
#[step]
fn items(n: u64) -> ItemStream<u64> {
    ItemStream::iter(std::iter::once(HOLD).chain(1..n))
}

// ================================================= concurrency, callers

/// 2,000 callers on tasks of a 4-worker runtime, two thread replicas:
/// each gets its own answer, every input runs exactly once, no batch is
/// empty or over `max_size`, and `health()`, `metrics()` and the body's
/// own log agree on the batches.
#[test]
fn two_thousand_callers_on_tasks_each_get_their_own_answer() {
    let (kit, _started) = Kit::new();
    let p = Eight::bind(kit.clone(), Input::<u64>::new())
        .deploy_with(
            DeployOptions::new()
                .replicas("Eight", 2)
                .queue_bound("Eight", 4096),
        )
        .unwrap();
    let rt = multi_rt();
    let n = 2_000u64;
    for (x, call) in spawn_calls(&rt, &p, 0..n) {
        assert_eq!(answer(&rt, call).unwrap(), x + OFF);
    }
    assert_eq!(kit.items(), (0..n).collect::<Vec<_>>(), "each ran once");
    let sizes = kit.sizes();
    assert!(sizes.iter().all(|s| (1..=8).contains(s)), "{sizes:?}");
    settled(&p, "Eight");
    let h = health_of(&p, "Eight");
    assert_eq!((h.batches, h.batched_calls), (sizes.len() as u64, n));
    let m = metrics_of(&p, "Eight");
    assert_eq!((m.requests, m.errors, m.overloaded), (n, 0, 0));
    assert_eq!(m.latency.count(), n);
    assert_eq!(m.batch_size.cumulative, expected_cumulative(&sizes));
    assert_eq!(m.batch_size.sum, n as f64);
}

/// Forty OS threads released at once by a barrier, each making 25
/// blocking calls to a one-replica `&mut self` model that numbers every
/// item: each caller gets its own input back with a number, and the
/// numbers are exactly 0..1000 (state changed once per item, batches run
/// one at a time, no item run twice or lost).
#[test]
fn forty_threads_of_blocking_calls_on_a_stateful_model_number_each_item_once() {
    let p = Numberer::bind(Input::<u64>::new())
        .deploy_with(DeployOptions::new().queue_bound("Numberer", 1024))
        .unwrap();
    let barrier = Arc::new(Barrier::new(40));
    let threads: Vec<_> = (0..40u64)
        .map(|t| {
            let p = p.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                (0..25u64)
                    .map(|i| {
                        let x = t * 1000 + i;
                        let (back, number) = p.call(x).unwrap();
                        assert_eq!(back, x, "thread {t} got another caller's answer");
                        number
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut numbers: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (0..1000).collect::<Vec<_>>());
    let h = health_of(&p, "Numberer");
    assert_eq!(h.batched_calls, 1000);
    assert!((1..=1000).contains(&h.batches), "{h:?}");
    settled(&p, "Numberer");
}

/// Calls queued behind a held batch leave in full batches of `max_size`
/// once the replica is free ("a replica takes up to `max_size` queued
/// calls"), and the batch figures of `health()` and `metrics()` after
/// this known workload are exact: batches 1, 8, 8, 8, 5.
#[test]
fn queued_calls_leave_in_full_batches_and_the_figures_are_exact() {
    let (kit, started) = Kit::new();
    let p = Eight::bind(kit.clone(), Input::<u64>::new())
        .deploy()
        .unwrap();
    let rt = multi_rt();
    let held = call_on_thread(&p, HOLD);
    assert_eq!(recv(&started), [HOLD]);
    let calls = spawn_calls(&rt, &p, 1..=29);
    wait_until("29 calls queued", || metrics_of(&p, "Eight").queued == 29);
    kit.latch.open();
    assert_eq!(recv(&held).unwrap(), HOLD + OFF);
    for (x, call) in calls {
        assert_eq!(answer(&rt, call).unwrap(), x + OFF);
    }
    assert_eq!(kit.sizes(), [1, 8, 8, 8, 5]);
    settled(&p, "Eight");
    let h = health_of(&p, "Eight");
    assert_eq!((h.batches, h.batched_calls, h.rebuilds), (5, 30, 0));
    let m = metrics_of(&p, "Eight");
    assert_eq!((m.requests, m.errors), (30, 0));
    assert_eq!(m.latency.count(), 30);
    assert_eq!(m.batch_size.cumulative, [1, 1, 1, 5, 5, 5, 5, 5, 5, 5]);
    assert_eq!(m.batch_size.sum, 30.0);
    assert_eq!(m.batch_size.count(), h.batches);
}

/// Blocking callers whose deadline passes while their calls wait behind
/// a running batch get `DeadlineExceeded`; their inputs never run in a
/// later batch; the callers queued with them get their own answers.
#[test]
fn blocking_callers_timing_out_while_queued_are_left_out_of_later_batches() {
    let (kit, started) = Kit::new();
    let p = Eight::bind(kit.clone(), Input::<u64>::new())
        .deploy()
        .unwrap();
    let held = call_on_thread(&p, HOLD);
    assert_eq!(recv(&started), [HOLD]);
    let quitters: Vec<_> = (100..106u64)
        .map(|x| {
            let p = p.clone();
            std::thread::spawn(move || p.call_timeout(x, Duration::from_millis(30)))
        })
        .collect();
    let stayers: Vec<_> = (200..204u64).map(|x| (x, call_on_thread(&p, x))).collect();
    wait_until("ten calls queued", || metrics_of(&p, "Eight").queued == 10);
    for q in quitters {
        let r = q.join().unwrap();
        assert!(
            matches!(r, Err(PipelineError::DeadlineExceeded { .. })),
            "{r:?}"
        );
    }
    kit.latch.open();
    assert_eq!(recv(&held).unwrap(), HOLD + OFF);
    for (x, rx) in stayers {
        assert_eq!(recv(&rx).unwrap(), x + OFF);
    }
    let mut ran = kit.items();
    ran.retain(|x| *x != HOLD);
    assert_eq!(ran, [200, 201, 202, 203], "given-up calls ran");
    settled(&p, "Eight");
    assert_eq!(health_of(&p, "Eight").batched_calls, 5);
    // The replica serves on.
    assert_eq!(p.call(9).unwrap(), 9 + OFF);
}

/// A caller that gives up while its batch is running: the others of that
/// batch get their own answers (the given-up one's answer goes to no
/// one), the next batch too, and the gauges return to zero.
#[test]
fn a_caller_giving_up_while_its_batch_runs_shifts_no_answer() {
    let (kit, started) = Kit::new();
    let p = Four::bind(kit.clone(), Input::<u64>::new())
        .deploy()
        .unwrap();
    let rt = multi_rt();
    let first = spawn_calls(&rt, &p, [HOLD | 1, 2, 3, 4]);
    let mut batch = recv(&started);
    batch.sort_unstable();
    assert_eq!(batch, [2, 3, 4, HOLD | 1]);
    let mut live = Vec::new();
    for (x, call) in first {
        if x == 3 {
            call.abort();
            assert!(rt.block_on(call).unwrap_err().is_cancelled());
        } else {
            live.push((x, call));
        }
    }
    let second = spawn_calls(&rt, &p, [5, 6, 7, 8]);
    wait_until("the second batch queued", || {
        metrics_of(&p, "Four").queued == 4
    });
    kit.latch.open();
    for (x, call) in live.into_iter().chain(second) {
        assert_eq!(answer(&rt, call).unwrap(), x + OFF, "caller {x}");
    }
    assert_eq!(kit.sizes(), [4, 4]);
    settled(&p, "Four");
    let m = metrics_of(&p, "Four");
    assert_eq!(
        (m.requests, m.errors),
        (8, 0),
        "a caller giving up is no step error"
    );
    // The next full batch is fine too.
    for (x, call) in spawn_calls(&rt, &p, [9, 10, 11, 12]) {
        assert_eq!(answer(&rt, call).unwrap(), x + OFF);
    }
}

// ============================================ wrong counts, panics, state

/// Batches answering too few or too many outputs, under concurrency on
/// two thread replicas: a caller whose batch answered the wrong number
/// gets a step error naming both counts, every other caller gets its own
/// answer, nobody ever gets a value from a bad batch, nothing is rebuilt.
#[test]
fn wrong_output_counts_under_concurrency_never_hand_anyone_a_value() {
    let (kit, _started) = Kit::new();
    let p = Eight::bind(kit.clone(), Input::<u64>::new())
        .deploy_with(
            DeployOptions::new()
                .replicas("Eight", 2)
                .queue_bound("Eight", 1024),
        )
        .unwrap();
    let rt = multi_rt();
    let xs: Vec<u64> = (0..600u64)
        .map(|i| match i {
            i if i % 23 == 3 => i | FEWER,
            i if i % 29 == 5 => i | MORE,
            i => i,
        })
        .collect();
    let calls = spawn_calls(&rt, &p, xs.iter().copied());
    let results: Vec<(u64, Result<u64, PipelineError>)> = calls
        .into_iter()
        .map(|(x, c)| (x, answer(&rt, c)))
        .collect();
    let batches = kit.batches();
    assert!(batches.iter().all(|b| !b.is_empty()), "an empty batch ran");
    assert_eq!(kit.items().len(), xs.len(), "an input ran twice or never");
    let mut errors = 0;
    for (x, r) in results {
        let b = batches.iter().find(|b| b.contains(&x)).expect("ran");
        let n = b.len();
        let fewer = b.iter().any(|y| y & FEWER != 0);
        let more = b.iter().any(|y| y & MORE != 0);
        let got = n - usize::from(fewer) + 2 * usize::from(more);
        match r {
            Ok(v) => {
                assert_eq!(got, n, "{x} got {v} from a batch answering {got} for {n}");
                assert_eq!(v, x + OFF, "{x} got another caller's answer");
            }
            Err(e @ PipelineError::Step { step: "Eight", .. }) => {
                assert_ne!(got, n, "{x} failed in a good batch: {e}");
                let cause = e.source().expect("a cause").to_string();
                assert!(
                    cause.contains(&format!("{got} outputs for {n} inputs")),
                    "{x}: {cause}"
                );
                errors += 1;
            }
            Err(e) => panic!("{x}: {e:?}"),
        }
    }
    assert!(
        errors >= 40,
        "the bad inputs failed their batches: {errors}"
    );
    settled(&p, "Eight");
    let h = health_of(&p, "Eight");
    assert_eq!((h.rebuilds, h.replicas_down, h.batched_calls), (0, 0, 600));
    let m = metrics_of(&p, "Eight");
    assert_eq!((m.requests, m.errors), (600, errors));
    assert_eq!(
        m.batch_size.count(),
        h.batches,
        "failed batches counted alike"
    );
    assert_eq!(m.batch_size.sum, 600.0);
    assert_eq!(h.batches, batches.len() as u64);
    assert_eq!(kit.builds().len(), 2);
    assert_eq!(kit.drops.load(Ordering::SeqCst), 0);
}

/// A panic in a `&mut self` batch body on a thread replica fails that
/// call with `Panicked`; the model is rebuilt, so its state starts over;
/// a panic with a non-string payload is the same; health and metrics say
/// so and the step serves on.
#[test]
fn a_panicking_stateful_batch_rebuilds_its_model_and_state() {
    quiet_expected_panics();
    let builds = Arc::new(AtomicUsize::new(0));
    let p = Stateful::bind(Arc::clone(&builds), Input::<u64>::new())
        .deploy()
        .unwrap();
    assert_eq!(p.call(1).unwrap(), (1, 1));
    assert_eq!(p.call(2).unwrap(), (2, 2));
    let e = p.call(PANIC).unwrap_err();
    assert!(
        matches!(&e, PipelineError::Panicked { step: "Stateful", message } if message.contains("on purpose")),
        "{e:?}"
    );
    wait_until("the model is rebuilt", || {
        let h = health_of(&p, "Stateful");
        (h.rebuilds, h.replicas_down) == (1, 0)
    });
    assert_eq!(
        p.call(3).unwrap(),
        (3, 1),
        "a fresh model, state from new()"
    );
    let e = p.call(PANIC | 1).unwrap_err();
    assert!(
        matches!(
            &e,
            PipelineError::Panicked {
                step: "Stateful",
                ..
            }
        ),
        "{e:?}"
    );
    wait_until("rebuilt again", || {
        let h = health_of(&p, "Stateful");
        (h.rebuilds, h.replicas_down) == (2, 0)
    });
    assert_eq!(p.call(4).unwrap(), (4, 1));
    assert_eq!(builds.load(Ordering::SeqCst), 3);
    assert!(p.health().is_healthy());
    let h = health_of(&p, "Stateful");
    assert_eq!((h.batches, h.batched_calls), (6, 6));
    let m = metrics_of(&p, "Stateful");
    assert_eq!((m.requests, m.errors, m.rebuilds), (6, 2, 2));
    assert_eq!(m.batch_size.cumulative, expected_cumulative(&[1; 6]));
    assert_eq!((m.queued, m.in_flight), (0, 0));
}

// ========================================================= batch sizes

/// `max_size = 1` on two thread replicas, 16 threads calling at once:
/// every batch holds one call, every caller its own answer, and the
/// histogram has every batch in its first bucket.
#[test]
fn batches_of_one_from_sixteen_threads() {
    let (kit, _started) = Kit::new();
    let p = Single::bind(kit.clone(), Input::<u64>::new())
        .deploy()
        .unwrap();
    let barrier = Arc::new(Barrier::new(16));
    let threads: Vec<_> = (0..16u64)
        .map(|t| {
            let p = p.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..20 {
                    let x = t * 100 + i;
                    assert_eq!(p.call(x).unwrap(), x + OFF);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(kit.sizes().iter().all(|&s| s == 1), "{:?}", kit.sizes());
    let m = metrics_of(&p, "Single");
    assert_eq!(m.batch_size.cumulative[0], 320);
    assert_eq!(m.batch_size.count(), 320);
    assert_eq!(health_of(&p, "Single").batches, 320);
}

/// `max_size = 100000, wait_ms = 0`: the thousand calls queued behind a
/// held batch all leave in the next batch (it takes what is queued, up to
/// `max_size`); the histogram puts that batch past its last bound (256).
#[test]
fn a_huge_max_size_with_no_wait_takes_everything_queued() {
    let (kit, started) = Kit::new();
    let p = Greedy::bind(kit.clone(), Input::<u64>::new())
        .deploy_with(DeployOptions::new().queue_bound("Greedy", 2048))
        .unwrap();
    let rt = multi_rt();
    let held = call_on_thread(&p, HOLD);
    assert_eq!(recv(&started), [HOLD]);
    let calls = spawn_calls(&rt, &p, 0..1000);
    wait_until("1000 queued", || metrics_of(&p, "Greedy").queued == 1000);
    kit.latch.open();
    assert_eq!(recv(&held).unwrap(), HOLD + OFF);
    for (x, call) in calls {
        assert_eq!(answer(&rt, call).unwrap(), x + OFF);
    }
    assert_eq!(kit.sizes(), [1, 1000]);
    let m = metrics_of(&p, "Greedy");
    assert_eq!(m.batch_size.cumulative, expected_cumulative(&[1, 1000]));
    assert_eq!(m.batch_size.cumulative[BATCH_BUCKETS.len() - 1], 1);
    assert_eq!(m.batch_size.sum, 1001.0);
    // A lone call is answered (no company to wait for).
    assert_eq!(p.call(5).unwrap(), 5 + OFF);
    assert_eq!(kit.sizes(), [1, 1000, 1]);
}

/// `max_size = usize::MAX` compiles; it must either deploy and answer,
/// or fail `deploy()` naming `max_size`: never a replica that panics
/// (allocating a batch of that size) or a call that hangs.
#[test]
fn the_largest_max_size_deploys_and_answers_or_is_refused() {
    quiet_expected_panics();
    let (kit, _started) = Kit::new();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let r = Boundless::bind(kit, Input::<u64>::new())
            .deploy()
            .map(|p| {
                let a = p.call(3);
                let b = p.call(4);
                let h = health_of(&p, "Boundless");
                (a, b, h.rebuilds)
            })
            .map_err(|e| e.to_string());
        let _ = tx.send(r);
    });
    match rx.recv_timeout(GUARD).expect("deploy or the calls hung") {
        Ok((a, b, rebuilds)) => {
            assert_eq!(a.unwrap(), 3 + OFF);
            assert_eq!(b.unwrap(), 4 + OFF);
            assert_eq!(rebuilds, 0);
        }
        Err(e) => assert!(e.contains("max_size"), "{e}"),
    }
}

/// `wait_ms = u64::MAX` on a thread replica (sync body): the batch's
/// deadline must not overflow the clock (a panic there would fail the
/// calls or rebuild the replica); a full batch leaves at once; a lone
/// call given up in a forming batch does not keep the drop from
/// returning.
#[test]
fn a_thread_replica_waiting_u64_max_ms_neither_overflows_nor_wedges() {
    quiet_expected_panics();
    let (kit, _started) = Kit::new();
    let p = Forever::bind(kit.clone(), Input::<u64>::new())
        .named("ForeverT")
        .deploy()
        .unwrap();
    let rt = multi_rt();
    for round in 0..3u64 {
        let calls = spawn_calls(&rt, &p, [round * 2, round * 2 + 1]);
        for (x, call) in calls {
            assert_eq!(answer(&rt, call).unwrap(), x + OFF, "round {round}");
        }
    }
    assert_eq!(kit.sizes(), [2, 2, 2]);
    let r = p.call_timeout(9, Duration::from_millis(20));
    assert!(
        matches!(r, Err(PipelineError::DeadlineExceeded { .. })),
        "{r:?}"
    );
    let h = health_of(&p, "ForeverT");
    assert_eq!((h.rebuilds, h.replicas_down), (0, 0));
    let (done_tx, done) = channel();
    std::thread::spawn(move || {
        drop(p);
        let _ = done_tx.send(());
    });
    assert!(
        done.recv_timeout(GUARD).is_ok(),
        "dropping the pipeline still waiting after {GUARD:?}"
    );
    assert_eq!(support::threads_named("ForeverT-"), 0);
    assert_eq!(kit.sizes(), [2, 2, 2], "the body ran for nobody");
}

// ================================================ replicas, autoscaling

/// Three thread replicas (a deploy option over the attribute's one),
/// each holding a batch: the calls queued meanwhile are spread over them,
/// leave in batches of at most `max_size`, and each gets its answer;
/// every replica was told it is one of three.
#[test]
fn three_replicas_batch_their_own_mailboxes() {
    let (kit, started) = Kit::new();
    let p = Eight::bind(kit.clone(), Input::<u64>::new())
        .deploy_with(DeployOptions::new().replicas("Eight", 3))
        .unwrap();
    assert_eq!(p.report()[0].replicas, 3);
    let mut held = Vec::new();
    for i in 0..3u64 {
        held.push((HOLD | i, call_on_thread(&p, HOLD | i)));
        assert_eq!(recv(&started), [HOLD | i]);
    }
    let holders: BTreeSet<usize> = kit.log.lock().unwrap().iter().map(|(r, _)| *r).collect();
    assert_eq!(holders, [0, 1, 2].into(), "each replica holds one batch");
    let rt = multi_rt();
    let calls = spawn_calls(&rt, &p, 0..30);
    wait_until("30 queued", || metrics_of(&p, "Eight").queued == 30);
    kit.latch.open();
    for (x, rx) in held {
        assert_eq!(recv(&rx).unwrap(), x + OFF);
    }
    for (x, call) in calls {
        assert_eq!(answer(&rt, call).unwrap(), x + OFF);
    }
    assert!(kit.sizes().iter().all(|s| (1..=8).contains(s)));
    let mut builds = kit.builds();
    builds.sort_unstable();
    assert_eq!(builds, [(0, 3), (1, 3), (2, 3)]);
    let h = health_of(&p, "Eight");
    assert_eq!((h.replicas, h.batched_calls), (3, 33));
    settled(&p, "Eight");
}

/// An autoscaled batched step: a held batch with calls queued behind it
/// scales the step up; new calls are batched and answered by the new
/// replicas while the first is still held; once the load is gone it
/// scales back down and still answers.
#[test]
fn an_autoscaled_batched_step_serves_from_new_replicas_while_one_is_held() {
    let (kit, started) = Kit::new();
    let p = Scaled::bind(kit.clone(), Input::<u64>::new())
        .deploy()
        .unwrap();
    let rt = multi_rt();
    let held = call_on_thread(&p, HOLD);
    assert_eq!(recv(&started), [HOLD]);
    let stuck = spawn_calls(&rt, &p, 0..20);
    wait_until("scaled up to 3", || {
        let h = health_of(&p, "Scaled");
        (h.replicas, h.target_replicas) == (3, 3)
    });
    let fresh = spawn_calls(&rt, &p, 100..120);
    for (x, call) in fresh {
        assert_eq!(answer(&rt, call).unwrap(), x + OFF, "served while held");
    }
    let by_new: usize = kit
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|(r, _)| *r > 0)
        .map(|(_, b)| b.len())
        .sum();
    assert_eq!(by_new, 20, "the new replicas served the fresh calls");
    kit.latch.open();
    assert_eq!(recv(&held).unwrap(), HOLD + OFF);
    for (x, call) in stuck {
        assert_eq!(answer(&rt, call).unwrap(), x + OFF);
    }
    assert!(kit.sizes().iter().all(|s| (1..=4).contains(s)));
    wait_until("scaled back down to 1", || {
        let h = health_of(&p, "Scaled");
        (h.replicas, h.target_replicas) == (1, 1)
    });
    assert_eq!(p.call(7).unwrap(), 7 + OFF);
    let h = health_of(&p, "Scaled");
    assert_eq!(h.batched_calls, 42);
    assert!(
        kit.builds().iter().all(|&(i, _)| i < 3),
        "{:?}",
        kit.builds()
    );
    settled(&p, "Scaled");
}

// ================================================================ graphs

/// Batched steps inside a bigger graph: the shared input fans out to a
/// batched step and to a chain of the same batched step (a second node,
/// `times_ten_1`) into an async batched step on two replicas, through a
/// tasks step, joined by a local step. 300 concurrent callers each get
/// their own pair; each batched node counts its own 300 calls.
#[test]
fn batched_nodes_in_a_fan_out_and_a_chain_answer_each_caller() {
    let x = Input::<u64>::new().shared();
    let a = times_ten(x.clone());
    let b = minus_one(plus_seven(times_ten(x)));
    let p = pair(a, b)
        .deploy_with(
            DeployOptions::new()
                .default_queue_bound(1024)
                .replicas("times_ten_1", 3),
        )
        .unwrap();
    let replicas: Vec<(&str, usize)> = p.report().iter().map(|r| (r.step, r.replicas)).collect();
    assert!(replicas.contains(&("times_ten", 1)), "{replicas:?}");
    assert!(replicas.contains(&("times_ten_1", 3)), "{replicas:?}");
    assert!(replicas.contains(&("plus_seven", 2)), "{replicas:?}");
    let rt = multi_rt();
    for (x, call) in spawn_calls(&rt, &p, 1..=300) {
        assert_eq!(answer(&rt, call).unwrap(), (x * 10, x * 10 + 6));
    }
    for step in ["times_ten", "times_ten_1", "plus_seven"] {
        let h = health_of(&p, step);
        assert_eq!(h.batched_calls, 300, "{step}: {h:?}");
        let m = metrics_of(&p, step);
        assert_eq!((m.requests, m.errors), (300, 0), "{step}");
        assert_eq!(m.batch_size.sum, 300.0, "{step}");
        assert_eq!(m.batch_size.count(), h.batches, "{step}");
        settled(&p, step);
    }
}

/// A route between two batched steps: only the chosen branch runs, each
/// caller gets its own branch's answer, each branch counts only the
/// calls routed to it.
#[test]
fn a_route_between_batched_steps_batches_only_what_it_routes() {
    let x = Input::<u64>::new().shared();
    let p = route(parity(x.clone()))
        .branch(0, times_ten(x.clone()))
        .branch(1, plus_seven(x))
        .deploy_with(DeployOptions::new().default_queue_bound(1024))
        .unwrap();
    let rt = multi_rt();
    for (x, call) in spawn_calls(&rt, &p, 0..200) {
        let want = if x % 2 == 0 { x * 10 } else { x + 7 };
        assert_eq!(answer(&rt, call).unwrap(), want, "caller {x}");
    }
    assert_eq!(health_of(&p, "times_ten").batched_calls, 100);
    assert_eq!(health_of(&p, "plus_seven").batched_calls, 100);
    assert_eq!(metrics_of(&p, "times_ten").requests, 100);
    assert_eq!(metrics_of(&p, "plus_seven").requests, 100);
}

/// A batched step applied to each item of a stream (`map_each_with`):
/// the items queued while the first batch is held leave together in
/// full batches (the docs: a batched step downstream gets items of one
/// stream in the same batches), and the collected answers keep order.
#[test]
fn a_streams_items_share_batches_and_keep_their_order() {
    let (kit, started) = Kit::new();
    let k = kit.clone();
    let p = items(Input::<u64>::new())
        .map_each_with(move |item| Eight::bind(k.clone(), item))
        .collect()
        .deploy()
        .unwrap();
    let out = call_on_thread(&p, 20);
    let first = recv(&started);
    assert!(first.contains(&HOLD) && first.len() <= 8, "{first:?}");
    wait_until("all 20 items inside the step", || {
        metrics_of(&p, "Eight").in_flight == 20
    });
    kit.latch.open();
    let want: Vec<u64> = std::iter::once(HOLD)
        .chain(1..20)
        .map(|x| x + OFF)
        .collect();
    assert_eq!(recv(&out).unwrap(), want);
    let sizes = kit.sizes();
    assert_eq!(sizes.iter().sum::<usize>(), 20);
    assert_eq!(sizes[1], 8.min(20 - first.len()), "{sizes:?}");
    assert!(sizes.iter().all(|s| (1..=8).contains(s)), "{sizes:?}");
    let h = health_of(&p, "Eight");
    assert_eq!((h.batches, h.batched_calls), (sizes.len() as u64, 20));
}

/// An `async fn` batch body placed on a thread replica, using tokio's
/// timer, called with blocking calls from 24 threads at once.
#[test]
fn an_async_body_on_a_thread_replica_serves_blocking_callers() {
    let p = snooze(Input::<u64>::new())
        .deploy_with(DeployOptions::new().queue_bound("snooze", 1024))
        .unwrap();
    let barrier = Arc::new(Barrier::new(24));
    let threads: Vec<_> = (0..24u64)
        .map(|t| {
            let p = p.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                (0..20u64)
                    .map(|i| {
                        let x = t * 100 + i;
                        p.call(x).map(|v| (x, v))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for t in threads {
        for r in t.join().unwrap() {
            let (x, v) = r.unwrap();
            assert_eq!(v, x + OFF);
        }
    }
    let h = health_of(&p, "snooze");
    assert_eq!(h.batched_calls, 480);
    assert_eq!(h.rebuilds, 0);
}

// ======================================================= deploy options

/// Deploy options on a batched step: replicas and autoscaling from code
/// or a file are taken; bad values fail `deploy()` naming the step and
/// key; batch settings in a deploy file (which has no batch keys) are a
/// typed error naming the key, never silently ignored.
#[test]
fn deploy_options_on_a_batched_step_are_taken_or_refused_clearly() {
    let (kit, _started) = Kit::new();
    let graph = || Eight::bind(kit.clone(), Input::<u64>::new());
    let refuse = |o: DeployOptions, key: &str| match graph().deploy_with(o) {
        Err(DeployError::InvalidOption { step, message }) => {
            assert_eq!(step, "Eight", "{message}");
            assert!(message.contains(key), "`{key}` not in {message}");
        }
        Err(e) => panic!("{key}: {e:?}"),
        Ok(_) => panic!("{key}: deployed"),
    };
    refuse(DeployOptions::new().replicas("Eight", 0), "replicas");
    refuse(DeployOptions::new().replicas("Eight", 5000), "4096");
    refuse(DeployOptions::new().queue_bound("Eight", 0), "queue_bound");
    refuse(
        DeployOptions::from_toml_str("[steps.Eight]\nreplicas = 0").unwrap(),
        "replicas",
    );

    for text in [
        "[steps.Eight]\nmax_size = 4",
        "[steps.Eight]\nwait_ms = 0",
        "[steps.Eight.batch]\nmax_size = 0",
        "[steps.Eight]\nbatch = { max_size = 4, wait_ms = 1 }",
    ] {
        match DeployOptions::from_toml_str(text) {
            Err(
                e @ DeployError::Options {
                    source: OptionsError::Toml(_),
                    ..
                },
            ) => {
                let key = if text.contains("batch") {
                    "batch"
                } else if text.contains("max_size") {
                    "max_size"
                } else {
                    "wait_ms"
                };
                let shown = format!(
                    "{e} {}",
                    e.source().map(|s| s.to_string()).unwrap_or_default()
                );
                assert!(shown.contains(key), "{text}: {shown}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    for text in [
        "[steps.Eight]\nreplicas = -2",
        "[steps.Eight]\nqueue_bound = -1",
    ] {
        assert!(
            matches!(
                DeployOptions::from_toml_str(text),
                Err(DeployError::Options {
                    source: OptionsError::Toml(_),
                    ..
                })
            ),
            "{text}"
        );
    }
    let json = r#"{"steps": {"Eight": {"batch": {"wait_ms": -1}}}}"#;
    match DeployOptions::from_json_str(json) {
        Err(
            e @ DeployError::Options {
                source: OptionsError::Json(_),
                ..
            },
        ) => assert!(e.to_string().contains("batch"), "{e}"),
        other => panic!("{other:?}"),
    }

    // Taken: replicas from a file, autoscaling from code.
    let o = DeployOptions::from_toml_str("[steps.Eight]\nreplicas = 2\nqueue_bound = 16").unwrap();
    let p = graph().deploy_with(o).unwrap();
    let r = &p.report()[0];
    assert_eq!(
        (r.replicas, r.queue_bound, r.running),
        (2, 16, Mode::Actors)
    );
    assert_eq!(p.call(1).unwrap(), 1 + OFF);
    drop(p);
    let policy = AutoscalePolicy {
        min_replicas: 2,
        max_replicas: 4,
        ..AutoscalePolicy::DEFAULT
    };
    let p = graph()
        .deploy_with(DeployOptions::new().autoscale("Eight", policy))
        .unwrap();
    assert_eq!(p.report()[0].autoscale, Some(policy));
    assert_eq!(health_of(&p, "Eight").replicas, 2);
    assert_eq!(p.call(2).unwrap(), 2 + OFF);
    assert_eq!(health_of(&p, "Eight").batched_calls, 1);
}

/// Forced local (`DeployOptions::local()`, for tests) a batched step runs
/// inline: each caller, from many threads, gets its own answer; a body
/// answering the wrong count is a step error naming the counts; a panic
/// in it is `Panicked`, not a panic in the caller.
#[test]
fn a_batched_step_forced_local_keeps_its_checks() {
    quiet_expected_panics();
    let (kit, _started) = Kit::new();
    let p = Eight::bind(kit.clone(), Input::<u64>::new())
        .deploy_with(DeployOptions::local())
        .unwrap();
    assert_eq!(p.report()[0].running, Mode::Local);
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let p = p.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let x = t * 100 + i;
                    assert_eq!(p.call(x).unwrap(), x + OFF);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(kit.sizes().iter().all(|s| (1..=8).contains(s)));
    // (Inline the message says "must return one output per input"; from
    // a replica it names the counts: either says what is wrong.)
    for x in [FEWER, MORE] {
        let e = p.call(x).unwrap_err();
        assert!(
            matches!(e, PipelineError::Step { step: "Eight", .. }),
            "{e:?}"
        );
        let cause = e.source().unwrap().to_string();
        assert!(
            cause.contains("output") && cause.contains("input"),
            "{cause}"
        );
    }
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.call(PANIC)));
    match r {
        Ok(Err(PipelineError::Panicked {
            step: "Eight",
            message,
        })) => {
            assert!(message.contains("on purpose"), "{message}");
        }
        Ok(other) => panic!("{other:?}"),
        Err(_) => panic!("the step's panic reached the caller"),
    }
    assert_eq!(p.call(5).unwrap(), 5 + OFF);
}

// ===================================================== shutdown and drop

/// `shutdown()` while a batch is held and twelve calls are queued behind
/// it: new calls are refused with `ShuttingDown`, the queued calls are
/// still answered (each its own), then `shutdown()` returns.
#[test]
fn shutdown_with_batches_queued_answers_them_and_refuses_new_calls() {
    let (kit, started) = Kit::new();
    let p = Eight::bind(kit.clone(), Input::<u64>::new())
        .deploy()
        .unwrap();
    let rt = multi_rt();
    let held = spawn_calls(&rt, &p, [HOLD]);
    assert_eq!(recv(&started), [HOLD]);
    let queued = spawn_calls(&rt, &p, 0..12);
    wait_until("12 queued", || metrics_of(&p, "Eight").queued == 12);
    let (done_tx, done) = channel();
    {
        let p = p.clone();
        std::thread::spawn(move || {
            let _ = done_tx.send(p.shutdown());
        });
    }
    wait_until("shutdown begins", || p.is_shutting_down());
    assert!(matches!(p.call(99), Err(PipelineError::ShuttingDown)));
    kit.latch.open();
    for (x, call) in held.into_iter().chain(queued) {
        assert_eq!(answer(&rt, call).unwrap(), x + OFF, "caller {x}");
    }
    recv(&done).unwrap();
    assert!(!kit.items().contains(&99));
    assert_eq!(health_of(&p, "Eight").batched_calls, 13);
}

/// A held batch that panics after `shutdown()` began, with six calls
/// queued behind it: its caller gets `Panicked`, every queued caller is
/// answered (the replica rebuilt) or fails clearly, none hangs, and
/// `shutdown()` returns.
#[test]
fn a_batch_panicking_during_shutdown_leaves_no_queued_caller_hanging() {
    quiet_expected_panics();
    let (kit, started) = Kit::new();
    let p = Eight::bind(kit.clone(), Input::<u64>::new())
        .deploy()
        .unwrap();
    let rt = multi_rt();
    let held = spawn_calls(&rt, &p, [HOLD | PANIC]);
    assert_eq!(recv(&started), [HOLD | PANIC]);
    let queued = spawn_calls(&rt, &p, 0..6);
    wait_until("6 queued", || metrics_of(&p, "Eight").queued == 6);
    let (done_tx, done) = channel();
    {
        let p = p.clone();
        std::thread::spawn(move || {
            let _ = done_tx.send(p.shutdown());
        });
    }
    wait_until("shutdown begins", || p.is_shutting_down());
    kit.latch.open();
    for (_, call) in held {
        let r = answer(&rt, call);
        assert!(
            matches!(&r, Err(PipelineError::Panicked { step: "Eight", .. })),
            "{r:?}"
        );
    }
    for (x, call) in queued {
        match answer(&rt, call) {
            Ok(v) => assert_eq!(v, x + OFF),
            Err(e) => assert_eq!(e.step(), Some("Eight"), "{x}: {e:?}"),
        }
    }
    done.recv_timeout(GUARD)
        .expect("shutdown() never returned")
        .unwrap();
    settled(&p, "Eight");
}

/// `shutdown()` while the only call in a forming batch (waiting an hour
/// for company) was given up by its caller: no live call is in flight,
/// so `shutdown()` returns.
#[test]
fn shutdown_with_only_a_given_up_call_in_a_forming_batch_returns() {
    let (kit, _started) = Kit::new();
    let p = Patient::bind(kit.clone(), Input::<u64>::new())
        .deploy()
        .unwrap();
    let r = p.call_timeout(1, Duration::from_millis(20));
    assert!(
        matches!(r, Err(PipelineError::DeadlineExceeded { .. })),
        "{r:?}"
    );
    let (done_tx, done) = channel();
    {
        let p = p.clone();
        std::thread::spawn(move || {
            let _ = done_tx.send(p.shutdown());
        });
    }
    done.recv_timeout(GUARD)
        .expect("shutdown() waited for a call nobody waits for")
        .unwrap();
    assert!(matches!(p.call(2), Err(PipelineError::ShuttingDown)));
    assert!(kit.batches().is_empty(), "{:?}", kit.batches());
}

/// `shutdown()` while one call sits in a batch that would wait an hour
/// for company: no call can join it any more, so waiting is pointless;
/// the call must be answered (or failed clearly) and `shutdown()` must
/// return, not wait out `wait_ms`.
#[test]
fn shutdown_does_not_wait_out_a_forming_batch() {
    let (kit, _started) = Kit::new();
    let p = Patient::bind(kit.clone(), Input::<u64>::new())
        .deploy()
        .unwrap();
    let rt = multi_rt();
    let lone = spawn_calls(&rt, &p, [1]);
    wait_until("the call is taken into a forming batch", || {
        let m = metrics_of(&p, "Patient");
        (m.in_flight, m.queued) == (1, 0)
    });
    let (done_tx, done) = channel();
    {
        let p = p.clone();
        std::thread::spawn(move || {
            let _ = done_tx.send(p.shutdown());
        });
    }
    let shut = done.recv_timeout(GUARD);
    assert!(shut.is_ok(), "shutdown() still waiting after {GUARD:?}");
    shut.unwrap().unwrap();
    for (x, call) in lone {
        match answer(&rt, call) {
            Ok(v) => assert_eq!(v, x + OFF),
            Err(e) => assert!(e.step() == Some("Patient"), "{e:?}"),
        }
    }
}

/// Dropping the last handle while the only call (its caller gone) sits
/// in a batch waiting an hour for company: the drop returns (it joins
/// the replica thread, which must not sleep out `wait_ms`), and the body
/// never runs for nobody.
#[test]
fn dropping_the_pipeline_with_a_given_up_call_in_a_forming_batch_returns() {
    let (kit, _started) = Kit::new();
    let p = Patient::bind(kit.clone(), Input::<u64>::new())
        .deploy()
        .unwrap();
    let r = p.call_timeout(1, Duration::from_millis(20));
    assert!(
        matches!(r, Err(PipelineError::DeadlineExceeded { .. })),
        "{r:?}"
    );
    let (done_tx, done) = channel();
    std::thread::spawn(move || {
        drop(p);
        let _ = done_tx.send(());
    });
    assert!(
        done.recv_timeout(GUARD).is_ok(),
        "dropping the pipeline still waiting after {GUARD:?}"
    );
    assert!(kit.batches().is_empty(), "{:?}", kit.batches());
}

/// Dropping the last handle while a batch is held (its caller gone) and
/// five given-up calls wait behind it: the drop waits for the running
/// batch, then returns; the queued calls never run; the model is
/// dropped.
#[test]
fn dropping_the_pipeline_with_given_up_calls_queued_returns_and_runs_none() {
    let (kit, started) = Kit::new();
    let p = Eight::bind(kit.clone(), Input::<u64>::new())
        .deploy()
        .unwrap();
    let r = p.call_timeout(HOLD, Duration::from_millis(20));
    assert!(
        matches!(r, Err(PipelineError::DeadlineExceeded { .. })),
        "{r:?}"
    );
    assert_eq!(recv(&started), [HOLD]);
    for x in 10..15 {
        let r = p.call_timeout(x, Duration::from_millis(5));
        assert!(
            matches!(r, Err(PipelineError::DeadlineExceeded { .. })),
            "{r:?}"
        );
    }
    assert_eq!(
        metrics_of(&p, "Eight").queued,
        5,
        "given-up calls hold slots"
    );
    let (done_tx, done) = channel();
    std::thread::spawn(move || {
        drop(p);
        let _ = done_tx.send(());
    });
    kit.latch.open();
    assert!(
        done.recv_timeout(GUARD).is_ok(),
        "dropping the pipeline still waiting after {GUARD:?}"
    );
    assert_eq!(kit.batches(), [vec![HOLD]], "given-up queued calls ran");
    assert_eq!(kit.drops.load(Ordering::SeqCst), 1);
}
