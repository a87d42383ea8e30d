//! An outsider's hostile tests of the fixed-size actor pool (its replica
//! list set once and read with no lock, its mailboxes closed only when the
//! pool is dropped, its threads joined by the runner afterwards), of the
//! autoscaled pool beside it, of deploys whose constructors fail beside
//! built replicas, and of the per-thread call counters (`call_stats.rs`:
//! 16 owned shards claimed per thread, one shared shard for the rest).
//!
//! No sleeps to wait for work: every wait is on the thing itself (answers,
//! channels, gates, counters the runtime updates right after an event the
//! test caused), each with a generous guard that fails instead of hanging.
//! Each test names its nodes (`.named(..)`) so that the replica threads it
//! counts (`/proc/self/task/*/comm`, `<node>-<index>`, 15 bytes at most)
//! are its own while the other tests run beside it.
//!
//! Two faults these tests found are fixed, and their tests run: a call
//! future dropped (or a call made) by a thread-local's destructor aborted
//! the process (the clock read went through quanta's `mock` thread-local,
//! already destroyed: quanta is now built without it); and dropping the
//! last handle on a one-worker runtime's worker hung while a thread
//! replica's call needed that worker (replica threads are now joined with
//! the worker's tasks handed over).

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use pipeline_core::prelude::*;
use pipeline_core::{AutoscalePolicy, StepMetrics};
use tokio::sync::Semaphore;

mod support;
use support::{recv, threads_named, Latch as Gate, GUARD};

/// Inputs below this wait at the gate.
const HOLD_BELOW: u64 = 1_000;

// ------------------------------------------------------------- helpers

/// A gate async steps wait at (a semaphore the test hands permits out of).
#[derive(Clone)]
struct AsyncGate(Arc<Semaphore>);

impl Default for AsyncGate {
    fn default() -> Self {
        AsyncGate(Arc::new(Semaphore::new(0)))
    }
}

impl AsyncGate {
    fn open(&self) {
        self.0.add_permits(Semaphore::MAX_PERMITS / 2);
    }
    async fn pass(&self) {
        self.0.acquire().await.expect("gate").forget();
    }
}

/// Which inputs a step ran on, in order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<u64>>>);

impl Seen {
    fn push(&self, x: u64) {
        self.0.lock().unwrap().push(x);
    }
    fn all(&self) -> Vec<u64> {
        self.0.lock().unwrap().clone()
    }
    fn set(&self) -> BTreeSet<u64> {
        self.all().into_iter().collect()
    }
}

/// Waits until `cond` holds, failing after the guard.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < GUARD, "never held: {what}");
        std::thread::yield_now();
    }
}

/// The state (`/proc/<tid>/stat`'s third field) of each thread named
/// `prefix...`, for diagnostics.
fn thread_states(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .map(|dir| {
            dir.filter_map(|t| {
                let path = t.ok()?.path();
                let name = std::fs::read_to_string(path.join("comm")).ok()?;
                let stat = std::fs::read_to_string(path.join("stat")).ok()?;
                let state = stat
                    .rsplit(')')
                    .next()?
                    .split_whitespace()
                    .next()?
                    .to_string();
                name.starts_with(prefix)
                    .then(|| format!("{} {}", name.trim(), state))
            })
            .collect()
        })
        .unwrap_or_default()
}

/// Waits until no thread named `prefix...` is left. A replica thread that
/// was joined can still be listed for a moment (the kernel ends a thread
/// after waking its joiner), so this waits, within the guard; whether it
/// was joined is checked by its models' `Drop`, counted before it ends.
fn gone(prefix: &str) {
    let start = std::time::Instant::now();
    while threads_named(prefix) != 0 {
        assert!(
            start.elapsed() < GUARD,
            "threads left: {:?}",
            thread_states(prefix)
        );
        std::thread::yield_now();
    }
}

/// Silences the panic messages of the panics these tests cause on
/// purpose (constructors that "explode", calls in a "bad state"); others
/// print as usual.
fn quiet_expected_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let msg = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("");
            if msg.contains("exploded") || msg.starts_with("bad state for") {
                return;
            }
            default(info);
        }));
    });
}

/// Runs `f` on a thread of its own and waits for it within the guard: a
/// hang fails the test (the stuck thread is left behind) instead of
/// hanging the whole run. A panic in `f` is the test's.
fn run_guarded(what: &str, f: impl FnOnce() + Send + 'static) {
    let (done, done_rx) = channel();
    let thread = std::thread::spawn(move || {
        f();
        let _ = done.send(());
    });
    match done_rx.recv_timeout(GUARD) {
        Ok(()) => thread.join().unwrap(),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(thread.join().unwrap_err())
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("hung: {what}"),
    }
}

/// Starts a blocking call per input, each on a thread of its own, one
/// after the other: each is started (it said so on `started`) before the
/// next is made, so the router sees it as the replica's outstanding work.
/// (Made at once, two calls can both go to an idle replica 0: a replica
/// that has taken a call from its mailbox and not yet marked itself busy
/// looks idle.)
fn hold_in_turn<T, const N: usize>(
    p: &Pipeline<T, T>,
    inputs: [T; N],
    started: &Receiver<T>,
) -> Vec<std::thread::JoinHandle<Result<T, PipelineError>>>
where
    T: Send + PartialEq + std::fmt::Debug + Copy + 'static,
{
    inputs
        .into_iter()
        .map(|x| {
            let p = p.clone();
            let call = std::thread::spawn(move || p.call(x));
            assert_eq!(recv(started), x);
            call
        })
        .collect()
}

/// Awaits `f` within the guard.
async fn guarded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(GUARD, f)
        .await
        .expect("waited too long")
}

