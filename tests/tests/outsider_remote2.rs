//! A second outside review of remote steps (see `remote_outsider.rs` for
//! the first): hostile and unusual-but-plausible traffic straight to a
//! worker (odd `Pipeline-Call` headers, undecodable payloads, malformed
//! NATS header blocks, cancellation floods), steps whose wire types
//! misbehave, answers at and over the server's `max_payload`, workers
//! joining, dying and mismatching around a deployed pipeline, and a
//! pipeline dropped with calls in flight.
//!
//! Each test starts its own nats-server on a free loopback port; workers
//! are `remote_worker` processes or run on a thread of this process.
//! Four faults found here are fixed, each with its test: a panic decoding
//! a call's input killed the worker's request loop; a panic encoding its
//! answer left the call unanswered until its deadline; early
//! cancellations kept call ids of any size; a wire type's panic on the
//! pipeline's side unwound into the caller. (`WireError::Panicked`, and a
//! call id of at most 64 bytes.)
#![cfg(feature = "remote")]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use futures::StreamExt;
use pipeline_core::prelude::*;
use pipeline_core::StepFn;
use pipeline_examples::remote_steps::{bytes_sum, checked, work, ByteBuf, Done, Job};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use support::nats::NatsServer;
use support::worker::{InProcess, WorkerProcess};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn job(id: u64, work_ms: u64) -> Job {
    Job { id, work_ms }
}

fn remote_work(nats: &NatsServer) -> Pipeline<Job, Done> {
    work(Input::<Job>::new())
        .deploy_with(DeployOptions::new().remote("work", &nats.url()))
        .unwrap()
}

/// The digest a pipeline sends for step `S`.
fn digest<S: StepFn>() -> String {
    S::wire().unwrap().fingerprint_digest()
}

/// `work`'s inputs, encoded.
fn work_payload(id: u64, work_ms: u64) -> Vec<u8> {
    <work<()> as StepFn>::wire()
        .unwrap()
        .encode_inputs(&(job(id, work_ms),))
        .unwrap()
}

/// How long a raw request waits for an answer that should come.
const ANSWER_GUARD: Duration = Duration::from_secs(20);

/// A worker's answer to a raw request: its service error code and text,
/// if any, and its payload.
#[derive(Debug)]
struct Answer {
    code: Option<String>,
    text: Option<String>,
    payload: Vec<u8>,
}

impl Answer {
    fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }
}

/// A request to `subject` as a plain NATS client sends it, with
/// `Pipeline-Call: call` when given.
async fn raw_request(
    client: &async_nats::Client,
    subject: &str,
    call: Option<&str>,
    payload: Vec<u8>,
    wait: Duration,
) -> Result<Answer, async_nats::RequestError> {
    let mut request = async_nats::Request::new()
        .payload(payload.into())
        .timeout(Some(wait));
    if let Some(call) = call {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Pipeline-Call", call);
        request = request.headers(headers);
    }
    let message = client.send_request(subject.to_string(), request).await?;
    let get = |key| {
        message
            .headers
            .as_ref()
            .and_then(|h| h.get(key))
            .map(|v| v.as_str().to_string())
    };
    Ok(Answer {
        code: get(async_nats::service::NATS_SERVICE_ERROR_CODE),
        text: get(async_nats::service::NATS_SERVICE_ERROR),
        payload: message.payload.to_vec(),
    })
}

/// Every worker's `$SRV.STATS` answer for `service`, `expected` of them.
async fn stats(
    client: &async_nats::Client,
    service: &str,
    expected: usize,
) -> Vec<serde_json::Value> {
    let inbox = client.new_inbox();
    let mut answers = client.subscribe(inbox.clone()).await.unwrap();
    client
        .publish_with_reply(format!("$SRV.STATS.{service}"), inbox, "".into())
        .await
        .unwrap();
    let mut all = Vec::new();
    while all.len() < expected {
        let message = tokio::time::timeout(ANSWER_GUARD, answers.next())
            .await
            .expect("a STATS answer")
            .unwrap();
        all.push(serde_json::from_slice(&message.payload).unwrap());
    }
    all
}

/// A STATS answer's totals over its endpoints: (requests, errors).
fn totals(stats: &serde_json::Value) -> (u64, u64) {
    let endpoints = stats["endpoints"].as_array().unwrap();
    let sum = |key: &str| endpoints.iter().map(|e| e[key].as_u64().unwrap()).sum();
    (sum("num_requests"), sum("num_errors"))
}

