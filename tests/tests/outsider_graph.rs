//! An outsider's hostile cases of graph composition and its execution
//! semantics: ensembles whose branches fail or panic while others still run
//! (local, tasks, thread and task actors), a shared node failing under 50
//! consumers, routes of 100 branches, routes inside routes and feeding
//! gathers, gathers of 1000 nodes, chains of 1000 steps (deploy, describe,
//! drop, call), names that DOT and Mermaid must quote, a model bound twice,
//! deadlines of zero and `Duration::MAX` on every mode, a deadline firing
//! while a shared value fans out, counters read while eight threads call,
//! a deploy failing after some steps started, and a shared output whose
//! `Clone` panics.
//!
//! Three faults found here are fixed, each with its test: deploying a
//! 1000-step chain overflowed a 2 MiB stack (lowering now runs on a thread
//! with a large stack); `NoBranch` always named its route `route` (it
//! names the key node now); a shared output's panicking `Clone` unwound
//! into the caller (it is the shared node's `Panicked` now).
//!
//! No test waits with a sleep or asserts on wall-clock time: every wait is
//! on the thing itself (answers, channels, latches, counters the runtime
//! updates right after an event the test caused) with a guard that fails
//! instead of hanging, or runs under tokio's paused clock.

use std::collections::BTreeMap;
use std::error::Error as _;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use pipeline_core::prelude::*;
use pipeline_core::{Graph, Node, NodeKind};
use tokio::sync::Semaphore;

mod support;
use support::{metric, wait_until, wait_until_async, GUARD};

// ---------------------------------------------------------------- helpers

/// Nothing in flight or queued anywhere, and every call started was
/// counted out exactly once.
fn settled<I: Send + 'static, O: Send + 'static>(p: &Pipeline<I, O>) -> bool {
    p.metrics()
        .iter()
        .all(|m| m.in_flight == 0 && m.queued == 0 && m.requests == m.latency.count())
}

fn assert_settled<I: Send + 'static, O: Send + 'static>(p: &Pipeline<I, O>) {
    for m in p.metrics() {
        assert_eq!(
            (m.in_flight, m.queued, m.requests),
            (0, 0, m.latency.count()),
            "step {} not settled: {m:?}",
            m.step
        );
    }
}

/// Runs `f` on a thread with `stack` bytes of stack and returns its
/// answer.
fn on_stack<T: Send + 'static>(stack: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(stack)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("the thread panicked")
}

/// A gate sync bodies wait at (blocking their thread) until the test opens
/// it.
#[derive(Clone, Default)]
struct Latch(Arc<(Mutex<bool>, Condvar)>);

impl Latch {
    fn open(&self) {
        *self.0 .0.lock().unwrap() = true;
        self.0 .1.notify_all();
    }
    fn wait(&self) {
        let (lock, cv) = &*self.0;
        let (_g, timeout) = cv
            .wait_timeout_while(lock.lock().unwrap(), GUARD, |open| !*open)
            .unwrap();
        assert!(!timeout.timed_out(), "latch never opened");
    }
}

/// An async gate whose permits the test hands out.
#[derive(Clone)]
struct AsyncGate(Arc<Semaphore>);

impl AsyncGate {
    fn closed() -> Self {
        AsyncGate(Arc::new(Semaphore::new(0)))
    }
    fn open(&self) {
        self.0.add_permits(Semaphore::MAX_PERMITS / 2);
    }
    async fn pass(&self) {
        self.0.acquire().await.expect("gate").forget();
    }
}