fn multi_rt(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

fn metric<I: Send + 'static, O: Send + 'static>(p: &Pipeline<I, O>, step: &str) -> StepMetrics {
    let all = p.metrics();
    let names: Vec<_> = all.iter().map(|m| m.step).collect();
    all.into_iter()
        .find(|m| m.step == step)
        .unwrap_or_else(|| panic!("no step {step} in {names:?}"))
}

/// Every call that reached the step was counted in and out exactly once.
fn assert_settled(m: &StepMetrics, requests: u64) {
    assert_eq!(
        (m.requests, m.latency.count(), m.in_flight, m.queued),
        (requests, requests, 0, 0),
        "step {} not settled: {m:?}",
        m.step
    );
    assert!(
        m.latency.cumulative.windows(2).all(|w| w[0] <= w[1]),
        "cumulative buckets go down: {:?}",
        m.latency.cumulative
    );
    assert_eq!(m.latency.cumulative.len(), m.latency.bounds.len() + 1);
}

/// An autoscale policy pinned at `n` replicas (the autoscaled pool's code
/// path, with no scaling to wait for).
fn pinned(n: usize) -> AutoscalePolicy {
    AutoscalePolicy {
        min_replicas: n,
        max_replicas: n,
        target_ongoing_requests: 1,
        upscale_delay_ms: 0,
        downscale_delay_ms: 0,
    }
}

// --------------------------------------------------------------- models

/// What a held model shares with its test.
#[derive(Clone)]
struct Probe {
    gate: Gate,
    agate: AsyncGate,
    started: Sender<u64>,
    seen: Seen,
    builds: Arc<AtomicUsize>,
    drops: Arc<AtomicUsize>,
}

impl Probe {
    fn new() -> (Self, Receiver<u64>) {
        let (started, rx) = channel();
        (
            Probe {
                gate: Gate::default(),
                agate: AsyncGate::default(),
                started,
                seen: Seen::default(),
                builds: Arc::new(AtomicUsize::new(0)),
                drops: Arc::new(AtomicUsize::new(0)),
            },
            rx,
        )
    }
    fn enter(&self, x: u64) {
        self.seen.push(x);
        let _ = self.started.send(x);
    }
    fn builds(&self) -> usize {
        self.builds.load(Ordering::SeqCst)
    }
    fn drops(&self) -> usize {
        self.drops.load(Ordering::SeqCst)
    }
}

/// Thread replicas, sync body: inputs below [`HOLD_BELOW`] wait at the gate;
/// answers `3x`. Counts its builds and drops.
struct HeldT {
    p: Probe,
}

#[step(mode = "actors", replicas = 2, placement = "thread")]
impl HeldT {
    fn new(p: Probe) -> Self {
        p.builds.fetch_add(1, Ordering::SeqCst);
        HeldT { p }
    }
    fn call(&self, x: u64) -> u64 {
        self.p.enter(x);
        if x < HOLD_BELOW {
            self.p.gate.wait();
        }
        x * 3
    }
}

impl Drop for HeldT {
    fn drop(&mut self) {
        self.p.drops.fetch_add(1, Ordering::SeqCst);
    }
}

/// Task replicas, async body, otherwise as [`HeldT`].
struct HeldK {
    p: Probe,
}

#[step(mode = "actors", replicas = 2, placement = "task")]
impl HeldK {
    fn new(p: Probe) -> Self {
        p.builds.fetch_add(1, Ordering::SeqCst);
        HeldK { p }
    }
    async fn call(&self, x: u64) -> u64 {
        self.p.enter(x);
        if x < HOLD_BELOW {
            self.p.agate.pass().await;
        }
        x * 3
    }
}

impl Drop for HeldK {
    fn drop(&mut self) {
        self.p.drops.fetch_add(1, Ordering::SeqCst);
    }
}

/// Which constructors fail (return `Err`) or panic, by replica index.
#[derive(Clone)]
struct BuildPlan {
    fail: Vec<usize>,
    panic: Vec<usize>,
    built: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
}

impl BuildPlan {
    fn new(fail: &[usize], panic: &[usize]) -> Self {
        BuildPlan {
            fail: fail.to_vec(),
            panic: panic.to_vec(),
            built: Arc::new(AtomicUsize::new(0)),
            dropped: Arc::new(AtomicUsize::new(0)),
        }
    }
    fn make(&self, i: usize) -> Result<(), String> {
        if self.panic.contains(&i) {
            panic!("replica {i} exploded");
        }
        if self.fail.contains(&i) {
            return Err(format!("replica {i} has no weights"));
        }
        self.built.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn built(&self) -> usize {
        self.built.load(Ordering::SeqCst)
    }
    fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }
}

struct BuildT {
    plan: BuildPlan,
}

#[step(mode = "actors", replicas = 4, placement = "thread")]
impl BuildT {
    fn new(ctx: &ReplicaContext, plan: BuildPlan) -> Result<Self, String> {
        plan.make(ctx.index())?;
        Ok(BuildT { plan })
    }
    fn call(&self, x: u8) -> u8 {
        x
    }
}

impl Drop for BuildT {
    fn drop(&mut self) {
        self.plan.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

struct BuildK {
    plan: BuildPlan,
}

#[step(mode = "actors", replicas = 4, placement = "task")]
impl BuildK {
    fn new(ctx: &ReplicaContext, plan: BuildPlan) -> Result<Self, String> {
        plan.make(ctx.index())?;
        Ok(BuildK { plan })
    }
    async fn call(&self, x: u8) -> u8 {
        x
    }
}

impl Drop for BuildK {
    fn drop(&mut self) {
        self.plan.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// A model that panics on negative inputs; with `poison` set, a panic
/// also makes every later build fail until `failing` is cleared. Inputs
/// equal to [`FRAIL_HOLD`] wait at the gate (thread replicas only).
#[derive(Clone)]
struct Frail {
    poison: bool,
    failing: Arc<AtomicBool>,
    builds: Arc<AtomicUsize>,
    failed_builds: Arc<AtomicUsize>,
    drops: Arc<AtomicUsize>,
    gate: Gate,
    started: Sender<i64>,
}

const FRAIL_HOLD: i64 = 1_000_000;

impl Frail {
    fn new(poison: bool) -> (Self, Receiver<i64>) {
        let (started, rx) = channel();
        (
            Frail {
                poison,
                failing: Arc::new(AtomicBool::new(false)),
                builds: Arc::new(AtomicUsize::new(0)),
                failed_builds: Arc::new(AtomicUsize::new(0)),
                drops: Arc::new(AtomicUsize::new(0)),
                gate: Gate::default(),
                started,
            },
            rx,
        )
    }
    fn build(&self) -> Result<(), String> {
        if self.failing.load(Ordering::SeqCst) {
            self.failed_builds.fetch_add(1, Ordering::SeqCst);
            return Err("the weights are gone".into());
        }
        self.builds.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn run(&self, x: i64) -> i64 {
        let _ = self.started.send(x);
        if x < 0 {
            if self.poison {
                self.failing.store(true, Ordering::SeqCst);
            }
            panic!("bad state for {x}");
        }
        if x == FRAIL_HOLD {
            self.gate.wait();
        }
        x * 10
    }
}

struct FrailT {
    f: Frail,
}

#[step(mode = "actors", replicas = 3, placement = "thread")]
impl FrailT {
    fn new(f: Frail) -> Result<Self, String> {
        f.build()?;
        Ok(FrailT { f })
    }
    fn call(&self, x: i64) -> i64 {
        self.f.run(x)
    }
}

impl Drop for FrailT {
    fn drop(&mut self) {
        self.f.drops.fetch_add(1, Ordering::SeqCst);
    }
}

struct FrailK {
    f: Frail,
}

#[step(mode = "actors", replicas = 3, placement = "task")]
impl FrailK {
    fn new(f: Frail) -> Result<Self, String> {
        f.build()?;
        Ok(FrailK { f })
    }
    fn call(&self, x: i64) -> i64 {
        self.f.run(x)
    }
}

impl Drop for FrailK {
    fn drop(&mut self) {
        self.f.drops.fetch_add(1, Ordering::SeqCst);
    }
}

#[step]
fn cnt_local(x: u64) -> u64 {
    x + 1
}

#[step(mode = "actors", replicas = 2, placement = "thread")]
fn cnt_thread(x: u64) -> u64 {
    x * 2
}

#[step(mode = "actors", replicas = 2, placement = "task")]
fn cnt_task(x: u64) -> u64 {
    x + 5
}

#[step(mode = "tasks")]
fn cnt_tasks(x: u64) -> u64 {
    x
}

fn cnt_answer(x: u64) -> u64 {
    (x + 1) * 2 + 5
}

// ------------------------------------------------- dropping with calls

/// All handles but the callers' dropped, the callers (tasks) aborted or
/// answered one by one: the last one out drops the pipeline on a runtime
/// worker. Aborted calls still queued never run, the others answer, the
/// replica threads end and every model built is dropped. Fixed and
/// autoscaled (pinned at 2) pools.
#[test]
fn last_clone_dropped_by_a_task_while_calls_queue_at_thread_replicas() {
    for autoscaled in [false, true] {
        let name = if autoscaled { "LastTa" } else { "LastTf" };
        let (probe, started) = Probe::new();
        let mut opts = DeployOptions::new();
        if autoscaled {
            opts = opts.autoscale(name, pinned(2));
        }
        let p = HeldT::bind(probe.clone(), Input::<u64>::new())
            .named(name)
            .deploy_with(opts)
            .unwrap();
        assert_eq!(threads_named(&format!("{name}-")), 2);
        let rt = multi_rt(2);
        let calls: Vec<_> = (0..6u64)
            .map(|x| {
                let p = p.clone();
                (x, rt.spawn(async move { p.call_async(x).await }))
            })
            .collect();
        let mut running = [recv(&started), recv(&started)];
        running.sort_unstable();
        wait_until("six calls reach the step, four queued", || {
            let m = metric(&p, name);
            (m.requests, m.queued, m.in_flight) == (6, 4, 6)
        });
        drop(p);
        let queued: Vec<u64> = (0..6).filter(|x| !running.contains(x)).collect();
        let aborted: BTreeSet<u64> = [running[0], queued[0], queued[1]].into();
        let mut live = Vec::new();
        for (x, call) in calls {
            if aborted.contains(&x) {
                call.abort();
                let e = rt.block_on(guarded(call)).unwrap_err();
                assert!(e.is_cancelled(), "{name}: {e}");
            } else {
                live.push((x, call));
            }
        }
        probe.gate.open();
        for (x, call) in live {
            assert_eq!(
                rt.block_on(guarded(call)).unwrap().unwrap(),
                x * 3,
                "{name}"
            );
        }
        // The last task out dropped the last handle.
        gone(&format!("{name}-"));
        wait_until("both models dropped", || probe.drops() == 2);
        assert_eq!(probe.builds(), 2, "{name}");
        let expected: BTreeSet<u64> = (0..6)
            .filter(|x| *x != queued[0] && *x != queued[1])
            .collect();
        assert_eq!(
            probe.seen.set(),
            expected,
            "{name}: aborted queued calls never run"
        );
        assert_eq!(probe.seen.all().len(), 4, "{name}: no call ran twice");
    }
}

/// The same with task replicas on the caller's runtime (deployed inside
/// it): a task replica's call that was cancelled while running holds the
/// gate; the pipeline goes with the last caller, and the models are
/// dropped once their tasks see the closed mailboxes.
#[test]
fn last_clone_dropped_by_a_task_while_calls_queue_at_task_replicas() {
    for autoscaled in [false, true] {
        let name = if autoscaled { "LastKa" } else { "LastKf" };
        let (probe, started) = Probe::new();
        let rt = multi_rt(2);
        let mut opts = DeployOptions::new();
        if autoscaled {
            opts = opts.autoscale(name, pinned(2));
        }
        let p = rt
            .block_on(async {
                HeldK::bind(probe.clone(), Input::<u64>::new())
                    .named(name)
                    .deploy_with(opts)
            })
            .unwrap();
        let calls: Vec<_> = (0..6u64)
            .map(|x| {
                let p = p.clone();
                (x, rt.spawn(async move { p.call_async(x).await }))
            })
            .collect();
        let mut running = [recv(&started), recv(&started)];
        running.sort_unstable();
        wait_until("six calls reach the step, four queued", || {
            let m = metric(&p, name);
            (m.requests, m.queued, m.in_flight) == (6, 4, 6)
        });
        drop(p);
        let queued: Vec<u64> = (0..6).filter(|x| !running.contains(x)).collect();
        let aborted: BTreeSet<u64> = [running[0], queued[0], queued[1]].into();
        let mut live = Vec::new();
        for (x, call) in calls {
            if aborted.contains(&x) {
                call.abort();
                assert!(rt.block_on(guarded(call)).unwrap_err().is_cancelled());
            } else {
                live.push((x, call));
            }
        }
        probe.agate.open();
        for (x, call) in live {
            assert_eq!(
                rt.block_on(guarded(call)).unwrap().unwrap(),
                x * 3,
                "{name}"
            );
        }
        wait_until("both models dropped", || probe.drops() == 2);
        let expected: BTreeSet<u64> = (0..6)
            .filter(|x| *x != queued[0] && *x != queued[1])
            .collect();
        assert_eq!(
            probe.seen.set(),
            expected,
            "{name}: aborted queued calls never run"
        );
        assert_eq!(probe.seen.all().len(), 4, "{name}: no call ran twice");
    }
}

/// Dropping the last handle from a plain thread while a thread replica is
/// still inside a call whose caller gave up (deadline) and another call
/// waits (given up too): the drop waits for the running call, then
/// returns; the queued one never runs and no thread is left.
#[test]
fn dropping_while_a_given_up_call_still_runs_waits_for_it_and_joins() {
    let name = "WaitRun";
    let (probe, started) = Probe::new();
    let p = HeldT::bind(probe.clone(), Input::<u64>::new())
        .named(name)
        .deploy_with(DeployOptions::new().replicas(name, 1))
        .unwrap();
    let err = {
        let p = p.clone();
        std::thread::spawn(move || p.call_timeout(1, Duration::from_millis(1)))
    };
    assert_eq!(recv(&started), 1);
    assert!(matches!(
        err.join().unwrap(),
        Err(PipelineError::DeadlineExceeded { .. })
    ));
    let err = p.call_timeout(2, Duration::from_millis(1)).unwrap_err();
    assert!(
        matches!(err, PipelineError::DeadlineExceeded { .. }),
        "{err}"
    );
    assert_eq!(
        metric(&p, name).queued,
        1,
        "the given-up call holds its slot"
    );
    let (done, done_rx) = channel();
    std::thread::spawn(move || {
        drop(p);
        done.send(()).unwrap();
    });
    assert!(
        done_rx.try_recv().is_err(),
        "the drop cannot finish while the replica is inside a call"
    );
    probe.gate.open();
    recv(&done_rx);
    assert_eq!(probe.drops(), 1);
    gone(&format!("{name}-"));
    assert_eq!(probe.seen.all(), [1], "the given-up queued call never ran");
}

// ----------------------------------------------------------- shutdown

/// `shutdown()` on a fixed task pool and on an autoscaled thread pool:
/// new calls (blocking, async, with deadline) are refused with
/// `ShuttingDown` and never reach the step; the calls in flight finish;
/// the replicas stay until the last handle goes, then are gone.
#[test]
fn shutdown_refuses_new_calls_drains_and_drop_then_stops_replicas() {
    fn check(
        p: Pipeline<u64, u64>,
        probe: Probe,
        started: Receiver<u64>,
        name: &str,
        thread: bool,
    ) {
        let held = hold_in_turn(&p, [0, 1], &started);
        let (done, done_rx) = channel();
        let stopper = {
            let p = p.clone();
            std::thread::spawn(move || {
                p.shutdown().unwrap();
                done.send(()).unwrap();
            })
        };
        wait_until("shutdown begins", || p.is_shutting_down());
        assert!(matches!(
            p.call(HOLD_BELOW),
            Err(PipelineError::ShuttingDown)
        ));
        assert!(matches!(
            p.call_timeout(HOLD_BELOW, GUARD),
            Err(PipelineError::ShuttingDown)
        ));
        assert!(matches!(
            p.call_async(HOLD_BELOW).now_or_never(),
            Some(Err(PipelineError::ShuttingDown))
        ));
        assert!(
            done_rx.try_recv().is_err(),
            "{name}: shutdown waits for the held calls"
        );
        if thread {
            probe.gate.open();
        } else {
            probe.agate.open();
        }
        let mut answers: Vec<u64> = held
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect();
        answers.sort_unstable();
        assert_eq!(answers, [0, 3], "{name}");
        recv(&done_rx);
        stopper.join().unwrap();
        p.shutdown().unwrap(); // again: at once
        let m = metric(&p, name);
        assert_settled(&m, 2);
        assert_eq!(m.errors, 0, "{name}: refused calls never reached the step");
        assert_eq!(probe.seen.set(), [0, 1].into(), "{name}");
        if thread {
            assert_eq!(
                threads_named(&format!("{name}-")),
                2,
                "{name}: replicas stay until drop"
            );
        }
        drop(p);
        if thread {
            assert_eq!(probe.drops(), 2);
            gone(&format!("{name}-"));
        } else {
            wait_until("task replicas' models dropped", || probe.drops() == 2);
        }
    }
    let (probe, started) = Probe::new();
    let p = HeldK::bind(probe.clone(), Input::<u64>::new())
        .named("ShutK")
        .deploy()
        .unwrap();
    check(p, probe, started, "ShutK", false);
    let (probe, started) = Probe::new();
    let p = HeldT::bind(probe.clone(), Input::<u64>::new())
        .named("ShutTa")
        .deploy_with(DeployOptions::new().autoscale("ShutTa", pinned(2)))
        .unwrap();
    check(p, probe, started, "ShutTa", true);
}

// ------------------------------------------------ constructor failures

/// (which replicas fail, which panic, the replica deploy must name).
const BUILD_CASES: &[(&[usize], &[usize], usize)] = &[
    (&[0], &[], 0),
    (&[1], &[], 1),
    (&[3], &[], 3),
    (&[1, 3], &[], 1),
    (&[], &[2], 2),
    (&[2], &[1], 1),
    (&[0, 1, 2, 3], &[], 0),
    (&[], &[0, 1, 2, 3], 0),
];

fn check_build_error(err: &DeployError, name: &str, fail: &[usize], replica: usize) {
    match err {
        DeployError::Build {
            step,
            replica: r,
            source,
        } => {
            assert_eq!((*step, *r), (name, replica), "{err}");
            let cause = source.to_string();
            if fail.contains(&replica) {
                assert!(
                    cause.contains(&format!("replica {replica} has no weights")),
                    "{cause}"
                );
            } else {
                assert!(cause.contains("panicked"), "{cause}");
                assert!(
                    cause.contains(&format!("replica {replica} exploded")),
                    "{cause}"
                );
            }
        }
        other => panic!("expected DeployError::Build, got {other}"),
    }
    let shown = err.to_string();
    assert!(
        shown.contains(name) && shown.contains(&format!("replica {replica}")),
        "{shown}"
    );
}

/// Thread replicas (4): the first, a middle, the last, several, and
/// panicking constructors fail deploy with `DeployError::Build` naming the
/// step and the first failing replica; deploy returns (never hangs), no
/// replica thread is left, and every model that was built is dropped by
/// the time it returns. A deploy with no failure then works.
#[test]
fn thread_replica_constructor_failures_anywhere_fail_deploy_and_leave_nothing() {
    quiet_expected_panics();
    let name = "BldT";
    for (fail, panic, replica) in BUILD_CASES {
        let plan = BuildPlan::new(fail, panic);
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            BuildT::bind(plan.clone(), Input::<u8>::new())
                .named(name)
                .deploy()
        }));
        let err = match out {
            Ok(Err(e)) => e,
            Ok(Ok(_)) => panic!("deployed with {fail:?} failing, {panic:?} panicking"),
            Err(_) => panic!("deploy panicked with {fail:?} failing, {panic:?} panicking"),
        };
        check_build_error(&err, name, fail, *replica);
        assert_eq!(
            plan.built(),
            plan.dropped(),
            "built models dropped: {fail:?} {panic:?}"
        );
        gone(&format!("{name}-"));
    }
    let plan = BuildPlan::new(&[], &[]);
    let p = BuildT::bind(plan.clone(), Input::<u8>::new())
        .named(name)
        .deploy()
        .unwrap();
    assert_eq!(p.call(7).unwrap(), 7);
    assert_eq!(threads_named(&format!("{name}-")), 4);
    drop(p);
    assert_eq!((plan.built(), plan.dropped()), (4, 4));
    gone(&format!("{name}-"));
}

/// The same with task replicas (built in turn at deploy): the first
/// failing replica is named, `deploy` does not panic, and the replicas
/// built before it are dropped.
#[test]
fn task_replica_constructor_failures_anywhere_fail_deploy_and_leave_nothing() {
    quiet_expected_panics();
    let name = "BldK";
    for (fail, panic, replica) in BUILD_CASES {
        let plan = BuildPlan::new(fail, panic);
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            BuildK::bind(plan.clone(), Input::<u8>::new())
                .named(name)
                .deploy()
        }));
        let err = match out {
            Ok(Err(e)) => e,
            Ok(Ok(_)) => panic!("deployed with {fail:?} failing, {panic:?} panicking"),
            Err(_) => panic!("deploy panicked with {fail:?} failing, {panic:?} panicking"),
        };
        check_build_error(&err, name, fail, *replica);
        assert_eq!(
            plan.built(),
            *replica,
            "replicas before the failing one were built"
        );
        wait_until("the built models are dropped", || {
            plan.built() == plan.dropped()
        });
    }
}

