//! Runtime semantics: tasks and actor replicas, routing, concurrency,
//! backpressure, faults, cancellation, deadlines, shutdown and deploy
//! options. No sleeps: tests wait on the things themselves (gates and
//! channels), each wait with a generous guard that fails instead of hanging.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use futures::FutureExt;
use pipeline_core::prelude::*;
use pipeline_core::OptionsError;

mod support;
use support::{recv, threads_named, Latch as Gate, GUARD};

/// Waits until `cond` holds (a counter the runtime updates right after an
/// event the test already saw), failing after the guard.
fn wait_until(mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < GUARD, "condition never held");
        std::thread::yield_now();
    }
}

// ---------------------------------------------------------------- tasks

#[step(mode = "tasks")]
fn where_sync(_x: u8) -> ThreadId {
    std::thread::current().id()
}

#[step(mode = "tasks")]
async fn where_async(_x: u8) -> Option<String> {
    std::thread::current().name().map(str::to_string)
}

#[test]
fn tasks_mode_runs_sync_steps_off_the_caller_and_async_steps_on_the_runtime() {
    let p = where_sync(Input::new()).deploy().unwrap();
    assert_ne!(p.call(0).unwrap(), std::thread::current().id());
    let p = where_async(Input::new()).deploy().unwrap();
    // Spawned on the pipeline's runtime, not polled by the caller.
    assert_eq!(p.call(0).unwrap().as_deref(), Some("pipeline-runtime"));
    let local = where_sync(Input::new())
        .deploy_with(DeployOptions::local())
        .unwrap();
    assert_eq!(local.call(0).unwrap(), std::thread::current().id());
}

// --------------------------------------------------------------- actors

static BUILT: Mutex<Vec<(usize, usize, Device)>> = Mutex::new(Vec::new());

struct Indexed {
    index: usize,
}

#[step(mode = "actors", replicas = 3)]
impl Indexed {
    fn new(ctx: &ReplicaContext) -> Self {
        BUILT
            .lock()
            .unwrap()
            .push((ctx.index(), ctx.replicas(), ctx.device()));
        Indexed { index: ctx.index() }
    }
    fn call(&self, _x: u8) -> (usize, Option<String>) {
        (
            self.index,
            std::thread::current().name().map(str::to_string),
        )
    }
}

#[test]
fn each_replica_is_built_once_on_its_own_thread() {
    let p = Indexed::bind(Input::new()).deploy().unwrap();
    let mut built = BUILT.lock().unwrap().clone();
    built.sort_by_key(|b| b.0);
    assert_eq!(
        built,
        [
            (0, 3, Device::Cpu),
            (1, 3, Device::Cpu),
            (2, 3, Device::Cpu)
        ]
    );
    let (index, thread) = p.call(0).unwrap();
    assert_eq!(thread, Some(format!("Indexed-{index}")));
    assert_eq!(BUILT.lock().unwrap().len(), 3, "calls build nothing");
}

struct Gated {
    index: usize,
    gate: Gate,
    started: Sender<usize>,
}

#[step(mode = "actors", replicas = 2)]
impl Gated {
    fn new(ctx: &ReplicaContext, gate: Gate, started: Sender<usize>) -> Self {
        Gated {
            index: ctx.index(),
            gate,
            started,
        }
    }
    fn call(&self, x: u32) -> (usize, u32) {
        let _ = self.started.send(self.index);
        if x == 0 {
            self.gate.wait();
        }
        (self.index, x)
    }
}

#[test]
fn router_sends_work_to_the_replica_with_least_outstanding() {
    let gate = Gate::default();
    let (started, started_rx) = channel();
    let p = Gated::bind(gate.clone(), started, Input::new())
        .deploy()
        .unwrap();
    let busy = {
        let p = p.clone();
        std::thread::spawn(move || p.call(0).unwrap())
    };
    assert_eq!(recv(&started_rx), 0, "first call goes to replica 0");
    // Replica 0 holds one call, so the next ones go to replica 1.
    assert_eq!(p.call(1).unwrap(), (1, 1));
    assert_eq!(p.call(2).unwrap(), (1, 2));
    gate.open();
    assert_eq!(busy.join().unwrap(), (0, 0));
}

// ---------------------------------------------------------- concurrency

/// Two parties meet; `meet` fails (returns false) if the other never comes.
#[derive(Clone, Default)]
struct Rendezvous(Arc<(Mutex<usize>, Condvar)>);