/// What each branch did with each input: started, finished, or dropped
/// (its future dropped before it finished).
#[derive(Clone, Default)]
struct Log(Arc<Mutex<BTreeMap<(u64, &'static str), usize>>>);

impl Log {
    fn note(&self, x: u64, what: &'static str) {
        *self.0.lock().unwrap().entry((x, what)).or_default() += 1;
    }
    fn count(&self, x: u64, what: &'static str) -> usize {
        self.0.lock().unwrap().get(&(x, what)).copied().unwrap_or(0)
    }
}

/// Notes `dropped` unless the body reached its end.
struct DropProbe {
    log: Log,
    x: u64,
    finished: bool,
}

impl DropProbe {
    fn start(log: &Log, x: u64) -> Self {
        log.note(x, "started");
        DropProbe {
            log: log.clone(),
            x,
            finished: false,
        }
    }
    fn finish(mut self) {
        self.finished = true;
        self.log.note(self.x, "finished");
    }
}

impl Drop for DropProbe {
    fn drop(&mut self) {
        if !self.finished {
            self.log.note(self.x, "dropped");
        }
    }
}

// ------------------------------- an ensemble whose last branch fails at once

/// Thread replica, sync body: blocks at a latch.
struct HoldThread {
    latch: Latch,
    log: Log,
}
#[step(mode = "actors")]
impl HoldThread {
    fn new(latch: Latch, log: Log) -> Self {
        HoldThread { latch, log }
    }
    fn call(&self, x: u64) -> u64 {
        let probe = DropProbe::start(&self.log, x);
        self.latch.wait();
        probe.finish();
        x * 10
    }
}

/// Task replica, async body: waits at a gate.
struct HoldTask {
    gate: AsyncGate,
    log: Log,
}
#[step(mode = "actors", placement = "task")]
impl HoldTask {
    fn new(gate: AsyncGate, log: Log) -> Self {
        HoldTask { gate, log }
    }
    async fn call(&self, x: u64) -> u64 {
        let probe = DropProbe::start(&self.log, x);
        self.gate.pass().await;
        probe.finish();
        x * 100
    }
}

/// Tasks mode, async body, calls at once: waits at a gate.
struct HoldTasks {
    gate: AsyncGate,
    log: Log,
}
#[step(mode = "tasks", concurrent)]
impl HoldTasks {
    fn new(gate: AsyncGate, log: Log) -> Self {
        HoldTasks { gate, log }
    }
    async fn call(&self, x: u64) -> u64 {
        let probe = DropProbe::start(&self.log, x);
        self.gate.pass().await;
        probe.finish();
        x * 1000
    }
}

/// Local: refuses odd inputs at once.
#[step]
fn refuser(x: u64) -> Result<u64, String> {
    if x % 2 == 1 {
        Err(format!("{x} is odd"))
    } else {
        Ok(x)
    }
}

#[step]
fn total(xs: Vec<u64>) -> u64 {
    xs.iter().sum()
}

/// An ensemble of a thread actor, a task actor and a tasks step, all held,
/// and a local step that fails at once: the call fails at once naming the
/// local step (it does not wait for the held branches); the tasks branch
/// is cancelled (never finishes); each actor branch runs the failed call
/// at most once, and its one replica is free for the next call; every
/// counter settles.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_branch_fails_the_ensemble_at_once_and_the_held_branches_settle() {
    let (latch, gate) = (Latch::default(), AsyncGate::closed());
    let (thread_log, task_log, tasks_log) = (Log::default(), Log::default(), Log::default());
    let x = Input::<u64>::new();
    let p = total((
        HoldThread::bind(latch.clone(), thread_log.clone(), x.clone()),
        HoldTask::bind(gate.clone(), task_log.clone(), x.clone()),
        HoldTasks::bind(gate.clone(), tasks_log.clone(), x.clone()),
        refuser(x),
    ))
    .deploy()
    .unwrap();

    // Every gate is closed: an answer here did not wait for the branches.
    let err = p.call_async_timeout(1, GUARD).await.unwrap_err();
    assert!(
        matches!(
            &err,
            PipelineError::Step {
                step: "refuser",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.source().map(ToString::to_string).as_deref(),
        Some("1 is odd")
    );

    // The tasks branch was cancelled with the call: if its task started,
    // its future is dropped, not left waiting at the gate.
    wait_until_async("the tasks branch was dropped", || {
        tasks_log.count(1, "started") == tasks_log.count(1, "dropped")
    })
    .await;

    latch.open();
    gate.open();
    assert_eq!(
        p.call_async_timeout(2, GUARD).await.unwrap(),
        2 * 10 + 2 * 100 + 2 * 1000 + 2
    );
    wait_until_async("every counter settled", || settled(&p)).await;

    // The one replica of each actor reached the failed call's job before
    // the next call's: it ran it at most once, and to its end or dropped.
    for (branch, log) in [("thread actor", &thread_log), ("task actor", &task_log)] {
        let (s, f, d) = (
            log.count(1, "started"),
            log.count(1, "finished"),
            log.count(1, "dropped"),
        );
        assert!(
            s <= 1 && s == f + d,
            "{branch}: {:?}",
            log.0.lock().unwrap()
        );
    }
    assert_eq!(
        thread_log.count(1, "dropped"),
        0,
        "a sync body runs to its end"
    );
    assert_eq!(
        tasks_log.count(1, "finished"),
        0,
        "the tasks branch of a failed call finished once the gate opened"
    );
    for log in [&thread_log, &task_log, &tasks_log] {
        assert_eq!((log.count(2, "started"), log.count(2, "finished")), (1, 1));
    }
    let m = p.metrics();
    assert_eq!(
        (metric(&m, "refuser").requests, metric(&m, "refuser").errors),
        (2, 1)
    );
    for step in ["HoldThread", "HoldTask", "HoldTasks"] {
        let s = metric(&m, step);
        assert_eq!(s.errors, 0, "a cancelled call is no error: {s:?}");
        assert!(s.requests <= 2, "{s:?}");
    }
    assert_eq!(metric(&m, "total").requests, 1);
    assert!(p.health().is_healthy());
}

// --------------------------------------- a panicking actor branch, named

struct Fragile(u64);
#[step(mode = "actors")]
impl Fragile {
    fn new(bad: u64) -> Self {
        Fragile(bad)
    }
    fn call(&self, x: u64) -> u64 {
        if x == self.0 {
            panic!("{x} is unlucky");
        }
        x
    }
}

/// A branch that panics fails the ensemble with `Panicked` naming that
/// node (by its `.named` name, not its step's), its replica alone is
/// rebuilt, and the next call answers in full.
#[test]
fn a_panicking_named_branch_fails_the_ensemble_naming_it_and_is_rebuilt() {
    let (gate, log) = (AsyncGate::closed(), Log::default());
    gate.open();
    let x = Input::<u64>::new();
    let p = total((
        HoldTask::bind(gate, log, x.clone()),
        Fragile::bind(13, x.clone()).named("fragile one"),
        Fragile::bind(999, x),
    ))
    .deploy()
    .unwrap();
    assert_eq!(p.call(2).unwrap(), 200 + 2 + 2);
    let err = p.call(13).unwrap_err();
    match &err {
        PipelineError::Panicked { step, message } => {
            assert_eq!(*step, "fragile one", "{err}");
            assert!(message.contains("13 is unlucky"), "{message}");
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
    wait_until("the panicked replica rebuilt", || {
        p.health()
            .steps
            .iter()
            .any(|s| s.step == "fragile one" && s.rebuilds == 1 && s.replicas_down == 0)
    });
    assert_eq!(p.call(3).unwrap(), 300 + 3 + 3);
    let health = p.health();
    let rebuilds: Vec<_> = health.steps.iter().map(|s| (s.step, s.rebuilds)).collect();
    assert_eq!(
        rebuilds,
        [
            ("HoldTask", 0),
            ("fragile one", 1),
            ("Fragile", 0),
            ("total", 0)
        ]
    );
    assert!(health.is_healthy(), "{health:?}");
    wait_until("every counter settled", || settled(&p));
    let m = p.metrics();
    assert_eq!(metric(&m, "fragile one").errors, 1);
    assert_eq!(metric(&m, "Fragile").errors, 0);
}

// ------------------------------------ a shared node failing under 50 nodes

#[derive(Debug)]
struct Refused(u64);
impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gatekeeper refuses {}", self.0)
    }
}
impl std::error::Error for Refused {}

struct Gatekeeper {
    runs: Arc<AtomicUsize>,
}
#[step(mode = "actors", placement = "task")]
impl Gatekeeper {
    fn new(runs: Arc<AtomicUsize>) -> Self {
        Gatekeeper { runs }
    }
    fn call(&self, x: u64) -> Result<u64, Refused> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        if x % 2 == 1 {
            Err(Refused(x))
        } else {
            Ok(x)
        }
    }
}

struct Tally {
    k: u64,
    runs: Arc<AtomicUsize>,
}
#[step]
impl Tally {
    fn new(k: u64, runs: Arc<AtomicUsize>) -> Self {
        Tally { k, runs }
    }
    fn call(&self, x: u64) -> u64 {
        self.runs.fetch_add(1, Ordering::SeqCst);
        x * self.k
    }
}

struct TallyActor {
    k: u64,
    runs: Arc<AtomicUsize>,
}
#[step(mode = "actors", placement = "task")]
impl TallyActor {
    fn new(k: u64, runs: Arc<AtomicUsize>) -> Self {
        TallyActor { k, runs }
    }
    async fn call(&self, x: u64) -> u64 {
        tokio::task::yield_now().await;
        self.runs.fetch_add(1, Ordering::SeqCst);
        x * self.k
    }
}

/// One shared actor node feeding 50 consumers (25 local, 25 task actors):
/// when it fails, the call fails once with its error (the source still
/// downcasts), it ran once, and no consumer ran or was counted; when it
/// answers, it ran once more and every consumer once.
#[test]
fn a_shared_node_failing_under_fifty_consumers_fails_once_and_runs_once() {
    let gate_runs = Arc::new(AtomicUsize::new(0));
    let consumer_runs = Arc::new(AtomicUsize::new(0));
    let g = Gatekeeper::bind(gate_runs.clone(), Input::<u64>::new());
    let consumers: Vec<Node<u64, u64>> = (0..50u64)
        .map(|k| {
            if k % 2 == 0 {
                Tally::bind(k, consumer_runs.clone(), g.clone()).boxed()
            } else {
                TallyActor::bind(k, consumer_runs.clone(), g.clone()).boxed()
            }
        })
        .collect();
    drop(g);
    let node = total(consumers);
    let graph = node.graph();
    assert_eq!(
        graph
            .nodes()
            .iter()
            .filter(|n| n.label == "Gatekeeper")
            .count(),
        1,
        "the shared node is described once"
    );
    let p = node.deploy().unwrap();

    let err = p.call(7).unwrap_err();
    assert_eq!(err.step(), Some("Gatekeeper"), "{err}");
    let source = err.source().expect("the step's error");
    assert!(
        matches!(source.downcast_ref::<Refused>(), Some(Refused(7))),
        "{source}"
    );
    assert_eq!(gate_runs.load(Ordering::SeqCst), 1);
    assert_eq!(consumer_runs.load(Ordering::SeqCst), 0);
    let m = p.metrics();
    assert_eq!(m.len(), 52);
    assert_eq!(
        (
            metric(&m, "Gatekeeper").requests,
            metric(&m, "Gatekeeper").errors
        ),
        (1, 1)
    );
    for s in &m {
        if s.step != "Gatekeeper" {
            assert_eq!((s.requests, s.errors), (0, 0), "{s:?}");
        }
    }

    let want: u64 = (0..50u64).map(|k| 4 * k).sum();
    assert_eq!(p.call(4).unwrap(), want);
    assert_eq!(gate_runs.load(Ordering::SeqCst), 2);
    assert_eq!(consumer_runs.load(Ordering::SeqCst), 50);
    let m = p.metrics();
    for s in &m {
        let want = if s.step == "Gatekeeper" { 2 } else { 1 };
        assert_eq!(s.requests, want, "{s:?}");
    }
    wait_until("every counter settled", || settled(&p));
}

// ---------------------------------------------------------- routes

#[step(mode = "actors", placement = "task")]
fn lane(x: u64) -> u64 {
    x % 101
}

struct Lane {
    id: u64,
    hits: Arc<Vec<AtomicUsize>>,
}
#[step]
impl Lane {
    fn new(id: u64, hits: Arc<Vec<AtomicUsize>>) -> Self {
        Lane { id, hits }
    }
    fn call(&self, x: u64) -> u64 {
        self.hits[self.id as usize].fetch_add(1, Ordering::SeqCst);
        x * 1000 + self.id
    }
}

/// A route of 100 branches keyed by an actor step: each call runs exactly
/// the branch its key names and no other; a key with no branch fails with
/// `NoBranch` naming the key; each branch node counts its own calls.
#[test]
fn a_route_of_a_hundred_branches_runs_exactly_the_chosen_one() {
    let hits: Arc<Vec<AtomicUsize>> = Arc::new((0..100).map(|_| AtomicUsize::new(0)).collect());
    let x = Input::<u64>::new();
    let mut r = route(lane(x.clone())).branch(0u64, Lane::bind(0, hits.clone(), x.clone()));
    for k in 1..100u64 {
        r = r.branch(k, Lane::bind(k, hits.clone(), x.clone()));
    }
    drop(x);
    let p = r.deploy().unwrap();
    let mut want = vec![0usize; 100];
    for x in 0..303u64 {
        let key = x % 101;
        match p.call(x) {
            Ok(v) => {
                assert_ne!(key, 100);
                assert_eq!(v, x * 1000 + key);
                want[key as usize] += 1;
            }
            Err(PipelineError::NoBranch { key: shown, .. }) => {
                assert_eq!((key, shown.as_str()), (100, "100"));
            }
            Err(e) => panic!("{x}: {e}"),
        }
        let got: Vec<usize> = hits.iter().map(|h| h.load(Ordering::SeqCst)).collect();
        assert_eq!(got, want, "after {x}");
    }
    let m = p.metrics();
    assert_eq!(metric(&m, "lane").requests, 303);
    for (k, &wanted) in want.iter().enumerate() {
        let name = if k == 0 {
            "Lane".to_string()
        } else {
            format!("Lane_{k}")
        };
        assert_eq!(metric(&m, &name).requests, wanted as u64, "{name}");
    }
    assert_settled(&p);
}

struct Expensive {
    runs: Arc<AtomicUsize>,
}
#[step(mode = "actors")]
impl Expensive {
    fn new(runs: Arc<AtomicUsize>) -> Self {
        Expensive { runs }
    }
    fn call(&self, x: u64) -> u64 {
        self.runs.fetch_add(1, Ordering::SeqCst);
        x * 7
    }
}

#[step]
fn bucket(x: u64) -> u64 {
    x % 3
}

#[step]
fn parity(x: u64) -> bool {
    x % 2 == 0
}

#[step]
fn double(x: u64) -> u64 {
    x * 2
}

#[step]
fn triple(x: u64) -> u64 {
    x * 3
}

#[step]
fn inc(x: u64) -> u64 {
    x + 1
}

#[step]
fn is_big(x: u64) -> bool {
    x >= 70
}

/// A route inside a route, the outer one feeding a gather, a shared actor
/// node used only by some branches, the bare input as a branch: the shared
/// node runs only when a chosen branch needs it, and then once; a shared
/// node that is both the key's input and the chosen branch's runs once.
#[test]
fn nested_routes_a_route_in_a_gather_and_shared_nodes_run_only_when_chosen() {
    let runs = Arc::new(AtomicUsize::new(0));
    let x = Input::<u64>::new();
    let s = Expensive::bind(runs.clone(), x.clone());
    let inner = route(parity(x.clone()))
        .branch(true, double(s.clone()))
        .branch(false, inc(x.clone()));
    let outer = route(bucket(x.clone()))
        .branch(0u64, inner)
        .branch(1u64, triple(s))
        .otherwise(x.clone());
    let node = total((outer, inc(x)));
    let described: Vec<String> = node.graph().steps().map(|n| n.label.clone()).collect();
    let p = node.deploy().unwrap();
    let deployed: Vec<String> = p.graph().steps().map(|n| n.label.clone()).collect();
    assert_eq!(described, deployed);
    assert_eq!(
        p.graph()
            .nodes()
            .iter()
            .filter(|n| n.kind == NodeKind::Route)
            .count(),
        2
    );

    for x in 0..60u64 {
        let before = runs.load(Ordering::SeqCst);
        let (want, ran) = match (x % 3, x % 2 == 0) {
            (0, true) => (14 * x, 1),
            (0, false) => (x + 1, 0),
            (1, _) => (21 * x, 1),
            _ => (x, 0),
        };
        assert_eq!(p.call(x).unwrap(), want + x + 1, "x = {x}");
        assert_eq!(runs.load(Ordering::SeqCst) - before, ran, "x = {x}");
    }
    assert_settled(&p);

    // The shared node is the key's input and the chosen branch's.
    let runs = Arc::new(AtomicUsize::new(0));
    let e = Expensive::bind(runs.clone(), Input::<u64>::new());
    let p = route(is_big(e.clone()))
        .branch(true, double(e.clone()))
        .otherwise(e)
        .deploy()
        .unwrap();
    assert_eq!(p.call(10).unwrap(), 140);
    assert_eq!(p.call(9).unwrap(), 63);
    assert_eq!(runs.load(Ordering::SeqCst), 2);

    // A route on the bare input, its branches the input itself.
    let x = Input::<u64>::new();
    let p = route(x.clone())
        .branch(1u64, inc(x.clone()))
        .otherwise(x)
        .deploy()
        .unwrap();
    assert_eq!((p.call(1).unwrap(), p.call(5).unwrap()), (2, 5));
}

#[derive(Clone, Debug)]
struct Req {
    model: String,
}

#[step]
fn pick(r: Req) -> String {
    r.model
}

#[step]
fn small(_r: Req) -> u64 {
    1
}

#[step]
fn pick_again(r: Req) -> usize {
    r.model.len()
}

/// `PipelineError::NoBranch::route` is documented as "the route's label
/// (its key node's name)": with two routes in one graph, the error should
/// say which one had no branch.
#[test]
fn no_branch_names_the_route_by_its_key_node() {
    // The inner route (keyed by the model name's length) has a branch for
    // 3 letters only: "huge" has no outer branch, "inner" (5 letters) goes
    // to the inner route, which has none for 5.
    let req = Input::<Req>::new();
    let inner = route(pick_again(req.clone())).branch(3usize, small(req.clone()));
    let p = route(pick(req.clone()))
        .branch("small", small(req))
        .branch("inner", inner)
        .deploy()
        .unwrap();
    let no_branch = |model: &str| match p.call(Req {
        model: model.into(),
    }) {
        Err(PipelineError::NoBranch { route, key }) => (route, key),
        other => panic!("{model}: {other:?}"),
    };
    let (outer, key) = no_branch("huge");
    assert_eq!(key, "\"huge\"");
    let (inner, key) = no_branch("inner");
    assert_eq!(key, "5");
    assert_eq!(
        (outer.as_str(), inner.as_str()),
        ("pick", "pick_again"),
        "which route had no branch"
    );
}

// ------------------------------------------------ large gathers, deep chains

struct Scale(u64);
#[step(mode = "actors", placement = "task")]
impl Scale {
    fn new(k: u64) -> Self {
        Scale(k)
    }
    fn call(&self, x: u64) -> u64 {
        x * self.0
    }
}

/// A gather of 1000 local nodes of one step plus 64 task actors, and a
/// gather of 1000 handles of one shared node: answers in order, names
/// unique, counts exact.
#[test]
fn gathers_of_a_thousand_nodes_answer_in_order_with_unique_names() {
    let x = Input::<u64>::new();
    let mut nodes: Vec<Node<u64, u64>> = (0..1000).map(|_| inc(x.clone()).boxed()).collect();
    nodes.extend((0..64).map(|k| Scale::bind(k, x.clone()).boxed()));
    drop(x);
    let p = nodes.deploy().unwrap();
    let want: Vec<u64> = std::iter::repeat_n(6, 1000)
        .chain((0..64).map(|k| 5 * k))
        .collect();
    assert_eq!(p.call(5).unwrap(), want);
    let names: std::collections::HashSet<&str> = p.report().iter().map(|r| r.step).collect();
    assert_eq!(names.len(), 1064);
    assert!(names.contains("inc_999") && names.contains("Scale_63"));
    assert!(p.metrics().iter().all(|m| m.requests == 1));

    let runs = Arc::new(AtomicUsize::new(0));
    let s = Expensive::bind(runs.clone(), Input::<u64>::new());
    let many: Vec<_> = (0..1000).map(|_| s.clone()).collect();
    drop(s);
    let graph = many.graph();
    assert_eq!(graph.nodes().len(), 3, "input, the shared node, the gather");
    assert_eq!(graph.nodes()[2].inputs.len(), 1000);
    let p = total(many).deploy().unwrap();
    assert_eq!(p.call(1).unwrap(), 7000);
    assert_eq!(p.call(2).unwrap(), 14000);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

fn chain_of(n: usize) -> Node<u64, u64> {
    let mut node = Input::<u64>::new().boxed();
    for _ in 0..n {
        node = inc(node).boxed();
    }
    node
}

/// A chain of 1000 steps built in a loop is described, printed and dropped
/// on a 2 MiB stack (a test thread's, a tokio worker's).
#[test]
fn a_thousand_step_chain_describes_prints_and_drops_on_a_small_stack() {
    let (nodes, dot, mermaid) = on_stack(2 << 20, || {
        let node = chain_of(1000);
        let graph = node.graph();
        let out = (graph.nodes().len(), graph.to_dot(), graph.to_mermaid());
        drop(node);
        out
    });
    assert_eq!(nodes, 1001);
    assert!(dot.contains("label=\"inc_999\""));
    assert!(mermaid.contains("n999 --> n1000"));
}

/// The same chain deployed on a 2 MiB stack. The call needs about 2.5 KiB
/// of stack per step (tests/tests/deep.rs says so, and runs its chain on
/// 8 MiB); deploying should not need more than calling (it lowers on a
/// stack of its own).
#[test]
fn a_thousand_step_chain_deploys_on_a_small_stack() {
    let deployed = on_stack(2 << 20, || chain_of(1000).deploy().is_ok());
    assert!(deployed);
}

/// A chain of 1000 task-placed actor steps, deployed, called and dropped
/// where a program's main thread would (8 MiB of stack).
#[test]
fn a_thousand_actor_chain_deploys_answers_and_drops() {
    let (answers, requests) = on_stack(8 << 20, || {
        let mut node = Input::<u64>::new().boxed();
        for _ in 0..1000 {
            node = Scale::bind(1, node).boxed();
        }
        node = inc(node).boxed();
        let p = node.deploy().expect("deploy");
        let answers = (p.call(1).expect("call"), p.call(41).expect("call"));
        let requests: Vec<u64> = p.metrics().iter().map(|m| m.requests).collect();
        drop(p);
        (answers, requests)
    });
    assert_eq!(answers, (2, 42));
    assert_eq!(requests.len(), 1001);
    assert!(requests.iter().all(|r| *r == 2));
}

// ------------------------------------------------------- names in pictures

/// Reads a DOT quoted string at the start of `s`: its text unescaped, and
/// what follows it; `None` if it is not one or never ends.
fn dot_string(s: &str) -> Option<(String, &str)> {
    let rest = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = rest.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                let (_, next) = chars.next()?;
                match next {
                    'n' => out.push('\n'),
                    other => out.push(other),
                }
            }
            '"' => return Some((out, &rest[i + 1..])),
            c => out.push(c),
        }
    }
    None
}