/// Deploys that fail beside built thread replicas from inside runtimes: a
/// multi-thread runtime's task, and a `current_thread` runtime chosen with
/// `DeployOptions::runtime` (thread and task replicas): each returns the
/// error, no thread is left, nothing hangs; then a pipeline deployed onto
/// the `current_thread` runtime is dropped inside it and returns.
#[test]
fn failing_deploys_from_inside_runtimes_return_and_leave_nothing() {
    quiet_expected_panics();
    run_guarded("deploy inside a multi-thread runtime", || {
        let rt = multi_rt(2);
        let plan = BuildPlan::new(&[2], &[]);
        let err = rt
            .block_on(async {
                tokio::spawn({
                    let plan = plan.clone();
                    async move {
                        BuildT::bind(plan, Input::<u8>::new())
                            .named("BinM")
                            .deploy()
                            .map(|_| ())
                    }
                })
                .await
            })
            .unwrap()
            .unwrap_err();
        check_build_error(&err, "BinM", &[2], 2);
        assert_eq!(plan.built(), plan.dropped());
        gone("BinM-");
    });
    run_guarded("deploy onto a current_thread runtime", || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let opts = || DeployOptions::new().runtime(tokio::runtime::Handle::current());
            let plan = BuildPlan::new(&[1], &[]);
            let err = BuildT::bind(plan.clone(), Input::<u8>::new())
                .named("BinC")
                .deploy_with(opts())
                .unwrap_err();
            check_build_error(&err, "BinC", &[1], 1);
            assert_eq!(plan.built(), plan.dropped());
            gone("BinC-");

            let plan = BuildPlan::new(&[], &[3]);
            let err = BuildK::bind(plan.clone(), Input::<u8>::new())
                .named("BinCk")
                .deploy_with(opts())
                .unwrap_err();
            check_build_error(&err, "BinCk", &[], 3);

            let plan = BuildPlan::new(&[], &[]);
            let p = BuildT::bind(plan.clone(), Input::<u8>::new())
                .named("BinC")
                .deploy_with(opts())
                .unwrap();
            assert_eq!(p.call_async(9).await.unwrap(), 9);
            drop(p);
            assert_eq!((plan.built(), plan.dropped()), (4, 4));
            gone("BinC-");
        });
    });
}

