//! An outsider's hostile tests of one behaviour: dropping a pipeline does
//! not wait for a thread-placed replica the autoscaler is still building
//! (its constructor may take minutes loading weights); the build's thread
//! drops what it built once its constructor returns. Every constructor and
//! call here is held by std channels the test drives; the tests count
//! models built, alive and serving, and list the replica threads still
//! running (`/proc/self/task/*/comm`, named `<step>-<index>`). Nothing
//! sleeps to wait for work; waits are bounded by the 60 s hang guard.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, Once};

use pipeline_core::prelude::*;
use pipeline_core::AutoscalePolicy;
use support::{recv, threads_named, wait_until, Gate};

fn policy(max: usize, down_ms: u64) -> AutoscalePolicy {
    AutoscalePolicy {
        min_replicas: 1,
        max_replicas: max,
        target_ongoing_requests: 1,
        upscale_delay_ms: 0,
        downscale_delay_ms: down_ms,
    }
}

/// What a held constructor (replicas above 0) is told to do.
enum Verdict {
    Build,
    Fail,
    Panic,
}

/// What a model shares with its test.
struct Inner {
    /// Index of each constructor attempt above replica 0, as it starts.
    building: Mutex<Sender<usize>>,
    /// A constructor above replica 0 waits for one; with the sender gone,
    /// every attempt fails at once.
    verdicts: Mutex<Receiver<Verdict>>,
    attempts: AtomicUsize,
    built: AtomicUsize,
    live: AtomicUsize,
    /// Calls answered by replicas above 0.
    served_by_new: AtomicUsize,
    /// A held call says where it is held, then waits for a release.
    holding: Mutex<Sender<usize>>,
    hold: Mutex<Receiver<()>>,
}

#[derive(Clone)]
struct Ctl(Arc<Inner>);

/// The test's ends of a [`Ctl`].
struct Rig {
    ctl: Ctl,
    building: Receiver<usize>,
    verdict: Sender<Verdict>,
    holding: Receiver<usize>,
    release: Sender<()>,
}

impl Rig {
    fn new() -> Self {
        hooks();
        let (building_tx, building) = channel();
        let (verdict, verdicts) = channel();
        let (holding_tx, holding) = channel();
        let (release, hold) = channel();
        let ctl = Ctl(Arc::new(Inner {
            building: Mutex::new(building_tx),
            verdicts: Mutex::new(verdicts),
            attempts: AtomicUsize::new(0),
            built: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            served_by_new: AtomicUsize::new(0),
            holding: Mutex::new(holding_tx),
            hold: Mutex::new(hold),
        }));
        Rig {
            ctl,
            building,
            verdict,
            holding,
            release,
        }
    }

    fn built(&self) -> usize {
        self.ctl.0.built.load(SeqCst)
    }

    fn live(&self) -> usize {
        self.ctl.0.live.load(SeqCst)
    }

    fn attempts(&self) -> usize {
        self.ctl.0.attempts.load(SeqCst)
    }

    /// Drops the verdicts' sender: every constructor waiting, and every
    /// attempt from now on, fails at once.
    fn fail_all(&mut self) {
        self.verdict = channel().0;
    }

    fn served_by_new(&self) -> usize {
        self.ctl.0.served_by_new.load(SeqCst)
    }

    /// Starts `n` calls held at replica 0 (it takes one at a time: the
    /// rest queue); waits until the first is held; returns their answers'
    /// threads.
    fn hold<P>(&self, p: &P, n: usize) -> Vec<std::thread::JoinHandle<usize>>
    where
        P: Clone + Send + 'static + Caller,
    {
        let calls: Vec<_> = (0..n)
            .map(|_| {
                let p = p.clone();
                std::thread::spawn(move || p.call_held())
            })
            .collect();
        recv(&self.holding);
        calls
    }

    /// Lets `calls` go; the replicas that answered them.
    fn release(&self, calls: Vec<std::thread::JoinHandle<usize>>) -> Vec<usize> {
        for _ in 0..calls.len() {
            self.release.send(()).unwrap();
        }
        let answers = calls.into_iter().map(|c| c.join().unwrap()).collect();
        while self.holding.try_recv().is_ok() {}
        answers
    }
}

/// A pipeline of one model, called with "hold here".
trait Caller {
    fn call_held(&self) -> usize;
}

impl Caller for Pipeline<bool, usize> {
    fn call_held(&self) -> usize {
        self.call(true).expect("held call")
    }
}