/// Checks DOT text line by line against the shape `to_dot` writes, and
/// returns each node's label.
fn parse_dot(dot: &str, graph: &Graph) -> Vec<String> {
    let mut lines = dot.split('\n');
    assert_eq!(lines.next(), Some("digraph pipeline {"));
    assert_eq!(lines.next(), Some("  rankdir=LR;"));
    assert_eq!(lines.next(), Some("  node [shape=box];"));
    let mut labels = Vec::new();
    let mut edges = 0;
    for line in lines.by_ref() {
        if line == "}" {
            break;
        }
        let body = line
            .strip_prefix("  n")
            .unwrap_or_else(|| panic!("line {line:?}"));
        let digits = body.chars().take_while(char::is_ascii_digit).count();
        assert!(digits > 0, "line {line:?}");
        let rest = &body[digits..];
        if let Some(rest) = rest.strip_prefix(" [label=") {
            let (label, rest) = dot_string(rest).unwrap_or_else(|| panic!("label in {line:?}"));
            let rest = rest.strip_prefix(", shape=").expect("shape");
            let shape_len = rest.chars().take_while(char::is_ascii_alphabetic).count();
            let rest = rest[shape_len..]
                .strip_prefix(", tooltip=")
                .expect("tooltip");
            let (_, rest) = dot_string(rest).expect("tooltip string");
            assert_eq!(rest, "];", "line {line:?}");
            labels.push(label);
        } else {
            let rest = rest
                .strip_prefix(" -> n")
                .unwrap_or_else(|| panic!("line {line:?}"));
            let digits = rest.chars().take_while(char::is_ascii_digit).count();
            assert!(digits > 0, "line {line:?}");
            let rest = &rest[digits..];
            if rest != ";" {
                let rest = rest
                    .strip_prefix(" [label=")
                    .unwrap_or_else(|| panic!("{line:?}"));
                let (_, rest) = dot_string(rest).unwrap_or_else(|| panic!("{line:?}"));
                assert_eq!(rest, "];", "line {line:?}");
            }
            edges += 1;
        }
    }
    assert_eq!(
        lines.collect::<Vec<_>>(),
        [""],
        "text after the closing brace"
    );
    assert_eq!(labels.len(), graph.nodes().len());
    let want: usize = graph.nodes().iter().map(|n| n.inputs.len()).sum();
    assert_eq!(edges, want);
    labels
}