/// A graph whose first actor step builds fine and whose second fails: the
/// error names the second; the first's replica threads are gone and its
/// models dropped when deploy returns.
#[test]
fn a_later_step_failing_stops_the_replicas_of_steps_built_before_it() {
    for second_fails_at in [0usize, 3] {
        let plan = BuildPlan::new(&[second_fails_at], &[]);
        let (probe, _started) = Probe::new();
        let graph = BuildT::bind(
            plan.clone(),
            cast(HeldT::bind(probe.clone(), Input::<u64>::new()).named("TwoA")),
        )
        .named("TwoB");
        let err = graph
            .deploy_with(DeployOptions::new().replicas("TwoA", 3))
            .unwrap_err();
        check_build_error(&err, "TwoB", &[second_fails_at], second_fails_at);
        assert_eq!(
            probe.builds(),
            3,
            "the first step was built before the second"
        );
        assert_eq!(probe.builds(), probe.drops(), "the first step's models");
        assert_eq!(plan.built(), plan.dropped(), "the second step's models");
        gone("TwoA-");
        gone("TwoB-");
    }
}

#[step]
fn cast(x: u64) -> u8 {
    x as u8
}

/// An autoscaled pool (pinned at 3, so 3 built at deploy) whose replica 1
/// fails: `DeployError::Build` naming replica 1, no thread left.
#[test]
fn an_autoscaled_pool_failing_at_deploy_leaves_nothing() {
    quiet_expected_panics();
    for (fail, panic, replica) in [
        (&[1usize][..], &[][..], 1usize),
        (&[][..], &[2usize][..], 2),
    ] {
        let plan = BuildPlan::new(fail, panic);
        let err = BuildT::bind(plan.clone(), Input::<u8>::new())
            .named("BldA")
            .deploy_with(DeployOptions::new().autoscale("BldA", pinned(3)))
            .unwrap_err();
        check_build_error(&err, "BldA", fail, replica);
        assert_eq!(plan.built(), plan.dropped());
        gone("BldA-");
    }
}

