//! A fourth outside review of remote steps, aimed at how a worker matches
//! cancellations to calls since it stopped keeping a book of every call
//! (a call waiting for its answer wakes when a cancellation comes and
//! looks for its own id; cancellations naming no call are kept, 4,096 at
//! most, for calls yet to come). Calls cancelled while they run, near-miss
//! ids, two pipelines whose call numbers coincide, one id on two calls or
//! two step names, a thousand waiting calls cancelled in a random order
//! among new ones, bursts of 900 cancellations once a flood has filled
//! the set (on one-thread and multi-thread workers), and workers leaving
//! while cancellations arrive.
#![cfg(feature = "remote")]

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::{FutureExt, StreamExt};
use pipeline_core::prelude::*;
use pipeline_core::remote::Worker;
use pipeline_core::{DeployError, StepFn, StepOptions};
use pipeline_examples::remote_steps::{work, Done, Job};
use serde::{Deserialize, Serialize};
use support::nats::NatsServer;
use support::worker::WorkerProcess;
use support::{wait_until_async, Capture, Lines, GUARD};
use tokio::sync::Semaphore;

// ---------------------------------------------------------------------------
// A gated step, its gates and the calls it started
// ---------------------------------------------------------------------------

/// A call of [`held`]: which gate it waits at (each test has its own) and
/// its value.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Probe {
    tag: usize,
    x: u64,
}

const TAGS: usize = 32;

/// One gate per tag; closed until a test opens it.
static GATES: [Semaphore; TAGS] = [const { Semaphore::const_new(0) }; TAGS];

/// Every `(tag, x)` [`held`] started, in any test.
static STARTS: Mutex<Vec<(usize, u64)>> = Mutex::new(Vec::new());

/// Records its start, waits at its tag's gate, then answers `3 x`.
#[step(mode = "actors", replicas = 2, remote)]
async fn held(p: Probe) -> u64 {
    STARTS.lock().unwrap().push((p.tag, p.x));
    GATES[p.tag].acquire().await.expect("gate").forget();
    p.x * 3
}

/// Opens tag `tag`'s gate for good.
fn open(tag: usize) {
    GATES[tag].add_permits(1_000_000);
}

/// The values of tag `tag`'s calls started so far, in start order.
fn starts(tag: usize) -> Vec<u64> {
    let all = STARTS.lock().unwrap();
    all.iter()
        .filter(|(t, _)| *t == tag)
        .map(|(_, x)| *x)
        .collect()
}

fn probe(tag: usize, x: u64) -> Probe {
    Probe { tag, x }
}

/// A pipeline calling `held` remotely under node name `name`.
fn deploy(nats: &NatsServer, name: &str) -> Pipeline<Probe, u64> {
    held(Input::<Probe>::new())
        .named(name)
        .deploy_with(DeployOptions::new().remote(name, &nats.url()))
        .unwrap()
}

fn digest() -> String {
    <held<()> as StepFn>::wire().unwrap().fingerprint_digest()
}

/// A worker on a thread of this process, on a `current_thread` runtime
/// (as `remote_worker`) or a multi-thread one (two threads), serving
/// `held` under each name given with that many replicas; it leaves when
/// told or dropped (opening its tags' gates first, so a failed test does
/// not hang in its drop).
struct Host {
    tags: Vec<usize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), DeployError>>>,
}

