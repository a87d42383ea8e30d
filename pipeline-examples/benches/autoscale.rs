//! Autoscaling under a bursty load (DESIGN section 6): idle, then 32
//! concurrent callers, then idle again, against a step whose call costs
//! about 1 ms. The same step is deployed three ways: a fixed 1 replica, a
//! fixed 8, and autoscaled 1..=8. For each: calls answered and refused,
//! throughput and p50/p99/max latency under the burst (and in its first
//! 500 ms, before an autoscaled step has grown), how long the replicas took
//! to reach 8 and to come back to 1, and the replicas over time.
//!
//! The step blocks its replica's thread for 1 ms (`std::thread::sleep`),
//! modelling a GPU- or IO-bound model: its replica waits, the CPU is free,
//! so more replicas add capacity. A CPU-bound step (a spin loop) would be
//! capped by the machine's cores (2 on the VMs this runs on), and replicas
//! beyond that would add nothing but contention.
//!
//! `cargo bench -p pipeline-examples --bench autoscale` prints a table and
//! writes `target/bench/autoscale.json` (all numbers, the replica timelines
//! and per-100 ms latency timelines).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pipeline_core::prelude::*;
use pipeline_core::AutoscalePolicy;
use serde_json::{json, Value};

/// The step's name, as deploy options address it.
const STEP: &str = "model_1ms";
/// Most replicas: the fixed-max configuration and the autoscaler's bound.
const MAX_REPLICAS: usize = 8;
/// Concurrent callers during the burst.
const CALLERS: u64 = 32;
/// Mailbox bound per replica: above `CALLERS`, so even one replica holding
/// every caller's call refuses none.
const QUEUE_BOUND: usize = 64;
const IDLE_BEFORE: Duration = Duration::from_secs(1);
const BURST: Duration = Duration::from_secs(4);
const IDLE_AFTER: Duration = Duration::from_secs(4);
/// The first part of the burst, reported on its own.
const BURST_HEAD: Duration = Duration::from_millis(500);
/// How often the replica count is read (the JSON timeline is every 100 ms;
/// the finer reads time the transitions).
const POLL: Duration = Duration::from_millis(10);
const TIMELINE_STEP: Duration = Duration::from_millis(100);
/// One number per this in the printed replicas line.
const LINE_STEP: Duration = Duration::from_millis(250);

/// Short delays suited to a benchmark (the defaults are 1 s and 30 s).
const POLICY: AutoscalePolicy = AutoscalePolicy {
    min_replicas: 1,
    max_replicas: MAX_REPLICAS,
    target_ongoing_requests: 2,
    upscale_delay_ms: 200,
    downscale_delay_ms: 2_000,
};

/// A model call costing about 1 ms of waiting (see the module's comment).
#[step(mode = "actors", placement = "thread")]
fn model_1ms(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(1));
    x + 1
}

/// One call: when it started (since the run began), how long it took,
/// and its error's kind if it failed.
struct Call {
    start: Duration,
    latency: Duration,
    error: Option<String>,
}

/// One read of the step's health: (since the run began, replicas built,
/// target).
type Sample = (Duration, usize, usize);

/// What one configuration's run recorded.
struct Run {
    calls: Vec<Call>,
    samples: Vec<Sample>,
    burst_start: Duration,
    /// When the last caller got its last answer.
    burst_end: Duration,
}

/// The variant's name of a call's error (`Overloaded`, `ShuttingDown`...).
fn kind(e: &PipelineError) -> String {
    let debug = format!("{e:?}");
    debug
        .split(|c: char| !c.is_alphanumeric() && c != '_')
        .next()
        .unwrap_or("?")
        .to_string()
}

/// Runs the load shape against `p`: idle, `CALLERS` callers each calling
/// in a loop for `BURST`, idle; its health polled all along.
async fn run(p: &Pipeline<u64, u64>) -> Run {
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (p, stop) = (p.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut ticks = tokio::time::interval(POLL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop.load(Ordering::Relaxed) {
                ticks.tick().await;
                let h = &p.health().steps[0];
                samples.push((t0.elapsed(), h.replicas, h.target_replicas));
            }
            samples
        })
    };
    tokio::time::sleep(IDLE_BEFORE).await;
    let burst_start = t0.elapsed();
    let deadline = t0 + burst_start + BURST;
    let callers: Vec<_> = (0..CALLERS)
        .map(|c| {
            let p = p.clone();
            tokio::spawn(async move {
                let mut calls = Vec::new();
                let mut x = c << 32;
                while Instant::now() < deadline {
                    let start = Instant::now();
                    let r = p.call_async(x).await;
                    let latency = start.elapsed();
                    let error = match r {
                        Ok(y) => {
                            assert_eq!(y, x + 1);
                            None
                        }
                        Err(e) => Some(kind(&e)),
                    };
                    calls.push(Call {
                        start: start - t0,
                        latency,
                        error,
                    });
                    x += 1;
                }
                calls
            })
        })
        .collect();
    let mut calls = Vec::new();
    for caller in callers {
        calls.extend(caller.await.expect("caller"));
    }
    let burst_end = t0.elapsed();
    tokio::time::sleep((burst_start + BURST + IDLE_AFTER).saturating_sub(t0.elapsed())).await;
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.await.expect("sampler");
    Run {
        calls,
        samples,
        burst_start,
        burst_end,
    }
}