/// Checks Mermaid text: one statement per line, every quoted text free of
/// raw quotes and line breaks; returns each node's text.
fn parse_mermaid(text: &str, graph: &Graph) -> Vec<String> {
    let mut lines = text.split('\n');
    assert_eq!(lines.next(), Some("flowchart LR"));
    let (mut nodes, mut edges) = (Vec::new(), 0);
    for line in lines {
        if line.is_empty() {
            continue;
        }
        assert!(!line.contains('\r'), "a carriage return in {line:?}");
        let body = line
            .strip_prefix("  n")
            .unwrap_or_else(|| panic!("line {line:?}"));
        let digits = body.chars().take_while(char::is_ascii_digit).count();
        let rest = &body[digits..];
        if let Some(rest) = rest.strip_prefix(" -->") {
            let rest = match rest.strip_prefix("|\"") {
                Some(labelled) => {
                    let end = labelled.find('"').expect("label ends");
                    labelled[end..].strip_prefix("\"|").expect("label closes")
                }
                None => rest,
            };
            let rest = rest
                .strip_prefix(" n")
                .unwrap_or_else(|| panic!("{line:?}"));
            assert!(
                !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()),
                "line {line:?}"
            );
            edges += 1;
        } else {
            let open = rest.find('"').unwrap_or_else(|| panic!("{line:?}"));
            let close = rest.rfind('"').unwrap();
            assert!(close > open, "line {line:?}");
            let inner = &rest[open + 1..close];
            assert!(!inner.contains('"'), "raw quote in {line:?}");
            assert!(
                ["([", "[/", "{", "["].contains(&&rest[..open]),
                "opening {line:?}"
            );
            assert!(
                ["])", "\\]", "/]", "}", "]"].contains(&&rest[close + 1..]),
                "closing {line:?}"
            );
            nodes.push(inner.to_string());
        }
    }
    assert_eq!(nodes.len(), graph.nodes().len(), "{text}");
    let want: usize = graph.nodes().iter().map(|n| n.inputs.len()).sum();
    assert_eq!(edges, want, "{text}");
    nodes
}

