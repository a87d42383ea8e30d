//! Runtime costs: per-hop latency of tasks and actors (thread and task
//! placement) against a hand-written tokio mpsc + oneshot round trip, both
//! with the caller outside the runtime (a thread wake per hop) and with the
//! caller as a task on the same worker as the steps (no wake: the
//! pipeline's own cost shows; see `same_worker`), and the DESIGN section 6
//! ratios from that same run; throughput of a 3-step chain and a 2-branch
//! ensemble at 1, 8 and 64 calls in flight, memory per idle replica, and
//! resident memory over a long run of a million calls that overfill the
//! queues.
//!
//! `cargo bench -p pipeline-examples --bench runtime` prints tables and
//! writes `target/bench/runtime.json`.

use std::time::{Duration, Instant};

use futures::StreamExt;
use pipeline_core::prelude::*;
use pipeline_examples::process::rss_mib;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

#[step(mode = "tasks")]
fn t_inc(x: u64) -> u64 {
    x + 1
}
#[step(mode = "tasks")]
async fn t_inc_async(x: u64) -> u64 {
    x + 1
}
#[step(mode = "actors", placement = "thread")]
fn a_thread(x: u64) -> u64 {
    x + 1
}
#[step(mode = "actors", placement = "task")]
fn a_task(x: u64) -> u64 {
    x + 1
}
#[step(mode = "actors", replicas = 2)]
fn stage(x: u64) -> u64 {
    x.wrapping_mul(3).wrapping_add(1)
}
#[step]
fn sum(xs: Vec<u64>) -> u64 {
    xs.iter().sum()
}

/// A stand-in for a model whose call has a fixed cost (a kernel launch, a
/// forward pass over a padded batch) plus a small cost per item.
fn model_work(items: usize) -> u64 {
    let start = Instant::now();
    let budget = Duration::from_micros(200 + 5 * items as u64);
    let mut spins = 0u64;
    while start.elapsed() < budget {
        spins = spins.wrapping_add(1);
        std::hint::spin_loop();
    }
    spins
}

#[step(mode = "actors")]
fn unbatched_model(x: u64) -> u64 {
    std::hint::black_box(model_work(1));
    x + 1
}

#[step(mode = "actors", batch(max_size = 32, wait_ms = 2))]
fn batched_model(xs: Vec<u64>) -> Vec<u64> {
    std::hint::black_box(model_work(xs.len()));
    xs.into_iter().map(|x| x + 1).collect()
}

macro_rules! nest {
    ($f:ident; []; $e:expr) => { $e };
    ($f:ident; [$h:tt $($t:tt)*]; $e:expr) => { $f(nest!($f; [$($t)*]; $e)) };
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_nanos() as f64 / 1000.0
}