// ------------------------------------------------- panics and rebuilds

/// 8 threads at once, one call in 13 panicking, on a fixed pool of 3: each
/// panic fails its call alone (`Panicked`, naming the node, with the
/// message), the replica is rebuilt on its own thread (no new thread),
/// every other call is answered, and the counters add up exactly.
fn panics_under_concurrency_are_rebuilt(
    p: Pipeline<i64, i64>,
    f: &Frail,
    name: &'static str,
    thread: bool,
) {
    let callers = 8i64;
    let per = 40i64;
    let barrier = Arc::new(Barrier::new(callers as usize));
    let outs: Vec<_> = (0..callers)
        .map(|t| {
            let (p, barrier) = (p.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut panicked = 0u64;
                for i in 0..per {
                    let x = t * 1000 + i;
                    if i % 13 == 7 {
                        let bad = -x - 1;
                        match p.call(bad) {
                            Err(PipelineError::Panicked { step, message }) => {
                                assert_eq!(step, name);
                                assert_eq!(message, format!("bad state for {bad}"));
                                panicked += 1;
                            }
                            other => panic!("expected a panic error, got {other:?}"),
                        }
                    } else {
                        assert_eq!(p.call(x).unwrap(), x * 10, "{name}");
                    }
                }
                panicked
            })
        })
        .collect();
    let panicked: u64 = outs.into_iter().map(|h| h.join().unwrap()).sum();
    let total = (callers * per) as u64;
    assert_eq!(panicked, callers as u64 * 3);
    wait_until("every panicked replica rebuilt", || {
        let h = &p.health().steps[0];
        h.rebuilds == panicked && h.replicas_down == 0
    });
    let m = metric(&p, name);
    assert_settled(&m, total);
    assert_eq!(m.errors, panicked, "{name}");
    assert_eq!(m.replicas, 3, "{name}");
    assert_eq!(
        f.builds.load(Ordering::SeqCst),
        3 + panicked as usize,
        "{name}"
    );
    assert_eq!(
        f.drops.load(Ordering::SeqCst),
        panicked as usize,
        "{name}: each broken model dropped"
    );
    if thread {
        assert_eq!(
            threads_named(&format!("{name}-")),
            3,
            "rebuilt on the same threads"
        );
    }
    drop(p);
    if thread {
        // Joined: each model was dropped on its thread before it ended.
        assert_eq!(
            f.drops.load(Ordering::SeqCst),
            f.builds.load(Ordering::SeqCst)
        );
        gone(&format!("{name}-"));
    }
    wait_until("every model dropped", || {
        f.drops.load(Ordering::SeqCst) == f.builds.load(Ordering::SeqCst)
    });
}

#[test]
fn panics_under_concurrency_in_a_fixed_thread_pool_are_rebuilt_and_counted() {
    quiet_expected_panics();
    let (f, _started) = Frail::new(false);
    let p = FrailT::bind(f.clone(), Input::<i64>::new())
        .named("PanT")
        .deploy()
        .unwrap();
    panics_under_concurrency_are_rebuilt(p, &f, "PanT", true);
}

#[test]
fn panics_under_concurrency_in_a_fixed_task_pool_are_rebuilt_and_counted() {
    quiet_expected_panics();
    let (f, _started) = Frail::new(false);
    let p = FrailK::bind(f.clone(), Input::<i64>::new())
        .named("PanK")
        .deploy()
        .unwrap();
    panics_under_concurrency_are_rebuilt(p, &f, "PanK", false);
}

/// A thread replica of a fixed pool of 3 panics and its constructor then
/// fails on every try: the step is degraded, the two healthy replicas
/// answer sequential calls, a call routed to the rebuilding replica (the
/// other two held) waits there until its deadline; dropping the pipeline
/// then returns, the rebuilding thread gives up, nothing is left and the
/// given-up call never ran.
#[test]
fn dropping_while_a_thread_replica_rebuilds_with_a_failing_constructor_returns() {
    quiet_expected_panics();
    let name = "RbT";
    let (f, started) = Frail::new(true);
    let p = FrailT::bind(f.clone(), Input::<i64>::new())
        .named(name)
        .deploy()
        .unwrap();
    assert_eq!(p.call(1).unwrap(), 10);
    assert!(matches!(
        p.call(-1).unwrap_err(),
        PipelineError::Panicked { .. }
    ));
    wait_until("the rebuild failed twice", || {
        f.failed_builds.load(Ordering::SeqCst) >= 2
    });
    assert_eq!(p.health().degraded(), [name]);
    assert_eq!(p.health().steps[0].replicas_down, 1);
    for x in 2..22 {
        assert_eq!(p.call(x).unwrap(), x * 10, "the healthy replicas answer");
    }
    while started.try_recv().is_ok() {}
    let held = hold_in_turn(&p, [FRAIL_HOLD, FRAIL_HOLD], &started);
    // Every replica has one outstanding call now: ties go to the first,
    // the rebuilding replica 0.
    let err = p.call_timeout(5, Duration::from_millis(1)).unwrap_err();
    assert!(
        matches!(err, PipelineError::DeadlineExceeded { .. }),
        "{err}"
    );
    assert_eq!(
        metric(&p, name).queued,
        1,
        "the given-up call waits at replica 0"
    );
    f.gate.open();
    for h in held {
        assert_eq!(h.join().unwrap().unwrap(), FRAIL_HOLD * 10);
    }
    run_guarded(
        "dropping the pipeline while a replica rebuilds",
        move || drop(p),
    );
    assert_eq!(f.builds.load(Ordering::SeqCst), 3, "no rebuild ever worked");
    assert_eq!(f.drops.load(Ordering::SeqCst), 3);
    gone(&format!("{name}-"));
    assert!(
        started.try_iter().all(|x| x != 5),
        "the given-up call never ran"
    );
    assert_eq!(
        Arc::strong_count(&f.builds),
        1,
        "nothing holds the init any more"
    );
}

