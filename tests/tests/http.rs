//! The HTTP ingress, through a real HTTP client (ureq) against a served
//! pipeline: seed 001, each error status, 10k fuzzed requests, health,
//! metrics, the live graph, graceful shutdown (bounded by a grace period
//! whatever the clients do), the header read timeout, request ids.
#![cfg(feature = "http")]

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};

mod support;

use pipeline_core::http::{HttpRequest, Ingress};
use pipeline_core::prelude::*;
use pipeline_examples::seed001::{self, Prediction};
use support::http::{agent, get, post, Server};

fn seed_server() -> Server {
    let p = seed001::graph().deploy().expect("deploy");
    Server::start(Ingress::new().request("/predict", p).body_limit(4096))
}

#[test]
fn seed001_answers_over_http() {
    let server = seed_server();
    let (status, json, headers) = post(&server.url("/predict"), br#"{"values": [1, 2, 6]}"#);
    assert_eq!(status, 200, "{json}");
    let answer: Prediction = serde_json::from_value(json).expect("a Prediction");
    // mean 3: features [-2, -1, 3]; weight 0.5: 0.5 * (-2*1 - 1*2 + 3*3) = 2.5
    assert_eq!(answer.score, 2.5);
    assert_eq!(answer.label, "positive");
    assert!(headers.contains_key("x-request-id"));
    // The query string reaches the preprocessor.
    let (status, json, _) = post(
        &server.url("/predict?scale=-1"),
        br#"{"values": [1, 2, 6]}"#,
    );
    assert_eq!((status, json["label"].as_str()), (200, Some("negative")));
    server.shutdown().expect("clean shutdown");
}

#[test]
fn bad_input_gets_400_422_413_with_clear_bodies() {
    let server = seed_server();
    let url = server.url("/predict");
    let (status, json, _) = post(&url, b"{\"values\": [1, 2");
    assert_eq!(status, 400, "{json}");
    assert_eq!(json["kind"], "malformed");
    assert!(
        json["error"].as_str().unwrap().contains("malformed JSON"),
        "{json}"
    );

    let (status, json, _) = post(&url, br#"{"values": "three"}"#);
    assert_eq!(status, 422, "{json}");
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("invalid type: string"),
        "serde's message: {json}"
    );

    let (status, json, _) = post(&url, br#"{"values": []}"#);
    assert_eq!(status, 422, "{json}");

    let (status, json, _) = post(
        &url,
        format!("{{\"values\": [{}]}}", "1,".repeat(3000) + "1").as_bytes(),
    );
    assert_eq!(status, 413, "{json}");
    assert!(json["error"].as_str().unwrap().contains("4096"), "{json}");

    let (status, _, _) = post(&server.url("/nope"), b"{}");
    assert_eq!(status, 404);
    // Still up.
    assert_eq!(post(&url, br#"{"values": [1]}"#).0, 200);
}

/// A gate steps wait at, opened by the test (no sleeps).
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
    waiting: Mutex<usize>,
    arrived: Condvar,
}

impl Gate {
    fn pass(&self) {
        *self.waiting.lock().unwrap() += 1;
        self.arrived.notify_all();
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.cv.wait(open).unwrap();
        }
    }
    fn wait_for(&self, n: usize) {
        let mut waiting = self.waiting.lock().unwrap();
        while *waiting < n {
            waiting = self.arrived.wait(waiting).unwrap();
        }
    }
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

static GATE: std::sync::LazyLock<Mutex<Arc<Gate>>> =
    std::sync::LazyLock::new(|| Mutex::new(Arc::new(Gate::default())));

fn gate() -> Arc<Gate> {
    GATE.lock().unwrap().clone()
}

#[step(mode = "actors", replicas = 1)]
fn gated(x: i64) -> Result<i64, String> {
    gate().pass();
    if x < 0 {
        Err(format!("{x} is negative"))
    } else {
        Ok(x * 2)
    }
}

/// Tests that use the gate take turns.
static GATE_TURN: Mutex<()> = Mutex::new(());

fn fresh_gate() -> (std::sync::MutexGuard<'static, ()>, Arc<Gate>) {
    let turn = GATE_TURN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let g = Arc::new(Gate::default());
    *GATE.lock().unwrap() = Arc::clone(&g);
    (turn, g)
}

#[test]
fn overload_step_error_and_deadline_statuses() {
    let (_turn, gate) = fresh_gate();
    let p = gated(Input::<i64>::new())
        .deploy_with(DeployOptions::new().queue_bound("gated", 1))
        .expect("deploy");
    let server = Server::start(Ingress::new().json("/gated", p));
    let url = server.url("/gated");
    // One call runs (held at the gate), one waits in the mailbox of 1.
    let first = {
        let u = url.clone();
        std::thread::spawn(move || post(&u, b"1"))
    };
    gate.wait_for(1);
    let second = {
        let u = url.clone();
        std::thread::spawn(move || post(&u, b"2"))
    };
    // The mailbox is full once the metrics say one call is queued.
    loop {
        let (_, metrics) = get(&server.url("/metrics"));
        if metrics.contains("pipeline_step_queue_depth{route=\"/gated\",step=\"gated\"} 1") {
            break;
        }
        std::thread::yield_now();
    }
    let (status, json, headers) = post(&url, b"3");
    assert_eq!(status, 503, "{json}");
    assert_eq!(json["kind"], "overloaded");
    assert_eq!(
        headers.get("retry-after").map(|v| v.to_str().unwrap()),
        Some("1")
    );
    gate.open();
    assert_eq!(first.join().unwrap().0, 200);
    assert_eq!(second.join().unwrap().1, serde_json::json!(4));

    let (status, json, _) = post(&url, b"-5");
    assert_eq!(status, 500, "{json}");
    assert_eq!(json["step"], "gated");
    assert!(
        json["error"].as_str().unwrap().contains("-5 is negative"),
        "{json}"
    );
    drop(server);

    // A deadline: the step is held past the ingress's timeout.
    let (_, gate) = (/* same turn */ (), {
        let g = Arc::new(Gate::default());
        *GATE.lock().unwrap() = Arc::clone(&g);
        g
    });
    let p = gated(Input::<i64>::new()).deploy().expect("deploy");
    let server = Server::start(
        Ingress::new()
            .json("/gated", p)
            .timeout(std::time::Duration::from_millis(50)),
    );
    let (status, json, _) = post(&server.url("/gated"), b"1");
    assert_eq!(status, 504, "{json}");
    assert_eq!(json["kind"], "deadline");
    gate.open();
}

/// xorshift64*: a fixed-seed source of random requests.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn fuzz_10k_random_bodies_and_headers_never_take_the_server_down() {
    let server = seed_server();
    let url = server.url("/predict");
    let agent = agent();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let pieces: [&[u8]; 12] = [
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"values\"",
        b":",
        b",",
        b"1.5",
        b"-3",
        b"null",
        b"\"x\"",
        b"1e999",
    ];
    let token = b"abcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..10_000 {
        let body: Vec<u8> = match rng.below(4) {
            // Random bytes.
            0 => (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
            // Random JSON-ish tokens.
            1 => (0..rng.below(16))
                .flat_map(|_| pieces[rng.below(pieces.len() as u64) as usize].to_vec())
                .collect(),
            // A valid body, mutated at one byte.
            2 => {
                let mut b = br#"{"values": [1, 2, 3]}"#.to_vec();
                let at = rng.below(b.len() as u64) as usize;
                b[at] = rng.next() as u8;
                b
            }
            // Sometimes over the limit.
            _ => vec![b' '; rng.below(8192) as usize],
        };
        let mut request = agent.post(&format!("{url}?scale={}", rng.below(5)));
        for _ in 0..rng.below(4) {
            let name: String = (0..1 + rng.below(12))
                .map(|_| token[rng.below(token.len() as u64) as usize] as char)
                .collect();
            let value: String = (0..rng.below(24))
                .map(|_| (0x20 + rng.below(0x5f)) as u8 as char)
                .collect();
            request = request.header(format!("x-{name}"), value);
        }
        let response = request
            .send(&body[..])
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        let status = response.status().as_u16();
        assert!(
            matches!(status, 200 | 400 | 413 | 422),
            "request {i}: status {status} for {:?}",
            String::from_utf8_lossy(&body)
        );
        *statuses.entry(status).or_insert(0) += 1;
    }
    println!("statuses over 10k fuzzed requests: {statuses:?}");
    assert!(
        statuses.len() >= 3,
        "the fuzzer reaches several outcomes: {statuses:?}"
    );
    assert_eq!(get(&server.url("/healthz")).0, 200);
    assert_eq!(post(&url, br#"{"values": [1, 2]}"#).0, 200);
}

#[test]
fn health_metrics_and_live_graph() {
    let server = seed_server();
    assert_eq!(get(&server.url("/healthz")), (200, "ok\n".into()));
    assert_eq!(get(&server.url("/readyz")).0, 200);
    for _ in 0..3 {
        assert_eq!(
            post(&server.url("/predict"), br#"{"values": [1, 2]}"#).0,
            200
        );
    }
    assert_eq!(post(&server.url("/predict"), b"oops").0, 400);

    let (status, metrics) = get(&server.url("/metrics"));
    assert_eq!(status, 200);
    for line in [
        "# TYPE pipeline_step_requests_total counter",
        "pipeline_step_requests_total{route=\"/predict\",step=\"Model\"} 3",
        "pipeline_step_errors_total{route=\"/predict\",step=\"preprocessor\"} 1",
        "pipeline_step_replicas{route=\"/predict\",step=\"Model\"} 2",
        "pipeline_step_latency_seconds_count{route=\"/predict\",step=\"Model\"} 3",
        "pipeline_step_latency_seconds_bucket{route=\"/predict\",step=\"Model\",le=\"+Inf\"} 3",
        "pipeline_step_queue_depth{route=\"/predict\",step=\"Model\"} 0",
        "pipeline_step_in_flight{route=\"/predict\",step=\"Model\"} 0",
        "pipeline_step_replica_rebuilds_total{route=\"/predict\",step=\"Model\"} 0",
        "# TYPE pipeline_step_batch_size histogram",
        "pipeline_http_responses_total{route=\"/predict\",code=\"200\"} 3",
        "pipeline_http_responses_total{route=\"/predict\",code=\"400\"} 1",
    ] {
        assert!(metrics.contains(line), "missing `{line}` in\n{metrics}");
    }

    let (status, json) = get(&server.url("/graph"));
    assert_eq!(status, 200);
    let graph: serde_json::Value = serde_json::from_str(&json).expect("json");
    let nodes = graph["routes"][0]["nodes"].as_array().expect("nodes");
    let model = nodes
        .iter()
        .find(|n| n["label"] == "Model")
        .expect("Model node");
    assert_eq!(model["counters"]["requests"], 3);
    assert_eq!(
        (model["kind"].as_str(), model["step"].as_str()),
        (Some("step"), Some("Model"))
    );
    assert!(nodes[0]["step"].is_null(), "the input is no step");
    let (_, dot) = get(&server.url("/graph?format=dot"));
    assert!(dot.starts_with("// route /predict\ndigraph"), "{dot}");
    assert!(dot.contains("requests 3 | errors 0"), "{dot}");
    let (_, mermaid) = get(&server.url("/graph?format=mermaid"));
    assert!(
        mermaid.contains("flowchart LR") && mermaid.contains("<br/>requests"),
        "{mermaid}"
    );
    assert_eq!(get(&server.url("/graph?format=svg")).0, 400);
}

#[test]
fn shutdown_finishes_the_requests_in_flight() {
    let (_turn, gate) = fresh_gate();
    let p = gated(Input::<i64>::new()).deploy().expect("deploy");
    let server = Server::start(Ingress::new().json("/gated", p));
    let url = server.url("/gated");
    let in_flight = std::thread::spawn(move || post(&url, b"21"));
    gate.wait_for(1);
    let addr = server.addr;
    // Ask for shutdown while the call is held, then let it finish.
    let stopping = std::thread::spawn(move || server.shutdown());
    // New connections are refused once the listener is closed.
    while std::net::TcpStream::connect(addr).is_ok() {
        std::thread::yield_now();
    }
    gate.open();
    let (status, json, _) = in_flight.join().unwrap();
    assert_eq!((status, json), (200, serde_json::json!(42)));
    stopping
        .join()
        .unwrap()
        .expect("serve returns Ok after draining");
}

#[step]
fn echo_header(request: HttpRequest) -> Option<String> {
    request.header("x-echo").map(str::to_string)
}

#[test]
fn raw_request_routes_see_headers() {
    let p = echo_header(Input::<HttpRequest>::new())
        .deploy()
        .expect("deploy");
    let server = Server::start(Ingress::new().request("/echo", p));
    let mut response = agent()
        .post(&server.url("/echo"))
        .header("x-echo", "hello")
        .send(&b""[..])
        .expect("request");
    assert_eq!(response.body_mut().read_to_string().unwrap(), "\"hello\"");
}

#[test]
fn sigterm_drains_in_flight_requests_then_stops() {
    let (_turn, gate) = fresh_gate();
    let p = gated(Input::<i64>::new()).deploy().expect("deploy");
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    std_listener.set_nonblocking(true).expect("nonblocking");
    let addr = std_listener.local_addr().expect("addr");
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new()?;
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener)?;
            Ingress::new()
                .json("/gated", p)
                .serve_listener(listener)
                .await
        })
    });
    // Once it answers, its signal handlers are installed.
    while std::net::TcpStream::connect(addr).is_err() {
        std::thread::yield_now();
    }
    assert_eq!(get(&format!("http://{addr}/healthz")).0, 200);
    let url = format!("http://{addr}/gated");
    let in_flight = std::thread::spawn(move || post(&url, b"4"));
    gate.wait_for(1);
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .expect("run kill");
    assert!(kill.success());
    while std::net::TcpStream::connect(addr).is_ok() {
        std::thread::yield_now();
    }
    gate.open();
    assert_eq!(
        in_flight.join().unwrap().0,
        200,
        "the call in flight finished"
    );
    server.join().unwrap().expect("serve returned Ok");
}