/// One way to make a call: a pipeline's `call_async` or the hand-written
/// baseline.
type Caller = Box<
    dyn Fn(u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = u64> + Send>> + Send + Sync,
>;

#[step]
fn l_inc(x: u64) -> u64 {
    x + 1
}

/// Per-hop samples of a set of runners: `samples[i] = [x1, x4]`.
type Samples = Vec<[Vec<Duration>; 2]>;

/// Times `per_round` sequential calls of each runner at 1 and 4 steps, in
/// `rounds` interleaved rounds, so machine noise (this is a 2-core VM where
/// a parked thread costs tens of microseconds to wake) spreads evenly over
/// them instead of landing on whichever ran at a bad time.
async fn sample(runners: &[(&str, Caller, Caller)], rounds: usize, per_round: usize) -> Samples {
    let mut samples: Samples = runners.iter().map(|_| [Vec::new(), Vec::new()]).collect();
    for _ in 0..rounds {
        for (i, (_, one, four)) in runners.iter().enumerate() {
            for (k, f) in [one, four].into_iter().enumerate() {
                for x in 0..(per_round / 10) as u64 {
                    std::hint::black_box(f(x).await);
                }
                for x in 0..per_round as u64 {
                    let start = Instant::now();
                    std::hint::black_box(f(x).await);
                    samples[i][k].push(start.elapsed());
                }
            }
        }
    }
    samples
}

/// One row of a per-hop table: p50 and p99 at 1 and 4 steps (us), and the
/// p50 per hop, the slope between them (so the fixed cost of a call, its
/// context and root future, is left out).
struct HopRow {
    a50: f64,
    a99: f64,
    b50: f64,
    b99: f64,
    hop: f64,
}

fn hop_rows(samples: &mut Samples) -> Vec<HopRow> {
    samples
        .iter_mut()
        .map(|[one, four]| {
            one.sort();
            four.sort();
            let (a50, b50) = (percentile(one, 0.5), percentile(four, 0.5));
            HopRow {
                a50,
                a99: percentile(one, 0.99),
                b50,
                b99: percentile(four, 0.99),
                hop: (b50 - a50) / 3.0,
            }
        })
        .collect()
}

/// The runner a pipeline makes: `call_async`, awaited.
fn via(p: Pipeline<u64, u64>) -> Caller {
    Box::new(move |x| {
        let p = p.clone();
        Box::pin(async move { p.call_async(x).await.unwrap() })
    })
}

type Server = mpsc::Sender<(u64, oneshot::Sender<u64>)>;

/// A caller of the first `hops` of `servers` in turn, each answering over
/// a oneshot: the hand-written shapes' client side.
fn chain_of(servers: Vec<Server>) -> impl Fn(usize) -> Caller {
    move |hops: usize| -> Caller {
        let servers = servers[..hops].to_vec();
        Box::new(move |x| {
            let servers = servers.clone();
            Box::pin(async move {
                let mut x = x;
                for s in &servers {
                    let (reply, answer) = oneshot::channel();
                    s.send((x, reply)).await.unwrap();
                    x = answer.await.unwrap();
                }
                x
            })
        })
    }
}

/// The hand-written shape: one server task per step, each answering over
/// mpsc + oneshot; the caller awaits each in turn. Servers run on `rt`.
fn hand_written(rt: &tokio::runtime::Handle) -> impl Fn(usize) -> Caller {
    let servers: Vec<Server> = (0..4)
        .map(|_| {
            let (tx, mut rx) = mpsc::channel::<(u64, oneshot::Sender<u64>)>(1024);
            rt.spawn(async move {
                while let Some((x, reply)) = rx.recv().await {
                    let _ = reply.send(x + 1);
                }
            });
            tx
        })
        .collect();
    chain_of(servers)
}

/// The hand-written shape of thread-placed actors (DESIGN section 6: "the
/// same hand-written shape across threads"): one OS thread per step, each
/// taking `(x, reply)` from a tokio mpsc with `blocking_recv` and answering
/// on the oneshot; the caller awaits each in turn. The threads end when
/// the returned runners (the senders) are dropped.
fn hand_written_threads() -> impl Fn(usize) -> Caller {
    let servers: Vec<Server> = (0..4)
        .map(|i| {
            let (tx, mut rx) = mpsc::channel::<(u64, oneshot::Sender<u64>)>(1024);
            std::thread::Builder::new()
                .name(format!("hand-written-{i}"))
                .spawn(move || {
                    while let Some((x, reply)) = rx.blocking_recv() {
                        let _ = reply.send(x + 1);
                    }
                })
                .unwrap();
            tx
        })
        .collect();
    chain_of(servers)
}

/// Hop cost with the caller on a runtime worker, as an HTTP handler's is
/// (DESIGN section 6: task-placed actors within 1.5x of a bare same-worker
/// round trip per hop).
///
/// Everything runs on one `current_thread` runtime: the caller (spawned as
/// a task there, not polled as the `block_on` future, so it is scheduled
/// like any handler), the hand-written baseline's server tasks, and the
/// pipelines' task-placed replicas and tasks (deployed there with
/// `DeployOptions::runtime`). With a single worker thread they cannot but
/// share it: each hop is a task switch on that thread and nothing else. A
/// multi-thread runtime with the caller spawned on it usually co-locates
/// them too (a task woken from a worker goes to that worker's LIFO slot),
/// but an idle worker may steal a queued task, and that hop then costs a
/// thread wake (tens of microseconds here): the p50 would be a mix of two
/// costs, depending on the VM's scheduling rather than on the pipeline.
///
/// Returns the JSON rows and the task-placed actors' ratio to the baseline
/// (the median of the rounds' paired ratios).
fn same_worker(n: usize) -> (Vec<serde_json::Value>, f64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let on_it = || DeployOptions::new().runtime(rt.handle().clone());
    let hand = hand_written(rt.handle());
    macro_rules! pair {
        ($label:expr, $step:ident) => {
            (
                $label,
                via(nest!($step; [x]; Input::<u64>::new()).deploy_with(on_it()).unwrap()),
                via(nest!($step; [x x x x]; Input::<u64>::new()).deploy_with(on_it()).unwrap()),
            )
        };
    }
    let runners: Vec<(&str, Caller, Caller)> = vec![
        ("bare mpsc+oneshot, same worker", hand(1), hand(4)),
        pair!("actors, placement = task", a_task),
        pair!("tasks, async step", t_inc_async),
        pair!("local", l_inc),
    ];
    let rounds = 10;
    let (runners, mut samples) = rt
        .block_on(rt.spawn(async move {
            let samples = sample(&runners, rounds, n / rounds).await;
            (runners, samples)
        }))
        .unwrap();
    // Paired per round: each round times the baseline and the actors
    // within milliseconds of each other, so this noisy VM's slow and fast
    // spells (the bare round trip's p50 moves 0.2-0.4 us between them)
    // hit both alike; the median over rounds of their ratio.
    let paired = paired_ratios(&samples, 0, 1, rounds);
    println!("\nper-hop latency, caller as a task on the steps' worker (one current_thread runtime; {n} calls per runner and length, {rounds} interleaved rounds; us)");
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>9} {:>12} {:>8}",
        "runner", "p50 x1", "p99 x1", "p50 x4", "p99 x4", "p50 per hop", "vs bare"
    );
    let rows = hop_rows(&mut samples);
    let base = rows[0].hop;
    let mut json_rows = Vec::new();
    for ((label, _, _), r) in runners.iter().zip(&rows) {
        println!(
            "{:<34} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>12.3} {:>7.2}x",
            label,
            r.a50,
            r.a99,
            r.b50,
            r.b99,
            r.hop,
            r.hop / base
        );
        json_rows.push(json!({"caller": "task on the same worker (current_thread runtime)", "runner": label, "p50_us_1_step": r.a50, "p99_us_1_step": r.a99, "p50_us_4_steps": r.b50, "p99_us_4_steps": r.b99, "p50_us_per_hop": r.hop, "ratio_to_same_worker_baseline": r.hop / base}));
    }
    println!(
        "actors, placement = task vs bare, per round: median {:.2}x (min {:.2}x, max {:.2}x over {rounds} rounds)",
        paired.median, paired.min, paired.max
    );
    json_rows.push(json!({"caller": "task on the same worker (current_thread runtime)", "runner": "actors, placement = task", "paired_ratio_to_same_worker_baseline": {"median": paired.median, "min": paired.min, "max": paired.max, "rounds": rounds}}));
    drop(runners);
    (json_rows, paired.median)
}