/// A raw TCP connection speaking the NATS protocol, for messages
/// async-nats will not build (header blocks that are not UTF-8 or lack a
/// `name: value` shape). The server forwards them as they are.
struct RawTcp {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl RawTcp {
    fn connect(nats: &NatsServer) -> RawTcp {
        let stream = TcpStream::connect(("127.0.0.1", nats.port())).unwrap();
        stream.set_read_timeout(Some(ANSWER_GUARD)).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.starts_with("INFO"), "{line}");
        let mut raw = RawTcp { stream, reader };
        raw.send(
            b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\
              \"no_responders\":true,\"protocol\":1}\r\n",
        );
        raw.ping();
        raw
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// PING, then waits for the PONG: the server has taken what came before.
    fn ping(&mut self) {
        self.send(b"PING\r\n");
        loop {
            let mut line = String::new();
            assert!(self.reader.read_line(&mut line).unwrap() > 0, "closed");
            assert!(!line.starts_with("-ERR"), "{line}");
            if line.starts_with("PONG") {
                return;
            }
        }
    }

    /// `HPUB` with `headers` as the raw header block (its final blank line
    /// is added).
    fn hpub(&mut self, subject: &str, reply: Option<&str>, headers: &[u8], payload: &[u8]) {
        let mut block = headers.to_vec();
        block.extend_from_slice(b"\r\n\r\n");
        let reply = reply.map(|r| format!("{r} ")).unwrap_or_default();
        let mut frame = format!(
            "HPUB {subject} {reply}{} {}\r\n",
            block.len(),
            block.len() + payload.len()
        )
        .into_bytes();
        frame.extend_from_slice(&block);
        frame.extend_from_slice(payload);
        frame.extend_from_slice(b"\r\n");
        self.send(&frame);
        self.ping();
    }
}

// ---------------------------------------------------------------------------
// Steps of this file (served by in-process workers)
// ---------------------------------------------------------------------------

/// A value whose serde impls misbehave on chosen values, as a type with a
/// validating constructor that asserts (rather than erroring) does:
/// decoding `13` panics, encoding `1000` panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Touchy(u64);

impl Serialize for Touchy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        assert!(self.0 != 1000, "Touchy cannot encode 1000");
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Touchy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        assert!(n != 13, "Touchy cannot decode 13");
        Ok(Touchy(n))
    }
}

/// `x + 1`.
#[step(mode = "actors", remote)]
fn touchy_next(x: Touchy) -> Touchy {
    Touchy(x.0 + 1)
}

/// `n` bytes of `7`.
#[step(mode = "actors", remote)]
fn blob(n: u64) -> ByteBuf {
    ByteBuf::from(vec![7u8; n as usize])
}

fn touchy_worker(url: String) -> InProcess {
    InProcess::start(
        url,
        Box::new(|w| Box::pin(async move { w.serve::<touchy_next<()>>("touchy_next", ()).await })),
    )
}

fn touchy_pipeline(nats: &NatsServer) -> Pipeline<Touchy, Touchy> {
    touchy_next(Input::<Touchy>::new())
        .deploy_with(DeployOptions::new().remote("touchy_next", &nats.url()))
        .unwrap()
}

// ---------------------------------------------------------------------------
// Odd `Pipeline-Call` headers and payloads, straight to a worker
// ---------------------------------------------------------------------------