/// A route key whose `Debug` writes quotes, a newline and Mermaid syntax.
#[derive(Clone, PartialEq)]
struct Evil(u8);
impl fmt::Debug for Evil {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"]\n  n99[\"evil {} |x| --> n0", self.0)
    }
}

#[step]
fn evil_key(x: u64) -> Evil {
    Evil((x % 2) as u8)
}

const NASTY: [&str; 10] = [
    "say \"hi\"",
    "back\\slash",
    "ends with \\",
    "two\nlines",
    "tab\there",
    "ünïcödé 🚀 模型",
    "<b>bold</b> & amp",
    "semi;colon {brace} [bracket] |pipe| (paren)",
    "\"]\n  n99[\"injected",
    "n0 --> n1; digraph {",
];

/// Node names and route keys full of quotes, backslashes, newlines,
/// unicode and the formats' own syntax: the DOT and Mermaid texts keep one
/// statement per line, every string closed; DOT's labels read back as the
/// names; and the names reach report, metrics and errors unchanged.
#[test]
fn names_and_keys_full_of_syntax_keep_dot_and_mermaid_well_formed() {
    let x = Input::<u64>::new();
    let named: Vec<Node<u64, u64>> = NASTY
        .iter()
        .map(|name| inc(x.clone()).named(name).boxed())
        .collect();
    let keyed = route(evil_key(x.clone()))
        .branch(Evil(0), double(x.clone()))
        .branch(Evil(1), triple(x.clone()).named("tri\"ple"));
    let node = total((
        total(named),
        keyed,
        Scale::bind(2, x).named("scale \"x\" 🚀"),
    ));
    let graph = node.graph();

    let labels = parse_dot(&graph.to_dot(), &graph);
    for name in NASTY {
        assert!(labels.iter().any(|l| l == name), "{name:?} in {labels:?}");
    }
    assert!(labels.iter().any(|l| l == "scale \"x\" 🚀 (actors x1)"));
    parse_mermaid(&graph.to_mermaid(), &graph);
    // With notes that carry the same characters.
    let note = |n: &pipeline_core::GraphNode| Some(format!("{} \"note\" \\ end", n.id));
    parse_dot(&graph.to_dot_annotated(note), &graph);
    parse_mermaid(&graph.to_mermaid_annotated(note), &graph);

    let p = node.deploy().unwrap();
    assert_eq!(p.graph(), &graph);
    let steps: Vec<&str> = p.report().iter().map(|r| r.step).collect();
    for name in NASTY {
        assert!(steps.contains(&name), "{name:?} in {steps:?}");
    }
    assert_eq!(p.call(2).unwrap(), 10 * 3 + 4 + 4);
    assert_eq!(p.call(3).unwrap(), 10 * 4 + 9 + 6);
}