impl Host {
    fn start(
        nats: &NatsServer,
        steps: &[(&'static str, usize)],
        multi_thread: bool,
        tags: &[usize],
    ) -> Host {
        let url = nats.url();
        let steps = steps.to_vec();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, is_ready) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = if multi_thread {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
            } else {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            }
            .unwrap();
            rt.block_on(async move {
                let mut worker = Worker::connect(&url).await?;
                for (name, replicas) in steps {
                    let options = StepOptions {
                        replicas: Some(replicas),
                        // Room for every call the tests queue.
                        queue_bound: Some(4_096),
                        ..StepOptions::default()
                    };
                    worker.serve_with::<held<()>>(name, (), options).await?;
                }
                ready.send(()).unwrap();
                worker
                    .run_until(async move {
                        let _ = stopped.await;
                    })
                    .await
            })
        });
        is_ready.recv().expect("the worker is serving");
        Host {
            tags: tags.to_vec(),
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Tells it to leave (as SIGTERM does a worker process).
    fn leave(&mut self) {
        let _ = self.stop.take().expect("told once").send(());
    }

    /// Waits until it has left.
    fn join(mut self) -> Result<(), DeployError> {
        self.thread.take().unwrap().join().expect("worker thread")
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            for &tag in &self.tags {
                open(tag);
            }
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------
// Raw NATS calls and cancellations
// ---------------------------------------------------------------------------

/// Sends `held(p)` to step `name` as a plain NATS request with
/// `Pipeline-Call: <call> 60000 <digest>` (or no header), its answer to
/// an inbox of its own: the subscription to that inbox.
async fn raw_send(
    client: &async_nats::Client,
    name: &str,
    call: Option<&str>,
    p: Probe,
) -> async_nats::Subscriber {
    let inbox = client.new_inbox();
    let answers = client.subscribe(inbox.clone()).await.unwrap();
    let payload = <held<()> as StepFn>::wire()
        .unwrap()
        .encode_inputs(&(p,))
        .unwrap();
    let mut headers = async_nats::HeaderMap::new();
    if let Some(call) = call {
        headers.insert(
            "Pipeline-Call",
            format!("{call} 60000 {}", digest()).as_str(),
        );
    }
    client
        .publish_with_reply_and_headers(
            format!("pipeline.step.{name}"),
            inbox,
            headers,
            payload.into(),
        )
        .await
        .unwrap();
    client.flush().await.unwrap();
    answers
}

/// The answer on `answers`: the value, or the error code and text.
async fn raw_answer(answers: &mut async_nats::Subscriber) -> Result<u64, String> {
    let message = tokio::time::timeout(GUARD, answers.next())
        .await
        .expect("an answer")
        .expect("the subscription is open");
    decode(&message)
}

fn decode(message: &async_nats::Message) -> Result<u64, String> {
    let get = |key| message.headers.as_ref()?.get(key).map(|v| v.to_string());
    match get(async_nats::service::NATS_SERVICE_ERROR_CODE) {
        Some(code) => Err(format!(
            "{code}: {:?}",
            get(async_nats::service::NATS_SERVICE_ERROR)
        )),
        None => Ok(<held<()> as StepFn>::wire()
            .unwrap()
            .decode_output(&message.payload)
            .unwrap()),
    }
}

/// Publishes a cancellation of call `id` to step `name`'s workers.
async fn cancel(client: &async_nats::Client, name: &str, id: &str) {
    cancel_bytes(client, name, id.as_bytes()).await;
}

async fn cancel_bytes(client: &async_nats::Client, name: &str, id: &[u8]) {
    client
        .publish(format!("pipeline.cancel.{name}"), id.to_vec().into())
        .await
        .unwrap();
    client.flush().await.unwrap();
}

/// Watches (as a plain subscriber, which the server gives a copy of every
/// message) the calls sent to step `name`: each call's value and the call
/// id in its `Pipeline-Call` header.
struct Snoop {
    seen: Arc<Mutex<HashMap<u64, String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Snoop {
    async fn start(client: &async_nats::Client, name: &str) -> Snoop {
        let shared = client
            .subscribe(format!("pipeline.step.{name}"))
            .await
            .unwrap();
        let direct = client
            .subscribe(format!("pipeline.step.{name}.*"))
            .await
            .unwrap();
        client.flush().await.unwrap();
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let into = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            let mut both = futures::stream::select(shared, direct);
            let wire = <held<()> as StepFn>::wire().unwrap();
            while let Some(message) = both.next().await {
                let call = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Pipeline-Call"))
                    .map(|v| v.to_string());
                let (Some(call), Ok((p,))) = (call, wire.decode_inputs(&message.payload)) else {
                    continue;
                };
                let id = call.split(' ').next().unwrap().to_string();
                into.lock().unwrap().insert(p.x, id);
            }
        });
        Snoop { seen, task }
    }

    /// Waits until it has seen the calls of every value in `xs`; their ids.
    async fn ids(&self, xs: impl IntoIterator<Item = u64>) -> HashMap<u64, String> {
        let xs: Vec<u64> = xs.into_iter().collect();
        wait_until_async("the snoop saw every call", || {
            let seen = self.seen.lock().unwrap();
            xs.iter().all(|x| seen.contains_key(x))
        })
        .await;
        let seen = self.seen.lock().unwrap();
        xs.iter().map(|x| (*x, seen[x].clone())).collect()
    }
}

impl Drop for Snoop {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------
// The in-process workers' log
// ---------------------------------------------------------------------------

/// The in-process workers' tracing (process-wide, installed once): the
/// `remote_step` span as each request is taken, and the debug event for
/// each waiting call skipped because its caller cancelled it.
fn worker_log() -> Capture {
    support::log_capture("pipeline_core::remote::worker=debug")
}

impl Lines {
    /// Requests step `name`'s workers took.
    fn taken(log: &Capture, name: &str) -> Self {
        Lines::new(log, &[&format!("remote_step{{step=\"{name}\""), " new"])
    }

    /// Waiting calls of step `name` skipped as cancelled.
    fn cancelled(log: &Capture, name: &str) -> Self {
        Lines::new(
            log,
            &[&format!("step=\"{name}\""), "the caller cancelled the call"],
        )
    }
}

/// A small deterministic generator (xorshift64*), for shuffles.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// Asserts no value twice in `xs`.
fn assert_once(xs: &[u64]) {
    let mut sorted = xs.to_vec();
    sorted.sort_unstable();
    let twice: Vec<_> = sorted.windows(2).filter(|w| w[0] == w[1]).collect();
    assert!(twice.is_empty(), "started twice: {twice:?}");
}

type Call = tokio::task::JoinHandle<Result<u64, PipelineError>>;

fn spawn_call(p: &Pipeline<Probe, u64>, tag: usize, x: u64) -> Call {
    let p = p.clone();
    tokio::spawn(async move { p.call_async(probe(tag, x)).await })
}

/// [`spawn_call`] with a 10-minute deadline: a test whose guard ran out
/// can still open the gate and see which calls ran.
fn spawn_long(p: &Pipeline<Probe, u64>, tag: usize, x: u64) -> Call {
    let p = p.clone();
    let long = std::time::Duration::from_secs(600);
    tokio::spawn(async move { p.call_async_timeout(probe(tag, x), long).await })
}

// ---------------------------------------------------------------------------
// A call cancelled while it runs
// ---------------------------------------------------------------------------

/// One replica, running call `run.1` (held at its gate), call `run.2`
/// queued behind it. `run.1` is cancelled while it runs: the worker
/// answers it nothing, `run.2` answers its own value once the gate opens,
/// and the cancellation was spent on the running call: a later call with
/// the same id runs and answers. The worker serves a pipeline after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cancelled_while_it_runs_answers_nothing_and_the_next_one_runs() {
    const TAG: usize = 1;
    let log = worker_log();
    let nats = NatsServer::start();
    let _worker = Host::start(&nats, &[("t1", 1)], false, &[TAG]);
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut taken = Lines::taken(&log, "t1");
    let mut cancelled = Lines::cancelled(&log, "t1");
    let mut first = raw_send(&client, "t1", Some("run.1"), probe(TAG, 1)).await;
    wait_until_async("run.1 runs", || starts(TAG) == [1]).await;
    let mut second = raw_send(&client, "t1", Some("run.2"), probe(TAG, 2)).await;
    taken.wait_for("the worker took both", 2).await;
    cancel(&client, "t1", "run.1").await;
    cancelled.wait_for("run.1 was skipped", 1).await;
    open(TAG);
    assert_eq!(raw_answer(&mut second).await, Ok(6));
    // Both answers would come over the worker's one connection in order:
    // run.2's came, run.1's did not come before it, and run.1 cannot
    // answer any more (its wait ended when it was cancelled).
    let late = first.next().now_or_never();
    assert!(late.is_none(), "the cancelled call answered: {late:?}");
    assert_eq!(starts(TAG), [1, 2], "run.1 had started; run.2 ran once");
    let mut again = raw_send(&client, "t1", Some("run.1"), probe(TAG, 3)).await;
    assert_eq!(
        raw_answer(&mut again).await,
        Ok(9),
        "the cancellation was spent"
    );
    let p = deploy(&nats, "t1");
    for x in 10..20 {
        assert_eq!(p.call_async(probe(TAG, x)).await.unwrap(), x * 3);
    }
    assert_eq!(cancelled.count(), 1);
}

// ---------------------------------------------------------------------------
// Ids that nearly match
// ---------------------------------------------------------------------------

/// A pipeline's 20 calls queued at the worker (both replicas held), their
/// real call ids read off the wire. For each id, cancellations that
/// nearly match it (a prefix, a suffix added, other case, spaces, a
/// newline or NUL added, a leading zero, the whole header value, a
/// look-alike dot, a wildcard) and are no other call's id: none skips a
/// call. Then one call is dropped by its caller: only it is skipped;
/// every other answers its own value once the gate opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_miss_cancellations_never_skip_a_call() {
    const TAG: usize = 2;
    let log = worker_log();
    let nats = NatsServer::start();
    let _worker = Host::start(&nats, &[("t2", 2)], false, &[TAG]);
    let client = async_nats::connect(nats.url()).await.unwrap();
    let snoop = Snoop::start(&client, "t2").await;
    let p = deploy(&nats, "t2");
    let mut taken = Lines::taken(&log, "t2");
    let mut cancelled = Lines::cancelled(&log, "t2");
    let blockers = [spawn_call(&p, TAG, 1_000), spawn_call(&p, TAG, 1_001)];
    wait_until_async("both replicas run", || starts(TAG).len() == 2).await;
    let mut calls: Vec<(u64, Call)> = (0..20).map(|x| (x, spawn_call(&p, TAG, x))).collect();
    taken.wait_for("the worker took every call", 22).await;
    let ids = snoop.ids((0..20).chain([1_000, 1_001])).await;
    let real: HashSet<&String> = ids.values().collect();
    let d = digest();
    let mut sent = 0;
    for id in ids.values() {
        let (prefix, number) = id.rsplit_once('.').expect("prefix.number");
        let near = [
            id[..id.len() - 1].to_string(),
            id[1..].to_string(),
            format!("{id}0"),
            format!("x{id}"),
            id.to_uppercase(),
            id.to_lowercase(),
            format!(" {id}"),
            format!("{id} "),
            format!("{id}\n"),
            format!("{id}\0"),
            format!("{prefix}.0{number}"),
            format!("{prefix}..{number}"),
            format!("{prefix}.{number}."),
            format!("{prefix}\u{2024}{number}"),
            prefix.to_string(),
            format!("{id} 60000 {d}"),
            format!("{prefix}.*"),
            format!("{prefix}.>"),
        ];
        for miss in near.iter().filter(|m| !real.contains(m)) {
            cancel(&client, "t2", miss).await;
            sent += 1;
        }
    }
    assert!(sent > 300, "{sent} near misses");
    // One real drop: the worker hears it after every near miss (they come
    // on one subscription, in order).
    let (victim, call) = calls.remove(7);
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    cancelled.wait_for("the dropped call was skipped", 1).await;
    open(TAG);
    for (x, call) in calls {
        assert_eq!(call.await.unwrap().unwrap(), x * 3, "call {x}");
    }
    for call in blockers {
        call.await.unwrap().unwrap();
    }
    let ran = starts(TAG);
    assert_once(&ran);
    assert!(!ran.contains(&victim), "the dropped call ran");
    assert_eq!(ran.len(), 2 + 19, "{ran:?}");
    assert_eq!(cancelled.count(), 1, "a near miss skipped a call");
}

// ---------------------------------------------------------------------------
// Two pipelines, the same call numbers
// ---------------------------------------------------------------------------

/// Two pipelines call the same worker; each counts its call ids from 0, so
/// their numbers coincide (only their prefixes differ). With both
/// replicas held, each queues 100 calls; all of one pipeline's are dropped:
/// exactly those 100 are skipped, and the other's 100 answer their own
/// values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_one_pipelines_calls_never_skips_anothers_with_the_same_numbers() {
    const TAG: usize = 3;
    let log = worker_log();
    let nats = NatsServer::start();
    let _worker = Host::start(&nats, &[("t3", 2)], false, &[TAG]);
    let client = async_nats::connect(nats.url()).await.unwrap();
    let snoop = Snoop::start(&client, "t3").await;
    let (a, b) = (deploy(&nats, "t3"), deploy(&nats, "t3"));
    let mut taken = Lines::taken(&log, "t3");
    let mut cancelled = Lines::cancelled(&log, "t3");
    let blockers = [spawn_call(&a, TAG, 10_000), spawn_call(&b, TAG, 20_000)];
    wait_until_async("both replicas run", || starts(TAG).len() == 2).await;
    let mut dropped = Vec::new();
    let mut kept = Vec::new();
    for i in 0..100 {
        dropped.push(spawn_call(&a, TAG, 11_000 + i));
        kept.push((20_001 + i, spawn_call(&b, TAG, 20_001 + i)));
    }
    taken.wait_for("the worker took every call", 202).await;
    let ids = snoop.ids((11_000..11_100).chain(20_001..20_101)).await;
    let numbers = |range: std::ops::Range<u64>| -> HashSet<String> {
        range
            .map(|x| ids[&x].rsplit_once('.').unwrap().1.to_string())
            .collect()
    };
    let common = numbers(11_000..11_100)
        .intersection(&numbers(20_001..20_101))
        .count();
    assert!(common >= 90, "the numbers coincide ({common} of 100)");
    assert_ne!(
        ids[&11_000].rsplit_once('.').unwrap().0,
        ids[&20_001].rsplit_once('.').unwrap().0,
        "the prefixes differ"
    );
    for call in &dropped {
        call.abort();
    }
    for call in dropped {
        assert!(call.await.unwrap_err().is_cancelled());
    }
    cancelled.wait_for("the worker skipped a's 100", 100).await;
    open(TAG);
    for (x, call) in kept {
        assert_eq!(call.await.unwrap().unwrap(), x * 3, "b's call {x}");
    }
    for call in blockers {
        call.await.unwrap().unwrap();
    }
    let ran = starts(TAG);
    assert_once(&ran);
    let a_ran: Vec<_> = ran
        .iter()
        .filter(|x| (11_000..11_100).contains(*x))
        .collect();
    assert!(a_ran.is_empty(), "dropped calls ran: {a_ran:?}");
    assert_eq!(ran.len(), 2 + 100);
}