/// `Pipeline-Call` values beyond those `remote.rs` tries. Refused: an
/// empty value, doubled or tab separators, a negative, overflowing or
/// non-ASCII-digit timeout (400, naming the expected shape); a digest that
/// differs in any way, even in case (409, naming both digests and the
/// worker's types); a zero budget (504). Run: the largest u64 budget, a
/// non-ASCII call id, and (NATS trims header values) surrounding spaces.
/// Only those run, and the worker serves a real pipeline afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_call_headers_are_refused_with_the_right_code_and_never_run() {
    let nats = NatsServer::start();
    let worker = WorkerProcess::start(&nats, "work");
    let client = async_nats::connect(nats.url()).await.unwrap();
    let d = digest::<work<()>>();
    let shape = "`<call id> <timeout ms> <digest>`";
    let cases: Vec<(String, Option<&str>, &str)> = vec![
        (String::new(), Some("400"), shape),
        (" ".into(), Some("400"), shape),
        (format!("id  10 {d}"), Some("400"), shape),
        (format!("id\t10\t{d}"), Some("400"), shape),
        (format!("id -1 {d}"), Some("400"), shape),
        (format!("id 10.5 {d}"), Some("400"), shape),
        (format!("id 1e3 {d}"), Some("400"), shape),
        (format!("id 18446744073709551616 {d}"), Some("400"), shape),
        (format!("id \u{661}\u{660} {d}"), Some("400"), shape),
        (format!("id 10 {d} {d}"), Some("400"), shape),
        ("id 10 0000000000000000".into(), Some("409"), &d),
        (
            format!("id 10 {}", d.to_uppercase()),
            Some("409"),
            "the pipeline's differs",
        ),
        (format!("id 10 {d}0"), Some("409"), "remote_steps::Job"),
        (format!("id 0 {d}"), Some("504"), "before it started"),
        // These run.
        (format!("id 18446744073709551615 {d}"), None, ""),
        (format!("\u{e9}t\u{e9}-\u{1f600} 5000 {d}"), None, ""),
        (format!(" spaced 5000 {d} "), None, ""),
    ];
    let mut ran = 0;
    for (i, (header, code, says)) in cases.iter().enumerate() {
        let answer = raw_request(
            &client,
            "pipeline.step.work",
            Some(header),
            work_payload(i as u64, 0),
            ANSWER_GUARD,
        )
        .await
        .unwrap_or_else(|e| panic!("{header:?}: no answer: {e}"));
        assert_eq!(answer.code(), *code, "{header:?}: {answer:?}");
        match code {
            Some(_) => {
                let text = answer.text.as_deref().unwrap_or("");
                assert!(text.contains(says), "{header:?}: {text}");
                assert!(answer.payload.is_empty(), "{header:?}");
            }
            None => {
                let wire = <work<()> as StepFn>::wire().unwrap();
                assert_eq!(wire.decode_output(&answer.payload).unwrap().id, i as u64);
                ran += 1;
            }
        }
    }
    let p = remote_work(&nats);
    assert_eq!(p.call_async(job(99, 0)).await.unwrap().id, 99);
    assert_eq!(
        worker.terminate(),
        ran + 1,
        "only the well-formed calls ran"
    );
}

/// Payloads that are not the step's inputs, under a valid header: empty,
/// cut short, a varint that never ends, bytes left over, another step's
/// inputs, and a `ByteBuf` that claims 4 GiB but carries 3 bytes (must not
/// allocate it). Each is 400 naming the type or the leftover; nothing
/// runs; seeded random bytes to `bytes_sum` are each either 400 or a
/// well-formed answer; the worker's STATS count each refusal as an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_payloads_are_bad_input_and_counted_as_errors() {
    let nats = NatsServer::start();
    let worker = WorkerProcess::start(&nats, "work,bytes_sum");
    let client = async_nats::connect(nats.url()).await.unwrap();
    let work_call = format!("c 5000 {}", digest::<work<()>>());
    let checked_inputs = <checked<()> as StepFn>::wire()
        .unwrap()
        .encode_inputs(&(5u64,))
        .unwrap();
    let mut long = work_payload(1, 0);
    long.push(0);
    let bad_work: Vec<(Vec<u8>, &str)> = vec![
        (
            vec![],
            "could not decode `pipeline_examples::remote_steps::Job`",
        ),
        (vec![0x80], "could not decode"),
        (vec![0xff; 11], "could not decode"),
        (long, "1 bytes left over"),
        (checked_inputs, "could not decode"),
    ];
    let mut errors = 0;
    for (payload, says) in bad_work {
        let answer = raw_request(
            &client,
            "pipeline.step.work",
            Some(&work_call),
            payload.clone(),
            ANSWER_GUARD,
        )
        .await
        .unwrap();
        assert_eq!(answer.code(), Some("400"), "{payload:?}: {answer:?}");
        assert!(answer.text.as_deref().unwrap().contains(says), "{answer:?}");
        errors += 1;
    }
    let sum_call = format!("s 5000 {}", digest::<bytes_sum<()>>());
    // A length of 2^32 - 1 and three bytes.
    let huge = vec![0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3];
    let answer = raw_request(
        &client,
        "pipeline.step.bytes_sum",
        Some(&sum_call),
        huge,
        ANSWER_GUARD,
    )
    .await
    .unwrap();
    assert_eq!(answer.code(), Some("400"), "{answer:?}");
    errors += 1;
    // Seeded random payloads (xorshift): 400, or a count-and-sum answer.
    let sum_wire = <bytes_sum<()> as StepFn>::wire().unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut answered = 0;
    for len in 0..200usize {
        let payload: Vec<u8> = (0..len % 40)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let answer = raw_request(
            &client,
            "pipeline.step.bytes_sum",
            Some(&sum_call),
            payload.clone(),
            ANSWER_GUARD,
        )
        .await
        .unwrap();
        answered += 1;
        match answer.code() {
            Some("400") => errors += 1,
            None => {
                let (count, _) = sum_wire.decode_output(&answer.payload).unwrap();
                assert_eq!(
                    count as usize + 1,
                    payload.len().min(count as usize + 1),
                    "{payload:?}"
                );
            }
            other => panic!("{payload:?}: {other:?} {answer:?}"),
        }
    }
    let requests = 5 + 1 + answered;
    let (mut got_requests, mut got_errors) = (0, 0);
    for s in stats(&client, "pipeline-work", 1).await {
        let (r, e) = totals(&s);
        got_requests += r;
        got_errors += e;
    }
    for s in stats(&client, "pipeline-bytes_sum", 1).await {
        let (r, e) = totals(&s);
        got_requests += r;
        got_errors += e;
        // `last_error` is `"<code>:<text>"` (empty for an endpoint with none).
        let last: Vec<&str> = s["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["last_error"].as_str())
            .filter(|e| !e.is_empty())
            .collect();
        assert_eq!(last.len(), 1, "{s}");
        assert!(last[0].starts_with("400:could not decode"), "{s}");
    }
    assert_eq!((got_requests, got_errors), (requests, errors));
    assert_eq!(worker.terminate(), 0, "no `work` call ran");
}