// ------------------------------------------------- one model, two nodes

struct Acc {
    tag: u64,
    sum: u64,
    name: &'static str,
    replicas: usize,
}
#[step(mode = "actors")]
impl Acc {
    fn new(ctx: &ReplicaContext, tag: u64) -> Self {
        Acc {
            tag,
            sum: 0,
            name: ctx.step(),
            replicas: ctx.replicas(),
        }
    }
    fn call(&mut self, x: u64) -> (u64, u64, &'static str, usize) {
        self.sum += x;
        (self.tag, self.sum, self.name, self.replicas)
    }
}

struct AccTasks {
    tag: u64,
    sum: u64,
}
#[step(mode = "tasks")]
impl AccTasks {
    fn new(tag: u64) -> Self {
        AccTasks { tag, sum: 0 }
    }
    fn call(&mut self, x: u64) -> (u64, u64, &'static str, usize) {
        self.sum += x;
        (self.tag, self.sum, "tasks", 1)
    }
}

#[step]
fn pair(
    a: (u64, u64, &'static str, usize),
    b: (u64, u64, &'static str, usize),
) -> Vec<(u64, u64, &'static str, usize)> {
    vec![a, b]
}

/// A model bound twice with different constructor arguments: each node has
/// its own state, its own replicas and its own name in its context, as
/// actors, as tasks and all inline.
#[test]
fn a_model_bound_twice_keeps_its_own_state_and_replicas_per_node() {
    let build = || {
        let x = Input::<u64>::new();
        pair(
            Acc::bind(1, x.clone()).named("left"),
            Acc::bind(2, x).named("right"),
        )
    };
    let p = build()
        .deploy_with(DeployOptions::new().replicas("right", 3))
        .unwrap();
    let out = p.call(5).unwrap();
    assert_eq!(out[0], (1, 5, "left", 1));
    assert_eq!((out[1].0, out[1].1, out[1].2, out[1].3), (2, 5, "right", 3));
    let out = p.call(7).unwrap();
    assert_eq!(
        out[0],
        (1, 12, "left", 1),
        "left's one replica keeps its sum"
    );
    assert_eq!(out[1].0, 2);
    let report: Vec<_> = p.report().iter().map(|r| (r.step, r.replicas)).collect();
    assert_eq!(report, [("left", 1), ("right", 3), ("pair", 1)]);

    let p = build().deploy_with(DeployOptions::local()).unwrap();
    p.call(5).unwrap();
    assert_eq!(
        p.call(7).unwrap(),
        [(1, 12, "left", 1), (2, 12, "right", 1)]
    );

    let x = Input::<u64>::new();
    let p = pair(AccTasks::bind(1, x.clone()), AccTasks::bind(2, x))
        .deploy()
        .unwrap();
    p.call(5).unwrap();
    assert_eq!(
        p.call(7).unwrap(),
        [(1, 12, "tasks", 1), (2, 12, "tasks", 1)]
    );
}

// ------------------------------------------- zero and endless deadlines

#[step]
fn d_local(x: u64) -> u64 {
    x + 1
}

#[step]
async fn d_local_async(x: u64) -> u64 {
    tokio::task::yield_now().await;
    x + 1
}

#[step(mode = "tasks")]
fn d_tasks(x: u64) -> u64 {
    x + 1
}

#[step(mode = "tasks")]
async fn d_tasks_async(x: u64) -> u64 {
    tokio::task::yield_now().await;
    x + 1
}

#[step(mode = "actors")]
fn d_thread(x: u64) -> u64 {
    x + 1
}

#[step(mode = "actors", placement = "task")]
async fn d_task(x: u64) -> u64 {
    tokio::task::yield_now().await;
    x + 1
}

fn deadline_modes() -> Vec<(&'static str, Pipeline<u64, u64>)> {
    vec![
        ("local", d_local(Input::new()).deploy().unwrap()),
        ("local async", d_local_async(Input::new()).deploy().unwrap()),
        ("tasks", d_tasks(Input::new()).deploy().unwrap()),
        ("tasks async", d_tasks_async(Input::new()).deploy().unwrap()),
        ("thread actor", d_thread(Input::new()).deploy().unwrap()),
        ("task actor", d_task(Input::new()).deploy().unwrap()),
    ]
}

/// `Ok` with the right answer or `DeadlineExceeded` with the deadline
/// given; nothing else.
fn ok_or_late(mode: &str, x: u64, d: Duration, out: Result<u64, PipelineError>) -> usize {
    match out {
        Ok(v) => {
            assert_eq!(v, x + 1, "{mode}");
            0
        }
        Err(PipelineError::DeadlineExceeded { after }) => {
            assert_eq!(after, d, "{mode}");
            1
        }
        Err(e) => panic!("{mode}, deadline {d:?}: {e:?}"),
    }
}

/// Deadlines of zero, one nanosecond and `Duration::MAX`, blocking and
/// async, on every mode: zero and 1 ns answer or say the deadline passed
/// (never another error, a panic or a hang); `MAX` means no deadline;
/// afterwards every counter settles and the one replica answers.
#[test]
fn zero_tiny_and_endless_deadlines_on_every_mode() {
    let huge = [
        Duration::MAX,
        Duration::from_secs(u64::MAX),
        Duration::from_secs(1 << 40),
    ];
    for (mode, p) in deadline_modes() {
        let mut late = 0;
        for x in 0..20u64 {
            late += ok_or_late(mode, x, Duration::ZERO, p.call_timeout(x, Duration::ZERO));
            let tiny = Duration::from_nanos(1);
            late += ok_or_late(mode, x, tiny, p.call_timeout(x, tiny));
        }
        // Whether any call missed its deadline is a race with the timer
        // (a thread replica often answers first): what follows checks that
        // whatever was cut settled.
        let _ = late;
        for d in huge {
            assert_eq!(p.call_timeout(7, d).unwrap(), 8, "{mode}, {d:?}");
        }
        assert_eq!(p.call_timeout(9, GUARD).unwrap(), 10, "{mode}");
        wait_until(mode, || settled(&p));
        assert_eq!(
            p.metrics()[0].errors,
            0,
            "{mode}: a deadline is no step error"
        );
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for (mode, p) in deadline_modes() {
            let mut late = 0;
            for x in 0..20u64 {
                let out = p.call_async_timeout(x, Duration::ZERO).await;
                late += ok_or_late(mode, x, Duration::ZERO, out);
            }
            let _ = late;
            for d in huge {
                assert_eq!(
                    p.call_async_timeout(7, d).await.unwrap(),
                    8,
                    "{mode}, {d:?}"
                );
            }
            assert_eq!(p.call_async_timeout(9, GUARD).await.unwrap(), 10, "{mode}");
            wait_until_async(mode, || settled(&p)).await;
        }
    });
}

// ------------------------ a deadline while a shared value fans out (paused)

static FAN_CLONES: AtomicUsize = AtomicUsize::new(0);
static FAN_RUNS: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug)]
struct Fanned(u64);
impl Clone for Fanned {
    fn clone(&self) -> Self {
        FAN_CLONES.fetch_add(1, Ordering::SeqCst);
        Fanned(self.0)
    }
}