#[derive(Debug, thiserror::Error)]
#[error("not a positive number: {0}")]
struct NotPositive(i64);

#[derive(Debug, thiserror::Error)]
#[error("the checker is broken")]
struct Broken;

#[step]
fn checked(x: i64) -> Result<i64, Box<dyn std::error::Error + Send + Sync>> {
    match x {
        0 => Err(Broken.into()),
        x if x < 0 => Err(NotPositive(x).into()),
        x => Ok(x),
    }
}

#[test]
fn registered_client_errors_answer_their_4xx_naming_the_step() {
    let p = checked(Input::<i64>::new()).deploy().expect("deploy");
    let server = Server::start(
        Ingress::new()
            .json("/check", p)
            .client_error::<NotPositive>(422)
            .client_error::<std::num::ParseIntError>(200), // not a 4xx: 400
    );
    let url = server.url("/check");
    assert_eq!(post(&url, b"7").0, 200);
    let (status, json, _) = post(&url, b"-3");
    assert_eq!(status, 422, "{json}");
    assert_eq!(json["kind"], "bad_input");
    assert_eq!(json["step"], "checked");
    assert_eq!(
        json["error"],
        "step `checked` failed: not a positive number: -3"
    );
    // Other errors of the same step are still the server's fault.
    let (status, json, _) = post(&url, b"0");
    assert_eq!((status, json["kind"].as_str()), (500, Some("step_failed")));
    server.shutdown().expect("clean shutdown");
}