impl Ctl {
    fn construct(&self, index: usize) -> Result<(), String> {
        if index > 0 {
            self.0.attempts.fetch_add(1, SeqCst);
            let _ = self.0.building.lock().unwrap().send(index);
            let verdict = self.0.verdicts.lock().unwrap().recv();
            match verdict {
                Ok(Verdict::Build) => {}
                Ok(Verdict::Fail) | Err(_) => return Err("the weights are not there".into()),
                Ok(Verdict::Panic) => panic!("constructor panics on purpose"),
            }
        }
        self.0.built.fetch_add(1, SeqCst);
        self.0.live.fetch_add(1, SeqCst);
        Ok(())
    }

    fn serve(&self, index: usize, hold: bool) -> usize {
        if hold {
            let _ = self.0.holding.lock().unwrap().send(index);
            let _ = self.0.hold.lock().unwrap().recv();
        }
        if index > 0 {
            self.0.served_by_new.fetch_add(1, SeqCst);
        }
        index
    }
}

/// A thread-placed model step named `$name` (its replica threads are
/// `$name-<index>`), counting itself out of `live` when dropped.
macro_rules! model {
    ($name:ident) => {
        /// A thread-placed model; see [`Ctl`].
        struct $name {
            index: usize,
            ctl: Ctl,
        }

        impl Drop for $name {
            fn drop(&mut self) {
                self.ctl.0.live.fetch_sub(1, SeqCst);
            }
        }

        #[step(mode = "actors", placement = "thread")]
        impl $name {
            fn new(ctx: &ReplicaContext, ctl: Ctl) -> Result<Self, String> {
                ctl.construct(ctx.index())?;
                Ok($name {
                    index: ctx.index(),
                    ctl,
                })
            }
            fn call(&self, hold: bool) -> usize {
                self.ctl.serve(self.index, hold)
            }
        }
    };
}

model!(DropMany);
model!(DropFail);
model!(DropPanic);
model!(DropBack);
model!(DropRace);
model!(DropTask);
model!(DropStop);
model!(DropCur);

/// Panics not "on purpose", with the thread they happened on.
static STRAY: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

fn hooks() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        support::quiet_expected_panics();
        let quiet = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let p = info.payload();
            let msg = (p.downcast_ref::<&str>().map(|s| s.to_string()))
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
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

/// No panic (other than on purpose) on a thread named `prefix...`.
fn assert_no_stray_panic(prefix: &str) {
    let stray = STRAY.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mine: Vec<_> = stray
        .into_iter()
        .filter(|(t, _)| t.starts_with(prefix))
        .collect();
    assert!(mine.is_empty(), "panics on {prefix}* threads: {mine:?}");
}

/// (built replicas, target) of the pipeline's only step.
fn replicas(p: &Pipeline<bool, usize>) -> (usize, usize) {
    let h = &p.health().steps[0];
    (h.replicas, h.target_replicas)
}

/// Drops `p` on a plain thread and waits until that returns (a hang here
/// is the fault under test).
fn drop_and_wait(p: Pipeline<bool, usize>, what: &str) {
    let dropping = std::thread::spawn(move || drop(p));
    wait_until(what, || dropping.is_finished());
    dropping.join().expect("the drop panicked");
}

/// Three builds in flight (max 4) when the pipeline is dropped: the drop
/// returns at once, replica 0 is dropped and its thread joined; once the
/// constructors return, each of the three models is built once, dropped
/// once, never serves, and no `DropMany-*` thread is left.
#[test]
fn several_builds_in_flight_are_each_dropped_once_never_served() {
    let rig = Rig::new();
    let p = DropMany::bind(rig.ctl.clone(), Input::<bool>::new())
        .deploy_with(DeployOptions::new().autoscale("DropMany", policy(4, 60_000)))
        .unwrap();
    let calls = rig.hold(&p, 4);
    let mut indexes: Vec<usize> = (0..3).map(|_| recv(&rig.building)).collect();
    indexes.sort_unstable();
    assert_eq!(indexes, [1, 2, 3], "three builds in flight");
    assert_eq!(replicas(&p), (1, 4));
    assert_eq!(rig.release(calls), [0, 0, 0, 0]);
    assert_eq!(threads_named("DropMany-"), 4);
    drop_and_wait(p, "the drop returned, three builds still running");
    assert_eq!(rig.live(), 0, "replica 0 dropped");
    assert_eq!(rig.built(), 1);
    assert_eq!(threads_named("DropMany-0"), 0, "replica 0's thread joined");
    assert_eq!(
        threads_named("DropMany-"),
        3,
        "the builds' threads still run"
    );
    for _ in 0..3 {
        rig.verdict.send(Verdict::Build).unwrap();
    }
    wait_until("the three builds end", || threads_named("DropMany-") == 0);
    assert_eq!(rig.built(), 4, "each built once");
    assert_eq!(rig.live(), 0, "each dropped");
    assert_eq!(rig.attempts(), 3);
    assert_eq!(rig.served_by_new(), 0, "none served");
    assert!(
        rig.building.try_recv().is_err(),
        "no build was started again"
    );
    assert_no_stray_panic("DropMany");
}