#[step]
fn fan_source(x: u64) -> Fanned {
    FAN_RUNS.fetch_add(1, Ordering::SeqCst);
    Fanned(x)
}

struct Waiter {
    ms: u64,
    done: Arc<AtomicUsize>,
}
#[step]
impl Waiter {
    fn new(ms: u64, done: Arc<AtomicUsize>) -> Self {
        Waiter { ms, done }
    }
    async fn call(&self, f: Fanned) -> u64 {
        tokio::time::sleep(Duration::from_millis(self.ms)).await;
        self.done.fetch_add(1, Ordering::SeqCst);
        f.0
    }
}

struct WaiterTasks {
    ms: u64,
    done: Arc<AtomicUsize>,
}
#[step(mode = "tasks", concurrent)]
impl WaiterTasks {
    fn new(ms: u64, done: Arc<AtomicUsize>) -> Self {
        WaiterTasks { ms, done }
    }
    async fn call(&self, f: Fanned) -> u64 {
        tokio::time::sleep(Duration::from_millis(self.ms)).await;
        self.done.fetch_add(1, Ordering::SeqCst);
        f.0
    }
}

/// Under a paused clock: one shared value fans out to 50 consumers (local
/// and tasks) that take 1, 3, .., 99 ms; a 50 ms deadline fails the call
/// after the 25 fastest finished, and the other 25 never finish (they are
/// cancelled, not left running); the source ran once, its value was
/// cloned once per consumer; every counter settles; the next call answers.
#[tokio::test(start_paused = true)]
async fn a_deadline_while_a_shared_value_fans_out_cancels_the_slow_consumers() {
    let done = Arc::new(AtomicUsize::new(0));
    let src = fan_source(Input::<u64>::new());
    let consumers: Vec<Node<u64, u64>> = (0..50u64)
        .map(|i| {
            let ms = 2 * i + 1;
            if i % 2 == 0 {
                Waiter::bind(ms, done.clone(), src.clone()).boxed()
            } else {
                WaiterTasks::bind(ms, done.clone(), src.clone()).boxed()
            }
        })
        .collect();
    drop(src);
    let p = total(consumers)
        .deploy_with(DeployOptions::new().runtime(tokio::runtime::Handle::current()))
        .unwrap();

    let err = p
        .call_async_timeout(3, Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(
        matches!(err, PipelineError::DeadlineExceeded { after } if after == Duration::from_millis(50)),
        "{err:?}"
    );
    assert_eq!(done.load(Ordering::SeqCst), 25);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        done.load(Ordering::SeqCst),
        25,
        "a consumer of the abandoned call finished after its deadline"
    );
    assert_eq!(FAN_RUNS.load(Ordering::SeqCst), 1);
    assert_eq!(FAN_CLONES.load(Ordering::SeqCst), 50);
    wait_until_async("every counter settled", || settled(&p)).await;

    assert_eq!(
        p.call_async_timeout(2, Duration::from_secs(1))
            .await
            .unwrap(),
        100
    );
    assert_eq!(done.load(Ordering::SeqCst), 75);
    assert_eq!(FAN_RUNS.load(Ordering::SeqCst), 2);
    assert_eq!(FAN_CLONES.load(Ordering::SeqCst), 100);
    let m = p.metrics();
    assert_eq!(metric(&m, "fan_source").requests, 2);
    assert_eq!(metric(&m, "total").requests, 1);
    assert_settled(&p);
}

// --------------------------------- counters read while eight threads call

struct HeadM;
#[step(mode = "actors", placement = "task")]
impl HeadM {
    fn new() -> Self {
        HeadM
    }
    fn call(&self, x: u64) -> u64 {
        x + 1
    }
}

#[step(mode = "actors", replicas = 2)]
fn m_thread(x: u64) -> u64 {
    x * 2
}

#[step(mode = "tasks")]
fn m_tasks(x: u64) -> u64 {
    x * 3
}

#[step]
fn m_flaky(x: u64) -> Result<u64, String> {
    if x % 17 == 0 {
        Err(format!("{x} is a multiple of 17"))
    } else {
        Ok(x)
    }
}

