//! Autoscaling of actor replicas, on tokio's paused clock: the pipeline is
//! deployed onto the test's `current_thread` runtime
//! (`DeployOptions::runtime`), so the autoscaler's delays pass in virtual
//! time, deterministically, with no real waiting. One test runs on real
//! threads to show a replica's constructor never stalls calls.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pipeline_core::prelude::*;
use pipeline_core::AutoscalePolicy;
use tokio::time::Instant;

mod support;
use support::{Gate, Held};

fn policy(min: usize, max: usize, up_ms: u64, down_ms: u64) -> AutoscalePolicy {
    AutoscalePolicy {
        min_replicas: min,
        max_replicas: max,
        target_ongoing_requests: 1,
        upscale_delay_ms: up_ms,
        downscale_delay_ms: down_ms,
    }
}

fn held(policy: AutoscalePolicy) -> (Pipeline<u64, u64>, Gate) {
    let gate = Gate::closed();
    let options = DeployOptions::new()
        .runtime(tokio::runtime::Handle::current())
        .autoscale("Held", policy);
    let p = Held::bind(gate.clone(), Input::<u64>::new())
        .deploy_with(options)
        .expect("deploy");
    (p, gate)
}

/// (built replicas, target) of the pipeline's only step.
fn replicas<I: Send + 'static, O: Send + 'static>(p: &Pipeline<I, O>) -> (usize, usize) {
    let h = &p.health().steps[0];
    (h.replicas, h.target_replicas)
}

/// Lets virtual time pass in 1 ms steps until `done` holds, at most
/// `limit`; returns how long it took.
async fn virtual_wait(limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() <= limit,
            "not within {limit:?} of virtual time"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    start.elapsed()
}