/// A step that calls another deployed pipeline through its handle and
/// passes its error on.
#[derive(Debug)]
struct Outer {
    inner: Pipeline<i64, i64>,
}

#[step(mode = "tasks")]
impl Outer {
    fn new(inner: Pipeline<i64, i64>) -> Self {
        Outer { inner }
    }
    async fn call(&self, x: i64) -> Result<i64, BoxError> {
        Ok(self.inner.call_async(x).await? + 1)
    }
}

#[test]
fn a_nested_pipelines_error_is_answered_as_that_pipeline_would() {
    let inner = checked(Input::<i64>::new()).deploy().expect("deploy inner");
    let outer = Outer::bind(inner, Input::<i64>::new())
        .deploy()
        .expect("deploy outer");
    let server = Server::start(
        Ingress::new()
            .json("/outer", outer)
            .client_error::<NotPositive>(422),
    );
    let url = server.url("/outer");
    let (status, json, _) = post(&url, b"7");
    assert_eq!((status, json.as_i64()), (200, Some(8)));
    // The inner step's client error stays the client's fault, named as the
    // inner step's.
    let (status, json, _) = post(&url, b"-3");
    assert_eq!(status, 422, "{json}");
    assert_eq!(json["step"], "checked");
    let (status, json, _) = post(&url, b"0");
    assert_eq!((status, json["kind"].as_str()), (500, Some("step_failed")));
    server.shutdown().expect("clean shutdown");
}