// ---------------------------------------------------------------------------
// One id on two calls; one id on two step names
// ---------------------------------------------------------------------------

/// A raw client may send any id: two calls with id `dup`, both queued,
/// and one cancellation of `dup`: exactly one of the two is skipped, the
/// other answers its own value. Two cancellations of `twice` heard before
/// two calls with that id: duplicates are one entry, spent once: exactly
/// one of the two calls runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_id_on_two_calls_one_cancellation_skips_exactly_one() {
    const TAG: usize = 4;
    const LATER: usize = 5;
    let log = worker_log();
    let nats = NatsServer::start();
    let _worker = Host::start(&nats, &[("t4", 2)], false, &[TAG, LATER]);
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut taken = Lines::taken(&log, "t4");
    let mut cancelled = Lines::cancelled(&log, "t4");
    // Plain requests (no header) hold both replicas.
    let mut blockers = Vec::new();
    for x in [100, 101] {
        blockers.push(raw_send(&client, "t4", None, probe(TAG, x)).await);
    }
    wait_until_async("both replicas run", || starts(TAG).len() == 2).await;
    let mut one = raw_send(&client, "t4", Some("dup"), probe(TAG, 1)).await;
    let mut two = raw_send(&client, "t4", Some("dup"), probe(TAG, 2)).await;
    taken.wait_for("the worker took four calls", 4).await;
    cancel(&client, "t4", "dup").await;
    cancelled.wait_for("one dup call was skipped", 1).await;
    open(TAG);
    let answer = tokio::select! {
        m = one.next() => (1, m),
        m = two.next() => (2, m),
    };
    let (x, message) = (answer.0, answer.1.expect("an answer"));
    assert_eq!(decode(&message), Ok(x * 3));
    for answers in &mut blockers {
        assert!(raw_answer(answers).await.is_ok());
    }
    let ran = starts(TAG);
    assert_eq!(ran.len(), 3, "{ran:?}");
    assert!(ran.contains(&x) && !ran.contains(&(3 - x)), "{ran:?}");
    // Early duplicates: a queued marker call, cancelled after them, says
    // when the worker has heard them.
    let _marker = raw_send(&client, "t4", Some("marker"), probe(LATER, 50)).await;
    let _marker2 = raw_send(&client, "t4", Some("marker2"), probe(LATER, 51)).await;
    wait_until_async("the markers run", || starts(LATER).len() == 2).await;
    cancel(&client, "t4", "twice").await;
    cancel(&client, "t4", "twice").await;
    cancel(&client, "t4", "marker").await;
    cancelled.wait_for("the marker was skipped", 2).await;
    let mut three = raw_send(&client, "t4", Some("twice"), probe(LATER, 3)).await;
    let mut four = raw_send(&client, "t4", Some("twice"), probe(LATER, 4)).await;
    taken
        .wait_for("the worker took both `twice` calls", 8)
        .await;
    // Both replicas are still held by the markers (a skipped call's body
    // goes on until it ends): the `twice` call not skipped waits behind
    // them, and a last call after it.
    let mut after = raw_send(&client, "t4", Some("after"), probe(LATER, 60)).await;
    taken.wait_for("the worker took the last call", 9).await;
    open(LATER);
    let answer = tokio::select! {
        m = three.next() => (3, m),
        m = four.next() => (4, m),
    };
    let (x, message) = (answer.0, answer.1.expect("an answer"));
    assert_eq!(decode(&message), Ok(x * 3));
    // Taken in order: once the last call answers, both `twice` calls
    // would have started.
    assert_eq!(raw_answer(&mut after).await, Ok(180));
    let ran = starts(LATER);
    assert_eq!(ran.len(), 4, "exactly one `twice` call ran: {ran:?}");
    assert!(ran.contains(&x) && !ran.contains(&(7 - x)), "{ran:?}");
    let other = if x == 3 { &mut four } else { &mut three };
    let skipped = other.next().now_or_never();
    assert!(skipped.is_none(), "the skipped call answered: {skipped:?}");
    assert_eq!(cancelled.count(), 2);
}