/// Ratios of runner `a`'s per-hop p50 to runner `b`'s, one per round.
struct Paired {
    median: f64,
    min: f64,
    max: f64,
}

fn paired_ratios(samples: &Samples, base: usize, runner: usize, rounds: usize) -> Paired {
    let hop = |i: usize, r: usize| {
        let [one, four] = &samples[i];
        let per = one.len() / rounds;
        let mut one = one[r * per..(r + 1) * per].to_vec();
        let mut four = four[r * per..(r + 1) * per].to_vec();
        one.sort();
        four.sort();
        (percentile(&four, 0.5) - percentile(&one, 0.5)) / 3.0
    };
    let mut ratios: Vec<f64> = (0..rounds).map(|r| hop(runner, r) / hop(base, r)).collect();
    ratios.sort_by(f64::total_cmp);
    Paired {
        median: (ratios[(rounds - 1) / 2] + ratios[rounds / 2]) / 2.0,
        min: ratios[0],
        max: ratios[rounds - 1],
    }
}

/// Calls per second with `in_flight` concurrent calls.
async fn throughput(p: &Pipeline<u64, u64>, total: usize, in_flight: usize) -> f64 {
    let start = Instant::now();
    let done = futures::stream::iter(0..total as u64)
        .map(|i| p.call_async(i))
        .buffer_unordered(in_flight)
        .filter(|r| futures::future::ready(r.is_ok()))
        .count()
        .await;
    assert_eq!(done, total);
    total as f64 / start.elapsed().as_secs_f64()
}