impl Rendezvous {
    fn meet(&self) -> bool {
        let (lock, cv) = &*self.0;
        let mut n = lock.lock().unwrap();
        *n += 1;
        cv.notify_all();
        let (_n, t) = cv
            .wait_timeout_while(n, Duration::from_secs(20), |n| *n < 2)
            .unwrap();
        !t.timed_out()
    }
}

struct Branch {
    meet: Rendezvous,
}

#[step(mode = "actors")]
impl Branch {
    fn new(meet: Rendezvous) -> Self {
        Branch { meet }
    }
    fn call(&self, x: i64) -> bool {
        let _ = x;
        self.meet.meet()
    }
}

#[step]
fn both(xs: Vec<bool>) -> bool {
    xs.iter().all(|&x| x)
}

#[test]
fn independent_branches_run_at_the_same_time() {
    let meet = Rendezvous::default();
    let x = Input::<i64>::new().shared();
    let p = both([Branch::bind(meet.clone(), x.clone()), Branch::bind(meet, x)])
        .deploy()
        .unwrap();
    assert!(
        p.call(1).unwrap(),
        "both branches must be in progress at once"
    );
}

#[step(mode = "actors", replicas = 2)]
fn stage_a(x: u64) -> u64 {
    x + 1
}
#[step(mode = "actors", replicas = 2, placement = "task")]
fn stage_b(x: u64) -> u64 {
    x * 2
}
#[step(mode = "tasks")]
async fn stage_c(x: u64) -> u64 {
    x + 3
}

#[test]
fn concurrent_calls_pipeline_through_the_stages() {
    let p = stage_c(stage_b(stage_a(Input::new()))).deploy().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let out: Vec<u64> = rt
        .block_on(futures::future::try_join_all(
            (0..200u64).map(|i| p.call_async(i)),
        ))
        .unwrap();
    assert_eq!(
        out,
        (0..200u64).map(|i| (i + 1) * 2 + 3).collect::<Vec<_>>()
    );
}

// --------------------------------------------------------- backpressure

struct Blocker {
    gate: Gate,
    started: Sender<u32>,
}

#[step(mode = "actors")]
impl Blocker {
    fn new(gate: Gate, started: Sender<u32>) -> Self {
        Blocker { gate, started }
    }
    fn call(&self, x: u32) -> u32 {
        let _ = self.started.send(x);
        self.gate.wait();
        x
    }
}