/// The `p` quantile of sorted latencies, in ms (NaN for none).
fn quantile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// p50, p99 and max of `latencies`, in ms.
fn summary(mut latencies: Vec<Duration>) -> [f64; 3] {
    latencies.sort_unstable();
    [
        quantile_ms(&latencies, 0.5),
        quantile_ms(&latencies, 0.99),
        quantile_ms(&latencies, 1.0),
    ]
}

/// The first sample at or after `from` satisfying `ok`, as time since `from`
/// in ms.
fn first_after(samples: &[Sample], from: Duration, ok: impl Fn(&Sample) -> bool) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.0 >= from && ok(s))
        .map(|s| (s.0 - from).as_secs_f64() * 1e3)
}

/// The replicas at the first sample at or after each multiple of `step`.
fn timeline(samples: &[Sample], step: Duration, until: Duration) -> Vec<(f64, usize, usize)> {
    let mut out = Vec::new();
    let mut mark = Duration::ZERO;
    while mark < until {
        if let Some(s) = samples.iter().find(|s| s.0 >= mark) {
            out.push((mark.as_secs_f64(), s.1, s.2));
        }
        mark += step;
    }
    out
}

fn fmt_ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.0}"),
        _ => "-".to_string(),
    }
}

/// The step cost as this machine delivers it: `thread::sleep(1 ms)` sleeps
/// a little longer than asked.
fn sleep_cost_ms() -> f64 {
    let n = 200;
    let start = Instant::now();
    for _ in 0..n {
        std::thread::sleep(Duration::from_millis(1));
    }
    start.elapsed().as_secs_f64() * 1e3 / f64::from(n)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // Deployed inside the callers' runtime, as in a user's service.
    let _in_runtime = rt.enter();
    let step_ms = sleep_cost_ms();
    let configs: [(&str, DeployOptions); 3] = [
        ("fixed 1", DeployOptions::new().replicas(STEP, 1)),
        ("fixed 8", DeployOptions::new().replicas(STEP, MAX_REPLICAS)),
        (
            "autoscaled 1..=8",
            DeployOptions::new().autoscale(STEP, POLICY),
        ),
    ];
    let total = IDLE_BEFORE + BURST + IDLE_AFTER;
    println!(
        "autoscaling: bursty load on an actor step (thread placement) blocking {step_ms:.3} ms per call \
         (std::thread::sleep(1 ms) measured here)"
    );
    println!(
        "load: idle {:.0} s, {CALLERS} callers calling in a loop for {:.0} s, idle {:.0} s; queue bound {QUEUE_BOUND} per replica",
        IDLE_BEFORE.as_secs_f64(),
        BURST.as_secs_f64(),
        IDLE_AFTER.as_secs_f64()
    );
    println!(
        "autoscale policy: {}..={} replicas, target_ongoing_requests {}, upscale delay {} ms, downscale delay {} ms",
        POLICY.min_replicas,
        POLICY.max_replicas,
        POLICY.target_ongoing_requests,
        POLICY.upscale_delay_ms,
        POLICY.downscale_delay_ms
    );
    println!(
        "latency in ms of calls started in the burst (all of it / its first {} ms); \
         \"up to 8\": ms from burst start until 8 replicas were built; \"down to 1\": ms from burst end until 1 was left\n",
        BURST_HEAD.as_millis()
    );
    println!(
        "{:<18} {:>8} {:>6} {:>8} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "config",
        "answered",
        "errors",
        "calls/s",
        "p50",
        "p99",
        "max",
        "p50 500",
        "p99 500",
        "max 500",
        "up to 8",
        "down to 1"
    );
    let mut rows = Vec::new();
    let mut lines = Vec::new();
    for (label, options) in configs {
        let p = model_1ms(Input::<u64>::new())
            .deploy_with(options.queue_bound(STEP, QUEUE_BOUND))
            .expect("deploy");
        // One call first, so nothing is cold when the clock starts.
        rt.block_on(p.call_async(0)).expect("warm-up call");
        let r = rt.block_on(run(&p));
        drop(p);

        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        for e in r.calls.iter().filter_map(|c| c.error.as_ref()) {
            *errors.entry(e.clone()).or_default() += 1;
        }
        let answered = r.calls.iter().filter(|c| c.error.is_none()).count();
        let error_count: u64 = errors.values().sum();
        let burst_secs = (r.burst_end - r.burst_start).as_secs_f64();
        let rate = answered as f64 / burst_secs;
        let ok = || r.calls.iter().filter(|c| c.error.is_none());
        let all = summary(ok().map(|c| c.latency).collect());
        let head = summary(
            ok().filter(|c| c.start < r.burst_start + BURST_HEAD)
                .map(|c| c.latency)
                .collect(),
        );
        let autoscaled = label.starts_with("autoscaled");
        let up_target =
            first_after(&r.samples, r.burst_start, |s| s.2 >= MAX_REPLICAS).filter(|_| autoscaled);
        let up_built =
            first_after(&r.samples, r.burst_start, |s| s.1 >= MAX_REPLICAS).filter(|_| autoscaled);
        let down = first_after(&r.samples, r.burst_end, |s| s.1 == 1).filter(|_| autoscaled);
        // Replicas at each change, to show oscillation if any.
        let mut changes: Vec<(f64, usize)> = Vec::new();
        let mut last = None;
        for s in &r.samples {
            if last != Some(s.1) {
                changes.push((s.0.as_secs_f64(), s.1));
                last = Some(s.1);
            }
        }
        let after_down_min_max = down.map(|d| {
            let from = r.burst_end + Duration::from_secs_f64(d / 1e3);
            let after: Vec<usize> = r
                .samples
                .iter()
                .filter(|s| s.0 >= from)
                .map(|s| s.1)
                .collect();
            (
                after.iter().copied().min().unwrap_or(0),
                after.iter().copied().max().unwrap_or(0),
            )
        });
        let per_line = timeline(&r.samples, LINE_STEP, total);
        let line: String = per_line
            .chunks((1.0 / LINE_STEP.as_secs_f64()).round() as usize)
            .map(|sec| sec.iter().map(|s| s.1.to_string()).collect::<String>())
            .collect::<Vec<_>>()
            .join(" ");
        // Latency by when calls started, per 100 ms of the burst.
        let mut latency_timeline = Vec::new();
        let mut mark = r.burst_start;
        while mark < r.burst_end {
            let next = mark + TIMELINE_STEP;
            let [p50, p99, max] = summary(
                ok().filter(|c| c.start >= mark && c.start < next)
                    .map(|c| c.latency)
                    .collect(),
            );
            let n = ok().filter(|c| c.start >= mark && c.start < next).count();
            latency_timeline.push(json!({
                "t_s": (mark - r.burst_start).as_secs_f64(),
                "calls": n, "p50_ms": p50, "p99_ms": p99, "max_ms": max,
            }));
            mark = next;
        }

        println!(
            "{:<18} {:>8} {:>6} {:>8.0} {:>7.2} {:>7.2} {:>7.2} {:>8.2} {:>8.2} {:>8.2} {:>8} {:>9}",
            label,
            answered,
            error_count,
            rate,
            all[0],
            all[1],
            all[2],
            head[0],
            head[1],
            head[2],
            fmt_ms(up_built),
            fmt_ms(down),
        );
        let decided = up_target.map_or(String::new(), |t| format!("target 8 at +{t:.0} ms; "));
        lines.push(format!(
            "{label:<18} {line}   ({decided}built replicas changed at s: {})",
            changes
                .iter()
                .map(|(t, n)| format!("{t:.2}->{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        rows.push(json!({
            "config": label,
            "answered": answered,
            "errors": error_count,
            "errors_by_kind": errors,
            "burst_s": burst_secs,
            "burst_start_s": r.burst_start.as_secs_f64(),
            "burst_end_s": r.burst_end.as_secs_f64(),
            "calls_per_s_burst": rate,
            "burst_latency_ms": {"p50": all[0], "p99": all[1], "max": all[2]},
            "burst_head_latency_ms": {"window_ms": BURST_HEAD.as_millis() as u64, "p50": head[0], "p99": head[1], "max": head[2]},
            "ms_to_target_8": up_target,
            "ms_to_8_replicas": up_built,
            "ms_from_burst_end_to_1_replica": down,
            "replicas_after_back_to_1_min_max": after_down_min_max,
            "replica_changes": changes.iter().map(|(t, n)| json!({"t_s": t, "replicas": n})).collect::<Vec<Value>>(),
            "replicas_every_250ms": per_line.iter().map(|s| s.1).collect::<Vec<_>>(),
            "replicas_timeline_100ms": timeline(&r.samples, TIMELINE_STEP, total)
                .iter()
                .map(|(t, n, target)| json!({"t_s": t, "replicas": n, "target": target}))
                .collect::<Vec<Value>>(),
            "latency_timeline_100ms": latency_timeline,
        }));
    }
    println!(
        "\nreplicas every {} ms (one group per second; burst from 1 s to 5 s):",
        LINE_STEP.as_millis()
    );
    for line in &lines {
        println!("{line}");
    }

    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out).unwrap();
    let path = out.join("autoscale.json");
    let doc = json!({
        "benchmark": "autoscale",
        "step_ms_measured": step_ms,
        "callers": CALLERS,
        "queue_bound": QUEUE_BOUND,
        "idle_before_s": IDLE_BEFORE.as_secs_f64(),
        "burst_s": BURST.as_secs_f64(),
        "idle_after_s": IDLE_AFTER.as_secs_f64(),
        "policy": {
            "min_replicas": POLICY.min_replicas,
            "max_replicas": POLICY.max_replicas,
            "target_ongoing_requests": POLICY.target_ongoing_requests,
            "upscale_delay_ms": POLICY.upscale_delay_ms,
            "downscale_delay_ms": POLICY.downscale_delay_ms,
        },
        "rows": rows,
    });
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    println!("wrote {}", path.display());
}