/// A header block async-nats cannot parse (not UTF-8; a line without
/// `name: value`) sent with a raw NATS connection to a worker's step
/// subject: async-nats treats it as a broken connection and reconnects.
/// The worker must come back on its own, a call it held meanwhile must
/// still be answered, and later calls must run.
#[test]
fn a_header_block_async_nats_cannot_parse_does_not_lose_a_workers_calls() {
    let nats = NatsServer::start();
    let mut worker = WorkerProcess::start_with(&nats, "work", true);
    let p = remote_work(&nats);
    let held = {
        let p = p.clone();
        std::thread::spawn(move || p.call_timeout(job(1, 300), Duration::from_secs(20)))
    };
    worker.wait_started(&[1]);
    let mut raw = RawTcp::connect(&nats);
    let payload = work_payload(2, 0);
    raw.hpub(
        "pipeline.step.work",
        Some("nowhere.1"),
        b"NATS/1.0\r\nPipeline-Call: \xff\xfe 10 x",
        &payload,
    );
    raw.hpub(
        "pipeline.cancel.work",
        None,
        b"NATS/1.0\r\nno colon here",
        b"x",
    );
    raw.hpub(
        "pipeline.workers.work",
        None,
        b"NATS/1.0\r\n\xc3\x28: y",
        b"{}",
    );
    assert_eq!(
        held.join().unwrap().unwrap().id,
        1,
        "the held call was answered"
    );
    // The worker reconnects by itself; until then a call may find no one.
    let mut unavailable = 0;
    let done = loop {
        match p.call_timeout(job(3, 0), Duration::from_secs(20)) {
            Ok(done) => break done,
            Err(PipelineError::Unavailable { .. }) if unavailable < 10_000 => unavailable += 1,
            Err(e) => panic!("{e:?}"),
        }
    };
    assert_eq!(done.id, 3);
    for i in 10..20 {
        assert_eq!(p.call(job(i, 0)).unwrap().id, i);
    }
    // The malformed request never ran.
    assert_eq!(worker.terminate(), 12);
}

// ---------------------------------------------------------------------------
// Cancellations
// ---------------------------------------------------------------------------