/// `cargo bench --bench runtime -- hop-loop actors|bare [CALLS]`: calls a
/// 4-step chain of task-placed actors (or the bare baseline) on one
/// `current_thread` runtime, the caller a task there, and nothing else:
/// a steady loop to run under `perf record`.
fn hop_loop(which: &str, calls: u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let caller = match which {
        "bare" => hand_written(rt.handle())(4),
        _ => via(nest!(a_task; [x x x x]; Input::<u64>::new())
            .deploy_with(DeployOptions::new().runtime(rt.handle().clone()))
            .unwrap()),
    };
    let start = Instant::now();
    rt.block_on(rt.spawn(async move {
        for x in 0..calls {
            std::hint::black_box(caller(x).await);
        }
    }))
    .unwrap();
    let per_call = start.elapsed().as_nanos() as f64 / calls as f64;
    println!("{which}: {calls} calls of 4 hops, {per_call:.0} ns a call");
}

/// `cargo bench --bench runtime -- counters [THREADS] [CALLS]`: THREADS
/// threads call one local 4-step chain at once (each step runs inline on
/// its caller's thread, so what the threads share is the steps' counters):
/// calls/s, to see what counting costs when several cores count.
fn counters(threads: usize, calls: u64) {
    let p = nest!(l_inc; [x x x x]; Input::<u64>::new())
        .deploy_with(DeployOptions::local())
        .unwrap();
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let p = p.clone();
            s.spawn(move || {
                for x in 0..calls {
                    std::hint::black_box(p.call(x).unwrap());
                }
            });
        }
    });
    let per_s = (threads as u64 * calls) as f64 / start.elapsed().as_secs_f64();
    println!("counters: {threads} threads, {per_s:.0} calls/s");
}