/// A constructor failing after the pipeline is gone does not retry: the
/// build's thread ends after that one attempt (with no verdicts left every
/// further attempt would fail at once, so a retry loop would spin forever
/// and the thread never end). Also when it had failed (and been retried)
/// before the drop.
#[test]
fn a_constructor_failing_after_the_drop_is_not_retried() {
    let mut rig = Rig::new();
    let p = DropFail::bind(rig.ctl.clone(), Input::<bool>::new())
        .deploy_with(DeployOptions::new().autoscale("DropFail", policy(2, 60_000)))
        .unwrap();
    let calls = rig.hold(&p, 2);
    assert_eq!(recv(&rig.building), 1);
    // Fails once while the pipeline lives: retried (after 10 ms).
    rig.verdict.send(Verdict::Fail).unwrap();
    assert_eq!(recv(&rig.building), 1, "retried");
    wait_until("counted down", || p.metrics()[0].replicas_down == 1);
    assert_eq!(rig.release(calls), [0, 0]);
    drop_and_wait(p, "the drop returned, a build retrying");
    assert_eq!(threads_named("DropFail-"), 1, "the build's thread runs on");
    // Every attempt from now on fails at once.
    rig.fail_all();
    wait_until("the build's thread ends", || {
        threads_named("DropFail-") == 0
    });
    assert_eq!(rig.attempts(), 2, "no attempt after the drop's");
    assert_eq!((rig.built(), rig.live()), (1, 0));
    assert_no_stray_panic("DropFail");
}

/// A constructor panicking after the pipeline is gone: caught, not
/// retried, the thread ends; nothing leaks and no panic escapes but the
/// one on purpose.
#[test]
fn a_constructor_panicking_after_the_drop_ends_its_thread() {
    let rig = Rig::new();
    let p = DropPanic::bind(rig.ctl.clone(), Input::<bool>::new())
        .deploy_with(DeployOptions::new().autoscale("DropPanic", policy(2, 60_000)))
        .unwrap();
    let calls = rig.hold(&p, 2);
    assert_eq!(recv(&rig.building), 1);
    assert_eq!(rig.release(calls), [0, 0]);
    drop_and_wait(p, "the drop returned, a build running");
    rig.verdict.send(Verdict::Panic).unwrap();
    wait_until("the build's thread ends", || {
        threads_named("DropPanic-") == 0
    });
    assert_eq!(rig.attempts(), 1, "not retried");
    assert!(rig.building.try_recv().is_err());
    assert_eq!((rig.built(), rig.live()), (1, 0));
    assert_no_stray_panic("DropPanic");
}

/// Scale up (build of replica 1 starts), scale down before it is built
/// (given up), scale up again (taken back: not built a second time), then
/// drop the pipeline while that one constructor still runs: the drop
/// returns; the model is built once, dropped, never serves.
#[test]
fn a_build_given_up_then_taken_back_is_dropped_after_the_pipeline() {
    let rig = Rig::new();
    let p = DropBack::bind(rig.ctl.clone(), Input::<bool>::new())
        .deploy_with(DeployOptions::new().autoscale("DropBack", policy(2, 100)))
        .unwrap();
    let calls = rig.hold(&p, 2);
    assert_eq!(recv(&rig.building), 1);
    assert_eq!(replicas(&p), (1, 2));
    assert_eq!(rig.release(calls), [0, 0]);
    wait_until("given up on", || replicas(&p) == (1, 1));
    let calls = rig.hold(&p, 2);
    wait_until("wanted again", || replicas(&p) == (1, 2));
    assert_eq!(threads_named("DropBack-1"), 1, "one build thread");
    // The last handles go with the held calls' threads.
    drop_and_wait(p, "the main handle dropped");
    assert_eq!(rig.release(calls), [0, 0]);
    wait_until("replica 0 dropped", || rig.live() == 0);
    wait_until("replica 0's thread ends", || {
        threads_named("DropBack-0") == 0
    });
    assert_eq!(threads_named("DropBack-1"), 1, "the build still runs");
    rig.verdict.send(Verdict::Build).unwrap();
    wait_until("the build ends", || threads_named("DropBack-") == 0);
    assert_eq!(rig.attempts(), 1, "replica 1 was built once");
    assert!(rig.building.try_recv().is_err());
    assert_eq!((rig.built(), rig.live()), (2, 0));
    assert_eq!(rig.served_by_new(), 0);
    assert_no_stray_panic("DropBack");
}

