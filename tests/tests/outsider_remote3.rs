//! A third outside review of remote steps, aimed at the hand-written
//! `Pipeline-Call` header, the worker's header scan and early-cancellation
//! book, and remote futures in the call's arena: hostile headers, early
//! and late cancellations, many calls with deadlines, a killed worker, and
//! a chain of remote steps overflowing one call's arena.
#![cfg(feature = "remote")]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use pipeline_core::prelude::*;
use pipeline_core::StepFn;
use pipeline_examples::remote_steps::{inc, work, Done, Job};
use support::nats::NatsServer;
use support::worker::{InProcess, WorkerProcess};
use support::{metric, wait_until_async, Capture, Lines, GUARD};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const STEP: &str = "pipeline.step.work";

fn job(id: u64, work_ms: u64) -> Job {
    Job { id, work_ms }
}

fn remote_work(nats: &NatsServer) -> Pipeline<Job, Done> {
    work(Input::<Job>::new())
        .deploy_with(DeployOptions::new().remote("work", &nats.url()))
        .unwrap()
}

fn digest() -> String {
    <work<()> as StepFn>::wire().unwrap().fingerprint_digest()
}

fn work_payload(id: u64) -> Vec<u8> {
    <work<()> as StepFn>::wire()
        .unwrap()
        .encode_inputs(&(job(id, 0),))
        .unwrap()
}

/// A plain NATS request for `work(id)`, with `Pipeline-Call: call` when
/// given: the answer's id, or its error code and text.
async fn raw_call(client: &async_nats::Client, call: Option<&str>, id: u64) -> Result<u64, String> {
    let mut request = async_nats::Request::new().payload(work_payload(id).into());
    if let Some(call) = call {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Pipeline-Call", call);
        request = request.headers(headers);
    }
    let message = client.send_request(STEP, request).await.unwrap();
    let get = |key| message.headers.as_ref()?.get(key).map(|v| v.to_string());
    match get(async_nats::service::NATS_SERVICE_ERROR_CODE) {
        Some(code) => Err(format!(
            "{code}: {:?}",
            get(async_nats::service::NATS_SERVICE_ERROR)
        )),
        None => Ok(<work<()> as StepFn>::wire()
            .unwrap()
            .decode_output(&message.payload)
            .unwrap()
            .id),
    }
}

/// Publishes, over a raw NATS connection, a message whose header lines
/// are `headers` as given (async-nats refuses a `\r` or `\n` in a value),
/// with `reply`; returns once the server has taken it.
fn raw_hpub(nats: &NatsServer, subject: &str, reply: &str, headers: &str, payload: &[u8]) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", nats.port())).unwrap();
    stream.set_read_timeout(Some(GUARD)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("INFO"), "{line}");
    let block = format!("NATS/1.0\r\n{headers}\r\n\r\n");
    let mut frame = format!(
        "CONNECT {{\"verbose\":false,\"headers\":true,\"protocol\":1}}\r\n\
         HPUB {subject} {reply} {} {}\r\n{block}",
        block.len(),
        block.len() + payload.len()
    )
    .into_bytes();
    frame.extend_from_slice(payload);
    frame.extend_from_slice(b"\r\nPING\r\n");
    std::io::Write::write_all(&mut stream, &frame).unwrap();
    loop {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "closed");
        assert!(!line.starts_with("-ERR"), "{line}");
        if line.starts_with("PONG") {
            return;
        }
    }
}

/// A `remote_worker` serving `work`, printing `start ID` for each call it
/// starts; every start is kept (the support worker only waits for some).
struct Traced {
    child: Child,
    lines: mpsc::Receiver<String>,
    starts: Vec<u64>,
}