/// Cancellations for ids no call has, repeated ones, an empty one, one
/// that is not UTF-8, then a flood of 10,000 distinct early cancellations
/// (over the 4,096 the worker keeps): real calls (random ids) still run;
/// an id cancelled early within the bound never starts (its caller gets no
/// answer); once the book is full, a later early cancellation is forgotten
/// and its call runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_floods_and_junk_leave_the_worker_serving_within_its_bound() {
    let nats = NatsServer::start();
    let worker = WorkerProcess::start(&nats, "work");
    let client = async_nats::connect(nats.url()).await.unwrap();
    let subject = "pipeline.cancel.work";
    for junk in [
        &b""[..],
        b"\xff\xfe",
        b"no-such-call",
        b"no-such-call",
        b" ",
    ] {
        client.publish(subject, junk.to_vec().into()).await.unwrap();
    }
    for i in 0..10_000 {
        client
            .publish(subject, format!("flood.{i}").into())
            .await
            .unwrap();
    }
    client.publish(subject, "late.1".into()).await.unwrap();
    client.flush().await.unwrap();
    // Real calls go on (and give the worker time to read every
    // cancellation, which it takes in order on one subscription).
    let p = remote_work(&nats);
    let results = futures::stream::iter(0..200u64)
        .map(|i| p.call_async(job(i, 0)))
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    assert!(
        results.iter().all(Result::is_ok),
        "{:?}",
        results.iter().find(|r| r.is_err())
    );
    let d = digest::<work<()>>();
    // Cancelled before it came: never started, never answered.
    let skipped = raw_request(
        &client,
        "pipeline.step.work",
        Some(&format!("flood.5 5000 {d}")),
        work_payload(1_000, 0),
        Duration::from_millis(1_500),
    )
    .await;
    assert!(
        matches!(&skipped, Err(e) if e.kind() == async_nats::client::RequestErrorKind::TimedOut),
        "{skipped:?}"
    );
    // Past the bound: forgotten, so it runs.
    let late = raw_request(
        &client,
        "pipeline.step.work",
        Some(&format!("late.1 5000 {d}")),
        work_payload(1_001, 0),
        ANSWER_GUARD,
    )
    .await
    .unwrap();
    assert_eq!(late.code(), None, "{late:?}");
    assert_eq!(worker.terminate(), 201);
}

/// The early-cancellation book is bounded in count (4,096) but not in
/// bytes: a cancellation's payload (the call id) is kept as it came, up to
/// the server's max_payload (1 MiB). Pipeline call ids are about 20 bytes;
/// 200 cancellations of 1 MB ids make the worker hold ~200 MB (4,096 of
/// them: 4 GiB), kept until the book fills (they are only pruned when it
/// is full, so the 30 s limit never applies to them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_cancellations_with_huge_ids_do_not_grow_the_worker_without_bound() {
    let nats = NatsServer::start();
    let worker = WorkerProcess::start(&nats, "work");
    let client = async_nats::connect(nats.url()).await.unwrap();
    let p = remote_work(&nats);
    p.call_async(job(0, 0)).await.unwrap();
    let before = rss_kib(worker.pid());
    // In batches of 10 MB, each followed by a call: its answer means the
    // worker has read the batch (the server keeps the order of what it
    // sends one connection), and the server never holds more than a few
    // MB for the worker (over 64 MB it would drop it as a slow consumer).
    for batch in 0..20u64 {
        for i in 0..10u64 {
            let mut id = vec![b'a'; 1_000_000];
            id[..8].copy_from_slice(format!("{:08}", batch * 10 + i).as_bytes());
            client
                .publish("pipeline.cancel.work", id.into())
                .await
                .unwrap();
        }
        client.flush().await.unwrap();
        p.call_async(job(batch + 1, 0)).await.unwrap();
    }
    let after = rss_kib(worker.pid());
    let grown = after.saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "the worker grew by {} MiB after 200 cancellations of 1 MB ids",
        grown / 1024
    );
    assert_eq!(worker.terminate(), 21);
}

/// A process's resident memory (KiB).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

// ---------------------------------------------------------------------------
// Wire types that misbehave
// ---------------------------------------------------------------------------