/// Eight threads call an ensemble while two more read metrics, health,
/// report and the graph in a loop: every reading is consistent (counters
/// never go back, the same steps each time) and the final counts are
/// exact.
#[test]
fn counters_read_while_eight_threads_call_stay_consistent_and_end_exact() {
    let head = HeadM::bind(Input::<u64>::new());
    let p = total((m_thread(head.clone()), m_tasks(head.clone()), m_flaky(head)))
        .deploy()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (p, stop) = (p.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut last: BTreeMap<&'static str, (u64, u64, u64)> = BTreeMap::new();
                let mut reads = 0u64;
                while !stop.load(Ordering::SeqCst) || reads == 0 {
                    let m = p.metrics();
                    assert_eq!(m.len(), 5);
                    for s in &m {
                        let now = (s.requests, s.errors, s.latency.count());
                        assert!(s.latency.count() <= s.requests + 8, "{s:?}");
                        if let Some(before) = last.insert(s.step, now) {
                            assert!(
                                now.0 >= before.0 && now.1 >= before.1 && now.2 >= before.2,
                                "{}: {before:?} then {now:?}",
                                s.step
                            );
                        }
                    }
                    let h = p.health();
                    assert_eq!(h.steps.len(), 5);
                    assert!(h.is_healthy(), "{h:?}");
                    assert_eq!(p.report().len(), 5);
                    assert!(p.graph().to_dot().contains("m_flaky"));
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let callers: Vec<_> = (0..8u64)
        .map(|t| {
            let p = p.clone();
            std::thread::spawn(move || {
                let mut failed = 0u64;
                for i in 0..250u64 {
                    let x = t * 1000 + i;
                    match p.call(x) {
                        Ok(v) => assert_eq!(v, (x + 1) * 6),
                        Err(e) => {
                            assert_eq!(e.step(), Some("m_flaky"), "{e}");
                            assert_eq!((x + 1) % 17, 0);
                            failed += 1;
                        }
                    }
                }
                failed
            })
        })
        .collect();
    let failed: u64 = callers.into_iter().map(|c| c.join().unwrap()).sum();
    stop.store(true, Ordering::SeqCst);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    let want_failed = (0..8u64)
        .flat_map(|t| (0..250u64).map(move |i| t * 1000 + i + 1))
        .filter(|v| v % 17 == 0)
        .count() as u64;
    assert_eq!(failed, want_failed);
    wait_until("every counter settled", || settled(&p));
    let m = p.metrics();
    assert_eq!(metric(&m, "HeadM").requests, 2000);
    assert_eq!(
        (metric(&m, "m_flaky").requests, metric(&m, "m_flaky").errors),
        (2000, want_failed)
    );
    assert_eq!(metric(&m, "total").requests, 2000 - want_failed);
    for step in ["m_thread", "m_tasks"] {
        let s = metric(&m, step);
        assert!(
            s.requests <= 2000 && s.requests >= 2000 - want_failed,
            "{s:?}"
        );
        assert_eq!(s.errors, 0);
    }
}

// ------------------------------------- a deploy failing after some started

#[derive(Clone, Default)]
struct Life {
    built: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
}

struct Built {
    life: Life,
}
#[step(mode = "actors", replicas = 3)]
impl Built {
    fn new(life: Life) -> Self {
        life.built.fetch_add(1, Ordering::SeqCst);
        Built { life }
    }
    fn call(&self, x: u64) -> u64 {
        x
    }
}
impl Drop for Built {
    fn drop(&mut self) {
        self.life.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

struct BuiltTask {
    life: Life,
}
#[step(mode = "actors", placement = "task", replicas = 2)]
impl BuiltTask {
    fn new(life: Life) -> Self {
        life.built.fetch_add(1, Ordering::SeqCst);
        BuiltTask { life }
    }
    async fn call(&self, x: u64) -> u64 {
        x
    }
}
impl Drop for BuiltTask {
    fn drop(&mut self) {
        self.life.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

struct Doomed;
#[step]
impl Doomed {
    fn new(fail: bool) -> Result<Self, String> {
        if fail {
            Err("no weights".into())
        } else {
            Ok(Doomed)
        }
    }
    fn call(&self, x: u64) -> u64 {
        x
    }
}

fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|dir| {
            dir.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .filter(|name| name.starts_with(prefix))
                .count()
        })
        .unwrap_or(0)
}

/// A constructor failing at deploy after two actor steps (thread and task
/// replicas) were built: deploy fails naming the step, and the replicas
/// already built are dropped and their threads gone; options naming no
/// step fail deploy before any constructor runs.
#[test]
fn a_deploy_failing_after_some_steps_started_stops_what_it_built() {
    // Replica threads are named after their node: three while deployed.
    let life = Life::default();
    let p = Built::bind(life.clone(), Input::<u64>::new())
        .deploy()
        .unwrap();
    assert_eq!(p.call(4).unwrap(), 4);
    assert_eq!(threads_named("Built-"), 3);
    drop(p);
    wait_until("a dropped pipeline's replicas are gone", || {
        life.dropped.load(Ordering::SeqCst) == 3 && threads_named("Built-") == 0
    });

    let (a, b) = (Life::default(), Life::default());
    let err = Doomed::bind(
        true,
        BuiltTask::bind(b.clone(), Built::bind(a.clone(), Input::<u64>::new())),
    )
    .deploy()
    .unwrap_err();
    assert!(
        matches!(
            err,
            DeployError::Build {
                step: "Doomed",
                replica: 0,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(a.built.load(Ordering::SeqCst), 3);
    assert_eq!(b.built.load(Ordering::SeqCst), 2);
    wait_until("the thread replicas were dropped", || {
        a.dropped.load(Ordering::SeqCst) == 3
    });
    wait_until("the task replicas were dropped", || {
        b.dropped.load(Ordering::SeqCst) == 2
    });
    wait_until("the replica threads ended", || threads_named("Built-") == 0);

    let c = Life::default();
    let err = Built::bind(c.clone(), Input::<u64>::new())
        .deploy_with(DeployOptions::new().replicas("Bulit", 2))
        .unwrap_err();
    assert!(matches!(err, DeployError::UnknownStep { .. }), "{err:?}");
    assert_eq!(c.built.load(Ordering::SeqCst), 0);
}

// ------------------------------------- a shared output whose clone panics

static TOUCHY_PANICS: AtomicBool = AtomicBool::new(false);
static TOUCHY_CLONES: AtomicU64 = AtomicU64::new(0);

#[derive(Debug)]
struct Touchy(u64);
impl Clone for Touchy {
    fn clone(&self) -> Self {
        TOUCHY_CLONES.fetch_add(1, Ordering::SeqCst);
        if TOUCHY_PANICS.load(Ordering::SeqCst) {
            panic!("this value cannot be cloned now");
        }
        Touchy(self.0)
    }
}

#[step]
fn make_touchy(x: u64) -> Touchy {
    Touchy(x)
}

#[step(mode = "actors")]
fn open_touchy(t: Touchy) -> u64 {
    t.0
}

#[step]
fn add(a: u64, b: u64) -> u64 {
    a + b
}

/// A shared node's output is cloned for each consumer by the framework, in
/// the call: a `Clone` that panics there should fail that call with a
/// typed error (as a panic in a step does), not unwind out of
/// `Pipeline::call` into the caller.
#[test]
fn a_shared_output_whose_clone_panics_fails_the_call_not_the_caller() {
    let t = make_touchy(Input::<u64>::new());
    let p = add(open_touchy(t.clone()), open_touchy(t))
        .deploy()
        .unwrap();
    assert_eq!(p.call(2).unwrap(), 4);
    TOUCHY_PANICS.store(true, Ordering::SeqCst);
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.call(3)));
    TOUCHY_PANICS.store(false, Ordering::SeqCst);
    let out = out.expect("Pipeline::call unwound with the Clone's panic");
    // The panic is the shared node's, as one in its body would be.
    assert!(
        matches!(
            &out,
            Err(PipelineError::Panicked {
                step: "make_touchy",
                ..
            })
        ),
        "{out:?}"
    );
    assert_eq!(p.call(5).unwrap(), 10);
    wait_until("every counter settled", || settled(&p));
}