#[step]
fn double(x: i64) -> i64 {
    x * 2
}

/// A client that connected and sent `bytes`, then stalls (keeps the socket
/// open without writing more).
fn stalled_client(addr: SocketAddr, bytes: &[u8]) -> std::net::TcpStream {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.write_all(bytes).expect("write");
    stream
}

/// Reads until the server closes the connection; what it sent before.
fn read_until_closed(stream: &mut std::net::TcpStream) -> Vec<u8> {
    use std::io::Read;
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) => {}
        // Closed with unread data on its side: a reset is a close too.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("read: {e}"),
    }
    got
}

/// The server has accepted every connection opened before this returns:
/// the listener accepts in order, and this one is answered.
fn answered_after(server: &Server) {
    assert_eq!(post(&server.url("/double"), b"2").1, serde_json::json!(4));
}

/// A client that got one answer (`GET /healthz`) and keeps the
/// connection open, idle.
fn kept_alive_client(addr: SocketAddr) -> std::net::TcpStream {
    use std::io::Read;
    let mut stream = stalled_client(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    while !answer.ends_with(b"ok\n") {
        let n = stream.read(&mut buf).expect("read");
        assert!(n > 0, "closed before the answer");
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    stream
}

const HALF_REQUEST: &[u8] = b"POST /double HTTP/1.1\r\nHost: x\r\nContent-Le";

#[test]
fn stop_ends_after_the_grace_period_despite_a_half_sent_request() {
    let p = double(Input::<i64>::new()).deploy().expect("deploy");
    let probe = p.clone();
    let server = Server::start(
        Ingress::new()
            .json("/double", p)
            .shutdown_grace(std::time::Duration::from_millis(100)),
    );
    let mut half = stalled_client(server.addr, HALF_REQUEST);
    answered_after(&server);
    server
        .shutdown()
        .expect("serve returns after the grace period");
    assert!(probe.is_shutting_down(), "the pipeline was drained");
    assert!(
        read_until_closed(&mut half).is_empty(),
        "the stalled connection is dropped without an answer"
    );
}

#[test]
fn stop_closes_idle_connections_without_waiting_for_the_grace_period() {
    let p = double(Input::<i64>::new()).deploy().expect("deploy");
    let probe = p.clone();
    // A grace period longer than any test run: idle connections are
    // closed at once, so serve returns without waiting for it.
    let server = Server::start(
        Ingress::new()
            .json("/double", p)
            .shutdown_grace(std::time::Duration::from_secs(3600)),
    );
    // Connected, never sent a byte.
    let mut silent = stalled_client(server.addr, b"");
    let mut kept_alive = kept_alive_client(server.addr);
    answered_after(&server);
    server
        .shutdown()
        .expect("serve returns once the idle connections are closed");
    assert!(probe.is_shutting_down(), "the pipeline was drained");
    assert!(read_until_closed(&mut silent).is_empty());
    assert!(read_until_closed(&mut kept_alive).is_empty());
}

#[test]
fn stop_drops_a_request_still_running_after_the_grace_period() {
    let (_turn, gate) = fresh_gate();
    let p = gated(Input::<i64>::new()).deploy().expect("deploy");
    let probe = p.clone();
    let server = Server::start(
        Ingress::new()
            .json("/gated", p)
            .shutdown_grace(std::time::Duration::from_millis(100)),
    );
    let url = server.url("/gated");
    let in_flight = std::thread::spawn(move || {
        agent()
            .post(&url)
            .header("content-type", "application/json")
            .send(&b"21"[..])
            .map(|r| r.status().as_u16())
    });
    gate.wait_for(1);
    // The step is still held: serve returns anyway once the grace is over.
    server
        .shutdown()
        .expect("serve returns after the grace period");
    assert!(probe.is_shutting_down(), "the pipeline was drained");
    let answer = in_flight.join().unwrap();
    assert!(answer.is_err(), "the connection was dropped: {answer:?}");
    gate.open();
}

#[test]
fn header_read_timeout_closes_a_stalled_connection_while_others_are_served() {
    let p = double(Input::<i64>::new()).deploy().expect("deploy");
    let server = Server::start(
        Ingress::new()
            .json("/double", p)
            // Long enough for a client that sends its head at once, even
            // on a loaded machine.
            .header_read_timeout(std::time::Duration::from_millis(500)),
    );
    let mut half = stalled_client(server.addr, HALF_REQUEST);
    let mut kept_alive = kept_alive_client(server.addr);
    answered_after(&server);
    assert!(
        read_until_closed(&mut half).is_empty(),
        "closed without an answer"
    );
    // The timeout also ends an idle keep-alive connection.
    assert!(read_until_closed(&mut kept_alive).is_empty());
    assert_eq!(post(&server.url("/double"), b"21").1, serde_json::json!(42));
    server.shutdown().expect("clean shutdown");
}

/// The samples of a Prometheus text exposition: series (name and labels,
/// as written) to value. Checks each line's shape on the way.
fn parse_exposition(text: &str) -> std::collections::BTreeMap<String, f64> {
    let mut samples = std::collections::BTreeMap::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment `{line}`");
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|e| panic!("`{line}`: {e}")),
        };
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "`{series}` twice"
        );
    }
    samples
}