/// The step's input type panics while the worker decodes it (user code,
/// like a step body). Expected: that call fails at once with a typed
/// error and the worker goes on serving the step, as for a panicking
/// body. Seen: the decode runs outside the worker's `catch_unwind` (in
/// `Served::start`, called from `take_requests`'s poll loop), so the panic
/// kills the task taking the step's requests: the call gets no answer
/// (`DeadlineExceeded` after its whole budget, 60 s with none), every
/// other call held by that task is dropped unanswered, and the worker
/// never serves the step again although its service still answers
/// PING/INFO (pipelines keep rediscovering it; calls are `Unavailable`).
#[test]
fn an_input_whose_decoding_panics_on_the_worker_fails_that_call_only() {
    let nats = NatsServer::start();
    let _worker = touchy_worker(nats.url());
    let p = touchy_pipeline(&nats);
    assert_eq!(p.call(Touchy(1)).unwrap(), Touchy(2));
    // A call sent alongside (before or after the panicking one).
    let held = {
        let p = p.clone();
        std::thread::spawn(move || p.call_timeout(Touchy(100), Duration::from_secs(10)))
    };
    let panicking = p.call_timeout(Touchy(13), Duration::from_secs(10));
    let after = p.call_timeout(Touchy(2), Duration::from_secs(10));
    let held = held.join().unwrap();
    // Whether the worker's service still answers PING (it looks alive).
    let pinged = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let client = async_nats::connect(nats.url()).await.unwrap();
        let ping = client.request("$SRV.PING.pipeline-touchy_next", "".into());
        tokio::time::timeout(ANSWER_GUARD, ping)
            .await
            .is_ok_and(|r| r.is_ok())
    });
    assert!(
        !matches!(
            panicking,
            Err(PipelineError::DeadlineExceeded { .. }) | Ok(_)
        ) && matches!(after, Ok(Touchy(3)))
            && matches!(held, Ok(Touchy(101))),
        "the panicking call: {panicking:?}; the next call: {after:?}; a call sent alongside: \
         {held:?}; the worker still answers PING: {pinged}"
    );
}

/// The step's output type panics while the worker encodes it. Expected:
/// `Panicked` (or a step error) naming the step, at once. Seen: the panic
/// is caught by the per-call `catch_unwind` but nothing answers the call:
/// the caller waits out its whole deadline (`DeadlineExceeded`; 60 s with
/// none).
#[test]
fn an_output_whose_encoding_panics_on_the_worker_is_answered_at_once() {
    let nats = NatsServer::start();
    let _worker = touchy_worker(nats.url());
    let p = touchy_pipeline(&nats);
    let err = p
        .call_timeout(Touchy(999), Duration::from_secs(10))
        .unwrap_err();
    assert!(
        matches!(
            err,
            PipelineError::Panicked {
                step: "touchy_next",
                ..
            } | PipelineError::Step {
                step: "touchy_next",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(p.call(Touchy(5)).unwrap(), Touchy(6));
}

/// On the pipeline's side the same user code runs while encoding the
/// inputs and decoding the answer. A local step's panic is a
/// `PipelineError::Panicked`; a remote step's wire types panicking should
/// be an error of the call too, not a panic in the caller.
#[test]
fn wire_type_panics_on_the_pipeline_side_are_errors_not_caller_panics() {
    let nats = NatsServer::start();
    let _worker = touchy_worker(nats.url());
    let p = touchy_pipeline(&nats);
    // Encoding the input panics (1000), decoding the answer panics (12 + 1).
    let outcomes: Vec<String> = [1000, 12]
        .into_iter()
        .map(|input| {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.call(Touchy(input)))) {
                Ok(Err(e)) => format!("{input}: {e:?}"),
                Ok(Ok(out)) => format!("{input}: unexpected {out:?}"),
                Err(_) => format!("{input}: Pipeline::call panicked"),
            }
        })
        .collect();
    // Each is the step's `Panicked`, as a local step's panic would be.
    assert!(
        outcomes
            .iter()
            .all(|o| o.contains("Panicked { step: \"touchy_next\"")),
        "{outcomes:?}"
    );
    assert_eq!(p.call(Touchy(5)).unwrap(), Touchy(6));
}

// ---------------------------------------------------------------------------
// Answers at and over the server's max_payload; deadlines
// ---------------------------------------------------------------------------

/// An output of exactly the server's max_payload crosses (an answer has no
/// headers); one byte more is a step error naming both sizes, and the
/// worker goes on.
#[test]
fn an_answer_of_exactly_max_payload_crosses_and_one_byte_more_is_a_step_error() {
    let nats = NatsServer::start_with_config("max_payload: 65536\n");
    let _worker = InProcess::start(
        nats.url(),
        Box::new(|w| Box::pin(async move { w.serve::<blob<()>>("blob", ()).await })),
    );
    let p = blob(Input::<u64>::new())
        .deploy_with(DeployOptions::new().remote("blob", &nats.url()))
        .unwrap();
    // A ByteBuf of n bytes is a 3-byte length and the bytes.
    assert_eq!(p.call(65_533).unwrap().len(), 65_533);
    let err = p.call_timeout(65_534, Duration::from_secs(10)).unwrap_err();
    assert!(
        matches!(err, PipelineError::Step { step: "blob", .. }),
        "{err:?}"
    );
    let text = std::error::Error::source(&err).unwrap().to_string();
    assert!(text.contains("65537") && text.contains("65536"), "{text}");
    assert_eq!(p.call(3).unwrap().as_ref(), &[7, 7, 7]);
}

/// A worker whose queues are full refuses (503, "the worker's queue is
/// full") without running the call; its STATS count every answer as a
/// request and every refusal as an error; each call it took ran once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_counted_in_stats_and_never_run() {
    let nats = NatsServer::start();
    // Two replicas, a queue of 1 each: at most 4 calls held.
    let worker = WorkerProcess::start_bounded(&nats, "work", false, Some(1));
    let client = async_nats::connect(nats.url()).await.unwrap();
    let answers = futures::future::join_all((0..12u64).map(|i| {
        raw_request(
            &client,
            "pipeline.step.work",
            None,
            work_payload(i, 300),
            ANSWER_GUARD,
        )
    }))
    .await;
    let mut refused = 0;
    for answer in &answers {
        let answer = answer.as_ref().unwrap();
        match answer.code() {
            None => {}
            Some("503") => {
                assert_eq!(
                    answer.text.as_deref(),
                    Some("the worker's queue is full"),
                    "{answer:?}"
                );
                refused += 1;
            }
            other => panic!("{other:?}: {answer:?}"),
        }
    }
    assert!(refused > 0 && refused < 12, "{refused} of 12 refused");
    let all = stats(&client, "pipeline-work", 1).await;
    assert_eq!(totals(&all[0]), (12, refused), "{}", all[0]);
    assert_eq!(worker.terminate(), 12 - refused, "only the taken calls ran");
}