/// The same for a task replica (one, on the caller's runtime) whose
/// rebuild keeps failing, a call queued at it, and the last handle dropped
/// by aborting that caller's task: the rebuild loop stops (the replica
/// lets go of everything it held) and the queued call never runs.
#[test]
fn dropping_while_a_task_replica_rebuilds_with_a_failing_constructor_returns() {
    quiet_expected_panics();
    let name = "RbK";
    let (f, started) = Frail::new(true);
    let rt = multi_rt(2);
    let p = rt
        .block_on(async {
            FrailK::bind(f.clone(), Input::<i64>::new())
                .named(name)
                .deploy_with(DeployOptions::new().replicas(name, 1))
        })
        .unwrap();
    assert!(matches!(
        rt.block_on(p.call_async(-1)).unwrap_err(),
        PipelineError::Panicked { .. }
    ));
    wait_until("the rebuild failed twice", || {
        f.failed_builds.load(Ordering::SeqCst) >= 2
    });
    assert_eq!(p.health().steps[0].replicas_down, 1);
    let call = {
        let p = p.clone();
        rt.spawn(async move { p.call_async(5).await })
    };
    wait_until("the call is queued at the rebuilding replica", || {
        metric(&p, name).queued == 1
    });
    drop(p);
    call.abort();
    assert!(rt.block_on(guarded(call)).unwrap_err().is_cancelled());
    wait_until("the replica lets go of its init", || {
        Arc::strong_count(&f.builds) == 1
    });
    assert_eq!(f.builds.load(Ordering::SeqCst), 1);
    assert_eq!(f.drops.load(Ordering::SeqCst), 1);
    assert!(
        started.try_iter().all(|x| x != 5),
        "the queued call never ran"
    );
}

// ------------------------------------------------------------ counting

/// 40 threads (more than the 16 owned shards) call one pipeline of a
/// local step, a thread-placed actor, a task-placed actor and a tasks step
/// at once: every step counts every call exactly once, latency included.
#[test]
fn forty_threads_at_once_are_each_counted_once_at_every_step() {
    let p = cnt_tasks(cnt_task(cnt_thread(cnt_local(Input::<u64>::new()))))
        .deploy()
        .unwrap();
    let threads = 40u64;
    let per = 150u64;
    let barrier = Arc::new(Barrier::new(threads as usize));
    let callers: Vec<_> = (0..threads)
        .map(|t| {
            let (p, barrier) = (p.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..per {
                    let x = t * 10_000 + i;
                    assert_eq!(p.call(x).unwrap(), cnt_answer(x));
                }
            })
        })
        .collect();
    for c in callers {
        c.join().unwrap();
    }
    for step in ["cnt_local", "cnt_thread", "cnt_task", "cnt_tasks"] {
        let m = metric(&p, step);
        assert_settled(&m, threads * per);
        assert_eq!(m.errors, 0, "{step}");
    }
}

/// 25 rounds of 20 short-lived threads (their shard claims returned and
/// taken again) call two pipelines; a reader takes snapshots all along:
/// no reading ever goes back (calls, each latency bucket), a step never
/// shows more calls ended than started, and the totals are exact.
#[test]
fn threads_that_come_and_go_are_counted_exactly_and_readings_never_go_back() {
    let a = cnt_thread(cnt_local(Input::<u64>::new())).deploy().unwrap();
    let b = cnt_local(Input::<u64>::new()).deploy().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (a, b, stop) = (a.clone(), b.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut last: Vec<Option<StepMetrics>> = vec![None; 3];
            let mut readings = 0u64;
            loop {
                let done = stop.load(Ordering::SeqCst);
                let now: Vec<StepMetrics> = a.metrics().into_iter().chain(b.metrics()).collect();
                assert_eq!(now.len(), 3);
                for (m, prev) in now.iter().zip(last.iter()) {
                    assert!(
                        m.requests >= m.latency.count(),
                        "more calls ended than started: {m:?}"
                    );
                    if let Some(prev) = prev {
                        assert!(
                            m.requests >= prev.requests,
                            "calls went back: {prev:?} -> {m:?}"
                        );
                        for (n, o) in m.latency.cumulative.iter().zip(&prev.latency.cumulative) {
                            assert!(n >= o, "a latency bucket went back: {prev:?} -> {m:?}");
                        }
                    }
                }
                last = now.into_iter().map(Some).collect();
                readings += 1;
                if done {
                    return readings;
                }
            }
        })
    };
    let rounds = 25u64;
    let threads = 20u64;
    let per = 20u64;
    for r in 0..rounds {
        let round: Vec<_> = (0..threads)
            .map(|t| {
                let (a, b) = (a.clone(), b.clone());
                std::thread::spawn(move || {
                    for i in 0..per {
                        let x = (r * 100 + t) * 100 + i;
                        assert_eq!(a.call(x).unwrap(), (x + 1) * 2);
                        assert_eq!(b.call(x).unwrap(), x + 1);
                    }
                })
            })
            .collect();
        for t in round {
            t.join().unwrap();
        }
    }
    stop.store(true, Ordering::SeqCst);
    assert!(reader.join().unwrap() >= 1);
    let total = rounds * threads * per;
    assert_settled(&metric(&a, "cnt_local"), total);
    assert_settled(&metric(&a, "cnt_thread"), total);
    assert_settled(&metric(&b, "cnt_local"), total);
}

/// Call futures polled once on one thread (so counted in there, queued
/// behind a held call) and dropped on another: each is counted out where
/// it is dropped, once; the queue gauge keeps them until the replica
/// passes them by; none runs.
#[test]
fn call_futures_started_on_one_thread_and_dropped_on_another_are_counted_out() {
    let name = "CxK";
    let (probe, started) = Probe::new();
    let p = HeldK::bind(probe.clone(), Input::<u64>::new())
        .named(name)
        .deploy_with(DeployOptions::new().replicas(name, 1))
        .unwrap();
    let held = {
        let p = p.clone();
        std::thread::spawn(move || p.call(0))
    };
    assert_eq!(recv(&started), 0);
    let threads = 24u64;
    let per = 10u64;
    std::thread::scope(|s| {
        for t in 0..threads {
            let p = &p;
            s.spawn(move || {
                let futs: Vec<_> = (0..per)
                    .map(|i| {
                        let mut f = Box::pin(p.call_async(HOLD_BELOW + t * 100 + i));
                        assert!((&mut f).now_or_never().is_none(), "queued");
                        f
                    })
                    .collect();
                s.spawn(move || drop(futs));
            });
        }
    });
    let n = threads * per;
    let m = metric(&p, name);
    assert_eq!(
        (m.requests, m.latency.count(), m.in_flight, m.queued),
        (n + 1, n, 1, n),
        "{m:?}"
    );
    probe.agate.open();
    assert_eq!(held.join().unwrap().unwrap(), 0);
    wait_until("the replica passes the dropped calls", || {
        metric(&p, name).queued == 0
    });
    let x = HOLD_BELOW + 99_999;
    assert_eq!(p.call(x).unwrap(), x * 3);
    assert_settled(&metric(&p, name), n + 2);
    assert_eq!(probe.seen.all(), [0, x], "no dropped call ran");
}

