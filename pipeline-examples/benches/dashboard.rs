//! What the dashboard page costs the server: the page's size (sent once),
//! the bytes of each refresh (`GET /graph?format=json`, once a second per
//! open page) and the CPU each refresh takes, against `GET /healthz` (the
//! same HTTP round trip with a trivial answer) in the same run.
//!
//! `cargo bench -p pipeline-examples --features http --bench dashboard`
//! prints the table and writes `target/bench/dashboard.json`. Served: seed
//! 001 and the stand-in image ensemble (the seed's shape: preprocess ->
//! two classifier models -> combine, no libtorch), after some traffic so
//! that every histogram has counts. CPU is the whole process's (server and
//! the benchmark's own client, from `/proc/self/stat`) over 3,000
//! sequential requests, so the `/healthz` row is the floor that any
//! request costs here.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use pipeline_core::http::{HttpRequest, Ingress};
use pipeline_core::prelude::*;
use pipeline_examples::{combine, preprocess, Classifier};

const REQUESTS: usize = 3_000;

fn main() {
    let seed = pipeline_examples::seed001::graph()
        .deploy()
        .expect("deploy seed 001");
    let features = preprocess(Input::<Vec<u8>>::new()).shared();
    let models =
        ["resnet18", "resnet34"].map(|m| Classifier::bind(m.to_string(), features.clone()));
    let ensemble = combine(models).deploy().expect("deploy the ensemble");
    for i in 0..2_000u32 {
        let body = format!(r#"{{"values": [{}, 2, 3]}}"#, i % 7);
        seed.call(HttpRequest::builder().body(body).build())
            .expect("seed call");
        ensemble
            .call(vec![(i % 251) as u8; 64])
            .expect("ensemble call");
    }
    let ingress = Ingress::new()
        .request("/predict", seed)
        .json("/classify", ensemble);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        ingress
            .serve_until(listener, std::future::pending())
            .await
            .expect("serve");
    });

    let page = get(addr, "/dashboard").len();
    let mut rows = Vec::new();
    for path in ["/healthz", "/graph?format=json"] {
        // Warm the connection path and the allocator first.
        for _ in 0..200 {
            get(addr, path);
        }
        let cpu = cpu_seconds();
        let start = Instant::now();
        let mut bytes = 0;
        for _ in 0..REQUESTS {
            bytes = get(addr, path).len();
        }
        let wall = start.elapsed().as_secs_f64() / REQUESTS as f64;
        let cpu = (cpu_seconds() - cpu) / REQUESTS as f64;
        rows.push((path, bytes, wall, cpu));
    }
    let floor = rows[0].3;

    println!("dashboard page: {page} bytes, sent once per page load\n");
    println!("| request | body bytes | wall per request (µs) | CPU per request (µs) | CPU at 1 request/s (% of one core) |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (path, bytes, wall, cpu) in &rows {
        println!(
            "| `GET {path}` | {bytes} | {:.0} | {:.0} | {:.4} |",
            wall * 1e6,
            cpu * 1e6,
            cpu * 100.0
        );
    }
    let refresh = rows[1].3;
    println!(
        "\none open page: {} bytes/s, {:.0} µs CPU/s ({:.0} µs over a /healthz round trip)",
        rows[1].1,
        refresh * 1e6,
        (refresh - floor) * 1e6
    );
    let json = serde_json::json!({
        "bench": "dashboard",
        "requests_per_row": REQUESTS,
        "page_bytes": page,
        "rows": rows.iter().map(|(path, bytes, wall, cpu)| serde_json::json!({
            "request": format!("GET {path}"),
            "body_bytes": bytes,
            "wall_us": wall * 1e6,
            "cpu_us": cpu * 1e6,
        })).collect::<Vec<_>>(),
        "refresh_cpu_us_over_healthz": (refresh - floor) * 1e6,
    });
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out).expect("mkdir");
    let path = out.join("dashboard.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json).expect("json")).expect("write");
    println!("wrote {}", path.display());
}

/// One `GET` on a fresh connection (as a page's fetch after an idle second
/// may be); the body.
fn get(addr: SocketAddr, path: &str) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read");
    let head = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{path}: not 200");
    answer.split_off(head + 4)
}

/// User + system CPU time of this process so far (Linux `/proc`, in
/// clock ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / 100.0
}