fn main() {
    let n = 20_000;
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "counters") {
        let threads = args.get(i + 1).and_then(|t| t.parse().ok()).unwrap_or(2);
        let calls = args
            .get(i + 2)
            .and_then(|c| c.parse().ok())
            .unwrap_or(1_000_000);
        counters(threads, calls);
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "hop-loop") {
        let which = args.get(i + 1).map_or("actors", String::as_str);
        let calls = args
            .get(i + 2)
            .and_then(|c| c.parse().ok())
            .unwrap_or(2_000_000);
        hop_loop(which, calls);
        return;
    }
    // `cargo bench --bench runtime -- same-worker`: only the same-worker
    // table (for iterating on the hop's cost), nothing written.
    if std::env::args().any(|a| a == "same-worker") {
        let (_, ratio) = same_worker(n * 5);
        println!(
            "\nactors, placement = task vs bare same-worker round trip, median of paired rounds: {ratio:.2}x (limit 1.5x)"
        );
        return;
    }
    // The caller's own runtime, as in a user's service.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut json_rows = Vec::new();

    // Caller outside the runtime (`block_on` on this thread): every hop
    // to a task or a replica thread is a thread wake.
    let hand = hand_written(rt.handle());
    let hand_threads = hand_written_threads();
    // Deployed inside the caller's runtime: tasks and task replicas share it.
    let _in_runtime = rt.enter();
    macro_rules! pair {
        ($label:expr, $step:ident) => {
            (
                $label,
                via(nest!($step; [x]; Input::<u64>::new()).deploy().unwrap()),
                via(nest!($step; [x x x x]; Input::<u64>::new()).deploy().unwrap()),
            )
        };
    }
    let runners: Vec<(&str, Caller, Caller)> = vec![
        ("hand-written mpsc+oneshot", hand(1), hand(4)),
        (
            "hand-written, thread per step",
            hand_threads(1),
            hand_threads(4),
        ),
        pair!("tasks, sync step (blocking pool)", t_inc),
        pair!("tasks, async step", t_inc_async),
        pair!("actors, placement = thread", a_thread),
        pair!("actors, placement = task", a_task),
    ];
    let rounds = 10;
    let mut samples = rt.block_on(sample(&runners, rounds, n / rounds));
    // The thread-placed target compares like with like: the same shape (a
    // thread per step) written by hand, paired per round as `same_worker`
    // pairs its ratio (the VM's slow and fast spells hit both sides).
    // Before `hop_rows`, which sorts the samples.
    let paired = paired_ratios(&samples, 1, 4, rounds);
    println!("per-hop latency, sequential calls from outside the runtime ({n} calls per runner and length, {rounds} interleaved rounds; us)");
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>9} {:>12} {:>8}",
        "runner", "p50 x1", "p99 x1", "p50 x4", "p99 x4", "p50 per hop", "vs base"
    );
    let rows = hop_rows(&mut samples);
    let base_hop = rows[0].hop;
    for ((label, _, _), r) in runners.iter().zip(&rows) {
        println!(
            "{:<34} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>12.2} {:>7.2}x",
            label,
            r.a50,
            r.a99,
            r.b50,
            r.b99,
            r.hop,
            r.hop / base_hop
        );
        json_rows.push(json!({"caller": "outside the runtime", "runner": label, "p50_us_1_step": r.a50, "p99_us_1_step": r.a99, "p50_us_4_steps": r.b50, "p99_us_4_steps": r.b99, "p50_us_per_hop": r.hop, "ratio_to_baseline": r.hop / base_hop}));
    }
    println!(
        "actors, placement = thread vs hand-written thread per step, per round: median {:.2}x (min {:.2}x, max {:.2}x over {rounds} rounds); vs the hand-written tasks {:.2}x",
        paired.median, paired.min, paired.max, rows[4].hop / base_hop
    );
    json_rows.push(json!({"caller": "outside the runtime", "runner": "actors, placement = thread", "paired_ratio_to_hand_written_threads": {"median": paired.median, "min": paired.min, "max": paired.max, "rounds": rounds}}));
    let thread_ratio = paired.median;
    drop(runners);

    let (rows, task_ratio) = same_worker(n);
    json_rows.extend(rows);
    println!("\ntargets (DESIGN section 6), per-hop p50 ratios from this run:");
    for (what, ratio, limit) in [
        (
            "actors, placement = task vs bare same-worker (paired rounds)",
            task_ratio,
            1.5,
        ),
        (
            "actors, placement = thread vs hand-written thread per step (paired rounds)",
            thread_ratio,
            1.2,
        ),
    ] {
        let met = ratio <= limit;
        println!(
            "  {what:<72} {ratio:>5.2}x (limit {limit}x): {}",
            if met { "met" } else { "NOT met" }
        );
        json_rows.push(json!({"target": what, "ratio": ratio, "limit": limit, "met": met}));
    }

    let total = 20_000;
    let chain = stage(stage(stage(Input::<u64>::new()))).deploy().unwrap();
    let x = Input::<u64>::new().shared();
    let ensemble = sum([stage(x.clone()), stage(x)]).deploy().unwrap();
    println!("\nthroughput, actors (2 replicas per step, thread placement), calls/s");
    println!(
        "{:<24} {:>12} {:>12} {:>12}",
        "graph", "1 in flight", "8 in flight", "64 in flight"
    );
    for (name, p) in [("3-step chain", &chain), ("2-branch ensemble", &ensemble)] {
        let rates: Vec<f64> = [1, 8, 64]
            .iter()
            .map(|&k| rt.block_on(throughput(p, total, k)))
            .collect();
        println!(
            "{:<24} {:>12.0} {:>12.0} {:>12.0}",
            name, rates[0], rates[1], rates[2]
        );
        json_rows.push(json!({"graph": name, "calls_per_s_1": rates[0], "calls_per_s_8": rates[1], "calls_per_s_64": rates[2]}));
    }

    println!(
        "\nbatching: a model step costing 200 us per call + 5 us per item, 32 callers, 1 replica"
    );
    let unbatched = unbatched_model(Input::<u64>::new()).deploy().unwrap();
    let batched = batched_model(Input::<u64>::new()).deploy().unwrap();
    let calls = 4_000;
    let u = rt.block_on(throughput(&unbatched, calls, 32));
    let b = rt.block_on(throughput(&batched, calls, 32));
    let h = &batched.health().steps[0];
    let mean_batch = h.batched_calls as f64 / h.batches.max(1) as f64;
    println!("{:<24} {:>12.0} calls/s", "unbatched", u);
    println!(
        "{:<24} {:>12.0} calls/s  (mean batch {mean_batch:.1}, {:.1}x)",
        "batch(max_size = 32)",
        b,
        b / u
    );
    json_rows.push(json!({"batching": "32 callers", "unbatched_calls_per_s": u, "batched_calls_per_s": b, "mean_batch": mean_batch, "speedup": b / u}));

    println!("\nmemory per idle replica (RSS, 64 replicas of a trivial step)");
    #[step(mode = "actors", replicas = 64, placement = "thread")]
    fn idle_thread(x: u64) -> u64 {
        x
    }
    #[step(mode = "actors", replicas = 64, placement = "task")]
    fn idle_task(x: u64) -> u64 {
        x
    }
    for (name, which) in [("thread placement", 0), ("task placement", 1)] {
        let before = rss_mib();
        let p = match which {
            0 => idle_thread(Input::<u64>::new()).deploy().unwrap(),
            _ => idle_task(Input::<u64>::new()).deploy().unwrap(),
        };
        rt.block_on(async { p.call_async(1).await.unwrap() });
        let per = (rss_mib() - before) * 1024.0 / 64.0;
        println!("{name:<24} {per:>8.1} KiB per replica");
        json_rows.push(json!({"memory": name, "kib_per_replica": per}));
        drop(p);
    }

    // DESIGN section 6: a long run holds flat memory, refusals included.
    let rounds = 10;
    let per_round = 100_000u64;
    println!(
        "\nlong run: 2-branch ensemble, queue bound 16, 256 calls in flight (more than fit: some refused), RSS after each {per_round} calls"
    );
    let x = Input::<u64>::new().shared();
    let long = sum([stage(x.clone()), stage(x)])
        .deploy_with(DeployOptions::new().default_queue_bound(16))
        .unwrap();
    let (mut rss, mut answered, mut refused) = (Vec::new(), 0u64, 0u64);
    for round in 0..rounds {
        let (ok, overloaded) = rt.block_on(async {
            futures::stream::iter(round * per_round..(round + 1) * per_round)
                .map(|i| long.call_async(i))
                .buffer_unordered(256)
                .fold((0u64, 0u64), |(ok, over), r| {
                    futures::future::ready(match r {
                        Ok(_) => (ok + 1, over),
                        Err(PipelineError::Overloaded { .. }) => (ok, over + 1),
                        Err(e) => panic!("unexpected error: {e}"),
                    })
                })
                .await
        });
        answered += ok;
        refused += overloaded;
        rss.push(rss_mib());
    }
    let line: Vec<String> = rss.iter().map(|m| format!("{m:.1}")).collect();
    println!("RSS MiB by round: {}", line.join(", "));
    let growth = rss[rss.len() - 1] - rss[0];
    println!(
        "{answered} answered, {refused} refused as Overloaded; growth from round 1 to {rounds}: {growth:+.2} MiB"
    );
    json_rows.push(json!({"long_run": "2-branch ensemble", "calls": rounds * per_round, "answered": answered, "refused": refused, "rss_mib_by_round": rss, "growth_mib": growth}));

    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out).unwrap();
    let path = out.join("runtime.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&json!({"benchmark": "runtime", "rows": json_rows})).unwrap(),
    )
    .unwrap();
    println!("wrote {}", path.display());
}