/// A build finishing at the very moment of `shutdown` and the drop, with
/// callers calling throughout: every call answers `Ok` (from either
/// replica) or `ShuttingDown`, nothing hangs or panics, and at the end
/// every model built is dropped and no `DropRace-*` thread is left.
#[test]
fn a_build_finishing_as_the_pipeline_goes_is_served_or_dropped() {
    let rig = Rig::new();
    for round in 0..12 {
        let p = DropRace::bind(rig.ctl.clone(), Input::<bool>::new())
            .deploy_with(DeployOptions::new().autoscale("DropRace", policy(2, 60_000)))
            .unwrap();
        let calls = rig.hold(&p, 2);
        assert_eq!(recv(&rig.building), 1);
        assert_eq!(rig.release(calls), [0, 0]);
        let callers: Vec<_> = (0..2)
            .map(|_| {
                let p = p.clone();
                std::thread::spawn(move || {
                    let mut answered = 0;
                    loop {
                        match p.call(false) {
                            Ok(i) => {
                                assert!(i < 2);
                                answered += 1;
                            }
                            Err(PipelineError::ShuttingDown) => return answered,
                            Err(e) => panic!("a call failed with {e}"),
                        }
                    }
                })
            })
            .collect();
        let verdict = rig.verdict.clone();
        let build = std::thread::spawn(move || verdict.send(Verdict::Build).unwrap());
        if round % 2 == 0 {
            p.shutdown().unwrap();
        }
        let dropping = {
            let p = p.clone();
            std::thread::spawn(move || {
                p.shutdown().unwrap();
                drop(p);
            })
        };
        drop(p);
        build.join().unwrap();
        dropping.join().unwrap();
        for caller in callers {
            caller.join().expect("a caller panicked");
        }
        wait_until("every build of the round ends", || {
            threads_named("DropRace-") == 0
        });
        assert_eq!(rig.built(), 2 * (round + 1), "round {round}");
        assert_eq!(rig.live(), 0, "round {round}: every model dropped");
    }
    assert_no_stray_panic("DropRace");
}

/// The last handle dropped inside a task, on a multi-thread runtime and on
/// a `current_thread` one: the drop returns with the build still running;
/// the model is dropped once its constructor returns.
#[test]
fn dropping_inside_a_task_does_not_wait_for_a_build() {
    let rig = Rig::new();
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (round, rt) in [&multi, &current].into_iter().enumerate() {
        let p = DropTask::bind(rig.ctl.clone(), Input::<bool>::new())
            .deploy_with(DeployOptions::new().autoscale("DropTask", policy(2, 60_000)))
            .unwrap();
        let calls = rig.hold(&p, 2);
        assert_eq!(recv(&rig.building), 1);
        assert_eq!(rig.release(calls), [0, 0]);
        rt.block_on(async move {
            tokio::spawn(async move { drop(p) }).await.unwrap();
        });
        wait_until("replica 0's thread ends", || {
            threads_named("DropTask-0") == 0
        });
        assert_eq!(rig.live(), 0, "round {round}: replica 0 dropped");
        assert_eq!(threads_named("DropTask-1"), 1, "round {round}: building");
        rig.verdict.send(Verdict::Build).unwrap();
        wait_until("the build ends", || threads_named("DropTask-") == 0);
        assert_eq!((rig.built(), rig.live()), (2 * (round + 1), 0));
    }
    assert_eq!(rig.served_by_new(), 0);
    assert_no_stray_panic("DropTask");
}

/// `shutdown()` with a build running returns (no call in flight); calls
/// then fail with `ShuttingDown`, even once the build is done; the drop
/// after it returns too, and the model built is dropped, never served.
#[test]
fn shutdown_then_drop_with_a_build_running() {
    let rig = Rig::new();
    let p = DropStop::bind(rig.ctl.clone(), Input::<bool>::new())
        .deploy_with(DeployOptions::new().autoscale("DropStop", policy(2, 60_000)))
        .unwrap();
    let calls = rig.hold(&p, 2);
    assert_eq!(recv(&rig.building), 1);
    assert_eq!(rig.release(calls), [0, 0]);
    p.shutdown().unwrap();
    assert!(matches!(p.call(false), Err(PipelineError::ShuttingDown)));
    rig.verdict.send(Verdict::Build).unwrap();
    wait_until("built", || rig.built() == 2);
    for _ in 0..20 {
        assert!(matches!(p.call(false), Err(PipelineError::ShuttingDown)));
    }
    drop_and_wait(p, "the drop after shutdown returned");
    wait_until("every thread ends", || threads_named("DropStop-") == 0);
    assert_eq!((rig.built(), rig.live()), (2, 0));
    assert_eq!(rig.served_by_new(), 0);
    assert_no_stray_panic("DropStop");
}