/// Calls still running at their deadline. A plain client's request whose
/// header gives 300 ms is answered 504 by the worker itself (counted in
/// its STATS, `last_error` "504:..."); a pipeline's call is
/// `DeadlineExceeded` (the worker answers 504 or, hearing the caller's
/// cancellation first, nothing). Both replicas are then busy with
/// abandoned work; later calls still run once they are free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_running_past_their_deadline_fail_and_the_worker_goes_on() {
    let nats = NatsServer::start();
    let worker = WorkerProcess::start(&nats, "work");
    let client = async_nats::connect(nats.url()).await.unwrap();
    let d = digest::<work<()>>();
    let answer = raw_request(
        &client,
        "pipeline.step.work",
        Some(&format!("slow 300 {d}")),
        work_payload(1, 2_000),
        ANSWER_GUARD,
    )
    .await
    .unwrap();
    assert_eq!(answer.code(), Some("504"), "{answer:?}");
    assert_eq!(answer.text.as_deref(), Some("the deadline passed"));
    let p = remote_work(&nats);
    let err = p
        .call_async_timeout(job(2, 2_000), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(
        matches!(err, PipelineError::DeadlineExceeded { .. }),
        "{err:?}"
    );
    for i in 3..7 {
        assert_eq!(p.call_async(job(i, 0)).await.unwrap().id, i);
    }
    let all = stats(&client, "pipeline-work", 1).await;
    let (requests, errors) = totals(&all[0]);
    assert!((1..=2).contains(&errors), "{}", all[0]);
    assert_eq!(requests, errors + 4, "{}", all[0]);
    let last: Vec<&str> = all[0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["last_error"].as_str())
        .filter(|e| !e.is_empty())
        .collect();
    assert!(
        !last.is_empty() && last.iter().all(|e| e.starts_with("504:")),
        "{}",
        all[0]
    );
    assert_eq!(worker.terminate(), 6, "each call ran once");
}

// ---------------------------------------------------------------------------
// Workers coming and going around a deployed pipeline
// ---------------------------------------------------------------------------