impl Traced {
    /// With each replica's queue bounded at `bound`.
    fn start(nats: &NatsServer, bound: usize) -> Traced {
        let mut child = Command::new(env!("CARGO_BIN_EXE_remote_worker"))
            .args([nats.url(), "work".into(), bound.to_string()])
            .env("REMOTE_WORKER_TRACE", "1")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start remote_worker");
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            out.lines()
                .map_while(Result::ok)
                .try_for_each(|l| tx.send(l))
        });
        let mut worker = Traced {
            child,
            lines,
            starts: Vec::new(),
        };
        assert_eq!(worker.next(), "ready");
        worker
    }

    fn next(&mut self) -> String {
        let line = self.lines.recv_timeout(GUARD).expect("the worker exited");
        if let Some(id) = line.strip_prefix("start ") {
            self.starts.push(id.parse().unwrap());
        }
        line
    }

    fn wait_started(&mut self, ids: &[u64]) {
        while !ids.iter().all(|id| self.starts.contains(id)) {
            self.next();
        }
    }

    /// SIGTERM; every call it started, and its own count of them.
    fn terminate(mut self) -> (Vec<u64>, u64) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let executed = loop {
            if let Some(n) = self.next().strip_prefix("executed ") {
                break n.parse().unwrap();
            }
        };
        assert!(self.child.wait().unwrap().success());
        (std::mem::take(&mut self.starts), executed)
    }
}

impl Drop for Traced {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts no id in `starts` twice.
fn assert_once(starts: &[u64]) {
    let mut sorted = starts.to_vec();
    sorted.sort_unstable();
    let twice: Vec<_> = sorted.windows(2).filter(|w| w[0] == w[1]).collect();
    assert!(twice.is_empty(), "started twice: {twice:?}");
}

/// The in-process workers' tracing (process-wide, installed once): the
/// worker's `remote_step` span as it takes each request, and its debug
/// event for each call it skips because its caller cancelled it; and the
/// pipelines' remote-step events (a connection made again).
fn worker_log() -> Capture {
    support::log_capture(
        "pipeline_core::remote::worker=debug,pipeline_core::runtime::remote::client=info",
    )
}

// ---------------------------------------------------------------------------
// Hostile `Pipeline-Call` headers, straight to a worker
// ---------------------------------------------------------------------------

/// Header blocks `outsider_remote2.rs` does not try, sent as they are
/// (over a raw connection: async-nats will not send some). Call ids of
/// exactly 64 bytes (ASCII or 4-byte characters) run, 65 or 68 bytes are
/// 400 naming the bound; a tab where a space belongs, an empty call id or
/// timeout are 400; a `+`, leading zeros, a trailing `\r` or tab (NATS
/// trims values) and a value folded onto a second line run. The header
/// twice: the first value counts. Another case of the name is another
/// header (a plain request: it runs). A 100 KB request id runs. Requests
/// with no reply subject, valid or not, disturb nothing. Only what runs
/// runs, each once, and the worker serves a pipeline afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_call_headers_each_get_a_clear_answer_and_the_worker_goes_on() {
    let nats = NatsServer::start();
    let worker = WorkerProcess::start(&nats, "work");
    let client = async_nats::connect(nats.url()).await.unwrap();
    let inbox = client.new_inbox();
    let mut answers = client.subscribe(inbox.clone()).await.unwrap();
    client.flush().await.unwrap();
    let d = digest();
    let pc = |v: &str| format!("Pipeline-Call: {v} 5000 {d}");
    let bound = "a call id of at most 64 bytes";
    let shape = "`<call id> <timeout ms> <digest>`";
    let rid = format!("Pipeline-Request-Id: {}", "r".repeat(100_000));
    let cases = [
        (pc(&"a".repeat(64)), None),
        (pc(&"a".repeat(65)), Some(bound)),
        (pc(&"\u{1f600}".repeat(16)), None),
        (pc(&"\u{1f600}".repeat(17)), Some(bound)),
        (pc(&"\u{e9}".repeat(32)), None),
        (format!("Pipeline-Call: tab\t5000 {d}"), Some(shape)),
        (format!("Pipeline-Call: id 5000\t{d}"), Some(shape)),
        (format!("Pipeline-Call:  5000 {d}"), Some(shape)),
        (format!("Pipeline-Call: id  {d}"), Some(shape)),
        (format!("Pipeline-Call: id {d}"), Some(shape)),
        (format!("Pipeline-Call: plus +5000 {d}"), None),
        (format!("Pipeline-Call: zeros 00000000005000 {d}"), None),
        (format!("Pipeline-Call: cr 5000 {d}\r"), None),
        (format!("Pipeline-Call: tab 5000 {d}\t"), None),
        (format!("Pipeline-Call: fold\r\n 5000 {d}"), None),
        (format!("Pipeline-Call: nul\0 5000 {d}"), None),
        (format!("{}\r\nPipeline-Call: junk", pc("twice")), None),
        (format!("Pipeline-Call: j\r\n{}", pc("twice")), Some(shape)),
        ("pipeline-call: junk".into(), None),
        ("PIPELINE-CALL: junk 0 x".into(), None),
        (format!("{}\r\npipeline-call: junk", pc("mixed")), None),
        (format!("{rid}\r\n{}", pc("rid")), None),
    ];
    let mut ran = 0;
    for (i, (block, refused)) in cases.iter().enumerate() {
        raw_hpub(&nats, STEP, &inbox, block, &work_payload(i as u64));
        let answer = tokio::time::timeout(GUARD, answers.next())
            .await
            .expect("an answer")
            .unwrap();
        let get = |key| answer.headers.as_ref()?.get(key).map(|v| v.to_string());
        let code = get(async_nats::service::NATS_SERVICE_ERROR_CODE);
        let text = get(async_nats::service::NATS_SERVICE_ERROR).unwrap_or_default();
        let short: String = block.chars().take(120).collect();
        match refused {
            Some(says) => {
                assert_eq!(code.as_deref(), Some("400"), "{short:?}: {answer:?}");
                assert!(text.contains(says), "{short:?}: {text}");
            }
            None => {
                assert_eq!(code, None, "{short:?}: {text}");
                let wire = <work<()> as StepFn>::wire().unwrap();
                assert_eq!(wire.decode_output(&answer.payload).unwrap().id, i as u64);
                ran += 1;
            }
        }
    }
    // No reply subject: a valid call runs (its answer goes nowhere), a
    // malformed one or garbage does not.
    let noreply = [
        (format!("noreply 5000 {d}"), work_payload(500)),
        ("junk".into(), work_payload(501)),
        (format!("garbage 5000 {d}"), vec![0xff; 9]),
    ];
    for (value, payload) in noreply {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Pipeline-Call", value.as_str());
        let sent = client.publish_with_headers(STEP, headers, payload.into());
        sent.await.unwrap();
    }
    client.flush().await.unwrap();
    let p = remote_work(&nats);
    for i in 0..20 {
        assert_eq!(p.call_async(job(1_000 + i, 0)).await.unwrap().id, 1_000 + i);
    }
    assert_eq!(worker.terminate(), ran + 1 + 20, "only what is valid ran");
}