/// Thread replicas of a pipeline given a `current_thread` runtime (they
/// run on its handle): the pipeline is dropped, then that runtime too,
/// while a build's constructor still runs; once it returns, the model is
/// dropped on its thread, with no panic (its runtime is gone).
#[test]
fn a_build_outliving_the_given_runtime_drops_its_model() {
    let rig = Rig::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let options = DeployOptions::new()
        .runtime(rt.handle().clone())
        .autoscale("DropCur", policy(2, 60_000));
    let p = DropCur::bind(rig.ctl.clone(), Input::<bool>::new())
        .deploy_with(options)
        .unwrap();
    // The autoscaler runs on `rt`: drive it while calls are held.
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let p = p.clone();
            std::thread::spawn(move || p.call_held())
        })
        .collect();
    rt.block_on(async {
        support::wait_until_async("replica 1 being built", || {
            p.health().steps[0].target_replicas == 2
        })
        .await
    });
    assert_eq!(recv(&rig.building), 1);
    recv(&rig.holding);
    assert_eq!(rig.release(calls), [0, 0]);
    drop_and_wait(p, "the drop returned");
    assert_eq!(rig.live(), 0);
    drop(rt);
    assert_eq!(threads_named("DropCur-"), 1, "the build still runs");
    rig.verdict.send(Verdict::Build).unwrap();
    wait_until("the build ends", || threads_named("DropCur-") == 0);
    assert_eq!((rig.built(), rig.live()), (2, 0));
    assert_no_stray_panic("DropCur");
}

/// A task-placed model whose later replicas' constructors are held like
/// the thread models'; calls wait at a gate.
struct DropTsk {
    ctl: Ctl,
    gate: Gate,
    index: usize,
}

impl Drop for DropTsk {
    fn drop(&mut self) {
        self.ctl.0.live.fetch_sub(1, SeqCst);
    }
}

#[step(mode = "actors", placement = "task")]
impl DropTsk {
    fn new(ctx: &ReplicaContext, init: (Ctl, Gate)) -> Result<Self, String> {
        init.0.construct(ctx.index())?;
        Ok(DropTsk {
            ctl: init.0,
            gate: init.1,
            index: ctx.index(),
        })
    }
    async fn call(&self, _x: u64) -> usize {
        self.gate.0.acquire().await.expect("gate").forget();
        if self.index > 0 {
            self.ctl.0.served_by_new.fetch_add(1, SeqCst);
        }
        self.index
    }
}

/// Task placement on a runtime given by the test: dropping the pipeline
/// (from a plain thread) while a task replica's constructor runs on the
/// blocking pool returns; the model is dropped once built, never served.
#[test]
fn a_task_build_on_a_given_runtime_does_not_hold_the_drop() {
    let rig = Rig::new();
    let gate = Gate::closed();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let options = DeployOptions::new()
        .runtime(rt.handle().clone())
        .autoscale("DropTsk", policy(2, 60_000));
    let p = DropTsk::bind((rig.ctl.clone(), gate.clone()), Input::<u64>::new())
        .deploy_with(options)
        .unwrap();
    let calls: Vec<_> = (0..2)
        .map(|i| {
            let p = p.clone();
            rt.spawn(async move { p.call_async(i).await.expect("held call") })
        })
        .collect();
    assert_eq!(recv(&rig.building), 1);
    gate.0.add_permits(2);
    for call in calls {
        assert_eq!(rt.block_on(call).unwrap(), 0);
    }
    let dropping = std::thread::spawn(move || drop(p));
    wait_until("the drop returned, a task build running", || {
        dropping.is_finished()
    });
    dropping.join().unwrap();
    wait_until("replica 0 dropped", || rig.live() == 0);
    assert_eq!(rig.built(), 1);
    rig.verdict.send(Verdict::Build).unwrap();
    wait_until("built, then dropped", || {
        rig.built() == 2 && rig.live() == 0
    });
    assert_eq!(rig.served_by_new(), 0);
    drop(rt);
    assert_no_stray_panic("DropTsk");
}
