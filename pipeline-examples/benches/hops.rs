//! Per-hop overhead of local mode: a chain of trivial steps against the same
//! chain of direct function calls.
//!
//! `cargo bench -p pipeline-examples --bench hops` prints a table and writes
//! `target/bench/hops.json`. Per-hop cost is the slope between chains of 1
//! and 16 steps, so the fixed per-call cost (the call's context, the root
//! future, the blocking hand-off) is reported separately.
//!
//! A second table times the primitives a step call is made of (a clock
//! read, a boxed future, an atomic, a disabled tracing span, a oneshot...),
//! so that a hop's cost in `benches/runtime.rs` can be read as a sum of
//! known parts.

use std::hint::black_box;
use std::time::{Duration, Instant};

use pipeline_core::prelude::*;

#[step]
fn inc(x: u64) -> u64 {
    x.wrapping_add(1)
}

#[inline(never)]
fn inc_direct(x: u64) -> u64 {
    black_box(x).wrapping_add(1)
}

macro_rules! nest {
    ($f:ident; []; $e:expr) => { $e };
    ($f:ident; [$h:tt $($t:tt)*]; $e:expr) => { $f(nest!($f; [$($t)*]; $e)) };
}

/// Median over `rounds` of the mean time per iteration of `f`, in ns.
fn time_per_iter(iters: u32, rounds: usize, mut f: impl FnMut(u64) -> u64) -> f64 {
    let mut acc = 0u64;
    for i in 0..iters / 10 {
        acc = acc.wrapping_add(f(u64::from(i)));
    }
    let samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for i in 0..iters {
                acc = acc.wrapping_add(f(u64::from(i)));
            }
            per_iter(start.elapsed(), iters)
        })
        .collect();
    black_box(acc);
    median(samples)
}