/// A bare `\r` in a header value stops async-nats' reader for good (0.51
/// panics on it, in its own task, where no code above it can catch it).
/// `pipeline.cancel.<step>` is heard by every worker of the step: each
/// worker whose connection dies so stops with an error (its supervisor
/// starts it again) rather than staying up unreachable, and a new worker
/// then serves the same pipeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_value_with_a_bare_cr_stops_the_worker_with_an_error() {
    let nats = NatsServer::start();
    let worker = WorkerProcess::start(&nats, "work");
    let p = remote_work(&nats);
    assert_eq!(p.call_async(job(0, 0)).await.unwrap().id, 0);
    raw_hpub(
        &nats,
        "pipeline.cancel.work",
        "x",
        "Pipeline-Call: x\r1 d",
        b"id",
    );
    // It stops by itself (`Worker::run` fails), having run the one call.
    let executed = tokio::task::spawn_blocking(move || worker.wait_stopped())
        .await
        .unwrap();
    assert_eq!(executed, 1);
    let _again = WorkerProcess::start(&nats, "work");
    let r = p
        .call_async_timeout(job(1, 0), Duration::from_secs(5))
        .await;
    assert_eq!(r.as_ref().map(|d| d.id).ok(), Some(1), "{r:?}");
}

/// The same message on `pipeline.workers.<step>`, which every pipeline
/// using the step subscribes to, stops the pipeline's reader the same way:
/// the pipeline connects again by itself (a tracing event says so), and
/// its calls are answered again with the worker it had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_value_with_a_bare_cr_and_the_pipeline_connects_again() {
    let log = worker_log();
    let nats = NatsServer::start();
    let _worker = WorkerProcess::start(&nats, "work");
    let p = remote_work(&nats);
    assert_eq!(p.call_async(job(0, 0)).await.unwrap().id, 0);
    let mut again = Lines::new(&log, &["connected to the NATS server again", "work"]);
    let before = again.count();
    raw_hpub(
        &nats,
        "pipeline.workers.work",
        "x",
        "Pipeline-Call: x\ry",
        b"{}",
    );
    wait_until_async("the pipeline connected again", || again.count() > before).await;
    let r = p
        .call_async_timeout(job(1, 0), Duration::from_secs(5))
        .await;
    assert_eq!(r.as_ref().map(|d| d.id).ok(), Some(1), "{r:?}");
}

