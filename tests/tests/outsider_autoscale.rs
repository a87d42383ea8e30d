//! An outsider's hostile tests of autoscaling actor replicas, written from
//! the README before reading the autoscaler. The pipelines run on the
//! test's paused `current_thread` runtime; nothing sleeps to wait for work:
//! tests wait on answers and counters while moving virtual time, with a
//! real-time hang guard (task replicas' constructors run on real threads).

mod support;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, Once};
use std::time::Duration;

use pipeline_core::prelude::*;
use pipeline_core::AutoscalePolicy;
use support::{metric, quiet_expected_panics, Gate, Held, GUARD};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

fn policy(min: usize, max: usize, target: usize, up_ms: u64, down_ms: u64) -> AutoscalePolicy {
    AutoscalePolicy {
        min_replicas: min,
        max_replicas: max,
        target_ongoing_requests: target,
        upscale_delay_ms: up_ms,
        downscale_delay_ms: down_ms,
    }
}

/// (built replicas, target) of the pipeline's first step.
fn replicas<I: Send + 'static, O: Send + 'static>(p: &Pipeline<I, O>) -> (usize, usize) {
    let h = &p.health().steps[0];
    (h.replicas, h.target_replicas)
}

/// [replicas, target, queued, in flight, replicas down] of the first step.
fn gauges<I: Send + 'static, O: Send + 'static>(p: &Pipeline<I, O>) -> [u64; 5] {
    let m = &p.metrics()[0];
    let (r, t, d) = (
        m.replicas as u64,
        m.target_replicas as u64,
        m.replicas_down as u64,
    );
    [r, t, m.queued, m.in_flight, d]
}

/// Moves virtual time on 1 ms at a time until `cond` holds; fails after
/// the real-time guard (a hang guard, not a timing assertion). It advances
/// the clock itself: tokio does not auto-advance a paused clock while a
/// blocking-pool task (a task replica's constructor) runs.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < GUARD, "never held: {what}");
        tokio::time::advance(Duration::from_millis(1)).await;
    }
}

/// Lets `ms` of virtual time pass, 1 ms at a time (see `until`).
async fn pass(ms: u64) {
    for _ in 0..ms {
        tokio::time::advance(Duration::from_millis(1)).await;
    }
}

/// Panics (not "on purpose") by thread: the autoscaler runs on the test's
/// thread, so a panic in it shows here though tokio swallows it.
static STRAY: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

fn hooks() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        quiet_expected_panics();
        let quiet = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let p = info.payload();
            let msg = (p.downcast_ref::<&str>().map(|s| s.to_string()))
                .or_else(|| p.downcast_ref::<String>().cloned());
            let msg = msg.unwrap_or_default();
            if !msg.contains("on purpose") {
                let thread = std::thread::current().name().unwrap_or("").to_string();
                let at = info.location().map(|l| l.to_string()).unwrap_or_default();
                let mut stray = STRAY.lock().unwrap_or_else(|e| e.into_inner());
                stray.push((thread, format!("{msg} at {at}")));
            }
            quiet(info);
        }));
    });
}

fn assert_no_stray_panic() {
    let me = std::thread::current().name().unwrap_or("").to_string();
    let stray = STRAY.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mine: Vec<_> = stray.into_iter().filter(|(t, _)| *t == me).collect();
    assert!(mine.is_empty(), "panics on the test's thread: {mine:?}");
}

/// A counting semaphore for constructors blocking a real thread.
#[derive(Default)]
struct Permits(Mutex<usize>, Condvar);

impl Permits {
    fn add(&self, n: usize) {
        *self.0.lock().unwrap() += n;
        self.1.notify_all();
    }
    fn take(&self) {
        let (mut n, timeout) = self
            .1
            .wait_timeout_while(self.0.lock().unwrap(), GUARD, |n| *n == 0)
            .unwrap();
        assert!(!timeout.timed_out(), "a constructor never let go");
        *n -= 1;
    }
}

