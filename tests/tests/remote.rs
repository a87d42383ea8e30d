//! Remote steps, end to end on one machine: a nats-server on a free
//! loopback port, worker processes (`remote_worker`, this crate's binary)
//! and the pipeline in this test process.
#![cfg(feature = "remote")]

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use pipeline_core::prelude::*;
use pipeline_core::RemoteError;
use pipeline_examples::remote_steps::{bytes_sum, checked, work, ByteBuf, Done, Job};
use support::nats::NatsServer;
use support::worker::WorkerProcess;

fn remote_work(nats: &NatsServer) -> Pipeline<Job, Done> {
    work(Input::<Job>::new())
        .deploy_with(DeployOptions::new().remote("work", &nats.url()))
        .unwrap()
}

fn job(id: u64, work_ms: u64) -> Job {
    Job { id, work_ms }
}

/// `count` calls, `in_flight` at a time; `on_answer(n)` after each answer.
async fn run_calls(
    p: &Pipeline<Job, Done>,
    count: u64,
    in_flight: usize,
    work_ms: u64,
    deadline: Option<Duration>,
    on_answer: impl Fn(usize),
) -> Vec<(u64, Result<Done, PipelineError>)> {
    let answered = AtomicUsize::new(0);
    futures::stream::iter(0..count)
        .map(|id| {
            let answered = &answered;
            let on_answer = &on_answer;
            async move {
                let result = match deadline {
                    Some(d) => p.call_async_timeout(job(id, work_ms), d).await,
                    None => p.call_async(job(id, work_ms)).await,
                };
                on_answer(answered.fetch_add(1, Ordering::SeqCst) + 1);
                (id, result)
            }
        })
        .buffer_unordered(in_flight)
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_calls_spread_over_two_workers_none_lost_or_run_twice() {
    let nats = NatsServer::start();
    let a = WorkerProcess::start(&nats, "work");
    let b = WorkerProcess::start(&nats, "work");
    let pids: HashSet<u32> = [a.pid(), b.pid()].into();
    let p = remote_work(&nats);
    let results = run_calls(&p, 10_000, 64, 0, None, |_| {}).await;
    let mut seen = HashSet::new();
    for (id, result) in results {
        let done = result.unwrap();
        assert_eq!(done.id, id);
        assert!(pids.contains(&done.pid));
        seen.insert(done.pid);
    }
    assert_eq!(seen, pids, "both workers took calls");
    // Per-worker STATS, through the NATS service API.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let inbox = client.new_inbox();
    let mut stats = client.subscribe(inbox.clone()).await.unwrap();
    client
        .publish_with_reply("$SRV.STATS.pipeline-work", inbox, "".into())
        .await
        .unwrap();
    let mut per_worker = Vec::new();
    while per_worker.len() < 2 {
        let message = tokio::time::timeout(Duration::from_secs(10), stats.next())
            .await
            .expect("two STATS answers")
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        // The step's queue-group endpoint and the worker's own (direct) one.
        let endpoints = json["endpoints"].as_array().unwrap();
        per_worker.push(
            endpoints
                .iter()
                .map(|e| e["num_requests"].as_u64().unwrap())
                .sum::<u64>(),
        );
    }
    assert_eq!(per_worker.iter().sum::<u64>(), 10_000, "{per_worker:?}");
    assert!(per_worker.iter().all(|&n| n > 1_000), "{per_worker:?}");
    assert_eq!(a.terminate() + b.terminate(), 10_000, "each call ran once");
}

/// Each call carries one header, `Pipeline-Call: <call id> <timeout ms>
/// <digest>`. A plain NATS client's request without it still runs (with no
/// deadline and no cancellation); one whose header is malformed is refused
/// as bad input, saying what the header must hold, and does not run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_nats_request_runs_and_a_malformed_call_header_is_refused() {
    let nats = NatsServer::start();
    let worker = WorkerProcess::start(&nats, "work");
    let client = async_nats::connect(nats.url()).await.unwrap();
    let wire = <work<()> as pipeline_core::StepFn>::wire().unwrap();
    let payload = wire.encode_inputs(&(job(7, 0),)).unwrap();
    let answer = client
        .request("pipeline.step.work", payload.clone().into())
        .await
        .unwrap();
    assert!(answer.headers.is_none(), "{:?}", answer.headers);
    assert_eq!(wire.decode_output(&answer.payload).unwrap().id, 7);
    for bad in [
        "one-field",
        "id 10",
        "id ten 0123456789abcdef",
        "id 10 0123456789abcdef extra",
    ] {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Pipeline-Call", bad);
        let answer = client
            .request_with_headers("pipeline.step.work", headers, payload.clone().into())
            .await
            .unwrap();
        let headers = answer.headers.expect("an error answer");
        let code = headers.get(async_nats::service::NATS_SERVICE_ERROR_CODE);
        assert_eq!(code.map(|c| c.as_str()), Some("400"), "{bad:?}");
        let text = headers
            .get(async_nats::service::NATS_SERVICE_ERROR)
            .unwrap();
        assert!(
            text.as_str().contains("`<call id> <timeout ms> <digest>`"),
            "{text:?}"
        );
    }
    assert_eq!(worker.terminate(), 1, "only the plain request ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_leaving_on_sigterm_under_load_fails_nothing() {
    let nats = NatsServer::start();
    let a = std::sync::Mutex::new(Some(WorkerProcess::start(&nats, "work")));
    let b = WorkerProcess::start(&nats, "work");
    let p = remote_work(&nats);
    let leaver = std::sync::Mutex::new(None);
    let results = run_calls(&p, 2_000, 64, 2, None, |n| {
        if n == 300 {
            let a = a.lock().unwrap().take().unwrap();
            *leaver.lock().unwrap() = Some(std::thread::spawn(move || a.terminate()));
        }
    })
    .await;
    for (id, result) in &results {
        assert_eq!(
            result.as_ref().ok().map(|d| d.id),
            Some(*id),
            "call {id}: {result:?}"
        );
    }
    let left = leaver.lock().unwrap().take().unwrap().join().unwrap();
    assert_eq!(left + b.terminate(), 2_000, "each call ran once");
    assert!(left > 0, "the leaving worker had taken calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_fails_its_calls_within_their_deadline_and_the_rest_go_on() {
    let nats = NatsServer::start();
    let a = std::sync::Mutex::new(Some(WorkerProcess::start(&nats, "work")));
    let _b = WorkerProcess::start(&nats, "work");
    let p = remote_work(&nats);
    let results = run_calls(&p, 600, 32, 20, Some(Duration::from_secs(2)), |n| {
        if n == 100 {
            a.lock().unwrap().take().unwrap().kill();
        }
    })
    .await;
    let failed: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
    for (id, result) in &failed {
        assert!(
            matches!(result, Err(PipelineError::DeadlineExceeded { .. })),
            "call {id}: {result:?}"
        );
    }
    assert!(!failed.is_empty(), "calls held by the killed worker fail");
    assert!(
        failed.len() <= 32,
        "at most the calls in flight: {}",
        failed.len()
    );
    // After it, every call goes to the survivor.
    let after = run_calls(&p, 100, 8, 0, Some(Duration::from_secs(5)), |_| {}).await;
    assert!(after.iter().all(|(_, r)| r.is_ok()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_joining_mid_run_takes_load() {
    let nats = NatsServer::start();
    let a = WorkerProcess::start(&nats, "work");
    let p = remote_work(&nats);
    let before = run_calls(&p, 200, 8, 0, None, |_| {}).await;
    assert!(before
        .iter()
        .all(|(_, r)| r.as_ref().unwrap().pid == a.pid()));
    let b = WorkerProcess::start(&nats, "work");
    // The worker announces itself; the pipeline counts it once it heard.
    while p.metrics()[0].replicas < 2 {
        tokio::task::yield_now().await;
    }
    let after = run_calls(&p, 400, 8, 0, None, |_| {}).await;
    let from_b = after
        .iter()
        .filter(|(_, r)| r.as_ref().unwrap().pid == b.pid())
        .count();
    assert!(from_b > 100, "the new worker took {from_b} of 400");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_worker_refuses_and_the_call_goes_to_another() {
    let nats = NatsServer::start();
    // Two replicas with a queue of 1 each: at most 4 calls held.
    let small = WorkerProcess::start_bounded(&nats, "work", false, Some(1));
    let big = WorkerProcess::start(&nats, "work");
    let p = remote_work(&nats);
    while p.metrics()[0].replicas < 2 {
        tokio::task::yield_now().await;
    }
    let results = run_calls(&p, 40, 40, 300, None, |_| {}).await;
    for (id, result) in &results {
        assert_eq!(
            result.as_ref().ok().map(|d| d.id),
            Some(*id),
            "call {id}: {result:?}"
        );
    }
    let m = &p.metrics()[0];
    assert!(m.remote_refused > 0, "the small worker refused some: {m:?}");
    assert_eq!(
        m.remote_retries, m.remote_refused,
        "each refusal was sent on once"
    );
    assert_eq!(
        small.terminate() + big.terminate(),
        40,
        "each call ran once"
    );
}

/// The NATS server dies: calls fail with `Unavailable` (a request sent
/// before the client noticed can only run out its deadline), never hang
/// for the 60 s a call without a deadline would wait.
#[test]
fn a_lost_server_makes_calls_unavailable() {
    let nats = NatsServer::start();
    let _worker = WorkerProcess::start(&nats, "work");
    let p = remote_work(&nats);
    assert_eq!(p.call(job(1, 0)).unwrap().id, 1);
    drop(nats);
    let err = loop {
        match p.call_timeout(job(2, 0), Duration::from_secs(5)) {
            Err(PipelineError::DeadlineExceeded { .. }) => continue,
            Err(e) => break e,
            Ok(done) => panic!("answered without a server: {done:?}"),
        }
    };
    assert!(
        matches!(&err, PipelineError::Unavailable { step: "work", reason } if reason.contains("not connected")),
        "{err:?}"
    );
    // Without a deadline of its own too.
    assert!(matches!(
        p.call(job(3, 0)),
        Err(PipelineError::Unavailable { .. })
    ));
}

#[test]
fn no_worker_is_unavailable_at_once() {
    let nats = NatsServer::start();
    let p = remote_work(&nats);
    let err = p.call(job(1, 0)).unwrap_err();
    assert!(
        matches!(err, PipelineError::Unavailable { step: "work", .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("no worker serves it"), "{err}");
}

/// Two `work` calls of 1 s each, running on the worker's two replicas.
struct Busy(Vec<std::thread::JoinHandle<Result<Done, PipelineError>>>);

impl Busy {
    /// Waits for both to answer.
    fn finish(self) {
        for call in self.0 {
            call.join().unwrap().unwrap();
        }
    }
}

/// Starts [`Busy`]'s calls and waits until the (traced) worker runs both.
fn occupy_both_replicas(p: &Pipeline<Job, Done>, worker: &mut WorkerProcess) -> Busy {
    let calls = (0..2)
        .map(|i| {
            let p = p.clone();
            std::thread::spawn(move || p.call(job(i, 1_000)))
        })
        .collect();
    worker.wait_started(&[0, 1]);
    Busy(calls)
}

#[test]
fn a_call_past_its_deadline_fails_and_the_worker_skips_it() {
    let nats = NatsServer::start();
    let mut worker = WorkerProcess::start_with(&nats, "work", true);
    let p = remote_work(&nats);
    // Both replicas busy for 1 s; the third call waits in the worker's
    // queue past its 200 ms deadline.
    let busy = occupy_both_replicas(&p, &mut worker);
    let err = p
        .call_timeout(job(9, 0), Duration::from_millis(200))
        .unwrap_err();
    assert!(
        matches!(err, PipelineError::DeadlineExceeded { .. }),
        "{err:?}"
    );
    busy.finish();
    assert_eq!(worker.terminate(), 2, "the late call never ran");
}

#[test]
fn a_dropped_call_does_not_run_on_the_worker() {
    let nats = NatsServer::start();
    let mut worker = WorkerProcess::start_with(&nats, "work", true);
    let p = remote_work(&nats);
    let busy = occupy_both_replicas(&p, &mut worker);
    // The caller drops its call (no deadline of its own reaches the
    // worker): the worker hears the cancellation and skips it.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dropped = rt.block_on(async {
        tokio::time::timeout(Duration::from_millis(200), p.call_async(job(9, 0))).await
    });
    assert!(dropped.is_err(), "the call was still waiting");
    busy.finish();
    assert_eq!(worker.terminate(), 2, "the dropped call never ran");
}

/// After a flood of cancellations naming calls that never came (more than
/// the 4,096 a worker keeps for calls yet to come), a call its caller
/// drops while it waits at the worker is still skipped.
#[test]
fn a_dropped_call_is_skipped_after_a_flood_of_cancellations_for_no_call() {
    let nats = NatsServer::start();
    let mut worker = WorkerProcess::start_with(&nats, "work", true);
    let p = remote_work(&nats);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = async_nats::connect(nats.url()).await.unwrap();
        for i in 0..5_000 {
            client
                .publish("pipeline.cancel.work", format!("ghost.{i}").into())
                .await
                .unwrap();
        }
        client.flush().await.unwrap();
    });
    let busy = occupy_both_replicas(&p, &mut worker);
    let dropped = rt.block_on(async {
        tokio::time::timeout(Duration::from_millis(200), p.call_async(job(9, 0))).await
    });
    assert!(dropped.is_err(), "the call was still waiting");
    busy.finish();
    assert_eq!(worker.terminate(), 2, "the dropped call never ran");
}

#[test]
fn payloads_over_the_servers_max_are_refused_before_sending() {
    let nats = NatsServer::start_with_config("max_payload: 65536\n");
    let _worker = WorkerProcess::start(&nats, "bytes_sum");
    let p = bytes_sum(Input::<ByteBuf>::new())
        .deploy_with(DeployOptions::new().remote("bytes_sum", &nats.url()))
        .unwrap();
    assert_eq!(
        p.call(ByteBuf::from(vec![2; 1_000])).unwrap(),
        (1_000, 2_000)
    );
    let err = p.call(ByteBuf::from(vec![1; 100_000])).unwrap_err();
    match err {
        PipelineError::PayloadTooLarge { step, size, limit } => {
            assert_eq!((step, limit), ("bytes_sum", 65_536));
            assert!(size >= 100_000, "{size}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_worker_serving_other_types_under_the_name_fails_deploy() {
    let nats = NatsServer::start();
    let _worker = WorkerProcess::start(&nats, "inc_as_work");
    let err = work(Input::<Job>::new())
        .deploy_with(DeployOptions::new().remote("work", &nats.url()))
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("other types"), "{text}");
    assert!(text.contains("remote_steps::Job"), "{text}");
    assert!(text.contains("(u64,)"), "{text}");
}

#[test]
fn step_errors_and_panics_cross_with_the_steps_name_and_message() {
    let nats = NatsServer::start();
    let _worker = WorkerProcess::start(&nats, "checked");
    let p = checked(Input::<u64>::new())
        .deploy_with(DeployOptions::new().remote("checked", &nats.url()))
        .unwrap();
    assert_eq!(p.call(4).unwrap(), 2);
    let err = p.call(3).unwrap_err();
    assert_eq!(err.step(), Some("checked"));
    let source = std::error::Error::source(&err).unwrap();
    assert_eq!(source.downcast_ref::<RemoteError>().unwrap().0, "3 is odd");
    let err = p.call(13).unwrap_err();
    assert!(
        matches!(&err, PipelineError::Panicked { step: "checked", message } if message == "unlucky 13"),
        "{err:?}"
    );
    // The worker's replica was rebuilt: the next call works.
    assert_eq!(p.call(8).unwrap(), 4);
}

#[test]
fn local_options_run_a_remote_step_inline() {
    let p = work(Input::<Job>::new())
        .deploy_with(DeployOptions::local().remote("work", "nats://127.0.0.1:1"))
        .unwrap();
    assert_eq!(p.call(job(5, 0)).unwrap().id, 5);
}

#[test]
fn an_unreachable_server_fails_deploy_with_its_url() {
    let err = work(Input::<Job>::new())
        .deploy_with(DeployOptions::new().remote("work", "nats://127.0.0.1:1"))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("could not connect to the NATS server at `nats://127.0.0.1:1`"),
        "{err}"
    );
}

#[test]
fn a_step_not_marked_remote_is_refused_at_deploy() {
    #[step(mode = "actors")]
    fn plain(x: u64) -> u64 {
        x
    }
    let err = plain(Input::<u64>::new())
        .deploy_with(DeployOptions::new().remote("plain", "nats://127.0.0.1:1"))
        .unwrap_err();
    assert!(err.to_string().contains("#[step(remote)]"), "{err}");
}