fn per_iter(elapsed: Duration, iters: u32) -> f64 {
    elapsed.as_nanos() as f64 / f64::from(iters)
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

struct Row {
    name: &'static str,
    steps: usize,
    ns_per_call: f64,
}

fn main() {
    let iters = 200_000;
    let rounds = 7;
    let mut rows = Vec::new();
    let mut record = |name, steps, ns_per_call: f64| {
        rows.push(Row {
            name,
            steps,
            ns_per_call,
        })
    };

    let direct1 = |x| inc_direct(x);
    let direct16 = |x| {
        let mut x = x;
        for _ in 0..16 {
            x = inc_direct(x);
        }
        x
    };
    record("direct calls", 1, time_per_iter(iters, rounds, direct1));
    record("direct calls", 16, time_per_iter(iters, rounds, direct16));

    let p1 = nest!(inc; [x]; Input::<u64>::new()).deploy().unwrap();
    let p16 = nest!(inc; [x x x x x x x x x x x x x x x x]; Input::<u64>::new())
        .deploy()
        .unwrap();
    assert_eq!(p16.call(0).unwrap(), 16);
    record(
        "local, call (blocking)",
        1,
        time_per_iter(iters, rounds, |x| p1.call(x).unwrap()),
    );
    record(
        "local, call (blocking)",
        16,
        time_per_iter(iters, rounds, |x| p16.call(x).unwrap()),
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let in_task = |p: &Pipeline<u64, u64>| {
        let p = p.clone();
        rt.block_on(async move {
            let start = Instant::now();
            let mut acc = 0u64;
            for i in 0..u64::from(iters) {
                acc = acc.wrapping_add(p.call_async(i).await.unwrap());
            }
            black_box(acc);
            per_iter(start.elapsed(), iters)
        })
    };
    record(
        "local, call_async in a task",
        1,
        median((0..rounds).map(|_| in_task(&p1)).collect()),
    );
    record(
        "local, call_async in a task",
        16,
        median((0..rounds).map(|_| in_task(&p16)).collect()),
    );

    let ns = |name: &str, steps: usize| {
        rows.iter()
            .find(|r| r.name == name && r.steps == steps)
            .map(|r| r.ns_per_call)
            .unwrap_or(f64::NAN)
    };
    let per_hop = |name: &str| (ns(name, 16) - ns(name, 1)) / 15.0;
    let direct_hop = per_hop("direct calls");

    println!("local mode: chain of trivial steps vs direct calls ({iters} calls x {rounds} rounds, median)");
    println!(
        "{:<30} {:>6} {:>12} {:>14} {:>14}",
        "runner", "steps", "ns/call", "ns/hop", "overhead/hop"
    );
    let mut json_rows = Vec::new();
    for name in [
        "direct calls",
        "local, call (blocking)",
        "local, call_async in a task",
    ] {
        let hop = per_hop(name);
        for steps in [1, 16] {
            println!(
                "{:<30} {:>6} {:>12.1} {:>14.1} {:>14.1}",
                name,
                steps,
                ns(name, steps),
                hop,
                hop - direct_hop
            );
            json_rows.push(serde_json::json!({
                "runner": name,
                "steps": steps,
                "ns_per_call": ns(name, steps),
                "ns_per_hop": hop,
                "overhead_ns_per_hop": hop - direct_hop,
            }));
        }
    }
    let target = 200.0;
    let worst =
        per_hop("local, call (blocking)").max(per_hop("local, call_async in a task")) - direct_hop;
    println!(
        "target: local-mode overhead under {target} ns per hop: {}",
        if worst < target { "met" } else { "NOT met" }
    );

    let primitives = primitives();

    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out).unwrap();
    let path = out.join("hops.json");
    let json = serde_json::json!({ "benchmark": "hops", "rows": json_rows, "target_ns_per_hop": target, "primitives_ns": primitives });
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    println!("wrote {}", path.display());
}

/// Best-of-5 mean time of `f`, in ns.
fn best_ns(iters: u64, mut f: impl FnMut(u64)) -> f64 {
    for i in 0..iters / 10 {
        f(i);
    }
    (0..5)
        .map(|_| {
            let start = Instant::now();
            for i in 0..iters {
                f(i);
            }
            start.elapsed().as_nanos() as f64 / iters as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// The primitives of a step call, timed alone (ns per operation).
fn primitives() -> serde_json::Value {
    use std::sync::atomic::{AtomicU64, Ordering};
    let n = 2_000_000;
    let a = AtomicU64::new(0);
    let live = std::sync::RwLock::new(vec![AtomicU64::new(0)]);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(256);
    type Boxed = std::pin::Pin<Box<dyn std::future::Future<Output = u64> + Send>>;
    let rows: Vec<(&str, f64)> = vec![
        (
            "Instant::now()",
            best_ns(n, |_| {
                black_box(Instant::now());
            }),
        ),
        (
            "atomic fetch_add, Relaxed",
            best_ns(n, |i| {
                a.fetch_add(black_box(i), Ordering::Relaxed);
            }),
        ),
        (
            "atomic fetch_add, SeqCst",
            best_ns(n, |i| {
                a.fetch_add(black_box(i), Ordering::SeqCst);
            }),
        ),
        (
            "RwLock read + min_by_key over 1",
            best_ns(n, |_| {
                let live = live.read().unwrap();
                black_box(live.iter().min_by_key(|r| r.load(Ordering::Relaxed)));
            }),
        ),
        (
            "future polled in place",
            best_ns(n, |i| {
                black_box(futures::executor::block_on(async move { black_box(i) }));
            }),
        ),
        (
            "future boxed (Box::pin), polled",
            best_ns(n, |i| {
                let f: Boxed = Box::pin(async move { black_box(i) });
                black_box(futures::executor::block_on(f));
            }),
        ),
        (
            "tracing: disabled debug span + event",
            best_ns(n, |_| {
                let span = tracing::debug_span!("step", step = "x");
                tracing::debug!(parent: &span, ok = true, "step answered");
                black_box(span);
            }),
        ),
        (
            "oneshot: channel, send, receive",
            best_ns(n, |i| {
                let (reply, mut answer) = tokio::sync::oneshot::channel::<u64>();
                let _ = reply.send(i);
                black_box(answer.try_recv().ok());
            }),
        ),
        (
            "mpsc (bounded): try_send + try_recv",
            best_ns(n, |i| {
                let _ = tx.try_send(i);
                black_box(rx.try_recv().ok());
            }),
        ),
    ];
    println!("\nprimitives of a step call (best of 5, ns per operation)");
    for (name, ns) in &rows {
        println!("{name:<40} {ns:>8.1}");
    }
    serde_json::Value::Object(
        rows.into_iter()
            .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
            .collect(),
    )
}