/// What the `Probe` model shares with its test: a gate per replica, the
/// indexes of models alive now and of every one built, constructor
/// attempts per index, how often the body ran per value.
struct Shared {
    gates: [Semaphore; 8],
    live: Mutex<Vec<usize>>,
    built: Mutex<Vec<usize>>,
    attempts: Mutex<BTreeMap<usize, usize>>,
    /// A constructor for this index panics (none while `usize::MAX`).
    fail_index: AtomicUsize,
    /// Constructors for indexes above 0 wait for a permit.
    block_later: AtomicBool,
    permits: Permits,
    runs: Mutex<HashMap<u64, usize>>,
}

#[derive(Clone)]
struct Lab(Arc<Shared>);

impl Lab {
    fn new() -> Self {
        Lab(Arc::new(Shared {
            gates: std::array::from_fn(|_| Semaphore::new(0)),
            live: Mutex::default(),
            built: Mutex::default(),
            attempts: Mutex::default(),
            fail_index: AtomicUsize::new(usize::MAX),
            block_later: AtomicBool::new(false),
            permits: Permits::default(),
            runs: Mutex::default(),
        }))
    }
    fn gate(&self, i: usize) -> &Semaphore {
        &self.0.gates[i]
    }
    fn live(&self) -> Vec<usize> {
        let mut v = self.0.live.lock().unwrap().clone();
        v.sort_unstable();
        v
    }
    fn built(&self) -> Vec<usize> {
        self.0.built.lock().unwrap().clone()
    }
    fn tries(&self, i: usize) -> usize {
        self.0
            .attempts
            .lock()
            .unwrap()
            .get(&i)
            .copied()
            .unwrap_or(0)
    }
    fn runs(&self, v: u64) -> usize {
        self.0.runs.lock().unwrap().get(&v).copied().unwrap_or(0)
    }
}

/// Flags on a call's value: wait at the replica's own gate; panic if at
/// replica 1; take 1 ms of virtual time.
const HOLD: u64 = 1 << 40;
const PANIC_AT_1: u64 = 1 << 41;
const SLEEP: u64 = 1 << 42;
const VALUE: u64 = (1 << 40) - 1;

/// A task-placed model that answers (its replica index, the value).
struct Probe {
    index: usize,
    lab: Lab,
}

#[step(mode = "actors", placement = "task")]
impl Probe {
    fn new(ctx: &ReplicaContext, lab: Lab) -> Self {
        let i = ctx.index();
        *lab.0.attempts.lock().unwrap().entry(i).or_default() += 1;
        if lab.0.fail_index.load(SeqCst) == i {
            panic!("replica {i} cannot load its weights, on purpose");
        }
        if i > 0 && lab.0.block_later.load(SeqCst) {
            lab.0.permits.take();
        }
        lab.0.live.lock().unwrap().push(i);
        lab.0.built.lock().unwrap().push(i);
        Probe { index: i, lab }
    }
    async fn call(&self, x: u64) -> (usize, u64) {
        let v = x & VALUE;
        *self.lab.0.runs.lock().unwrap().entry(v).or_default() += 1;
        if x & SLEEP != 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if x & HOLD != 0 {
            let gate = self.lab.gate(self.index).acquire().await;
            gate.expect("gate open").forget();
        }
        if x & PANIC_AT_1 != 0 && self.index == 1 {
            panic!("asked to, on purpose");
        }
        (self.index, v)
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let mut live = self.lab.0.live.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = live.iter().position(|&i| i == self.index) {
            live.remove(at);
        }
    }
}

type Answer = Result<(usize, u64), PipelineError>;

fn probe(lab: &Lab, policy: AutoscalePolicy) -> Pipeline<u64, (usize, u64)> {
    let options = DeployOptions::new()
        .runtime(tokio::runtime::Handle::current())
        .autoscale("Probe", policy);
    Probe::bind(lab.clone(), Input::<u64>::new())
        .deploy_with(options)
        .expect("deploy")
}

/// Awaits calls sent with values `from..`, all answered by replica 0.
async fn at_replica_0(calls: Vec<JoinHandle<Answer>>, from: u64) {
    for (x, c) in (from..).zip(calls) {
        assert_eq!(c.await.unwrap().unwrap(), (0, x));
    }
}