/// One worker serves the step under two names: a call with id `same` at
/// each, both running; cancelling `same` for the first name skips only
/// its call. An early cancellation of `soon` for the second name does not
/// touch a call `soon` at the first, which answers; the second name's
/// call `soon` never starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_step_names_on_one_worker_keep_their_cancellations_apart() {
    const TAG: usize = 6;
    let log = worker_log();
    let nats = NatsServer::start();
    let _worker = Host::start(&nats, &[("t6a", 2), ("t6b", 2)], false, &[TAG]);
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut taken_b = Lines::taken(&log, "t6b");
    let mut cancelled_a = Lines::cancelled(&log, "t6a");
    let mut cancelled_b = Lines::cancelled(&log, "t6b");
    let mut at_a = raw_send(&client, "t6a", Some("same"), probe(TAG, 1)).await;
    let mut at_b = raw_send(&client, "t6b", Some("same"), probe(TAG, 2)).await;
    wait_until_async("both run", || starts(TAG).len() == 2).await;
    cancel(&client, "t6a", "same").await;
    cancelled_a
        .wait_for("the first name's call was skipped", 1)
        .await;
    // A marker at the second name, cancelled after `soon`, says when the
    // worker has heard `soon` there.
    let _marker = raw_send(&client, "t6b", Some("marker"), probe(TAG, 3)).await;
    wait_until_async("the marker runs", || starts(TAG).len() == 3).await;
    cancel(&client, "t6b", "soon").await;
    cancel(&client, "t6b", "marker").await;
    cancelled_b.wait_for("the marker was skipped", 1).await;
    open(TAG);
    assert_eq!(raw_answer(&mut at_b).await, Ok(6));
    let mut soon_a = raw_send(&client, "t6a", Some("soon"), probe(TAG, 4)).await;
    assert_eq!(
        raw_answer(&mut soon_a).await,
        Ok(12),
        "another name's cancellation"
    );
    let mut soon_b = raw_send(&client, "t6b", Some("soon"), probe(TAG, 5)).await;
    taken_b.wait_for("the second name took its calls", 3).await;
    let mut after = raw_send(&client, "t6b", Some("after"), probe(TAG, 6)).await;
    assert_eq!(raw_answer(&mut after).await, Ok(18));
    let late = at_a.next().now_or_never();
    assert!(late.is_none(), "the cancelled call answered: {late:?}");
    let skipped = soon_b.next().now_or_never();
    assert!(
        skipped.is_none(),
        "the early-cancelled call answered: {skipped:?}"
    );
    let mut ran = starts(TAG);
    assert!(
        !ran.contains(&5),
        "an early-cancelled call started: {ran:?}"
    );
    ran.sort_unstable();
    assert_eq!(ran, [1, 2, 3, 4, 6]);
    assert_eq!((cancelled_a.count(), cancelled_b.count()), (1, 1));
}