/// Starts `n` calls that wait at the gate.
fn hold_calls(p: &Pipeline<u64, u64>, n: u64) -> Vec<tokio::task::JoinHandle<u64>> {
    (0..n)
        .map(|i| {
            let p = p.clone();
            tokio::spawn(async move { p.call_async(i).await.expect("held call") })
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn load_scales_up_after_the_delay_and_idle_scales_down_to_min() {
    let (p, gate) = held(policy(1, 4, 1_000, 30_000));
    assert_eq!(replicas(&p), (1, 1));
    let report = &p.report()[0];
    assert_eq!(report.autoscale.map(|a| a.max_replicas), Some(4));

    let calls = hold_calls(&p, 8); // 8 ongoing, 1 per replica wanted: max
    let took = virtual_wait(Duration::from_secs(5), || replicas(&p) == (4, 4)).await;
    assert!(
        took >= Duration::from_millis(1_000) && took <= Duration::from_millis(1_300),
        "scaled up after {took:?}, the delay is 1 s"
    );
    assert_eq!(p.report()[0].replicas, 4);
    assert_eq!(p.metrics()[0].target_replicas, 4);

    gate.0.add_permits(8);
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap(), i as u64 + 1);
    }
    // Idle: down to min, but only after the (long) downscale delay.
    let took = virtual_wait(Duration::from_secs(60), || replicas(&p) == (1, 1)).await;
    assert!(
        took >= Duration::from_millis(30_000) && took <= Duration::from_millis(31_000),
        "scaled down after {took:?}, the delay is 30 s"
    );
}

#[tokio::test(start_paused = true)]
async fn a_spike_shorter_than_the_delay_adds_no_replica() {
    let (p, gate) = held(policy(1, 4, 1_000, 30_000));
    let calls = hold_calls(&p, 8);
    tokio::time::sleep(Duration::from_millis(500)).await;
    gate.0.add_permits(8);
    for call in calls {
        call.await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(replicas(&p), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn never_beyond_max_nor_below_min() {
    let (p, gate) = held(policy(2, 3, 100, 100));
    assert_eq!(replicas(&p), (2, 2));
    let calls = hold_calls(&p, 100);
    virtual_wait(Duration::from_secs(1), || replicas(&p) == (3, 3)).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(replicas(&p), (3, 3), "past max_replicas");
    gate.0.add_permits(100);
    for call in calls {
        call.await.unwrap();
    }
    virtual_wait(Duration::from_secs(1), || replicas(&p) == (2, 2)).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(replicas(&p), (2, 2), "below min_replicas");
}

/// A step that takes 1 ms of virtual time per call.
#[step(mode = "actors", placement = "task")]
async fn busy(x: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(1)).await;
    x * 2
}

#[tokio::test(start_paused = true)]
async fn nothing_is_lost_while_replicas_come_and_go() {
    // No delays: the target follows the load at every 10 ms sample, so
    // replicas are added and drained all through the run.
    let options = DeployOptions::new()
        .runtime(tokio::runtime::Handle::current())
        .autoscale("busy", policy(1, 6, 0, 0));
    let p = busy(Input::<u64>::new()).deploy_with(options).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let watch = {
        let (p, seen) = (p.clone(), Arc::clone(&seen));
        tokio::spawn(async move {
            loop {
                seen.lock().unwrap().push(replicas(&p).0);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut answered = 0;
    for wave in 0..5u64 {
        // 50 callers x 40 calls, then a lull long enough to scale down.
        let callers: Vec<_> = (0..50u64)
            .map(|c| {
                let p = p.clone();
                tokio::spawn(async move {
                    for i in 0..40u64 {
                        let x = wave * 1_000_000 + c * 1_000 + i;
                        assert_eq!(p.call_async(x).await.expect("no call fails"), x * 2);
                    }
                })
            })
            .collect();
        for caller in callers {
            caller.await.unwrap();
            answered += 40;
        }
        virtual_wait(Duration::from_secs(1), || replicas(&p) == (1, 1)).await;
    }
    watch.abort();
    assert_eq!(answered, 10_000);
    let m = &p.metrics()[0];
    assert_eq!(
        (m.requests, m.errors, m.queued, m.in_flight),
        (10_000, 0, 0, 0)
    );
    // The replica count went up and back down in every wave.
    let seen = seen.lock().unwrap();
    let rises = seen.windows(2).filter(|w| w[0] == 1 && w[1] > 1).count();
    assert!(
        rises >= 5,
        "replicas rose from 1 only {rises} times: {seen:?}"
    );
    assert!(seen.contains(&6), "never reached max_replicas");
}

/// Replica 0 always builds; later replicas fail until `ok` is set.
struct Picky {
    index: usize,
    gate: Gate,
}

#[derive(Clone)]
struct PickyInit {
    ok: Arc<AtomicBool>,
    attempts: Arc<AtomicUsize>,
    gate: Gate,
}

#[step(mode = "actors", placement = "task")]
impl Picky {
    fn new(ctx: &ReplicaContext, init: PickyInit) -> Result<Self, String> {
        if ctx.index() > 0 {
            init.attempts.fetch_add(1, Ordering::SeqCst);
            if !init.ok.load(Ordering::SeqCst) {
                return Err(format!("replica {} cannot load its weights", ctx.index()));
            }
        }
        Ok(Picky {
            index: ctx.index(),
            gate: init.gate,
        })
    }
    /// Answers the replica's index; a held call waits at the gate first.
    async fn call(&self, hold: bool) -> usize {
        if hold {
            self.gate.0.acquire().await.expect("gate open").forget();
        }
        self.index
    }
}

#[tokio::test(start_paused = true)]
async fn a_constructor_failing_while_scaling_up_reports_degraded_and_retries() {
    let init = PickyInit {
        ok: Arc::new(AtomicBool::new(false)),
        attempts: Arc::new(AtomicUsize::new(0)),
        gate: Gate::closed(),
    };
    let options = DeployOptions::new()
        .runtime(tokio::runtime::Handle::current())
        .autoscale("Picky", policy(1, 2, 0, 60_000));
    let p = Picky::bind(init.clone(), Input::<bool>::new())
        .deploy_with(options)
        .unwrap();
    assert_eq!(p.call_async(false).await.unwrap(), 0);

    // Two held calls at the one replica: load 2 wants a second replica,
    // whose constructor fails.
    let held: Vec<_> = (0..2)
        .map(|_| {
            let p = p.clone();
            tokio::spawn(async move { p.call_async(true).await.unwrap() })
        })
        .collect();
    virtual_wait(Duration::from_secs(5), || {
        init.attempts.load(Ordering::SeqCst) >= 3 && !p.health().is_healthy()
    })
    .await;
    assert_eq!(p.health().degraded(), ["Picky"]);
    assert_eq!(replicas(&p), (1, 2));
    // Calls are still answered, by replica 0, once it is free.
    init.gate.0.add_permits(2);
    for call in held {
        assert_eq!(call.await.unwrap(), 0);
    }
    // The failing replica is retried, with backoff, until it builds; it
    // is index 1, the next in turn.
    init.ok.store(true, Ordering::SeqCst);
    virtual_wait(Duration::from_secs(30), || p.health().is_healthy()).await;
    assert_eq!(replicas(&p), (2, 2));
    let mut answered_by = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let (a, b) = tokio::join!(p.call_async(false), p.call_async(false));
        answered_by.extend([a.unwrap(), b.unwrap()]);
    }
    assert_eq!(answered_by.into_iter().collect::<Vec<_>>(), [0, 1]);
}

#[derive(Clone)]
struct SlowInit {
    building: std::sync::mpsc::SyncSender<usize>,
    holding: std::sync::mpsc::SyncSender<usize>,
    finish: Arc<Mutex<std::sync::mpsc::Receiver<()>>>,
    hold: Arc<Mutex<std::sync::mpsc::Receiver<()>>>,
    /// Models built, and alive now.
    built: Arc<AtomicUsize>,
    live: Arc<AtomicUsize>,
}

impl SlowInit {
    /// The init, the `building` and `holding` receivers, and the senders
    /// that let a constructor finish and a held call go.
    #[allow(clippy::type_complexity)]
    fn new() -> (
        SlowInit,
        std::sync::mpsc::Receiver<usize>,
        std::sync::mpsc::Receiver<usize>,
        std::sync::mpsc::Sender<()>,
        std::sync::mpsc::Sender<()>,
    ) {
        let (building_tx, building) = std::sync::mpsc::sync_channel(4);
        let (holding_tx, holding) = std::sync::mpsc::sync_channel(8);
        let (finish, finish_rx) = std::sync::mpsc::channel();
        let (release, hold_rx) = std::sync::mpsc::channel();
        let init = SlowInit {
            building: building_tx,
            holding: holding_tx,
            finish: Arc::new(Mutex::new(finish_rx)),
            hold: Arc::new(Mutex::new(hold_rx)),
            built: Arc::default(),
            live: Arc::default(),
        };
        (init, building, holding, finish, release)
    }
}

/// A thread-placed model whose later replicas' constructors wait until the
/// test lets them finish; counts itself out of `live` when dropped.
struct Slow {
    index: usize,
    live: Arc<AtomicUsize>,
}

impl Drop for Slow {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

#[step(mode = "actors", placement = "thread")]
impl Slow {
    fn new(ctx: &ReplicaContext, init: SlowInit) -> Self {
        if ctx.index() > 0 {
            init.building.send(ctx.index()).unwrap();
            init.finish.lock().unwrap().recv().unwrap();
        }
        init.built.fetch_add(1, Ordering::SeqCst);
        init.live.fetch_add(1, Ordering::SeqCst);
        Slow {
            index: ctx.index(),
            live: init.live,
        }
    }
    fn call(&self, (hold, init): (bool, SlowInit)) -> usize {
        if hold {
            init.holding.send(self.index).unwrap();
            init.hold.lock().unwrap().recv().unwrap();
        }
        self.index
    }
}

/// A `Slow` pipeline (min 1, max 2) whose replica 1 is being built: two
/// held calls at replica 0 made the autoscaler want it; they are answered
/// (by replica 0) before this returns, its constructor still blocked.
fn building_replica_1(
    init: &SlowInit,
    building: &std::sync::mpsc::Receiver<usize>,
    release: &std::sync::mpsc::Sender<()>,
) -> Pipeline<(bool, SlowInit), usize> {
    let options = DeployOptions::new().autoscale("Slow", policy(1, 2, 0, 60_000));
    let p = Slow::bind(init.clone(), Input::<(bool, SlowInit)>::new())
        .deploy_with(options)
        .unwrap();
    let held: Vec<_> = (0..2)
        .map(|_| {
            let (p, init) = (p.clone(), init.clone());
            std::thread::spawn(move || p.call((true, init)).unwrap())
        })
        .collect();
    assert_eq!(building.recv().unwrap(), 1, "replica 1 is being built");
    release.send(()).unwrap();
    release.send(()).unwrap();
    for call in held {
        assert_eq!(call.join().unwrap(), 0);
    }
    p
}

#[test]
fn a_new_replicas_constructor_never_stalls_calls() {
    let (init, building, holding, finish, release) = SlowInit::new();
    let p = building_replica_1(&init, &building, &release);
    // Its constructor is still running; calls go on, answered by replica 0.
    for _ in 0..10 {
        assert_eq!(p.call((false, init.clone())).unwrap(), 0);
    }
    assert_eq!(replicas(&p), (1, 2));
    finish.send(()).unwrap();
    // Once built, replica 1 joins: the router spreads two held calls over
    // both replicas (each goes to the one with less outstanding work).
    while replicas(&p) != (2, 2) {
        std::thread::yield_now();
    }
    while holding.try_recv().is_ok() {}
    let held: Vec<_> = (0..2)
        .map(|_| {
            let (p, init) = (p.clone(), init.clone());
            std::thread::spawn(move || p.call((true, init)).unwrap())
        })
        .collect();
    let mut holding_at = [holding.recv().unwrap(), holding.recv().unwrap()];
    holding_at.sort_unstable();
    assert_eq!(holding_at, [0, 1], "one held call at each replica");
    release.send(()).unwrap();
    release.send(()).unwrap();
    let mut answered_by: Vec<usize> = held.into_iter().map(|h| h.join().unwrap()).collect();
    answered_by.sort_unstable();
    assert_eq!(answered_by, [0, 1]);
}

/// Dropping a pipeline does not wait for a constructor still running for
/// the autoscaler (loading a model's weights may take minutes): the drop
/// returns with the constructor still blocked, replica 0's model dropped;
/// replica 1's model is dropped on its own thread once its constructor
/// returns, and never serves.
#[test]
fn dropping_a_pipeline_does_not_wait_for_a_replica_being_built() {
    let (init, building, _holding, finish, release) = SlowInit::new();
    let p = building_replica_1(&init, &building, &release);
    let dropping = std::thread::spawn(move || drop(p));
    support::wait_until("the drop returned, replica 1 still being built", || {
        dropping.is_finished()
    });
    dropping.join().unwrap();
    assert_eq!(init.live.load(Ordering::SeqCst), 0, "replica 0 dropped");
    assert_eq!(init.built.load(Ordering::SeqCst), 1);
    finish.send(()).unwrap();
    support::wait_until("replica 1 built, then dropped", || {
        init.built.load(Ordering::SeqCst) == 2 && init.live.load(Ordering::SeqCst) == 0
    });
}

/// Fails its constructor (for replicas after the first) while `FLAKY_FAIL`
/// is set; `call` panics on `u64::MAX`, waits at the gate on `u64::MAX - 1`,
/// and answers its replica's index.
struct Flaky {
    index: u64,
    gate: Gate,
}

#[derive(Clone)]
struct FlakyInit {
    fail: Arc<AtomicBool>,
    attempts: Arc<AtomicUsize>,
    gate: Gate,
}

const PANIC: u64 = u64::MAX;
const HOLD: u64 = u64::MAX - 1;

#[step(mode = "actors", placement = "task")]
impl Flaky {
    fn new(ctx: &ReplicaContext, init: FlakyInit) -> Result<Self, String> {
        if ctx.index() > 0 {
            init.attempts.fetch_add(1, Ordering::SeqCst);
            if init.fail.load(Ordering::SeqCst) {
                return Err("the weights are not there yet".into());
            }
        }
        Ok(Flaky {
            index: ctx.index() as u64,
            gate: init.gate,
        })
    }
    async fn call(&self, x: u64) -> u64 {
        match x {
            PANIC => panic!("asked to"),
            HOLD => self.gate.0.acquire().await.expect("gate open").forget(),
            _ => {}
        }
        self.index
    }
}

/// A replica drained by scaling down while it rebuilds after a panic
/// still answers the calls queued at it, once its constructor works again
/// (it used to give up on them: `ReplicaLost`, and a queue gauge stuck
/// above 0); while it rebuilds it counts as one replica down, not two.
#[tokio::test(start_paused = true)]
async fn a_replica_drained_while_rebuilding_answers_what_it_holds() {
    let init = FlakyInit {
        fail: Arc::new(AtomicBool::new(false)),
        attempts: Arc::new(AtomicUsize::new(0)),
        gate: Gate::closed(),
    };
    let policy = AutoscalePolicy {
        target_ongoing_requests: 2,
        ..policy(1, 2, 0, 0)
    };
    let options = DeployOptions::new()
        .runtime(tokio::runtime::Handle::current())
        .autoscale("Flaky", policy);
    let p = Flaky::bind(init.clone(), Input::<u64>::new())
        .deploy_with(options)
        .unwrap();
    let call = |x: u64| {
        let p = p.clone();
        tokio::spawn(async move { p.call_async(x).await })
    };
    // Four held calls at replica 0 want a second replica.
    let holds: Vec<_> = (0..4).map(|_| call(HOLD)).collect();
    virtual_wait(Duration::from_secs(1), || replicas(&p) == (2, 2)).await;
    // Replica 1 (least outstanding work) panics; its rebuild fails.
    init.fail.store(true, Ordering::SeqCst);
    let panicked = call(PANIC);
    virtual_wait(Duration::from_secs(1), || {
        init.attempts.load(Ordering::SeqCst) >= 3
    })
    .await;
    assert_eq!(p.health().steps[0].replicas_down, 1, "one replica is down");
    // One more call queues at replica 1 (1 outstanding there, 4 at 0).
    let queued = call(7);
    virtual_wait(Duration::from_secs(1), || p.metrics()[0].queued == 4).await;
    // Replica 0's calls finish: the load (2, at replica 1) wants one
    // replica, so replica 1 is drained while it still rebuilds.
    init.gate.0.add_permits(4);
    for hold in holds {
        assert_eq!(hold.await.unwrap().unwrap(), 0);
    }
    virtual_wait(Duration::from_secs(1), || replicas(&p) == (1, 1)).await;
    // The drained replica's mailbox still counts in the queue gauge.
    assert_eq!(
        p.metrics()[0].queued,
        1,
        "the call queued at the drained replica"
    );
    assert!(matches!(
        panicked.await.unwrap(),
        Err(PipelineError::Panicked { .. })
    ));
    // Its constructor works again: it rebuilds and answers the queued call.
    init.fail.store(false, Ordering::SeqCst);
    assert_eq!(queued.await.unwrap().unwrap(), 1);
    let m = &p.metrics()[0];
    assert_eq!((m.queued, m.in_flight, m.replicas_down), (0, 0, 0));
}

/// Replica threads rebuilding with a failing constructor wait out their
/// backoff on their own thread: dropping the pipeline from the
/// `current_thread` runtime it was deployed onto returns (it used to wait
/// forever for a timer only that blocked runtime could fire).
#[test]
fn dropping_a_pipeline_on_its_current_thread_runtime_while_a_rebuild_fails_returns() {
    struct Fragile;
    static FAIL: AtomicBool = AtomicBool::new(false);
    static ATTEMPTS: AtomicUsize = AtomicUsize::new(0);
    #[step(mode = "actors", placement = "thread")]
    impl Fragile {
        fn new() -> Result<Self, String> {
            if FAIL.load(Ordering::SeqCst) {
                ATTEMPTS.fetch_add(1, Ordering::SeqCst);
                return Err("no weights".into());
            }
            Ok(Fragile)
        }
        fn call(&self, x: i64) -> i64 {
            if x < 0 {
                FAIL.store(true, Ordering::SeqCst);
                panic!("asked to");
            }
            x
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let options = DeployOptions::new().runtime(tokio::runtime::Handle::current());
        let p = Fragile::bind(Input::<i64>::new())
            .deploy_with(options)
            .unwrap();
        assert!(p.call_async(-1).await.is_err());
        while ATTEMPTS.load(Ordering::SeqCst) < 2 {
            std::thread::yield_now();
        }
        assert_eq!(p.health().steps[0].replicas_down, 1);
        drop(p);
    });
}