fn spawn_call(p: &Pipeline<u64, (usize, u64)>, x: u64) -> JoinHandle<Answer> {
    let p = p.clone();
    tokio::spawn(async move { p.call_async(x).await })
}

/// With `p` at min 1, max 2, target 3: scales to 2, holds a call at each
/// replica (100, 101), sends `extra` (spread over both), lets replica 0
/// finish, and waits until replica 1 drains. Returns (value, call).
async fn drain_replica_1(
    p: &Pipeline<u64, (usize, u64)>,
    lab: &Lab,
    extra: &[u64],
) -> Vec<(u64, JoinHandle<Answer>)> {
    let first: Vec<_> = (0..4).map(|x| spawn_call(p, HOLD | x)).collect();
    until("scaled up to 2", || replicas(p) == (2, 2)).await;
    lab.gate(0).add_permits(4);
    at_replica_0(first, 0).await;
    let mut calls = vec![
        (100, spawn_call(p, HOLD | 100)),
        (101, spawn_call(p, HOLD | 101)),
    ];
    calls.extend(extra.iter().map(|&x| (x & VALUE, spawn_call(p, x))));
    // Both held calls running: one at each replica.
    until("a held call at each replica", || {
        lab.runs(100) + lab.runs(101) == 2
    })
    .await;
    assert_eq!(replicas(p), (2, 2), "scaled down before the load left");
    lab.gate(0).add_permits(1);
    until("replica 1 drained", || replicas(p) == (1, 1)).await;
    calls
}

/// Attribute policy, file and builder options merged: a result that
/// cannot work is a typed error naming the step, never a panic.
#[step(
    mode = "actors",
    placement = "task",
    autoscale(min_replicas = 2, max_replicas = 3, upscale_delay_ms = 0)
)]
async fn pinned(x: u64) -> u64 {
    x + 7
}

/// Deploys `pinned` with the options a deploy file (`{` for JSON, else
/// TOML, under `[steps.pinned]`) gives, or with none for "".
fn deploy_pinned(file: &str) -> Result<Pipeline<u64, u64>, DeployError> {
    let options = match file {
        "" => DeployOptions::new(),
        json if json.starts_with('{') => DeployOptions::from_json_str(json)?,
        toml => DeployOptions::from_toml_str(&format!("[steps.pinned]\n{toml}"))?,
    };
    pinned(Input::<u64>::new()).deploy_with(options)
}