// ---------------------------------------------------------------------------
// Cancellations
// ---------------------------------------------------------------------------

/// 3,000 cancellations of calls that never existed leave every real call
/// running; an early cancellation skips its call once and is spent: a
/// second call with the same id runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ghost_cancellations_skip_nothing_and_an_early_one_is_spent_once() {
    let nats = NatsServer::start();
    let worker = WorkerProcess::start(&nats, "work");
    let client = async_nats::connect(nats.url()).await.unwrap();
    let ids = (0..3_000).map(|i| format!("ghost{:05}.{i}", i * 7));
    for id in ids.chain(["spent.1".to_string()]) {
        client
            .publish("pipeline.cancel.work", id.into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    // A plain request on the same connection: the worker has read the
    // cancellations before it.
    assert_eq!(raw_call(&client, None, 1).await, Ok(1));
    let p = remote_work(&nats);
    let results: Vec<_> = futures::stream::iter(0..500u64)
        .map(|i| {
            let p = &p;
            async move { (i, p.call_async(job(i, 0)).await) }
        })
        .buffer_unordered(50)
        .collect()
        .await;
    for (i, r) in &results {
        assert_eq!(r.as_ref().map(|d| d.id).ok(), Some(*i), "{r:?}");
    }
    let call = format!("spent.1 5000 {}", digest());
    let inbox = client.new_inbox();
    let mut skipped = client.subscribe(inbox.clone()).await.unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Pipeline-Call", call.as_str());
    let payload = work_payload(9_001).into();
    client
        .publish_with_reply_and_headers(STEP, inbox, headers, payload)
        .await
        .unwrap();
    let again = raw_call(&client, Some(&call), 9_002).await;
    assert_eq!(again, Ok(9_002), "the cancellation was spent");
    let answer = skipped.next().now_or_never();
    assert!(answer.is_none(), "the cancelled call answered: {answer:?}");
    assert_eq!(worker.terminate(), 502, "the cancelled call never ran");
}

static GATE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(0);
static GATED_STARTS: Mutex<Vec<u64>> = Mutex::new(Vec::new());

/// Waits at [`GATE`], then `3 x`.
#[step(mode = "actors", replicas = 2, remote)]
async fn gated(x: u64) -> u64 {
    GATED_STARTS.lock().unwrap().push(x);
    GATE.acquire().await.expect("gate").forget();
    x * 3
}

/// Both replicas held; 300 calls queued at the worker, two thirds of them
/// dropped by their callers (task aborted, or lost a `select!`) once the
/// worker has taken them. The worker hears every cancellation; once the
/// gate opens only the kept calls run, each once, each answering its own
/// value, and the pipeline's counters add up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_dropped_while_queued_never_run_and_kept_ones_answer_once() {
    let log = worker_log();
    let nats = NatsServer::start();
    let _worker = InProcess::start(
        nats.url(),
        Box::new(|w| Box::pin(async move { w.serve::<gated<()>>("gated", ()).await })),
    );
    let p = gated(Input::<u64>::new())
        .deploy_with(DeployOptions::new().remote("gated", &nats.url()))
        .unwrap();
    let call = |x: u64| {
        let p = p.clone();
        tokio::spawn(async move { p.call_async(x).await })
    };
    let blockers = [call(1_000_000), call(1_000_001)];
    let started = || GATED_STARTS.lock().unwrap().len();
    wait_until_async("both replicas run", || started() == 2).await;
    let (drop_now, dropped) = tokio::sync::watch::channel(false);
    let (mut kept, mut aborted, mut selected) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..300u64 {
        match i % 3 {
            0 => kept.push((i, call(i))),
            1 => aborted.push(call(i)),
            _ => {
                let (p, mut dropped) = (p.clone(), dropped.clone());
                selected.push(tokio::spawn(async move {
                    tokio::select! {
                        r = p.call_async(i) => Some(r),
                        _ = dropped.wait_for(|d| *d) => None,
                    }
                }));
            }
        }
    }
    let mut taken = Lines::new(&log, &["remote_step{step=\"gated\"", "new"]);
    wait_until_async("the worker took every call", || taken.count() == 302).await;
    for call in &aborted {
        call.abort();
    }
    drop_now.send(true).unwrap();
    for call in aborted {
        assert!(call.await.unwrap_err().is_cancelled());
    }
    for call in selected {
        assert!(call.await.unwrap().is_none(), "answered with the gate shut");
    }
    let mut cancelled = Lines::new(&log, &["gated", "the caller cancelled the call"]);
    wait_until_async("the worker heard 200 cancellations", || {
        cancelled.count() == 200
    })
    .await;
    GATE.add_permits(10_000);
    for (i, call) in kept {
        assert_eq!(call.await.unwrap().unwrap(), i * 3);
    }
    for call in blockers {
        call.await.unwrap().unwrap();
    }
    let starts = GATED_STARTS.lock().unwrap().clone();
    assert_once(&starts);
    let dropped_ran: Vec<_> = starts.iter().filter(|&&x| x < 300 && x % 3 != 0).collect();
    assert!(dropped_ran.is_empty(), "dropped calls ran: {dropped_ran:?}");
    assert_eq!(starts.len(), 2 + 100);
    let m = metric(&p.metrics(), "gated").clone();
    assert_eq!((m.requests, m.in_flight, m.errors), (302, 0, 0), "{m:?}");
}