// ------------------------------------------------------ deploy loops

/// 200 pipelines of 3 thread replicas deployed and dropped in turn, the
/// last handle dropped here, on another thread, or inside a runtime: no
/// replica thread survives its pipeline, every model is dropped.
#[test]
fn two_hundred_thread_pools_deployed_and_dropped_leave_no_thread() {
    let name = "LoopT";
    let (probe, _started) = Probe::new();
    let rt = multi_rt(2);
    for i in 0..200u64 {
        let p = HeldT::bind(probe.clone(), Input::<u64>::new())
            .named(name)
            .deploy_with(DeployOptions::new().replicas(name, 3))
            .unwrap();
        assert_eq!(threads_named("LoopT-"), 3, "round {i}");
        let x = HOLD_BELOW + i;
        assert_eq!(p.call(x).unwrap(), x * 3);
        match i % 3 {
            0 => drop(p),
            1 => {
                let q = p.clone();
                drop(p);
                std::thread::spawn(move || {
                    assert_eq!(q.call(x).unwrap(), x * 3);
                })
                .join()
                .unwrap();
            }
            _ => rt.block_on(async move {
                assert_eq!(p.call_async(x).await.unwrap(), x * 3);
                drop(p);
            }),
        }
        assert_eq!(probe.builds(), probe.drops(), "round {i}");
        gone("LoopT-");
    }
    assert_eq!(probe.builds(), 600);
}

/// 90 deploys in a row whose thread replicas fail to build (an `Err` or a
/// panic, first, middle or last): each returns its error, none leaves a
/// thread or a built model behind.
#[test]
fn ninety_failing_thread_pool_deploys_leave_no_thread() {
    quiet_expected_panics();
    let name = "LoopF";
    let cases: [(&[usize], &[usize], usize); 3] = [(&[1], &[], 1), (&[], &[3], 3), (&[0], &[2], 0)];
    for i in 0..90 {
        let (fail, panic, replica) = cases[i % 3];
        let plan = BuildPlan::new(fail, panic);
        let err = BuildT::bind(plan.clone(), Input::<u8>::new())
            .named(name)
            .deploy()
            .unwrap_err();
        check_build_error(&err, name, fail, replica);
        assert_eq!(plan.built(), plan.dropped(), "round {i}");
        gone("LoopF-");
    }
}

// ----------------------------------------------------- backpressure

/// Thread replicas (2) with a queue bound of 1: with both held and both
/// mailboxes full, calls are refused at once with `Overloaded` naming the
/// node; then 24 threads hammer it: every call is answered right or
/// refused, refusals are counted exactly (`overloaded`, `errors`), no
/// refused call runs, and no call runs twice.
#[test]
fn a_queue_bound_of_one_on_thread_replicas_refuses_clearly_and_loses_nothing() {
    let name = "QbT";
    let (probe, started) = Probe::new();
    let p = HeldT::bind(probe.clone(), Input::<u64>::new())
        .named(name)
        .deploy_with(DeployOptions::new().queue_bound(name, 1))
        .unwrap();
    assert_eq!(p.report()[0].queue_bound, 1);
    let held = hold_in_turn(&p, [0, 1], &started);
    let mut q1 = Box::pin(p.call_async(HOLD_BELOW + 1));
    assert!((&mut q1).now_or_never().is_none());
    let mut q2 = Box::pin(p.call_async(HOLD_BELOW + 2));
    assert!((&mut q2).now_or_never().is_none());
    assert_eq!(metric(&p, name).queued, 2, "one queued at each replica");
    let err = p.call(HOLD_BELOW + 3).unwrap_err();
    assert!(
        matches!(err, PipelineError::Overloaded { step } if step == name),
        "{err}"
    );
    assert!(matches!(
        p.call_async(HOLD_BELOW + 4).now_or_never(),
        Some(Err(PipelineError::Overloaded { .. }))
    ));
    let m = metric(&p, name);
    assert_eq!(
        (m.requests, m.in_flight, m.overloaded, m.errors),
        (6, 4, 2, 2),
        "{m:?}"
    );
    probe.gate.open();
    let mut answers: Vec<u64> = held
        .into_iter()
        .map(|h| h.join().unwrap().unwrap())
        .collect();
    answers.sort_unstable();
    assert_eq!(answers, [0, 3]);
    let rt = multi_rt(1);
    assert_eq!(rt.block_on(guarded(q1)).unwrap(), (HOLD_BELOW + 1) * 3);
    assert_eq!(rt.block_on(guarded(q2)).unwrap(), (HOLD_BELOW + 2) * 3);

    let threads = 24u64;
    let per = 40u64;
    let barrier = Arc::new(Barrier::new(threads as usize));
    let storm: Vec<_> = (0..threads)
        .map(|t| {
            let (p, barrier) = (p.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let (mut ok, mut refused) = (Vec::new(), 0u64);
                for i in 0..per {
                    let x = 10 * HOLD_BELOW + t * 1000 + i;
                    match p.call(x) {
                        Ok(y) => {
                            assert_eq!(y, x * 3);
                            ok.push(x);
                        }
                        Err(PipelineError::Overloaded { step }) => {
                            assert_eq!(step, "QbT");
                            refused += 1;
                        }
                        Err(e) => panic!("neither an answer nor a refusal: {e}"),
                    }
                }
                (ok, refused)
            })
        })
        .collect();
    let mut ran: BTreeSet<u64> = [0, 1, HOLD_BELOW + 1, HOLD_BELOW + 2].into();
    let mut refused = 0;
    for h in storm {
        let (ok, r) = h.join().unwrap();
        ran.extend(ok);
        refused += r;
    }
    let m = metric(&p, name);
    assert_settled(&m, 6 + threads * per);
    assert_eq!(
        (m.overloaded, m.errors),
        (2 + refused, 2 + refused),
        "{m:?}"
    );
    assert_eq!(probe.seen.set(), ran, "exactly the answered calls ran");
    assert_eq!(probe.seen.all().len(), ran.len(), "no call ran twice");
}

// ----------------------------------------------------------- streams

#[step(mode = "actors", replicas = 2, placement = "thread")]
fn ticks(n: u64) -> ItemStream<u64> {
    ItemStream::iter(0..n)
}

/// Two endless streams, one per thread replica of a fixed pool, still
/// being read: dropping the pipeline returns, the threads are gone, and
/// each reader gets the items in order, then `ReplicaLost` naming the node
/// (not a stream that just ends).
#[test]
fn dropping_the_pipeline_while_thread_replicas_stream_cuts_each_stream_clearly() {
    let name = "TickT";
    let rt = multi_rt(2);
    let p = ticks(Input::<u64>::new()).named(name).deploy().unwrap();
    let mut a = p.call_stream(u64::MAX);
    let mut b = p.call_stream(u64::MAX);
    rt.block_on(async {
        for i in 0..5 {
            assert_eq!(guarded(a.next()).await.unwrap().unwrap(), i);
            assert_eq!(guarded(b.next()).await.unwrap().unwrap(), i);
        }
    });
    assert_eq!(threads_named("TickT-"), 2);
    run_guarded("dropping the pipeline mid-stream", move || drop(p));
    gone("TickT-");
    for s in [a, b] {
        let rest: Vec<_> = rt.block_on(guarded(s.collect::<Vec<_>>()));
        let (last, items) = rest.split_last().expect("an end");
        assert!(
            matches!(last, Err(PipelineError::ReplicaLost { step }) if *step == name),
            "{last:?}"
        );
        for (k, item) in items.iter().enumerate() {
            assert_eq!(*item.as_ref().unwrap(), 5 + k as u64);
        }
    }
}