#[test]
fn merged_policies_that_cannot_work_are_refused_and_the_rest_apply() {
    let refused = [
        deploy_pinned("[steps.pinned.autoscale]\nmax_replicas = 1"), // below the attribute's min
        deploy_pinned(r#"{"steps":{"pinned":{"autoscale":{"max_replicas":0}}}}"#),
        deploy_pinned(r#"{"steps":{"pinned":{"autoscale":{"min_replicas":0}}}}"#),
        deploy_pinned("[steps.pinned.autoscale]\ntarget_ongoing_requests = 0"),
        deploy_pinned("[steps.pinned.autoscale]\nmin_replicas = 5000\nmax_replicas = 6000"),
        pinned(Input::<u64>::new())
            .deploy_with(DeployOptions::new().autoscale("pinned", policy(0, 0, 1, 0, 0))),
        pinned(Input::<u64>::new()).deploy_with(DeployOptions::new().replicas("pinned", 0)),
    ];
    for (case, result) in refused.into_iter().enumerate() {
        match result {
            Ok(p) => panic!("case {case}: deployed, report {:?}", p.report()),
            Err(DeployError::InvalidOption { step, message }) => {
                assert_eq!(step, "pinned", "case {case}: {message}");
            }
            Err(e) => panic!("case {case}: not InvalidOption: {e}"),
        }
    }
    let attribute = policy(2, 3, 2, 0, 30_000);
    let accepted = [
        ("", Some(attribute), 2),
        ("[steps.pinned.autoscale]", Some(attribute), 2),
        (
            "[steps.pinned.autoscale]\nmin_replicas = 3",
            Some(policy(3, 3, 2, 0, 30_000)),
            3,
        ),
        ("replicas = 1", None, 1),
        (
            r#"{"steps":{"pinned":{"autoscale":{"target_ongoing_requests":9}}}}"#,
            Some(policy(2, 3, 9, 0, 30_000)),
            2,
        ),
    ];
    for (file, autoscale, n) in accepted {
        let p = deploy_pinned(file).unwrap_or_else(|e| panic!("{file}: {e}"));
        let r = &p.report()[0];
        assert_eq!(
            (r.autoscale, r.replicas, r.target_replicas),
            (autoscale, n, n),
            "{file}"
        );
        assert_eq!(p.call(1).unwrap(), 8, "{file}");
    }
}

fn hold(p: &Pipeline<u64, u64>, n: u64) -> Vec<JoinHandle<Result<u64, PipelineError>>> {
    (0..n)
        .map(|i| {
            let p = p.clone();
            tokio::spawn(async move { p.call_async(i).await })
        })
        .collect()
}

/// Legal extremes under load that lasts (the autoscaler runs on this
/// thread, so an overflow in it would show as a stray panic): a target of
/// `usize::MAX` wants one replica for any load, delays of `u64::MAX` ms
/// never pass, a ceiling of `usize::MAX` follows the load.
#[tokio::test(start_paused = true)]
async fn extreme_but_legal_policies_under_sustained_load_neither_panic_nor_misscale() {
    hooks();
    for (policy, n) in [
        (policy(1, usize::MAX, usize::MAX, 0, 0), 1),
        (policy(1, 4, 1, u64::MAX, u64::MAX), 1),
        (policy(1, usize::MAX, 1, 0, u64::MAX), 8),
    ] {
        let lab = Lab::new();
        let p = probe(&lab, policy);
        let calls: Vec<_> = (0..8).map(|x| spawn_call(&p, HOLD | x)).collect();
        until("scaled to the load", || replicas(&p) == (n, n)).await;
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(replicas(&p), (n, n), "under load, {policy:?}");
        lab.gate(0).add_permits(8);
        at_replica_0(calls, 0).await;
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(replicas(&p), (n, n), "idle, {policy:?}");
        assert_eq!(p.metrics()[0].requests, 8);
        assert_no_stray_panic();
    }
}

/// One step bound twice, autoscaled by its step name: each node has its
/// own autoscaler, load on one scales that one only.
#[tokio::test(start_paused = true)]
async fn two_nodes_of_one_step_scale_each_by_its_own_load() {
    hooks();
    let (first, second) = (Gate::closed(), Gate::closed());
    let left = Held::bind(first.clone(), Input::<u64>::new()).named("left");
    let right = Held::bind(second.clone(), left).named("right");
    let options = DeployOptions::new()
        .runtime(tokio::runtime::Handle::current())
        .autoscale("Held", policy(1, 3, 1, 0, 0));
    let p = right.deploy_with(options).expect("deploy");
    let at = |name: &str| {
        let m = p.metrics();
        let m = metric(&m, name);
        (m.replicas, m.target_replicas)
    };
    for (busy, idle, busy_gate, idle_gate) in [
        ("left", "right", &first, &second),
        ("right", "left", &second, &first),
    ] {
        idle_gate.0.add_permits(6);
        let calls = hold(&p, 6);
        until("the busy node scaled to 3", || at(busy) == (3, 3)).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!((at(busy), at(idle)), ((3, 3), (1, 1)), "{busy} busy");
        busy_gate.0.add_permits(6);
        for (i, c) in calls.into_iter().enumerate() {
            assert_eq!(c.await.unwrap().unwrap(), i as u64 + 2);
        }
        until("both back to 1", || {
            at(busy) == (1, 1) && at(idle) == (1, 1)
        })
        .await;
    }
    let m = p.metrics();
    assert_eq!(
        (metric(&m, "left").requests, metric(&m, "right").requests),
        (12, 12)
    );
    assert_no_stray_panic();
}

/// While replica 1 drains, one of its queued calls panics and the pipeline
/// shuts down: the panic fails that call alone, the replica is rebuilt to
/// answer the rest, shutdown waits for them, refuses new calls, returns.
#[tokio::test(start_paused = true)]
async fn a_panic_and_a_shutdown_while_a_replica_drains() {
    hooks();
    let lab = Lab::new();
    let p = probe(&lab, policy(1, 2, 3, 0, 1_000));
    let extra = [PANIC_AT_1 | 102, PANIC_AT_1 | 103, 104, 105];
    let calls = drain_replica_1(&p, &lab, &extra).await;
    let closing = {
        let p = p.clone();
        tokio::spawn(async move { p.shutdown_async().await })
    };
    until("shutting down", || p.is_shutting_down()).await;
    assert!(matches!(
        p.call_async(9).await,
        Err(PipelineError::ShuttingDown)
    ));
    pass(50).await;
    assert!(!closing.is_finished(), "shutdown returned with a call held");
    lab.gate(1).add_permits(1);
    until("shutdown returned", || closing.is_finished()).await;
    let mut by_replica = BTreeMap::<usize, Vec<u64>>::new();
    let mut panicked = Vec::new();
    for (v, c) in calls {
        match c.await.unwrap() {
            Ok((i, got)) => {
                assert_eq!(got, v);
                by_replica.entry(i).or_default().push(v);
            }
            Err(PipelineError::Panicked { .. }) => panicked.push(v),
            Err(e) => panic!("call {v}: {e}"),
        }
    }
    assert_eq!(panicked.len(), 1, "{panicked:?} {by_replica:?}");
    assert!([102, 103].contains(&panicked[0]));
    let counts = by_replica.values().map(Vec::len).collect::<Vec<_>>();
    assert_eq!(counts, [3, 2], "{by_replica:?}");
    until("settled", || {
        gauges(&p) == [1, 1, 0, 0, 0] && lab.live() == [0]
    })
    .await;
    assert_eq!(p.health().steps[0].rebuilds, 1);
    assert!((100..106).all(|v| lab.runs(v) == 1));
    drop(p);
    until("every model dropped", || lab.live().is_empty()).await;
    assert_no_stray_panic();
}

/// `shutdown()` while a replica's constructor is still running returns once
/// the calls in flight are answered: it does not wait for the build.
#[tokio::test(start_paused = true)]
async fn shutdown_while_a_replica_is_built_does_not_wait_for_it() {
    hooks();
    let lab = Lab::new();
    lab.0.block_later.store(true, SeqCst);
    let p = probe(&lab, policy(1, 2, 1, 0, 60_000));
    let calls: Vec<_> = (0..2).map(|x| spawn_call(&p, HOLD | x)).collect();
    until("replica 1 being built", || lab.tries(1) == 1).await;
    let closing = {
        let p = p.clone();
        tokio::spawn(async move { p.shutdown_async().await })
    };
    until("shutting down", || p.is_shutting_down()).await;
    assert!(matches!(
        p.call_async(9).await,
        Err(PipelineError::ShuttingDown)
    ));
    lab.gate(0).add_permits(2);
    at_replica_0(calls, 0).await;
    until("shutdown returned with a replica still being built", || {
        closing.is_finished()
    })
    .await;
    lab.0.permits.add(1);
    until("replica 1's constructor returned", || {
        lab.built().contains(&1)
    })
    .await;
    drop(p);
    until("every model dropped", || lab.live().is_empty()).await;
    assert_eq!(lab.tries(1), 1);
    assert_no_stray_panic();
}

/// Replica 1's build is given up on (the load left) while its constructor
/// still runs, then wanted again: the new build must not be left behind,
/// a phantom retrying its constructor and keeping the step degraded while
/// every replica is up. Later builds of index 1 fail, so a phantom shows.
#[tokio::test(start_paused = true)]
async fn a_build_given_up_on_then_wanted_again_leaves_no_phantom() {
    hooks();
    let lab = Lab::new();
    lab.0.block_later.store(true, SeqCst);
    let p = probe(&lab, policy(1, 2, 1, 0, 0));
    let calls: Vec<_> = (0..2).map(|x| spawn_call(&p, HOLD | x)).collect();
    until("replica 1 being built", || lab.tries(1) == 1).await;
    lab.0.fail_index.store(1, SeqCst);
    // Calls are not stalled by the build; the load leaves, then comes back.
    lab.gate(0).add_permits(2);
    at_replica_0(calls, 0).await;
    until("build given up", || replicas(&p) == (1, 1)).await;
    let calls: Vec<_> = (2..4).map(|x| spawn_call(&p, HOLD | x)).collect();
    until("wanted again", || replicas(&p) == (1, 2)).await;
    // The first constructor returns.
    lab.0.permits.add(1);
    until("first build returned", || lab.built().contains(&1)).await;
    pass(10_000).await;
    let tried = lab.tries(1);
    pass(10_000).await;
    let h = &p.health().steps[0];
    let now = lab.tries(1);
    if (h.replicas, h.target_replicas) == (2, 2) {
        assert_eq!(h.replicas_down, 0, "degraded with every replica up: {h:?}");
        assert_eq!(tried, now, "a constructor retried for a replica that is up");
    }
    lab.0.fail_index.store(usize::MAX, SeqCst);
    lab.gate(0).add_permits(2);
    at_replica_0(calls, 2).await;
    until("back to one", || {
        replicas(&p) == (1, 1) && lab.live() == [0]
    })
    .await;
    assert!(p.health().is_healthy());
    let m = &p.metrics()[0];
    assert_eq!((m.requests, m.errors, m.queued, m.in_flight), (4, 0, 0, 0));
    assert_no_stray_panic();
}

/// A queue bound at or below the target: one replica can hold only
/// `bound + 1` calls, so the load the autoscaler sees never asks for more
/// replicas while every further call is refused as `Overloaded`.
#[tokio::test(start_paused = true)]
async fn a_step_refusing_calls_for_a_full_queue_scales_up() {
    hooks();
    let lab = Lab::new();
    let options = DeployOptions::new()
        .runtime(tokio::runtime::Handle::current())
        .autoscale("Probe", policy(1, 4, 2, 0, 60_000))
        .queue_bound("Probe", 1);
    let p = Probe::bind(lab.clone(), Input::<u64>::new())
        .deploy_with(options)
        .expect("deploy");
    let mut held = Vec::new();
    let mut refused = 0;
    // Callers keep coming for 2 s: demand far beyond one replica.
    for i in 0..200u64 {
        let c = spawn_call(&p, HOLD | i);
        tokio::task::yield_now().await;
        if c.is_finished() {
            assert!(matches!(
                c.await.unwrap(),
                Err(PipelineError::Overloaded { .. })
            ));
            refused += 1;
        } else {
            held.push(c);
        }
        pass(10).await;
    }
    assert!(refused > 0, "nothing was refused");
    let (built, target) = replicas(&p);
    (0..4).for_each(|i| lab.gate(i).add_permits(200));
    for c in held {
        c.await.unwrap().unwrap();
    }
    assert!(
        target > 1 && built > 1,
        "stayed at {built} replica(s), target {target}, refusing {refused} calls"
    );
}

/// The constructor panics for replica 2 only: replicas 0, 1 and 3 serve,
/// the step is degraded, and once 2 builds each index was built once.
#[tokio::test(start_paused = true)]
async fn a_constructor_panicking_for_the_third_replica_only() {
    hooks();
    let lab = Lab::new();
    lab.0.fail_index.store(2, SeqCst);
    let p = probe(&lab, policy(1, 4, 1, 0, 3_600_000));
    let calls: Vec<_> = (0..4).map(|x| spawn_call(&p, HOLD | x)).collect();
    until("replica 2 retried", || {
        lab.tries(2) >= 3 && !p.health().is_healthy()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(p.health().degraded(), ["Probe"]);
    let (built, target) = replicas(&p);
    let live = lab.live();
    assert_eq!(target, 4);
    assert!(
        !live.contains(&2) && built == live.len(),
        "built {built}, live {live:?}"
    );
    lab.gate(0).add_permits(4);
    at_replica_0(calls, 0).await;
    lab.0.fail_index.store(usize::MAX, SeqCst);
    until("all four built", || {
        replicas(&p) == (4, 4) && p.health().is_healthy()
    })
    .await;
    let mut built = lab.built();
    built.sort_unstable();
    assert_eq!(built, [0, 1, 2, 3], "each index built once");
    assert_no_stray_panic();
}

/// Twenty cycles of idle, burst, idle: each burst builds exactly the
/// replicas it needs, every new replica serves, each leaves (dropped) after.
#[tokio::test(start_paused = true)]
async fn twenty_bursts_build_and_drop_exactly_what_they_need() {
    hooks();
    let lab = Lab::new();
    let p = probe(&lab, policy(1, 4, 2, 0, 100));
    for cycle in 0..20u64 {
        let base = cycle * 100;
        let wave: Vec<_> = (0..8).map(|i| spawn_call(&p, HOLD | (base + i))).collect();
        until("up to 4", || replicas(&p) == (4, 4)).await;
        lab.gate(0).add_permits(8);
        at_replica_0(wave, base).await;
        let wave: Vec<_> = (10..18)
            .map(|i| spawn_call(&p, HOLD | (base + i)))
            .collect();
        until("one running at each replica", || {
            (10..18).map(|i| lab.runs(base + i)).sum::<usize>() == 4
        })
        .await;
        assert_eq!(
            replicas(&p),
            (4, 4),
            "cycle {cycle}: scaled down under load"
        );
        (0..4).for_each(|i| lab.gate(i).add_permits(2));
        let mut per = [0; 4];
        for (i, c) in wave.into_iter().enumerate() {
            let (at, v) = c.await.unwrap().unwrap();
            assert_eq!(v, base + 10 + i as u64);
            per[at] += 1;
        }
        assert_eq!(per, [2, 2, 2, 2], "cycle {cycle}");
        until("down to 1", || replicas(&p) == (1, 1) && lab.live() == [0]).await;
    }
    assert_eq!(lab.built().len(), 1 + 20 * 3);
    assert!(lab.0.runs.lock().unwrap().values().all(|&n| n == 1));
    let m = &p.metrics()[0];
    assert_eq!(
        (m.requests, m.errors, m.queued, m.in_flight, m.rebuilds),
        (320, 0, 0, 0, 0)
    );
    assert_no_stray_panic();
}

/// Calls dropped (their tasks aborted) while replicas come and go: a
/// dropped call runs at most once and a kept one exactly once; the gauges
/// settle at zero every time.
#[tokio::test(start_paused = true)]
async fn calls_dropped_while_replicas_come_and_go_run_at_most_once() {
    hooks();
    let lab = Lab::new();
    let p = probe(&lab, policy(1, 4, 2, 0, 20));
    let (mut dropped, mut skipped, mut peak) = (Vec::new(), 0, 0);
    for cycle in 0..20u64 {
        // Four groups of ten, 5 ms apart, so later ones reach new replicas;
        // every third of a group dropped at a point that moves.
        let mut kept = Vec::new();
        for group in 0..4u64 {
            let base = cycle * 1000 + group * 10;
            let calls: Vec<_> = (base..base + 10)
                .map(|v| (v, spawn_call(&p, SLEEP | v)))
                .collect();
            tokio::time::sleep(Duration::from_millis(1 + (cycle + group) % 5)).await;
            for (i, (v, c)) in calls.into_iter().enumerate() {
                if i % 3 == 0 {
                    c.abort();
                    dropped.push(v);
                } else {
                    kept.push((v, c));
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            peak = peak.max(replicas(&p).0);
        }
        for (v, c) in kept {
            let (at, got) = c.await.unwrap().unwrap();
            assert!(at < 4 && got == v, "{at} {got} {v}");
            assert_eq!(lab.runs(v), 1, "kept call {v}");
        }
        until("settled at 1", || {
            gauges(&p) == [1, 1, 0, 0, 0] && lab.live() == [0]
        })
        .await;
    }
    for v in dropped {
        let n = lab.runs(v);
        assert!(n <= 1, "dropped call {v} ran {n} times");
        skipped += usize::from(n == 0);
    }
    assert!(skipped > 0, "no dropped call was skipped");
    assert_eq!(peak, 4, "never reached max_replicas");
    assert_eq!(p.health().steps[0].rebuilds, 0);
    assert_no_stray_panic();
}
