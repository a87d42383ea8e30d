//! Stream steps: per-item cost of a stream through a local, a tasks and an
//! actor step (and through `.map_each` of a plain step) against a bare
//! tokio mpsc stream of the same bound, in the same run; and, over HTTP,
//! time to first item and items per second as Server-Sent Events.
//!
//! `cargo bench -p pipeline-examples --features http --bench streams`
//! prints the tables and writes `target/bench/streams.json`. The consumer
//! is a task on a multi-thread runtime (as an HTTP handler is); each row
//! is the median of 7 rounds of 100,000 items.

use std::io::{BufRead, BufReader, Write};
use std::time::{Duration, Instant};

use futures::StreamExt;
use pipeline_core::http::Ingress;
use pipeline_core::prelude::*;

const ITEMS: u64 = 100_000;
const ROUNDS: usize = 7;

#[step]
fn count_local(n: u64) -> ItemStream<u64> {
    ItemStream::iter(0..n)
}

#[step(mode = "tasks")]
fn count_tasks(n: u64) -> ItemStream<u64> {
    ItemStream::iter(0..n)
}

#[step(mode = "actors")]
fn count_actor(n: u64) -> ItemStream<u64> {
    ItemStream::iter(0..n)
}

#[step(mode = "actors", placement = "task")]
fn count_task_actor(n: u64) -> ItemStream<u64> {
    ItemStream::iter(0..n)
}

#[step]
fn inc(x: u64) -> u64 {
    x.wrapping_add(1)
}