// ------------------------------------- dropping inside a runtime worker

/// A thread replica with an async body that spawns onto the runtime it
/// runs on (as calling a tasks-mode pipeline does).
struct SpawnT {
    gate: AsyncGate,
    started: Sender<u64>,
}

#[step(mode = "actors", placement = "thread")]
impl SpawnT {
    fn new(gate: AsyncGate, started: Sender<u64>) -> Self {
        SpawnT { gate, started }
    }
    async fn call(&self, x: u64) -> u64 {
        let _ = self.started.send(x);
        self.gate.pass().await;
        tokio::spawn(async move { x + 1 }).await.unwrap()
    }
}

/// The pipeline deployed inside a one-worker runtime; its last handle is
/// held by a task of that runtime, which is aborted while the replica is
/// mid-call. The worker drops the pipeline and joins the replica thread;
/// the replica's call then needs a worker to finish. The drop must still
/// return (the call's answer is wanted by nobody).
#[test]
fn dropping_the_last_handle_on_a_one_worker_runtime_mid_call_returns() {
    run_guarded("the drop on the only worker", || {
        let rt = multi_rt(1);
        let gate = AsyncGate::default();
        let (tx, started) = channel();
        let p = rt
            .block_on(async {
                SpawnT::bind(gate.clone(), tx, Input::<u64>::new())
                    .named("SpwT")
                    .deploy()
            })
            .unwrap();
        gate.0.add_permits(1);
        assert_eq!(rt.block_on(p.call_async(1)).unwrap(), 2);
        assert_eq!(recv(&started), 1);
        let call = rt.spawn(async move { p.call_async(5).await });
        assert_eq!(recv(&started), 5);
        call.abort();
        gate.open();
        assert!(rt.block_on(call).unwrap_err().is_cancelled());
        gone("SpwT-");
    });
}

// --------------------------------------- counting during thread teardown

const CHILD: &str = "OUTSIDER_POOL_CHILD";
const CHILD_OK: &str = "outsider-pool-child-ok";

/// Runs the test `name` again in a child process (a panic in a
/// thread-local's destructor aborts the process) and checks it passed:
/// true in the child, which then runs the test's body and prints
/// [`CHILD_OK`] at its end.
fn in_child(name: &str) -> bool {
    if std::env::var(CHILD).as_deref() == Ok(name) {
        return true;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            name,
            "--nocapture",
            "--test-threads=1",
            "--include-ignored",
        ])
        .env(CHILD, name)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("  "))
        .take(20)
        .collect();
    assert!(
        out.status.success() && stdout.contains(CHILD_OK),
        "the child process failed ({:?}):\n{}",
        out.status,
        first.join("\n")
    );
    false
}

#[step]
fn tls_inc(x: u64) -> u64 {
    x + 1
}

/// Runs its closure when the thread's locals are torn down.
struct Late(Option<Box<dyn FnOnce()>>);

impl Drop for Late {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

thread_local! {
    static LATE: RefCell<Late> = const { RefCell::new(Late(None)) };
}

/// Calls made by a thread-local's destructor as the thread ends, on 48
/// threads at a time, 3 rounds: by threads that called before (their
/// shard claim still held then) and by threads that never did (the claim
/// is first made during teardown, and given back after). Each call is
/// answered and counted exactly once, and the shards given back in
/// teardown are reused by the next rounds' threads.
#[test]
fn calls_made_while_threads_tear_down_are_counted_once() {
    if !in_child("calls_made_while_threads_tear_down_are_counted_once") {
        return;
    }
    let p = tls_inc(Input::<u64>::new()).deploy().unwrap();
    let answered = Arc::new(AtomicUsize::new(0));
    let threads = 48u64;
    let (before, late) = (5u64, 3u64);
    let mut expected = 0;
    for round in 0..3u64 {
        let ts: Vec<_> = (0..threads)
            .map(|t| {
                let (p, q, answered) = (p.clone(), p.clone(), answered.clone());
                let at_teardown = move || {
                    for i in 0..late {
                        if let Some(Ok(y)) = q.call_async(i).now_or_never() {
                            if y == i + 1 {
                                answered.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                };
                std::thread::spawn(move || {
                    if t % 2 == 0 {
                        for i in 0..before {
                            let x = round * 1000 + i;
                            assert_eq!(p.call(x).unwrap(), x + 1);
                        }
                    }
                    // Registered after the thread's first call (if any), so
                    // torn down before what that call set up.
                    LATE.with(|l| l.borrow_mut().0 = Some(Box::new(at_teardown)));
                })
            })
            .collect();
        for t in ts {
            t.join().unwrap();
        }
        expected += (0..threads)
            .map(|t| if t % 2 == 0 { before + late } else { late })
            .sum::<u64>();
    }
    assert_eq!(
        answered.load(Ordering::SeqCst) as u64,
        3 * threads * late,
        "every call made at teardown answered"
    );
    assert_settled(&metric(&p, "tls_inc"), expected);
    println!("{CHILD_OK}");
}

/// A call's future, owning its pipeline handle.
type PendingCall =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, PipelineError>> + Send>>;

thread_local! {
    static PENDING: RefCell<Vec<PendingCall>> = const { RefCell::new(Vec::new()) };
}

/// What `call_stats.rs` says it handles ("a step call dropped by another
/// thread-local's destructor"): threads each leave a call future, polled
/// once (counted in, queued behind a held call), in a thread-local that
/// was set up before their first call, as a thread-local runtime or task
/// set holding a task mid-call is. As each thread ends, the future is
/// dropped: the call must be counted out (in the shared shard, its own
/// claim given back already) and never run.
#[test]
fn a_call_future_dropped_by_a_thread_local_destructor_is_counted_out() {
    if !in_child("a_call_future_dropped_by_a_thread_local_destructor_is_counted_out") {
        return;
    }
    let name = "TlsK";
    let (probe, started) = Probe::new();
    let p = HeldK::bind(probe.clone(), Input::<u64>::new())
        .named(name)
        .deploy_with(DeployOptions::new().replicas(name, 1))
        .unwrap();
    let held = {
        let p = p.clone();
        std::thread::spawn(move || p.call(0))
    };
    assert_eq!(recv(&started), 0);
    let threads = 20u64;
    let ts: Vec<_> = (0..threads)
        .map(|t| {
            let p = p.clone();
            std::thread::spawn(move || {
                PENDING.with(|_| ()); // set up before the thread's first call
                let mut call = Box::pin(async move { p.call_async(HOLD_BELOW + t).await });
                assert!((&mut call).now_or_never().is_none(), "queued");
                PENDING.with(|v| v.borrow_mut().push(call));
            })
        })
        .collect();
    for t in ts {
        t.join().unwrap();
    }
    let m = metric(&p, name);
    assert_eq!(
        (m.requests, m.latency.count(), m.in_flight),
        (threads + 1, threads, 1),
        "{m:?}"
    );
    probe.agate.open();
    assert_eq!(held.join().unwrap().unwrap(), 0);
    wait_until("the replica passes the dropped calls", || {
        metric(&p, name).queued == 0
    });
    assert_eq!(probe.seen.all(), [0], "no dropped call ran");
    println!("{CHILD_OK}");
}