#[test]
fn metrics_parse_as_prometheus_text_with_counters_and_histogram_buckets() {
    let p = double(Input::<i64>::new()).deploy().expect("deploy");
    let probe = p.clone();
    let server = Server::start(Ingress::new().json("/double", p));
    for x in 0..5 {
        assert_eq!(
            post(&server.url("/double"), x.to_string().as_bytes()).0,
            200
        );
    }
    assert_eq!(post(&server.url("/double"), b"nope").0, 400);
    let mut response = agent().get(&server.url("/metrics")).call().expect("scrape");
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.body_mut().read_to_string().expect("body");
    for line in [
        "# HELP pipeline_step_requests_total Calls that reached the step.",
        "# TYPE pipeline_step_requests_total counter",
        "# TYPE pipeline_step_in_flight gauge",
        "# TYPE pipeline_step_latency_seconds histogram",
        "# HELP pipeline_http_responses_total HTTP responses by route and status.",
        "# TYPE pipeline_http_responses_total counter",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in\n{text}"
        );
    }
    let samples = parse_exposition(&text);
    let labels = r#"route="/double",step="double""#;
    assert_eq!(
        samples[&format!("pipeline_step_requests_total{{{labels}}}")],
        5.0
    );
    assert_eq!(
        samples[r#"pipeline_http_responses_total{route="/double",code="200"}"#],
        5.0
    );
    assert_eq!(
        samples[r#"pipeline_http_responses_total{route="/double",code="400"}"#],
        1.0
    );
    // Every latency bucket is the runtime's own cumulative count.
    let latency = &probe.metrics()[0].latency;
    assert_eq!(latency.count(), 5);
    for (bound, cumulative) in latency.bounds.iter().zip(&latency.cumulative) {
        let bucket = samples
            .iter()
            .find_map(|(series, v)| {
                let le = series
                    .strip_prefix(&format!(
                        "pipeline_step_latency_seconds_bucket{{{labels},le=\""
                    ))?
                    .strip_suffix("\"}")?;
                (le.parse::<f64>().ok()? == *bound).then_some(*v)
            })
            .unwrap_or_else(|| panic!("no bucket le={bound} in\n{text}"));
        assert_eq!(bucket, *cumulative as f64, "bucket le={bound}");
    }
    assert_eq!(
        samples[&format!("pipeline_step_latency_seconds_bucket{{{labels},le=\"+Inf\"}}")],
        5.0
    );
    assert_eq!(
        samples[&format!("pipeline_step_latency_seconds_count{{{labels}}}")],
        5.0
    );
    let sum = samples[&format!("pipeline_step_latency_seconds_sum{{{labels}}}")];
    assert!(
        (sum - latency.sum).abs() <= 1e-9 * latency.sum.max(1.0),
        "{sum}"
    );
}

#[test]
fn request_ids_are_the_clients_own_or_fresh() {
    let p = double(Input::<i64>::new()).deploy().expect("deploy");
    let server = Server::start(Ingress::new().json("/double", p));
    let send = |id: Option<&str>, path: &str| {
        let mut request = agent().post(&server.url(path));
        if let Some(id) = id {
            request = request.header("x-request-id", id);
        }
        let mut response = request.send(&b"nope"[..]).expect("request");
        let header = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        let json: serde_json::Value =
            serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
        assert_eq!(json["request_id"], header.as_str(), "body and header agree");
        header
    };
    let fresh = |id: &str| id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit());
    assert_eq!(send(Some("trace-abc-1"), "/double"), "trace-abc-1");
    let longest = "x".repeat(128);
    assert_eq!(send(Some(&longest), "/double"), longest);
    let too_long = send(Some(&"x".repeat(129)), "/double");
    assert!(fresh(&too_long), "{too_long}");
    let none = send(None, "/double");
    assert!(fresh(&none), "{none}");
    assert_ne!(too_long, none, "each fresh id is new");
    // Answers outside the pipeline routes carry one too.
    assert!(fresh(&send(None, "/no-such-route")));
}