/// Nanoseconds per item of one stream of `ITEMS`, median of `ROUNDS`.
fn per_item<F, Fut>(rt: &tokio::runtime::Runtime, run: F) -> f64
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = u64> + Send,
{
    let samples = rt
        .block_on(rt.spawn(async move {
            let _ = run().await; // warm-up
            let mut samples = Vec::new();
            for _ in 0..ROUNDS {
                let start = Instant::now();
                let sum = run().await;
                samples.push(start.elapsed().as_nanos() as f64 / ITEMS as f64);
                assert_eq!(sum, ITEMS * (ITEMS - 1) / 2, "every item, once");
            }
            samples
        }))
        .expect("the consumer task");
    median(samples)
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

async fn sum(items: ItemStream<u64>) -> u64 {
    items
        .fold(0u64, |acc, x| async move { acc + x.expect("an item") })
        .await
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut rows = Vec::new();

    let bare = per_item(&rt, || async {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(16);
        tokio::spawn(async move {
            for i in 0..ITEMS {
                if tx.send(i).await.is_err() {
                    break;
                }
            }
        });
        let mut sum = 0;
        while let Some(x) = rx.recv().await {
            sum += x;
        }
        sum
    });
    rows.push(("bare tokio mpsc (bound 16), producer task", bare));
    let bare_thread = per_item(&rt, || async {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(16);
        std::thread::spawn(move || {
            for i in 0..ITEMS {
                if tx.blocking_send(i).is_err() {
                    break;
                }
            }
        });
        let mut sum = 0;
        while let Some(x) = rx.recv().await {
            sum += x;
        }
        sum
    });
    rows.push(("bare tokio mpsc (bound 16), producer thread", bare_thread));

    let _guard = rt.enter();
    let local = count_local(Input::<u64>::new()).deploy().expect("deploy");
    rows.push((
        "local stream step",
        per_item(&rt, move || sum(local.call_stream(ITEMS))),
    ));
    let tasks = count_tasks(Input::<u64>::new()).deploy().expect("deploy");
    rows.push((
        "tasks stream step",
        per_item(&rt, move || sum(tasks.call_stream(ITEMS))),
    ));
    let actor = count_actor(Input::<u64>::new()).deploy().expect("deploy");
    rows.push((
        "actor stream step (thread)",
        per_item(&rt, move || sum(actor.call_stream(ITEMS))),
    ));
    let task_actor = count_task_actor(Input::<u64>::new())
        .deploy()
        .expect("deploy");
    rows.push((
        "actor stream step (placement = task)",
        per_item(&rt, move || sum(task_actor.call_stream(ITEMS))),
    ));
    let mapped = count_tasks(Input::<u64>::new())
        .map_each(inc)
        .deploy()
        .expect("deploy");
    rows.push((
        "tasks stream step .map_each(local inc)",
        per_item(&rt, move || {
            let items = mapped.call_stream(ITEMS);
            async move { sum(items).await - ITEMS } // each item + 1
        }),
    ));

    println!(
        "\nper-item cost of a stream of {ITEMS} u64 items, consumer a task (median of {ROUNDS})"
    );
    println!("{:<44} {:>10} {:>10}", "stream", "ns/item", "vs bare");
    let mut json_rows = Vec::new();
    for (label, ns) in &rows {
        println!("{label:<44} {ns:>10.1} {:>9.2}x", ns / bare);
        json_rows.push(
            serde_json::json!({"stream": label, "ns_per_item": ns, "ratio_to_bare": ns / bare}),
        );
    }

    // Over HTTP: the tasks stream step served as SSE on loopback.
    let sse = sse_figures(&rt);
    println!(
        "\nServer-Sent Events on loopback (tasks stream step, {} items per request)",
        sse.items
    );
    println!(
        "time to first item p50 {:.0} us, p99 {:.0} us (200 requests); {:.0} items/s in one stream of {}",
        sse.first_p50_us, sse.first_p99_us, sse.items_per_s, sse.items
    );
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out).expect("target/bench");
    let json = serde_json::json!({
        "benchmark": "streams",
        "items": ITEMS,
        "rows": json_rows,
        "sse": {
            "first_item_p50_us": sse.first_p50_us,
            "first_item_p99_us": sse.first_p99_us,
            "items_per_s": sse.items_per_s,
            "items": sse.items,
        },
    });
    let path = out.join("streams.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json).expect("json")).expect("write");
    println!("\nwrote {}", path.display());
}

struct Sse {
    first_p50_us: f64,
    first_p99_us: f64,
    items_per_s: f64,
    items: u64,
}

fn sse_figures(rt: &tokio::runtime::Runtime) -> Sse {
    let p = count_tasks(Input::<u64>::new()).deploy().expect("deploy");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        Ingress::new()
            .stream("/count", p)
            .serve_until(listener, async move {
                let _ = stopped.await;
            })
            .await
    });
    // Time to first item: short streams, one request at a time.
    let mut firsts: Vec<Duration> = (0..220)
        .map(|_| {
            let (first, _, _) = sse_request(addr, 3);
            first
        })
        .skip(20)
        .collect();
    firsts.sort();
    let at = |q: f64| firsts[((firsts.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    // Items per second: one long stream.
    let n = 200_000;
    let (_, total, items) = sse_request(addr, n);
    assert_eq!(items, n, "every item arrived");
    let _ = stop.send(());
    let _ = rt.block_on(server);
    Sse {
        first_p50_us: at(0.5),
        first_p99_us: at(0.99),
        items_per_s: n as f64 / total.as_secs_f64(),
        items: n,
    }
}

/// POSTs `n` to `/count` asking for SSE; the time to the first item's
/// event, the time to the end, and how many items came.
fn sse_request(addr: std::net::SocketAddr, n: u64) -> (Duration, Duration, u64) {
    let body = n.to_string();
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let start = Instant::now();
    write!(
        stream,
        "POST /count HTTP/1.1\r\nhost: bench\r\naccept: text/event-stream\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut reader = BufReader::new(stream);
    let (mut first, mut items) = (None, 0u64);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).expect("read") == 0 {
            break;
        }
        // Chunked framing lines and event names are skipped; each item is
        // one `data:` line (the final `done` event's data is an object).
        if let Some(data) = line.strip_prefix("data:") {
            if data.trim_start().starts_with('{') {
                break;
            }
            items += 1;
            first.get_or_insert_with(|| start.elapsed());
        }
    }
    (first.unwrap_or_default(), start.elapsed(), items)
}