// ---------------------------------------------------------------------------
// Load, deadlines, a killed worker
// ---------------------------------------------------------------------------

/// 1,200 calls in flight at once from six tasks over two workers, each
/// with a deadline: each answers its own id, each ran once. Then, with
/// one worker left and both its replicas held for 3 s, 200 calls with a
/// 300 ms deadline queue there: each is `DeadlineExceeded`, none runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_hundred_calls_in_flight_answer_once_and_late_queued_ones_never_run() {
    let nats = NatsServer::start();
    let mut a = Traced::start(&nats, 1_000);
    let b = Traced::start(&nats, 1_000);
    let p = remote_work(&nats);
    let tasks: Vec<_> = (0..6u64)
        .map(|t| {
            let p = p.clone();
            tokio::spawn(async move {
                let calls = (0..200u64).map(|k| {
                    let (p, id) = (&p, t * 1_000 + k);
                    async move {
                        let r = p.call_async_timeout(job(id, 1), Duration::from_secs(60));
                        (id, r.await)
                    }
                });
                futures::future::join_all(calls).await
            })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        for (id, r) in task.await.unwrap() {
            assert_eq!(r.as_ref().map(|d| d.id).ok(), Some(id), "{r:?}");
            ids.push(id);
        }
    }
    let (b_starts, b_ran) = b.terminate();
    assert_eq!(b_starts.len() as u64, b_ran);
    // One worker now (b announced it left): hold both its replicas.
    let busy: Vec<_> = [7_000, 7_001]
        .map(|id| {
            let p = p.clone();
            tokio::spawn(async move { p.call_async(job(id, 3_000)).await })
        })
        .into();
    a.wait_started(&[7_000, 7_001]);
    let hasty = |k| p.call_async_timeout(job(8_000 + k, 0), Duration::from_millis(300));
    for r in futures::future::join_all((0..200u64).map(hasty)).await {
        assert!(
            matches!(r, Err(PipelineError::DeadlineExceeded { .. })),
            "{r:?}"
        );
    }
    for call in busy {
        call.await.unwrap().unwrap();
    }
    let (a_starts, a_ran) = a.terminate();
    assert_eq!(a_starts.len() as u64, a_ran);
    let all: Vec<u64> = a_starts.iter().chain(&b_starts).copied().collect();
    assert_once(&all);
    let late_ran: Vec<_> = all.iter().filter(|&&id| id >= 8_000).collect();
    assert!(late_ran.is_empty(), "ran past their deadline: {late_ran:?}");
    assert_eq!(all.len(), ids.len() + 2, "each call ran once");
}