/// An error with a cause of its own, printed only through `source()`.
#[derive(Debug, thiserror::Error)]
#[error("cannot load the lookup table")]
struct LoadFailed(#[source] std::io::Error);

/// An error that prints its cause itself and also returns it as
/// `source()` (the chain must not repeat it).
#[derive(Debug, thiserror::Error)]
#[error("bad number: {0}")]
struct BadNumber(#[source] std::num::ParseIntError);

#[step]
fn lookup(x: i64) -> Result<i64, Box<dyn std::error::Error + Send + Sync>> {
    match x {
        0 => Err(LoadFailed(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "table.bin is missing",
        ))
        .into()),
        1 => Err(BadNumber("x1".parse::<i64>().unwrap_err()).into()),
        x => Ok(x),
    }
}

#[test]
fn error_bodies_name_the_whole_cause_chain() {
    let p = lookup(Input::<i64>::new()).deploy().expect("deploy");
    let server = Server::start(Ingress::new().json("/lookup", p));
    let (status, json, _) = post(&server.url("/lookup"), b"0");
    assert_eq!(status, 500, "{json}");
    assert_eq!(json["step"], "lookup");
    assert_eq!(
        json["error"],
        "step `lookup` failed: cannot load the lookup table: table.bin is missing"
    );
    let (status, json, _) = post(&server.url("/lookup"), b"1");
    assert_eq!(status, 500, "{json}");
    assert_eq!(
        json["error"],
        "step `lookup` failed: bad number: invalid digit found in string"
    );
}

/// A remote step behind the ingress: 503 while no worker serves it (and
/// `/readyz` says so), answers once one does; `/graph` and `/metrics` show
/// the step as remote with its workers.
#[cfg(feature = "remote")]
#[test]
fn a_remote_step_behind_the_ingress_is_503_without_workers() {
    use pipeline_examples::remote_steps::{work, Job};
    use support::nats::NatsServer;
    use support::worker::WorkerProcess;

    let nats = NatsServer::start();
    let p = work(Input::<Job>::new())
        .deploy_with(DeployOptions::new().remote("work", &nats.url()))
        .expect("deploy");
    let server = Server::start(Ingress::new().json("/work", p.clone()));
    let body = br#"{"id": 7, "work_ms": 0}"#;
    let (status, json, _) = post(&server.url("/work"), body);
    assert_eq!(status, 503, "{json}");
    assert_eq!(json["kind"], "unavailable", "{json}");
    let (status, ready) = get(&server.url("/readyz"));
    assert_eq!(status, 503);
    assert!(ready.contains("/work: work (no remote worker)"), "{ready}");
    assert!(
        ready.contains("remote step work has 0 worker(s)"),
        "{ready}"
    );

    let _worker = WorkerProcess::start(&nats, "work");
    while p.metrics()[0].replicas < 1 {
        std::thread::yield_now();
    }
    let (status, json, _) = post(&server.url("/work"), body);
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["id"], 7);
    let (status, ready) = get(&server.url("/readyz"));
    assert_eq!(status, 200, "{ready}");
    assert!(
        ready.contains("remote step work has 1 worker(s)"),
        "{ready}"
    );
    let (_, graph) = get(&server.url("/graph"));
    let graph: serde_json::Value = serde_json::from_str(&graph).expect("json");
    let node = &graph["routes"][0]["nodes"][1];
    assert_eq!(node["counters"]["remote"], nats.url().as_str(), "{node}");
    assert_eq!(node["counters"]["workers"], 1, "{node}");
    let (_, metrics) = get(&server.url("/metrics"));
    for line in [
        "pipeline_step_replicas{route=\"/work\",step=\"work\"} 1",
        "pipeline_step_remote_retries_total{route=\"/work\",step=\"work\"} 0",
        "pipeline_step_remote_refused_total{route=\"/work\",step=\"work\"} 0",
    ] {
        assert!(metrics.contains(line), "missing `{line}` in\n{metrics}");
    }
}