// ---------------------------------------------------------------------------
// Many waiting calls, many cancellations
// ---------------------------------------------------------------------------

/// Runs a thousand waiting calls (both replicas held), then drops 500 of
/// them in a random order, a new call sent after every fifth drop (100
/// new). Returns once the gate has opened and every call is accounted
/// for: exactly the dropped calls were skipped; every kept one answered
/// its own value, once.
async fn drop_half_of_a_thousand(nats: &NatsServer, name: &str, tag: usize, seed: u64) {
    let log = worker_log();
    let p = deploy(nats, name);
    let mut taken = Lines::taken(&log, name);
    let mut cancelled = Lines::cancelled(&log, name);
    let blockers = [
        spawn_call(&p, tag, 1_000_000),
        spawn_call(&p, tag, 1_000_001),
    ];
    wait_until_async("both replicas run", || starts(tag).len() == 2).await;
    let mut calls: Vec<(u64, Call)> = (0..1_000).map(|x| (x, spawn_call(&p, tag, x))).collect();
    taken
        .wait_for("the worker took a thousand calls", 1_002)
        .await;
    let mut rng = Rng(seed);
    rng.shuffle(&mut calls);
    let victims: Vec<(u64, Call)> = calls.drain(..500).collect();
    let mut dropped = HashSet::new();
    for (i, (x, call)) in victims.into_iter().enumerate() {
        call.abort();
        dropped.insert(x);
        if i % 5 == 4 {
            let x = 5_000 + i as u64;
            calls.push((x, spawn_call(&p, tag, x)));
        }
        if i % 50 == 49 {
            tokio::task::yield_now().await;
        }
    }
    taken.wait_for("the worker took the new calls", 1_102).await;
    cancelled
        .wait_for("the worker skipped the dropped calls", 500)
        .await;
    open(tag);
    for (x, call) in calls {
        assert_eq!(call.await.unwrap().unwrap(), x * 3, "call {x}");
    }
    for call in blockers {
        call.await.unwrap().unwrap();
    }
    let ran = starts(tag);
    assert_once(&ran);
    let ran_dropped: Vec<_> = ran.iter().filter(|x| dropped.contains(x)).collect();
    assert!(ran_dropped.is_empty(), "dropped calls ran: {ran_dropped:?}");
    assert_eq!(ran.len(), 2 + 500 + 100);
    let m = support::metric(&p.metrics(), name).clone();
    assert_eq!((m.in_flight, m.errors), (0, 0), "{m:?}");
    // The worker serves on.
    for x in 0..10 {
        assert_eq!(
            p.call_async(probe(tag, 9_000 + x)).await.unwrap(),
            (9_000 + x) * 3
        );
    }
}