/// Deployed with no worker: `Unavailable` at once; a worker that starts
/// then takes the very next call (no waiting for discovery); killed
/// (SIGKILL) it is `Unavailable` again at once (its direct subject has no
/// responders), and one started after it takes the next call.
#[test]
fn a_pipeline_deployed_before_its_workers_follows_them_coming_and_going() {
    let nats = NatsServer::start();
    let p = remote_work(&nats);
    assert!(matches!(
        p.call(job(1, 0)),
        Err(PipelineError::Unavailable { step: "work", .. })
    ));
    let a = WorkerProcess::start(&nats, "work");
    assert_eq!(p.call(job(2, 0)).unwrap().pid, a.pid());
    // Until the pipeline has heard of it (announcement or discovery), and
    // after: the same worker.
    while p.metrics()[0].replicas < 1 {
        assert_eq!(p.call(job(3, 0)).unwrap().pid, a.pid());
    }
    assert_eq!(p.call(job(4, 0)).unwrap().pid, a.pid());
    a.kill();
    // A call sent before the server has noticed the dead connection goes
    // to it and runs out its deadline (as a call the worker held would);
    // after that, `Unavailable` at once.
    let mut lost = 0;
    let err = loop {
        match p.call_timeout(job(5, 0), Duration::from_millis(500)) {
            Err(PipelineError::DeadlineExceeded { .. }) if lost < 20 => lost += 1,
            other => break other.unwrap_err(),
        }
    };
    assert!(
        matches!(err, PipelineError::Unavailable { step: "work", .. }),
        "{err:?}"
    );
    let b = WorkerProcess::start(&nats, "work");
    assert_eq!(p.call(job(6, 0)).unwrap().pid, b.pid());
    // Restarted gracefully (SIGTERM, then a new one): the next call goes
    // to the new one.
    let ran = b.terminate();
    assert!(ran >= 1);
    let c = WorkerProcess::start(&nats, "work");
    assert_eq!(p.call(job(7, 0)).unwrap().pid, c.pid());
    assert_eq!(c.terminate(), 1);
}

/// The only worker of a step serves other types (it joined after deploy,
/// so deploy could not refuse): the call is `Unavailable` saying so, not
/// run there (409 in that worker's STATS); a matching worker joining then
/// takes the calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_mismatched_worker_is_unavailable_then_a_matching_one_serves() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let p = remote_work(&nats);
    let _bad = WorkerProcess::start(&nats, "inc_as_work");
    let err = p.call_async(job(1, 0)).await.unwrap_err();
    match &err {
        PipelineError::Unavailable {
            step: "work",
            reason,
        } => {
            assert!(
                reason.contains("inputs=(u64,)") && reason.contains("the pipeline's differs"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    let all = stats(&client, "pipeline-work", 1).await;
    assert_eq!(totals(&all[0]), (1, 1), "{}", all[0]);
    let good = WorkerProcess::start(&nats, "work");
    // Once the pipeline knows the good worker, every call goes there.
    while p.metrics()[0].replicas < 1 {
        tokio::task::yield_now().await;
    }
    for i in 0..50 {
        assert_eq!(p.call_async(job(i, 0)).await.unwrap().pid, good.pid());
    }
    assert_eq!(good.terminate(), 50);
}

// ---------------------------------------------------------------------------
// A pipeline dropped with calls in flight
// ---------------------------------------------------------------------------

/// Calls in flight (two running at the worker, six queued behind them),
/// then their futures and the pipeline dropped: nothing hangs, the worker
/// is not wedged (a new pipeline's calls run), and nothing runs twice.
#[test]
fn dropping_a_pipeline_with_calls_in_flight_neither_hangs_nor_wedges_the_worker() {
    let nats = NatsServer::start();
    let mut worker = WorkerProcess::start_with(&nats, "work", true);
    let p = remote_work(&nats);
    let callers = tokio::runtime::Runtime::new().unwrap();
    for i in 0..2 {
        let p = p.clone();
        callers.spawn(async move { p.call_async(job(i, 400)).await });
    }
    worker.wait_started(&[0, 1]);
    for i in 2..8 {
        let p = p.clone();
        callers.spawn(async move { p.call_async(job(i, 400)).await });
    }
    // Dropping the runtime drops the call futures (cancellations), then
    // the last handle of the pipeline.
    drop(callers);
    drop(p);
    let q = remote_work(&nats);
    for i in 100..104 {
        assert_eq!(q.call(job(i, 0)).unwrap().id, i);
    }
    let ran = worker.terminate();
    assert!((6..=12).contains(&ran), "{ran} calls ran");
}
