//! A stream pipeline served over HTTP (`Ingress::stream`), through a real
//! client reading the answer as it comes: Server-Sent Events and NDJSON,
//! errors before and after the first item, and a client that disconnects
//! mid-stream (which stops the producer).
#![cfg(feature = "http")]

use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

mod support;

use pipeline_core::http::Ingress;
use pipeline_core::prelude::*;
use support::http::{agent, post, Server};

/// What the producer shares with the test.
#[derive(Clone)]
struct Probe {
    produced: Arc<AtomicUsize>,
    stopped: Arc<Mutex<mpsc::Sender<()>>>,
}

struct Count {
    next: u64,
    n: u64,
    fail_at: Option<u64>,
    probe: Probe,
}

impl Iterator for Count {
    type Item = Result<u64, String>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.next == self.n {
            return None;
        }
        let i = self.next;
        self.next += 1;
        self.probe.produced.fetch_add(1, Ordering::SeqCst);
        Some(if self.fail_at == Some(i) {
            Err(format!("item {i} is bad"))
        } else {
            Ok(i)
        })
    }
}

impl Drop for Count {
    fn drop(&mut self) {
        let _ = self.probe.stopped.lock().unwrap().send(());
    }
}

/// `{"n": .., "fail_at": ..}`
#[derive(Debug, Clone, Copy, serde::Deserialize)]
struct Ask {
    n: u64,
    fail_at: Option<u64>,
}

struct Counter {
    probe: Probe,
}

#[step(mode = "actors", replicas = 2)]
impl Counter {
    fn new(probe: Probe) -> Self {
        Counter { probe }
    }
    fn call(&self, ask: Ask) -> ItemStream<u64> {
        ItemStream::try_iter(Count {
            next: 0,
            n: ask.n,
            fail_at: ask.fail_at,
            probe: self.probe.clone(),
        })
    }
}

#[step(mode = "actors")]
fn square(x: u64) -> u64 {
    x * x
}

fn server() -> (Server, Probe, mpsc::Receiver<()>) {
    let (tx, rx) = mpsc::channel();
    let probe = Probe {
        produced: Arc::new(AtomicUsize::new(0)),
        stopped: Arc::new(Mutex::new(tx)),
    };
    let p = Counter::bind(probe.clone(), Input::<Ask>::new())
        .map_each(square)
        .deploy()
        .unwrap();
    (Server::start(Ingress::new().stream("/count", p)), probe, rx)
}

/// POSTs `body` and returns the status, the content type and a reader of
/// the answer's lines as they come.
fn open(
    server: &Server,
    body: &str,
    sse: bool,
) -> (u16, String, BufReader<Box<dyn std::io::Read + Send>>) {
    open_accepting(server, body, sse.then_some("text/event-stream"))
}

fn open_accepting(
    server: &Server,
    body: &str,
    accept: Option<&str>,
) -> (u16, String, BufReader<Box<dyn std::io::Read + Send>>) {
    let mut request = agent()
        .post(&server.url("/count"))
        .header("content-type", "application/json");
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send(body.as_bytes()).expect("request");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let reader: Box<dyn std::io::Read + Send> = Box::new(response.into_body().into_reader());
    (status, content_type, BufReader::new(reader))
}

/// The SSE events of an answer: (event name, data), comments skipped.
fn events(reader: BufReader<Box<dyn std::io::Read + Send>>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let (mut event, mut data) = ("message".to_string(), String::new());
    for line in reader.lines() {
        let line = line.expect("a line");
        if line.is_empty() {
            if !data.is_empty() {
                out.push((
                    std::mem::replace(&mut event, "message".into()),
                    std::mem::take(&mut data),
                ));
            }
        } else if let Some(name) = line.strip_prefix("event:") {
            event = name.trim().to_string();
        } else if let Some(d) = line.strip_prefix("data:") {
            data.push_str(d.trim_start());
        }
    }
    out
}

#[test]
fn sse_streams_each_item_then_done() {
    let (server, _, _) = server();
    let (status, content_type, reader) = open(&server, r#"{"n": 5}"#, true);
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let events = events(reader);
    let items: Vec<u64> = events
        .iter()
        .filter(|(e, _)| e == "message")
        .map(|(_, d)| d.parse().unwrap())
        .collect();
    assert_eq!(items, [0, 1, 4, 9, 16]);
    assert_eq!(
        events.last().unwrap(),
        &("done".to_string(), r#"{"items":5}"#.to_string())
    );
}

#[test]
fn ndjson_streams_item_lines_then_done() {
    let (server, _, _) = server();
    let (status, content_type, reader) = open(&server, r#"{"n": 3}"#, false);
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/x-ndjson")
    );
    let lines: Vec<serde_json::Value> = reader
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    assert_eq!(
        lines,
        [
            serde_json::json!({"item": 0}),
            serde_json::json!({"item": 1}),
            serde_json::json!({"item": 4}),
            serde_json::json!({"done": true, "items": 3}),
        ]
    );
}

#[test]
fn an_error_mid_stream_is_the_last_event_and_one_before_any_item_is_a_status() {
    let (server, _, _) = server();
    let (status, _, reader) = open(&server, r#"{"n": 10, "fail_at": 2}"#, true);
    assert_eq!(status, 200);
    let events = events(reader);
    assert_eq!(events.len(), 3, "{events:?}");
    let (name, data) = events.last().unwrap();
    assert_eq!(name, "error");
    let error: serde_json::Value = serde_json::from_str(data).unwrap();
    assert_eq!(error["kind"], "step_failed");
    assert_eq!(error["step"], "Counter");
    assert!(
        error["error"].as_str().unwrap().contains("item 2 is bad"),
        "{error}"
    );
    assert!(error["request_id"].is_string());

    // Failing at the first item: an ordinary error answer.
    let (status, json, _) = post(&server.url("/count"), br#"{"n": 10, "fail_at": 0}"#);
    assert_eq!(status, 500, "{json}");
    assert_eq!(json["step"], "Counter");
    // A body that is not an `Ask`.
    let (status, json, _) = post(&server.url("/count"), br#"{"n": "many"}"#);
    assert_eq!(status, 422, "{json}");
}

#[test]
fn a_client_that_disconnects_mid_stream_stops_the_producer() {
    let (server, probe, stopped) = server();
    let (status, _, mut reader) = open(&server, r#"{"n": 1000000000}"#, false);
    assert_eq!(status, 200);
    let mut line = String::new();
    for i in 0..3u64 {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(json["item"], i * i);
    }
    drop(reader); // closes the connection
    stopped.recv().expect("the producer was stopped");
    let produced = probe.produced.load(Ordering::SeqCst);
    assert!(produced < 1_000_000_000, "{produced}");
    // The server goes on serving.
    let (status, _, reader) = open(&server, r#"{"n": 2}"#, false);
    assert_eq!(status, 200);
    assert_eq!(reader.lines().count(), 3);
}

#[test]
fn the_accept_header_picks_sse_or_ndjson() {
    let (server, _, _) = server();
    for (accept, sse) in [
        ("text/event-stream", true),
        ("TEXT/Event-Stream", true),
        ("application/json, text/event-stream;q=0.5", true),
        ("text/event-stream;q=0", false),
        ("application/x-ndjson", false),
        ("*/*", false),
    ] {
        let (status, content_type, _) = open_accepting(&server, r#"{"n": 1}"#, Some(accept));
        assert_eq!(status, 200, "{accept}");
        assert_eq!(
            content_type.starts_with("text/event-stream"),
            sse,
            "{accept}: {content_type}"
        );
    }
}