/// A thousand calls waiting at a `current_thread` worker; 500 dropped in a
/// random order while 100 new ones come: exactly the dropped ones are
/// skipped, every other answers its own value once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_of_a_thousand_waiting_calls_dropped_in_random_order_amid_new_ones() {
    const TAG: usize = 7;
    let nats = NatsServer::start();
    let _worker = Host::start(&nats, &[("t7", 2)], false, &[TAG]);
    drop_half_of_a_thousand(&nats, "t7", TAG, 0x9e37_79b9_7f4a_7c15).await;
}

/// The same on a multi-thread worker (two threads: the cancellations
/// and the calls waiting are taken on either), its set of cancellations
/// not full: 900 of a thousand waiting calls dropped at once are exactly
/// the ones skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nine_hundred_of_a_thousand_dropped_at_a_multi_thread_worker() {
    const TAG: usize = 13;
    let nats = NatsServer::start();
    let _worker = Host::start(&nats, &[("t13", 2)], true, &[TAG]);
    let seen = drop_of_a_thousand(&nats, "t13", TAG, 0x1234_5678_9abc_def1, 900).await;
    assert!(seen.ran.is_empty() && seen.skipped == 900, "{seen:?}");
}

/// Fills the worker's set of cancellations for calls yet to come (4,096
/// fresh ids no call has); returns once the worker has heard them all (a
/// call held at gate `mark`, cancelled after them, is skipped).
async fn fill_the_set(nats: &NatsServer, name: &str, mark: usize) {
    let log = worker_log();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let _marker = raw_send(&client, name, Some("marker"), probe(mark, 1)).await;
    wait_until_async("the marker runs", || starts(mark).len() == 1).await;
    let subject = format!("pipeline.cancel.{name}");
    for i in 0..4_096 {
        let id = format!("ghost.{i}");
        client.publish(subject.clone(), id.into()).await.unwrap();
    }
    cancel(&client, name, "marker").await;
    let mut cancelled = Lines::cancelled(&log, name);
    cancelled.wait_for("the marker was skipped", 1).await;
    open(mark);
}

/// The set of cancellations for calls yet to come is full (a flood of
/// 4,096 ids no call has); the worker runs on a multi-thread runtime. A
/// thousand calls wait; 900 of them are dropped at once (ten rounds, each
/// with a new pipeline, within the flood's 30 s): each waiting call finds
/// its own cancellation, so exactly the dropped calls are skipped. At
/// 06b82b5 (cancellations past the full set went to a ring of the last
/// 256) this failed in every run tried, in one round or another: the
/// server routed all 900 cancellations, the worker skipped only 350 to
/// 640 and the other dropped calls ran, their ids pushed out of the ring
/// before their calls looked. It passes since 57d11a7.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_set_full_900_drops_at_a_multi_thread_worker_each_skip_their_call() {
    const MARK: usize = 9;
    let nats = NatsServer::start();
    let tags: Vec<usize> = (18..28).collect();
    let mut held_tags = tags.clone();
    held_tags.push(MARK);
    let _worker = Host::start(&nats, &[("t8", 2)], true, &held_tags);
    fill_the_set(&nats, "t8", MARK).await;
    for (round, tag) in tags.into_iter().enumerate() {
        let seed = 0x2545_f491 + round as u64;
        let seen = drop_of_a_thousand(&nats, "t8", tag, seed, 900).await;
        assert!(
            seen.ran.is_empty() && seen.skipped == 900,
            "round {round}: {} dropped calls ran ({} cancellations routed, {} calls skipped): {:?}",
            seen.ran.len(),
            seen.routed,
            seen.skipped,
            seen.ran
        );
    }
}

/// The same on a `current_thread` worker (as `remote_worker` and the
/// documented example run): exactly the dropped calls are skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_set_full_900_drops_at_a_one_thread_worker_each_skip_their_call() {
    const TAG: usize = 11;
    const MARK: usize = 12;
    let nats = NatsServer::start();
    let _worker = Host::start(&nats, &[("t11", 2)], false, &[TAG, MARK]);
    fill_the_set(&nats, "t11", MARK).await;
    let seen = drop_of_a_thousand(&nats, "t11", TAG, 0x2545_f491_4f6c_dd1d, 900).await;
    assert!(seen.ran.is_empty() && seen.skipped == 900, "{seen:?}");
}