/// 500 calls in flight at one worker (two running, the rest queued), each
/// with a 5 s deadline; the worker is killed. Each call fails with
/// `DeadlineExceeded` (or `Unavailable`, if it was still on its way)
/// within its deadline; none answers; a new worker takes the next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_under_500_calls_fails_each_within_its_deadline() {
    let nats = NatsServer::start();
    let mut worker = Traced::start(&nats, 1_000);
    let p = remote_work(&nats);
    let deadline = Duration::from_secs(5);
    let call = |id: u64, work_ms: u64| {
        let p = p.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let r = p.call_async_timeout(job(id, work_ms), deadline).await;
            (id, r, start.elapsed())
        })
    };
    let mut calls = vec![call(0, 600_000), call(1, 600_000)];
    worker.wait_started(&[0, 1]);
    calls.extend((2..500).map(|id| call(id, 0)));
    let in_flight = || metric(&p.metrics(), "work").in_flight;
    wait_until_async("500 calls in flight", || in_flight() == 500).await;
    drop(worker);
    for call in calls {
        let (id, r, took) = call.await.unwrap();
        use PipelineError::{DeadlineExceeded, Unavailable};
        let clear = matches!(r, Err(DeadlineExceeded { .. } | Unavailable { .. }));
        assert!(clear, "call {id}: {r:?}");
        let late = took.saturating_sub(deadline);
        assert!(late < Duration::from_secs(2), "call {id} took {took:?}");
    }
    let fresh = Traced::start(&nats, 1_000);
    let done = p.call_async_timeout(job(600, 0), deadline).await.unwrap();
    assert_eq!((done.id, done.pid), (600, fresh.child.id()));
}

// ---------------------------------------------------------------------------
// Remote futures in the call's arena
// ---------------------------------------------------------------------------

/// Six remote steps in a chain: their futures (about 1.5 KiB each) fill
/// the call's 4 KiB block and spill to the heap. 1,500 calls, 64 at a
/// time, a third dropped after 0 to 3 ms (mid-chain, some placed in the
/// block, some on the heap): every kept call answers `x + 6`, nothing
/// crashes, the counters add up along the chain, and the worker serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_remote_steps_past_the_arena_answers_right_when_dropped_midway() {
    let nats = NatsServer::start();
    let names = ["inc", "inc_1", "inc_2", "inc_3", "inc_4", "inc_5"];
    let _worker = InProcess::start(
        nats.url(),
        Box::new(move |w| {
            Box::pin(async move {
                for name in names {
                    w.serve::<inc<()>>(name, ()).await?;
                }
                Ok(())
            })
        }),
    );
    let mut node = inc(Input::<u64>::new());
    for _ in 1..names.len() {
        node = inc(node);
    }
    let options = names
        .iter()
        .fold(DeployOptions::new(), |o, n| o.remote(n, &nats.url()));
    let p = node.deploy_with(options).unwrap();
    let outcomes: Vec<_> = futures::stream::iter(0..1_500u64)
        .map(|x| {
            let p = &p;
            async move {
                let call = p.call_async(x);
                let r = if x % 3 == 0 {
                    let budget = Duration::from_micros(1_000 * (x % 4));
                    tokio::time::timeout(budget, call).await.ok()
                } else {
                    Some(call.await)
                };
                (x, r)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut dropped = 0;
    for (x, r) in &outcomes {
        match r {
            Some(r) => assert_eq!(r.as_ref().ok(), Some(&(x + 6)), "{x}: {r:?}"),
            None => dropped += 1,
        }
    }
    assert!(dropped > 0, "some calls were dropped midway");
    let answered = 1_500 - dropped;
    let metrics = p.metrics();
    let mut previous = 1_500;
    for name in names {
        let m = metric(&metrics, name);
        assert_eq!((m.in_flight, m.errors), (0, 0), "{m:?}");
        assert!(m.requests <= previous, "{name}: {m:?} after {previous}");
        previous = m.requests;
    }
    assert!(previous >= answered, "the last step saw {previous}");
    for x in 0..100 {
        assert_eq!(p.call_async(x).await.unwrap(), x + 6);
    }
}