#[test]
fn a_full_queue_answers_overloaded_at_once() {
    let gate = Gate::default();
    let (started, started_rx) = channel();
    let p = Blocker::bind(gate.clone(), started, Input::new())
        .deploy_with(DeployOptions::new().queue_bound("Blocker", 1))
        .unwrap();
    assert_eq!(p.report()[0].queue_bound, 1);
    let first = {
        let p = p.clone();
        std::thread::spawn(move || p.call(1))
    };
    assert_eq!(recv(&started_rx), 1, "first call is being handled");
    // The second waits in the mailbox (bound 1): polling it once enqueues it.
    let mut second = Box::pin(p.call_async(2));
    assert!((&mut second).now_or_never().is_none());
    // The third finds the mailbox full and is refused at once.
    let err = p.call(3).unwrap_err();
    assert!(
        matches!(err, PipelineError::Overloaded { step: "Blocker" }),
        "{err}"
    );
    assert_eq!(err.step(), Some("Blocker"));
    assert!(err.to_string().contains("overloaded"));
    gate.open();
    assert_eq!(first.join().unwrap().unwrap(), 1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(rt.block_on(second).unwrap(), 2);
}

// --------------------------------------------------------------- faults

static ATTEMPTS: AtomicUsize = AtomicUsize::new(0);

struct Fragile {
    fail_builds: Arc<AtomicBool>,
}

#[step(mode = "actors", replicas = 2)]
impl Fragile {
    fn new(fail_builds: Arc<AtomicBool>, attempts: Sender<bool>) -> Result<Self, String> {
        ATTEMPTS.fetch_add(1, Ordering::SeqCst);
        let fail = fail_builds.load(Ordering::SeqCst);
        let _ = attempts.send(!fail);
        if fail {
            Err("weights unavailable".into())
        } else {
            Ok(Fragile { fail_builds })
        }
    }
    fn call(&mut self, x: i64) -> Result<i64, String> {
        match x {
            -1 => Err("negative input".into()),
            -2 => panic!("corrupt state for {x}"),
            -3 => {
                self.fail_builds.store(true, Ordering::SeqCst);
                panic!("corrupt state, and the weights are gone")
            }
            _ => Ok(x * 10),
        }
    }
}

#[test]
fn errors_and_panics_fail_one_call_and_the_replica_is_rebuilt() {
    let fail = Arc::new(AtomicBool::new(false));
    let (attempts, attempts_rx) = channel();
    let p = Fragile::bind(fail.clone(), attempts, Input::new())
        .deploy()
        .unwrap();
    assert!(
        recv(&attempts_rx) && recv(&attempts_rx),
        "two replicas built"
    );

    let err = p.call(-1).unwrap_err();
    assert!(
        matches!(
            &err,
            PipelineError::Step {
                step: "Fragile",
                ..
            }
        ),
        "{err}"
    );
    assert!(std::error::Error::source(&err)
        .unwrap()
        .to_string()
        .contains("negative input"));

    let err = p.call(-2).unwrap_err();
    match &err {
        PipelineError::Panicked { step, message } => {
            assert_eq!(*step, "Fragile");
            assert_eq!(message, "corrupt state for -2");
        }
        other => panic!("expected a panic error, got {other}"),
    }
    assert!(recv(&attempts_rx), "the replica was rebuilt");
    wait_until(|| p.health().steps[0].rebuilds == 1);
    for i in 0..10 {
        assert_eq!(p.call(i).unwrap(), i * 10);
    }

    // A rebuild whose constructor fails retries with backoff; meanwhile the
    // pipeline reports itself degraded and the other replica serves.
    assert!(p.call(-3).is_err());
    assert!(!recv(&attempts_rx), "the rebuild failed");
    assert_eq!(p.health().degraded(), ["Fragile"]);
    assert!(!p.health().is_healthy());
    assert_eq!(p.call(7).unwrap(), 70, "the healthy replica serves");
    fail.store(false, Ordering::SeqCst);
    while !recv(&attempts_rx) {}
    wait_until(|| p.health().is_healthy());
    assert_eq!(p.health().steps[0].rebuilds, 2);
}

#[test]
fn a_failing_constructor_fails_deploy_naming_step_and_replica() {
    let (attempts, _rx) = channel();
    let err = Fragile::bind(Arc::new(AtomicBool::new(true)), attempts, Input::new())
        .deploy()
        .unwrap_err();
    assert!(
        matches!(
            err,
            DeployError::Build {
                step: "Fragile",
                ..
            }
        ),
        "{err}"
    );
    let cause = std::error::Error::source(&err).expect("the constructor's error");
    assert!(cause.to_string().contains("weights unavailable"), "{cause}");
}

struct HalfBuilt;

#[step(mode = "actors", replicas = 3)]
impl HalfBuilt {
    fn new(ctx: &ReplicaContext, failing: usize) -> Result<Self, String> {
        if ctx.index() == failing {
            return Err(format!("replica {failing} has no weights"));
        }
        Ok(HalfBuilt)
    }
    fn call(&self, x: u8) -> u8 {
        x
    }
}

#[test]
fn a_replica_failing_beside_built_ones_fails_deploy_and_stops_them() {
    // Replica 0 fails while 1 and 2 are built and serving on their threads
    // (or 2 fails after 0 and 1 were): deploy reports it, and the built
    // replicas' threads end (their mailboxes close with the failed pool).
    for failing in [0, 2] {
        let err = HalfBuilt::bind(failing, Input::new()).deploy().unwrap_err();
        assert!(
            matches!(err, DeployError::Build { step: "HalfBuilt", replica, .. } if replica == failing),
            "{err}"
        );
        // Joined already; a joined thread can stay listed in /proc for a
        // moment while the kernel finishes its exit.
        wait_until(|| threads_named("HalfBuilt-") == 0);
    }
}

// ------------------------------------------------ cancellation, deadline

static SEEN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

struct Recorder {
    gate: Gate,
    started: Sender<u32>,
}

#[step(mode = "actors")]
impl Recorder {
    fn new(gate: Gate, started: Sender<u32>) -> Self {
        Recorder { gate, started }
    }
    fn call(&self, x: u32) -> u32 {
        SEEN.lock().unwrap().push(x);
        let _ = self.started.send(x);
        if x == 1 {
            self.gate.wait();
        }
        x
    }
}

#[test]
fn a_dropped_call_never_runs_and_a_deadline_fails_clearly() {
    let gate = Gate::default();
    let (started, started_rx) = channel();
    let p = Recorder::bind(gate.clone(), started, Input::new())
        .deploy()
        .unwrap();
    let first = {
        let p = p.clone();
        std::thread::spawn(move || p.call(1))
    };
    assert_eq!(recv(&started_rx), 1);
    // Queued behind the first, then dropped: polled once, which enqueues it.
    assert!(p.call_async(2).now_or_never().is_none());
    // A deadline shorter than the wait.
    let err = p.call_timeout(3, Duration::from_millis(20)).unwrap_err();
    assert!(matches!(err, PipelineError::DeadlineExceeded { .. }));
    assert!(err.to_string().contains("deadline"));
    gate.open();
    assert_eq!(first.join().unwrap().unwrap(), 1);
    assert_eq!(p.call(4).unwrap(), 4);
    assert_eq!(
        *SEEN.lock().unwrap(),
        [1, 4],
        "dropped and timed-out calls never ran"
    );
}

// -------------------------------------------------------------- shutdown

struct Sleepy {
    gate: Gate,
    started: Sender<()>,
}

#[step(mode = "actors", replicas = 2)]
impl Sleepy {
    fn new(gate: Gate, started: Sender<()>) -> Self {
        Sleepy { gate, started }
    }
    fn call(&self, x: u32) -> u32 {
        let _ = self.started.send(());
        self.gate.wait();
        x
    }
}

#[test]
fn shutdown_drains_refuses_new_calls_and_drop_leaves_no_thread() {
    let gate = Gate::default();
    let (started, started_rx) = channel();
    let p = Sleepy::bind(gate.clone(), started, Input::new())
        .deploy()
        .unwrap();
    assert_eq!(threads_named("Sleepy-"), 2);
    let in_flight = {
        let p = p.clone();
        std::thread::spawn(move || p.call(5))
    };
    recv(&started_rx);
    let (done_tx, done_rx) = channel();
    let stopper = {
        let p = p.clone();
        std::thread::spawn(move || {
            p.shutdown().unwrap();
            done_tx.send(()).unwrap();
        })
    };
    while !p.is_shutting_down() {
        std::thread::yield_now();
    }
    assert!(matches!(p.call(6), Err(PipelineError::ShuttingDown)));
    assert!(
        done_rx.try_recv().is_err(),
        "shutdown waits for the call in flight"
    );
    gate.open();
    assert_eq!(in_flight.join().unwrap().unwrap(), 5);
    recv(&done_rx);
    stopper.join().unwrap();
    drop(p);
    assert_eq!(
        threads_named("Sleepy-"),
        0,
        "replica threads are joined on drop"
    );
}

// ------------------------------------------------------ deploy options

#[step(mode = "actors", replicas = 2)]
fn scorer(x: u32) -> u32 {
    x
}

#[step]
fn plain(x: u32) -> u32 {
    x
}

#[step(mode = "tasks")]
fn tasked(x: u32) -> u32 {
    x
}

#[test]
fn options_set_replicas_and_queue_bounds_by_name() {
    let opts = DeployOptions::new()
        .replicas("scorer", 5)
        .queue_bound("tasked", 7)
        .default_queue_bound(33);
    let p = plain(tasked(scorer(Input::new())))
        .deploy_with(opts)
        .unwrap();
    let r = p.report();
    assert_eq!(
        (r[0].step, r[0].replicas, r[0].queue_bound),
        ("scorer", 5, 33)
    );
    assert_eq!((r[1].step, r[1].queue_bound), ("tasked", 7));
    assert_eq!(p.call(9).unwrap(), 9);
    // A local step runs inline in its caller: nothing queues at it, so a
    // queue bound of its own is refused (the pipeline-wide one above is
    // not), as `replicas` there is.
    let err = plain(Input::<u32>::new())
        .deploy_with(DeployOptions::new().queue_bound("plain", 7))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("queue_bound applies to tasks and actor steps"),
        "{err}"
    );
}