/// With the set of cancellations full (as above), a thousand raw calls
/// (ids `c.0` to `c.999`) wait behind a held call at a one-replica
/// `current_thread` worker; 900 of them, in a random order, are cancelled
/// in one burst (one flush). Exactly those 900 are skipped: once the gate
/// opens every kept call answers its own value, and a last call, queued
/// after all of them, answering means every call before it has started
/// or been skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_set_full_a_raw_burst_of_900_cancellations_skips_exactly_those() {
    let (name, tag, mark) = ("t14", 14, 15);
    let log = worker_log();
    let nats = NatsServer::start();
    let _worker = Host::start(&nats, &[(name, 1)], false, &[tag, mark]);
    fill_the_set(&nats, name, mark).await;
    let mut taken = Lines::taken(&log, name);
    let taken_before = taken.count();
    let mut cancelled = Lines::cancelled(&log, name);
    let already = cancelled.count();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut blocker = raw_send(&client, name, Some("blocker"), probe(tag, 1_000_000)).await;
    wait_until_async("the blocker runs", || starts(tag).len() == 1).await;
    let inbox = client.new_inbox();
    let mut answers = client.subscribe(format!("{inbox}.*")).await.unwrap();
    let wire = <held<()> as StepFn>::wire().unwrap();
    let d = digest();
    let send = |x: u64, id: String| {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Pipeline-Call", format!("{id} 600000 {d}").as_str());
        let payload = wire.encode_inputs(&(probe(tag, x),)).unwrap();
        client.publish_with_reply_and_headers(
            format!("pipeline.step.{name}"),
            format!("{inbox}.{x}"),
            headers,
            payload.into(),
        )
    };
    for x in 0..1_000u64 {
        send(x, format!("c.{x}")).await.unwrap();
    }
    client.flush().await.unwrap();
    taken
        .wait_for("the worker took every call", taken_before + 1_001)
        .await;
    let mut order: Vec<u64> = (0..1_000).collect();
    Rng(0x5851_f42d_4c95_7f2d).shuffle(&mut order);
    let cancelled_xs: HashSet<u64> = order[..900].iter().copied().collect();
    let subject = format!("pipeline.cancel.{name}");
    for x in &order[..900] {
        let id = format!("c.{x}");
        client.publish(subject.clone(), id.into()).await.unwrap();
    }
    client.flush().await.unwrap();
    // Each cancelled call should be skipped; if some ids are lost, the
    // count stops short and the guard ends the wait.
    let start = std::time::Instant::now();
    while cancelled.count() < already + 900 && start.elapsed() < GUARD {
        tokio::task::yield_now().await;
    }
    let skipped = cancelled.count() - already;
    send(2_000_000, "last".into()).await.unwrap();
    client.flush().await.unwrap();
    open(tag);
    assert_eq!(raw_answer(&mut blocker).await, Ok(3_000_000));
    let mut answered = HashSet::new();
    while !answered.contains(&2_000_000) {
        let message = tokio::time::timeout(GUARD, answers.next())
            .await
            .expect("an answer")
            .unwrap();
        let x: u64 = message.subject.rsplit('.').next().unwrap().parse().unwrap();
        assert_eq!(wire.decode_output(&message.payload).unwrap(), x * 3);
        assert!(answered.insert(x), "{x} answered twice");
    }
    let ran = starts(tag);
    assert_once(&ran);
    let ran_cancelled: Vec<_> = ran.iter().filter(|x| cancelled_xs.contains(x)).collect();
    let kept: HashSet<u64> = order[900..].iter().copied().collect();
    assert!(
        kept.iter().all(|x| answered.contains(x)),
        "a kept call did not answer"
    );
    assert!(
        ran_cancelled.is_empty(),
        "{} cancelled calls ran ({skipped} of 900 skipped): {ran_cancelled:?}",
        ran_cancelled.len()
    );
    assert_eq!(skipped, 900);
    assert_eq!(ran.len(), 1 + 100 + 1);
}

/// What [`drop_of_a_thousand`] saw.
#[derive(Debug)]
struct Dropped {
    /// Distinct cancellations the NATS server routed (a spy heard them).
    routed: usize,
    /// Waiting calls the worker skipped as cancelled.
    skipped: usize,
    /// Dropped calls that ran.
    ran: Vec<u64>,
}

/// A thousand calls of a new pipeline wait behind both replicas held at
/// gate `tag` (each with a 10-minute deadline); `drops` of them, chosen at
/// random, are dropped at once. Waits until the worker has skipped them
/// all (or the guard ends the wait), opens the gate, and checks that every
/// kept call answers its own value and nothing ran twice.
async fn drop_of_a_thousand(
    nats: &NatsServer,
    name: &str,
    tag: usize,
    seed: u64,
    drops: usize,
) -> Dropped {
    let log = worker_log();
    let spy = async_nats::connect(nats.url()).await.unwrap();
    let mut heard = spy
        .subscribe(format!("pipeline.cancel.{name}"))
        .await
        .unwrap();
    spy.flush().await.unwrap();
    let routed = Arc::new(Mutex::new(HashSet::new()));
    let into = Arc::clone(&routed);
    let spying = tokio::spawn(async move {
        while let Some(m) = heard.next().await {
            into.lock().unwrap().insert(m.payload);
        }
    });
    let p = deploy(nats, name);
    let mut taken = Lines::taken(&log, name);
    let taken_before = taken.count();
    let mut cancelled = Lines::cancelled(&log, name);
    let already = cancelled.count();
    let blockers = [
        spawn_long(&p, tag, 1_000_000),
        spawn_long(&p, tag, 1_000_001),
    ];
    wait_until_async("both replicas run", || starts(tag).len() == 2).await;
    let mut calls: Vec<(u64, Call)> = (0..1_000).map(|x| (x, spawn_long(&p, tag, x))).collect();
    taken
        .wait_for("the worker took a thousand calls", taken_before + 1_002)
        .await;
    Rng(seed).shuffle(&mut calls);
    let victims: Vec<(u64, Call)> = calls.drain(..drops).collect();
    let dropped: HashSet<u64> = victims.iter().map(|(x, _)| *x).collect();
    for (_, call) in &victims {
        call.abort();
    }
    for (_, call) in victims {
        assert!(call.await.unwrap_err().is_cancelled());
    }
    // Each dropped call should be skipped; if some cancellations are
    // lost, the count stops short and the guard ends the wait.
    let start = std::time::Instant::now();
    while cancelled.count() < already + drops && start.elapsed() < GUARD {
        tokio::task::yield_now().await;
    }
    let skipped = cancelled.count() - already;
    open(tag);
    for (x, call) in calls {
        assert_eq!(call.await.unwrap().unwrap(), x * 3, "call {x}");
    }
    for call in blockers {
        call.await.unwrap().unwrap();
    }
    spying.abort();
    let ran = starts(tag);
    assert_once(&ran);
    let routed = routed.lock().unwrap().len();
    Dropped {
        routed,
        skipped,
        ran: ran.into_iter().filter(|x| dropped.contains(x)).collect(),
    }
}

// ---------------------------------------------------------------------------
// Workers leaving while cancellations come
// ---------------------------------------------------------------------------

/// Both replicas held, 40 calls queued, 20 dropped and skipped; the worker
/// is told to leave, and 10 more are dropped while it leaves (each may be
/// heard or not). Once the gate opens every kept call answers its own
/// value, the worker leaves cleanly, the first 20 dropped never ran and
/// nothing ran twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaving_worker_skips_dropped_calls_and_answers_every_kept_one() {
    const TAG: usize = 10;
    let log = worker_log();
    let nats = NatsServer::start();
    let mut worker = Host::start(&nats, &[("t10", 2)], false, &[TAG]);
    let p = deploy(&nats, "t10");
    let mut taken = Lines::taken(&log, "t10");
    let mut cancelled = Lines::cancelled(&log, "t10");
    let blockers = [spawn_call(&p, TAG, 1_000), spawn_call(&p, TAG, 1_001)];
    wait_until_async("both replicas run", || starts(TAG).len() == 2).await;
    let calls: Vec<(u64, Call)> = (0..40).map(|x| (x, spawn_call(&p, TAG, x))).collect();
    taken.wait_for("the worker took every call", 42).await;
    let (mut kept, mut first, mut late) = (Vec::new(), Vec::new(), Vec::new());
    for (x, call) in calls {
        match x % 4 {
            0 | 2 => {
                call.abort();
                first.push(x);
            }
            1 => late.push((x, call)),
            _ => kept.push((x, call)),
        }
    }
    cancelled.wait_for("the worker skipped 20", 20).await;
    worker.leave();
    for (_, call) in &late {
        call.abort();
    }
    for (_, call) in late {
        assert!(call.await.unwrap_err().is_cancelled());
    }
    open(TAG);
    for (x, call) in kept {
        assert_eq!(call.await.unwrap().unwrap(), x * 3, "call {x}");
    }
    for call in blockers {
        call.await.unwrap().unwrap();
    }
    let left = tokio::task::spawn_blocking(move || worker.join())
        .await
        .unwrap();
    assert!(left.is_ok(), "{left:?}");
    let ran = starts(TAG);
    assert_once(&ran);
    let first_ran: Vec<_> = ran.iter().filter(|x| first.contains(x)).collect();
    assert!(first_ran.is_empty(), "dropped calls ran: {first_ran:?}");
    assert!((12..=22).contains(&ran.len()), "{ran:?}");
    assert_eq!(ran.len() - 12, 30 - cancelled.count(), "{ran:?}");
}

/// A worker process (two `work` replicas busy, 30 calls queued) is sent
/// SIGTERM while a client floods `pipeline.cancel.work` with ids no call
/// has and ten queued calls are dropped: it drains and exits cleanly
/// (status 0, not the "connection lost" 1), every kept call answers its
/// own id, and its count of calls run matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_told_to_stop_amid_a_cancellation_flood_drains_and_exits_cleanly() {
    let nats = NatsServer::start();
    let worker = WorkerProcess::start_with(&nats, "work", true);
    let p: Pipeline<Job, Done> = work(Input::<Job>::new())
        .deploy_with(DeployOptions::new().remote("work", &nats.url()))
        .unwrap();
    let call = |id: u64, work_ms: u64| {
        let p = p.clone();
        tokio::spawn(async move { p.call_async(Job { id, work_ms }).await })
    };
    let busy = [call(0, 1_500), call(1, 1_500)];
    let worker = tokio::task::spawn_blocking(move || {
        let mut worker = worker;
        worker.wait_started(&[0, 1]);
        worker
    })
    .await
    .unwrap();
    let queued: Vec<_> = (2..32).map(|id| (id, call(id, 5))).collect();
    let in_flight = || support::metric(&p.metrics(), "work").in_flight;
    wait_until_async("32 calls in flight", || in_flight() == 32).await;
    let flood = {
        let client = async_nats::connect(nats.url()).await.unwrap();
        tokio::spawn(async move {
            for i in 0..20_000u64 {
                let id = format!("flood.{i}");
                client
                    .publish("pipeline.cancel.work", id.into())
                    .await
                    .unwrap();
                if i % 256 == 255 {
                    client.flush().await.unwrap();
                }
            }
            client.flush().await.unwrap();
        })
    };
    let (mut kept, mut dropped) = (Vec::new(), Vec::new());
    for (id, c) in queued {
        if id % 3 == 0 {
            c.abort();
            dropped.push(c);
        } else {
            kept.push((id, c));
        }
    }
    let stopping = tokio::task::spawn_blocking(move || worker.terminate());
    for c in dropped {
        assert!(c.await.unwrap_err().is_cancelled());
    }
    for (id, c) in kept {
        let r = c.await.unwrap();
        assert_eq!(r.as_ref().map(|d| d.id).ok(), Some(id), "{r:?}");
    }
    for c in busy {
        c.await.unwrap().unwrap();
    }
    let executed = stopping.await.unwrap();
    flood.await.unwrap();
    assert!((22..=32).contains(&executed), "{executed} calls ran");
}