#[test]
fn options_load_from_toml_and_json_files() {
    let dir = std::env::temp_dir().join(format!("pipeline-opts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml = dir.join("deploy.toml");
    std::fs::write(&toml, "queue_bound = 16\n[steps.scorer]\nreplicas = 3\n").unwrap();
    let json = dir.join("deploy.json");
    std::fs::write(&json, r#"{"local": true}"#).unwrap();

    let p = scorer(Input::new())
        .deploy_with(DeployOptions::from_file(&toml).unwrap())
        .unwrap();
    assert_eq!((p.report()[0].replicas, p.report()[0].queue_bound), (3, 16));
    let p = scorer(Input::new())
        .deploy_with(DeployOptions::from_file(&json).unwrap())
        .unwrap();
    assert_eq!(p.report()[0].running, Mode::Local);

    std::fs::write(&toml, "[steps.scorer]\nreplicas = \"many\"\n").unwrap();
    let err = DeployOptions::from_file(&toml).unwrap_err();
    assert!(err.to_string().contains("deploy.toml"), "{err}");
    // The parser's own error is the cause, typed.
    assert!(matches!(
        &err,
        DeployError::Options { source: OptionsError::Toml(e), .. } if e.message().contains("invalid type")
    ));
    let err = DeployOptions::from_file(dir.join("missing.toml")).unwrap_err();
    assert!(matches!(
        &err,
        DeployError::Options { source: OptionsError::Io(e), .. } if e.kind() == std::io::ErrorKind::NotFound
    ));
    let err = DeployOptions::from_file(dir.join("deploy.yaml")).unwrap_err();
    assert!(matches!(
        &err,
        DeployError::Options {
            source: OptionsError::Extension,
            ..
        }
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_options_fail_deploy_clearly() {
    let err = scorer(Input::new())
        .deploy_with(DeployOptions::new().replicas("scorr", 2))
        .unwrap_err();
    assert!(
        matches!(&err, DeployError::UnknownStep { name, known } if name == "scorr" && known == "scorer"),
        "{err}"
    );
    let err = scorer(Input::new())
        .deploy_with(DeployOptions::new().replicas("scorer", 0))
        .unwrap_err();
    assert!(matches!(err, DeployError::InvalidOption { .. }), "{err}");
    let err = plain(Input::new())
        .deploy_with(DeployOptions::new().replicas("plain", 2))
        .unwrap_err();
    assert!(
        err.to_string().contains("replicas applies to actor steps"),
        "{err}"
    );
    let err = tasked(Input::new())
        .deploy_with(DeployOptions::new().queue_bound("tasked", 0))
        .unwrap_err();
    assert!(err.to_string().contains("at least 1"), "{err}");
}

#[test]
fn call_futures_are_send() {
    fn assert_send<T: Send>(_: T) {}
    let p = scorer(Input::new()).deploy().unwrap();
    assert_send(p.call_async(1));
    assert_send(p.call_async_timeout(1, GUARD));
    assert_send(p.shutdown_async());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn deploy_from_a_one_worker_runtime_with_task_replicas() {
    let p = stage_b(Input::new()).deploy().unwrap();
    assert_eq!(p.call_async(2).await.unwrap(), 4);
    assert_eq!(p.call_async_timeout(3, GUARD).await.unwrap(), 6);
}

#[test]
fn a_json_options_error_names_the_key_it_is_at() {
    let at = |text: &str| match DeployOptions::from_json_str(text).unwrap_err() {
        e @ DeployError::Options { .. } => {
            let DeployError::Options { key, .. } = &e else {
                unreachable!()
            };
            (key.clone(), e.to_string())
        }
        other => panic!("{text}: {other:?}"),
    };
    for (text, key) in [
        (
            r#"{"steps": {"embed": {"replicas": "two"}}}"#,
            "steps.embed.replicas",
        ),
        (
            r#"{"steps": {"embed": {"replica": 2}}}"#,
            "steps.embed.replica",
        ),
        (
            r#"{"steps": {"m": {"autoscale": {"max_replicas": -1}}}}"#,
            "steps.m.autoscale.max_replicas",
        ),
        (r#"{"queue_bound": 1.5}"#, "queue_bound"),
    ] {
        let (got, message) = at(text);
        assert!(
            got.as_deref() == Some(key),
            "{text}: key {got:?}, wanted {key}"
        );
        assert!(
            message.contains(&format!(", at `{}`", got.unwrap())),
            "{message}"
        );
    }
    // At the top level there is no key to name.
    assert_eq!(at("[1, 2]").0, None);
    assert_eq!(at(r#"{"local": true} x"#).0, None);
}
