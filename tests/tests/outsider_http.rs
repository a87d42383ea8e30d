//! An outsider's hostile tests of the HTTP ingress and of deploy options:
//! bodies that are malformed, of the wrong type, too deep, not UTF-8, over
//! the limit (announced or sent), stalled; methods and routes that do not
//! exist; hostile request ids; panicking and unserializable steps; overload
//! under concurrency with the inspection endpoints read meanwhile; a client
//! that hangs up while its call is queued; extreme durations. Then deploy
//! files and `DeployOptions`: unknown keys at every level, wrong types,
//! extreme values, garbage devices, empty / misnamed files, a step named
//! twice. No sleeps to wait for work: every wait is on the thing itself
//! (answers, counters, semaphores), with a guard that fails instead of
//! hanging.
#![cfg(feature = "http")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod support;

use pipeline_core::http::{BadRequest, HttpRequest, Ingress};
use pipeline_core::prelude::*;
use pipeline_core::{DeployError, OptionsError};
use support::http::{agent, get, post, Server};
use support::raw::{all_answers, next_answer, parse_answer, Raw, GUARD};
use support::Capture;
use tokio::sync::Semaphore;

// ---------------------------------------------------------------------------
// Steps
// ---------------------------------------------------------------------------

#[step]
fn ident(x: i64) -> i64 {
    x
}

#[step]
fn echo_value(v: serde_json::Value) -> serde_json::Value {
    v
}

#[step]
fn echo_text(s: String) -> String {
    s
}

#[step]
fn parse_body(r: HttpRequest) -> Result<serde_json::Value, BadRequest> {
    r.json()
}

#[step]
fn body_len(r: HttpRequest) -> usize {
    r.body().len()
}

#[step]
fn sum(xs: Vec<u8>) -> u64 {
    xs.iter().map(|&x| u64::from(x)).sum()
}

#[step]
fn boom_local(x: i64) -> i64 {
    assert!(x >= 0, "boom at {x}");
    x
}

#[step(mode = "actors", replicas = 1)]
fn boom_actor(x: i64) -> i64 {
    assert!(x >= 0, "boom at {x}");
    x
}

#[step(mode = "tasks")]
fn boom_task(x: i64) -> i64 {
    assert!(x >= 0, "boom at {x}");
    x
}

#[step]
fn count_to(n: u32) -> ItemStream<u32> {
    ItemStream::iter(1..=n)
}

/// Refuses with a `BadRequest` of the status the input asks for (its
/// `status` field is public: "400 or 422", the docs say).
#[step]
fn refuse(status: u16) -> Result<u16, BadRequest> {
    Err(BadRequest {
        status,
        message: format!("refused with {status}"),
    })
}

/// JSON cannot have a map keyed by a pair.
#[step]
fn keyed(x: i64) -> std::collections::HashMap<(i64, i64), i64> {
    std::iter::once(((x, x), x)).collect()
}

#[step(mode = "actors", replicas = 1)]
fn scorer(x: i64) -> i64 {
    x
}

#[step(mode = "tasks")]
fn plain(x: i64) -> i64 {
    x
}

/// What a held step shares with the test: a gate its calls wait at and a
/// count of the calls that reached it.
#[derive(Clone)]
struct Hold {
    gate: Arc<Semaphore>,
    arrived: Arc<AtomicUsize>,
}

impl Hold {
    fn closed() -> Self {
        Hold {
            gate: Arc::new(Semaphore::new(0)),
            arrived: Arc::new(AtomicUsize::new(0)),
        }
    }
    fn arrived(&self) -> usize {
        self.arrived.load(Ordering::SeqCst)
    }
    fn open(&self) {
        // Far more than any test sends; each call takes one for ever.
        self.gate.add_permits(1 << 20);
    }
}

/// One task replica; each call counts itself, then waits at the gate.
struct Holder {
    hold: Hold,
}

#[step(mode = "actors", replicas = 1, placement = "task")]
impl Holder {
    fn new(hold: Hold) -> Self {
        Holder { hold }
    }
    async fn call(&self, x: i64) -> i64 {
        self.hold.arrived.fetch_add(1, Ordering::SeqCst);
        self.hold.gate.acquire().await.expect("gate").forget();
        x + 1
    }
}

/// The same, in tasks mode: its in-flight bound is its queue bound.
struct TaskHolder {
    hold: Hold,
}

#[step(mode = "tasks")]
impl TaskHolder {
    fn new(hold: Hold) -> Self {
        TaskHolder { hold }
    }
    async fn call(&self, x: i64) -> i64 {
        self.hold.arrived.fetch_add(1, Ordering::SeqCst);
        self.hold.gate.acquire().await.expect("gate").forget();
        x + 1
    }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Waits until `cond` holds, failing after the guard.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < GUARD, "never held: {what}");
        std::thread::yield_now();
    }
}

/// Reads one answer from `s` (skipping a `100 Continue`); `None` when the
/// server closed without answering.
fn read_answer(s: &mut TcpStream) -> Option<Raw> {
    next_answer(s)
}

/// Sends `request` as is on a new connection and reads the answer. The
/// server may answer and close before it has read everything (a refusal):
/// a failed write still reads what came back.
fn raw(addr: SocketAddr, request: &[u8]) -> Option<Raw> {
    let mut s = TcpStream::connect(addr).expect("connect");
    let _ = s.write_all(request);
    read_answer(&mut s)
}

/// A `POST path` with `headers` (each `Name: value`) and `body`, closing.
fn post_raw(addr: SocketAddr, path: &str, headers: &[&[u8]], body: &[u8]) -> Raw {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    )
    .into_bytes();
    for h in headers {
        request.extend_from_slice(h);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(body);
    raw(addr, &request).expect("an answer")
}

/// The value of one sample in `/metrics`, by its whole name and labels.
fn sample(server: &Server, series: &str) -> Option<f64> {
    let (status, text) = get(&server.url("/metrics"));
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn is_fresh_id(id: &str) -> bool {
    id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit())
}

/// An error body has exactly the documented keys, and its id is the
/// answer's header.
fn assert_error_body(json: &serde_json::Value, id_header: Option<&str>) {
    let keys: Vec<&str> = json
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {json}"))
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["error", "kind", "request_id", "step"], "{json}");
    assert!(
        json["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{json}"
    );
    if let Some(id) = id_header {
        assert_eq!(json["request_id"], id, "body and header agree: {json}");
    }
}

// ---------------------------------------------------------------------------
// HTTP: bodies
// ---------------------------------------------------------------------------

/// Each kind of bad body gets its documented status and kind; none takes
/// the server down. (The existing tests fuzz for the set of statuses; this
/// pins which body gets which.)
#[test]
fn each_bad_body_gets_its_exact_status_and_kind() {
    let p = ident(Input::<i64>::new()).deploy().expect("deploy");
    let server = Server::start(Ingress::new().json("/ident", p));
    let url = server.url("/ident");
    let cases: &[(&[u8], u16, &str)] = &[
        (b"", 400, "malformed"),
        (b"   \n\t ", 400, "malformed"),
        (b"1 2", 400, "malformed"),
        (b"01", 400, "malformed"),
        (b"NaN", 400, "malformed"),
        (b"\xef\xbb\xbf7", 400, "malformed"), // a UTF-8 BOM
        (b"\xff\xfe", 400, "malformed"),
        (b"1.5", 422, "wrong_shape"),
        (b"\"7\"", 422, "wrong_shape"),
        (b"null", 422, "wrong_shape"),
        (b"[7]", 422, "wrong_shape"),
        (b"{\"x\": 7}", 422, "wrong_shape"),
        (b"9223372036854775808", 422, "wrong_shape"),
        (b"true", 422, "wrong_shape"),
    ];
    for (body, status, kind) in cases {
        let (got, json, headers) = post(&url, body);
        let shown = String::from_utf8_lossy(body);
        assert_eq!(got, *status, "{shown:?}: {json}");
        assert_eq!(json["kind"], *kind, "{shown:?}: {json}");
        assert_eq!(json["step"], serde_json::Value::Null, "{shown:?}: {json}");
        let id = headers["x-request-id"].to_str().unwrap();
        assert_error_body(&json, Some(id));
    }
    // Whitespace around a valid body is fine, and so is the largest i64.
    assert_eq!(post(&url, b"  \n42\n ").1, serde_json::json!(42));
    assert_eq!(
        post(&url, b"9223372036854775807").1,
        serde_json::json!(i64::MAX)
    );
}

/// A truncated or otherwise malformed body is malformed (400) whatever
/// the route's input type: the README's "malformed JSON 400, the wrong
/// shape 422". Today a body that starts like an object or array sent to a
/// route taking a number is judged on its first byte ("invalid type:
/// map") and answered 422 `wrong_shape`, though it is not JSON at all.
#[test]
fn truncated_json_is_malformed_whatever_the_input_type() {
    let p = ident(Input::<i64>::new()).deploy().expect("deploy");
    let server = Server::start(Ingress::new().json("/ident", p));
    for body in [&b"{"[..], b"[", b"{\"x\": [1", b"[1,", b"{]"] {
        let (status, json, _) = post(&server.url("/ident"), body);
        assert_eq!(
            (status, json["kind"].as_str()),
            (400, Some("malformed")),
            "{:?}: {json}",
            String::from_utf8_lossy(body)
        );
    }
}

/// Bytes that are not UTF-8 inside a JSON string, and escapes that are no
/// character, are malformed (400), not a 500 or a crash; valid escapes
/// arrive decoded.
#[test]
fn non_utf8_and_broken_escapes_in_strings_are_400() {
    let p = echo_text(Input::<String>::new()).deploy().expect("deploy");
    let server = Server::start(Ingress::new().json("/text", p));
    let url = server.url("/text");
    for body in [
        &b"\"a\xff\xfeb\""[..],
        b"\"\xc3\x28\"",     // an invalid 2-byte sequence
        b"\"\xed\xa0\x80\"", // an encoded surrogate
        b"\"\\ud800\"",      // a lone surrogate escape
        b"\"\\uZZZZ\"",
        b"\"unterminated",
        b"\"tab\tinside\"", // a raw control character
    ] {
        let (status, json, _) = post(&url, body);
        assert_eq!(status, 400, "{:?}: {json}", String::from_utf8_lossy(body));
        assert_eq!(json["kind"], "malformed", "{json}");
    }
    let (status, json, _) = post(&url, "\"h\\u00e9llo \\ud83d\\ude00 \u{1F600}\"".as_bytes());
    assert_eq!((status, json), (200, serde_json::json!("héllo 😀 😀")));
}

/// JSON nested far deeper than serde's recursion limit is refused as
/// malformed, on a JSON route and through `HttpRequest::json`, rather than
/// overflowing the stack; nesting within the limit round-trips.
#[test]
fn deeply_nested_json_is_a_400_not_a_stack_overflow() {
    let depth = 200_000;
    let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let deep_objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
    assert!(deep_objects.len() < 6 * depth + 16);
    let ingress = Ingress::new()
        .json("/value", echo_value(Input::new()).deploy().expect("deploy"))
        .request("/raw", parse_body(Input::new()).deploy().expect("deploy"))
        .body_limit(6 * depth + 16);
    let server = Server::start(ingress);
    for route in ["/value", "/raw"] {
        for body in [&deep, &deep_objects] {
            let (status, json, _) = post(&server.url(route), body.as_bytes());
            assert_eq!(status, 400, "{route}: {json}");
            assert_eq!(json["kind"], "malformed", "{route}: {json}");
            assert!(
                json["error"].as_str().unwrap().contains("recursion limit"),
                "{route}: {json}"
            );
        }
        let ok = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let (status, json, _) = post(&server.url(route), ok.as_bytes());
        assert_eq!(status, 200, "{route}: {json}");
        assert_eq!(json.to_string(), ok, "{route}");
    }
    assert_eq!(get(&server.url("/healthz")).0, 200);
}

/// The routes ignore the request's content type (as Ray Serve's
/// `request.json()` does): JSON sent as `text/plain`, or with no type,
/// is parsed the same.
#[test]
fn the_content_type_is_neither_required_nor_trusted() {
    let p = ident(Input::<i64>::new()).deploy().expect("deploy");
    let server = Server::start(Ingress::new().json("/ident", p));
    for ct in [
        &b"content-type: text/plain"[..],
        b"content-type: application/x-www-form-urlencoded",
        b"content-type: application/json; charset=latin1",
        b"x-none: 1",
    ] {
        let r = post_raw(server.addr, "/ident", &[ct], b"5");
        assert_eq!((r.status, r.json()), (200, serde_json::json!(5)), "{ct:?}");
        assert_eq!(r.header("content-type"), ["application/json"]);
    }
}

/// A body limit above the 2 MiB default is honoured (nothing else caps the
/// body at 2 MiB), and a limit of 0 takes only empty bodies.
#[test]
fn body_limits_above_the_default_and_of_zero_are_honoured() {
    let big = 3 * 1024 * 1024;
    let json = format!("[{}1]", "1,".repeat(big / 2));
    let ingress = Ingress::new()
        .json("/sum", sum(Input::new()).deploy().expect("deploy"))
        .body_limit(json.len());
    let server = Server::start(ingress);
    let (status, answer, _) = post(&server.url("/sum"), json.as_bytes());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, serde_json::json!(big / 2 + 1));
    let (status, answer, _) = post(&server.url("/sum"), format!("{json} ").as_bytes());
    assert_eq!(status, 413, "one byte over: {answer}");
    drop(server);

    let ingress = Ingress::new()
        .request("/len", body_len(Input::new()).deploy().expect("deploy"))
        .body_limit(0);
    let server = Server::start(ingress);
    assert_eq!(post(&server.url("/len"), b"").1, serde_json::json!(0));
    let (status, answer, _) = post(&server.url("/len"), b"x");
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["kind"], "body_too_large");
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("limit of 0 bytes"));
}

/// A body far over the limit, sent whole by an ordinary client (ureq,
/// which reads the answer once it has sent the body), gets a clean 413,
/// not a transport error, and the server keeps serving. Today the server
/// answers 413 after reading the limit and closes at once without reading
/// (or lingering over) the rest: the client's write fails with a broken
/// pipe or reset, and it never sees the 413.
#[test]
fn a_huge_body_gets_a_clean_413_and_the_server_stays_up() {
    let p = ident(Input::<i64>::new()).deploy().expect("deploy");
    let server = Server::start(Ingress::new().json("/ident", p).body_limit(64 * 1024));
    let huge = vec![b' '; 32 * 1024 * 1024];
    let (status, json, _) = post(&server.url("/ident"), &huge);
    assert_eq!(status, 413, "{json}");
    assert_eq!(json["kind"], "body_too_large");
    assert_eq!(post(&server.url("/ident"), b"3").1, serde_json::json!(3));
}

/// The same huge body from a client that reads while it writes (as curl
/// does): it sees the 413 with its JSON body, whatever becomes of the
/// rest of its upload, and the server keeps serving.
#[test]
fn a_huge_body_from_a_client_reading_as_it_writes_sees_the_413() {
    let p = ident(Input::<i64>::new()).deploy().expect("deploy");
    let server = Server::start(Ingress::new().json("/ident", p).body_limit(64 * 1024));
    let size = 32 * 1024 * 1024;
    let mut s = TcpStream::connect(server.addr).expect("connect");
    let mut writer = s.try_clone().expect("clone");
    let sender = std::thread::spawn(move || {
        let head = format!(
            "POST /ident HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {size}\r\n\r\n"
        );
        writer.write_all(head.as_bytes())?;
        let chunk = vec![b' '; 64 * 1024];
        for _ in 0..size / chunk.len() {
            writer.write_all(&chunk)?;
        }
        Ok::<(), std::io::Error>(())
    });
    let answer = read_answer(&mut s).expect("an answer before the close");
    assert_eq!(answer.status, 413);
    assert_eq!(answer.json()["kind"], "body_too_large");
    let sent = sender.join().unwrap();
    println!("the rest of the upload: {sent:?}");
    assert_eq!(post(&server.url("/ident"), b"3").1, serde_json::json!(3));
}

/// A request whose `content-length` is over the limit is answered 413 at
/// once: the server need not (and must not wait to) read a body it will
/// refuse. A client that announces 100 MB and sends nothing otherwise
/// holds the connection for as long as it likes.
#[test]
fn an_announced_over_limit_body_is_refused_before_it_arrives() {
    let p = ident(Input::<i64>::new()).deploy().expect("deploy");
    let server = Server::start(Ingress::new().json("/ident", p).body_limit(1024));
    let answer = raw(
        server.addr,
        b"POST /ident HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 104857600\r\n\r\n",
    )
    .expect("an answer");
    assert_eq!(answer.status, 413);
    assert_eq!(answer.json()["kind"], "body_too_large");
}

/// A client that announces an over-limit body and waits for `100
/// Continue` before sending it (as curl does for large bodies) gets the
/// 413 straight away and is never invited to send the body.
#[test]
fn an_over_limit_body_behind_expect_100_continue_is_never_invited() {
    let p = ident(Input::<i64>::new()).deploy().expect("deploy");
    let server = Server::start(Ingress::new().json("/ident", p).body_limit(1024));
    let mut s = TcpStream::connect(server.addr).expect("connect");
    s.write_all(
        b"POST /ident HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 104857600\r\n\r\n",
    )
    .expect("write");
    s.set_read_timeout(Some(GUARD)).expect("read timeout");
    let mut all = Vec::new();
    s.read_to_end(&mut all).expect("the answer, then the close");
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(!text.contains("100 Continue"), "{text}");
    let (_, answer) = parse_answer(&all, false).expect("a whole answer");
    assert_eq!(answer.json()["kind"], "body_too_large");
    // Within the limit, the client is invited and served.
    let mut s = TcpStream::connect(server.addr).expect("connect");
    s.write_all(
        b"POST /ident HTTP/1.1\r\nhost: x\r\nconnection: close\r\nexpect: 100-continue\r\ncontent-length: 1\r\n\r\n",
    )
    .expect("write");
    s.set_read_timeout(Some(GUARD)).expect("read timeout");
    let mut invited = [0u8; 25];
    s.read_exact(&mut invited).expect("100 Continue");
    assert_eq!(&invited, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"8").expect("write the body");
    let answer = read_answer(&mut s).expect("an answer");
    assert_eq!((answer.status, answer.json()), (200, serde_json::json!(8)));
}

/// A client that sends its head and part of a body, then stalls, is
/// bounded: `header_read_timeout`'s docs say "the body is bounded by
/// `timeout` and `body_limit`". With a 200 ms timeout the server must
/// answer (408 / 504) or close, not hold the connection for ever.
#[test]
fn a_stalled_body_is_bounded_by_the_timeout() {
    let p = ident(Input::<i64>::new()).deploy().expect("deploy");
    let server = Server::start(
        Ingress::new()
            .json("/ident", p)
            .timeout(Duration::from_millis(200)),
    );
    // Either an error answer or a close; read_answer fails on the guard.
    let stalled = raw(
        server.addr,
        b"POST /ident HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n12",
    );
    if let Some(answer) = stalled {
        assert!(
            matches!(answer.status, 408 | 504),
            "status {}",
            answer.status
        );
    }
}

// ---------------------------------------------------------------------------
// HTTP: methods, routes, inspection endpoints
// ---------------------------------------------------------------------------

/// `GET` on a `POST` route is 405 with an `Allow: POST` header and, like
/// every other error (the 404 included), a JSON error body with the
/// request id.
#[test]
fn a_wrong_method_is_a_405_with_a_json_error_body() {
    let p = ident(Input::<i64>::new()).deploy().expect("deploy");
    let server = Server::start(Ingress::new().json("/ident", p));
    for method in ["GET", "PUT", "DELETE", "PATCH"] {
        let r = raw(
            server.addr,
            format!("{method} /ident HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")
                .as_bytes(),
        )
        .expect("an answer");
        assert_eq!(r.status, 405, "{method}");
        assert!(
            r.header("allow").iter().any(|a| a.contains("POST")),
            "{method}: {:?}",
            r.headers
        );
        let id = r.header("x-request-id");
        assert_eq!(id.len(), 1, "{method}: one id");
        assert_error_body(&r.json(), Some(id[0]));
    }
}

/// The 404 of the fallback is JSON with the id, for any method and path,
/// including paths with odd bytes; HEAD on `/healthz` answers 200 with no
/// body; the server keeps serving.
#[test]
fn unknown_routes_and_head_requests() {
    let p = ident(Input::<i64>::new()).deploy().expect("deploy");
    let server = Server::start(Ingress::new().json("/ident", p).dashboard(false));
    for (method, path) in [
        ("POST", "/ident/"),
        ("POST", "/IDENT"),
        ("POST", "/ident/extra"),
        ("GET", "/%00"),
        ("DELETE", "/nope"),
        ("POST", "/%ff%fe"),
        ("GET", "/"),
        ("GET", "/dashboard"),
    ] {
        let r = raw(
            server.addr,
            format!("{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")
                .as_bytes(),
        )
        .expect("an answer");
        assert_eq!(r.status, 404, "{method} {path}");
        let json = r.json();
        assert_eq!(json["kind"], "not_found", "{method} {path}");
        assert_error_body(&json, Some(r.header("x-request-id")[0]));
    }
    let mut s = TcpStream::connect(server.addr).expect("connect");
    s.write_all(b"HEAD /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .expect("write");
    let mut head = Vec::new();
    s.set_read_timeout(Some(GUARD)).unwrap();
    s.read_to_end(&mut head).expect("read");
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "no body after a HEAD: {head:?}");
    assert_eq!(post(&server.url("/ident"), b"1").1, serde_json::json!(1));
}

/// `/graph` with a format it does not know, or the format given twice, is
/// a 400 naming the formats; never a 500.
#[test]
fn graph_with_bad_formats_is_a_400() {
    let p = ident(Input::<i64>::new()).deploy().expect("deploy");
    let server = Server::start(Ingress::new().json("/ident", p));
    for query in [
        "format=",
        "format=JSON",
        "format=%00",
        "format=json&format=dot",
    ] {
        let (status, text) = get(&server.url(&format!("/graph?{query}")));
        assert_eq!(status, 400, "{query}: {text}");
    }
    let (status, text) = get(&server.url("/graph?format=xml"));
    assert_eq!(status, 400);
    assert!(text.contains("json, dot or mermaid"), "{text}");
    // Unknown query keys are ignored, as for any GET.
    assert_eq!(get(&server.url("/graph?format=dot&x=1")).0, 200);
}

/// A stream route refuses bad bodies with the same statuses and JSON
/// bodies as a JSON route (not as a stream that starts and then fails),
/// and an empty stream is a well-formed one with no items.
#[test]
fn a_stream_route_refuses_bad_bodies_like_a_json_route() {
    let p = count_to(Input::<u32>::new()).deploy().expect("deploy");
    let server = Server::start(Ingress::new().stream("/count", p).body_limit(16));
    for (body, status, kind) in [
        (&b"nope"[..], 400, "malformed"),
        (b"", 400, "malformed"),
        (b"-1", 422, "wrong_shape"),
        (b"\"3\"", 422, "wrong_shape"),
        (b"4294967296", 422, "wrong_shape"),
        (b"                 1", 413, "body_too_large"),
    ] {
        for accept in ["application/x-ndjson", "text/event-stream"] {
            let r = post_raw(
                server.addr,
                "/count",
                &[format!("accept: {accept}").as_bytes()],
                body,
            );
            let shown = String::from_utf8_lossy(body);
            assert_eq!(r.status, status, "{shown:?} ({accept})");
            assert_eq!(r.header("content-type"), ["application/json"], "{shown:?}");
            let json = r.json();
            assert_eq!(json["kind"], kind, "{shown:?}: {json}");
            assert_error_body(&json, Some(r.header("x-request-id")[0]));
        }
    }
    let mut response = agent()
        .post(&server.url("/count"))
        .header("accept", "application/x-ndjson")
        .send(&b"0"[..])
        .expect("request");
    assert_eq!(response.status().as_u16(), 200);
    let text = response.body_mut().read_to_string().expect("body");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(
        lines,
        [serde_json::json!({"done": true, "items": 0})],
        "{text}"
    );
}

/// Two requests written back to back on one connection (HTTP/1.1
/// pipelining) are answered in order, each with its own id.
#[test]
fn pipelined_requests_are_answered_in_order() {
    let p = ident(Input::<i64>::new()).deploy().expect("deploy");
    let server = Server::start(Ingress::new().json("/ident", p));
    let mut s = TcpStream::connect(server.addr).expect("connect");
    s.write_all(
        b"POST /ident HTTP/1.1\r\nhost: x\r\nx-request-id: one\r\ncontent-length: 1\r\n\r\n1\
          POST /ident HTTP/1.1\r\nhost: x\r\nx-request-id: two\r\ncontent-length: 4\r\n\r\noops\
          POST /ident HTTP/1.1\r\nhost: x\r\nx-request-id: three\r\nconnection: close\r\ncontent-length: 1\r\n\r\n3",
    )
    .expect("write");
    let answers = all_answers(&mut s);
    let got: Vec<(u16, String)> = answers
        .iter()
        .map(|a| (a.status, a.header("x-request-id")[0].to_string()))
        .collect();
    assert_eq!(
        got,
        [
            (200, "one".into()),
            (400, "two".into()),
            (200, "three".into())
        ]
    );
    assert_eq!(answers[2].json(), serde_json::json!(3));
}

/// Transport-level abuse: a chunked body (fine), a malformed chunk, both
/// `content-length` and `transfer-encoding` (request smuggling), two
/// different lengths, hundreds of headers, a megabyte header, a 100 KB
/// URL. Each is answered with a 4xx or the connection closed; none is
/// served as a request and the server keeps serving.
#[test]
fn transport_abuse_is_refused_and_the_server_stays_up() {
    let p = ident(Input::<i64>::new()).deploy().expect("deploy");
    let server = Server::start(Ingress::new().json("/ident", p));
    let chunked = raw(
        server.addr,
        b"POST /ident HTTP/1.1\r\nhost: x\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n1\r\n4\r\n1\r\n2\r\n0\r\n\r\n",
    )
    .expect("an answer");
    assert_eq!(
        (chunked.status, chunked.json()),
        (200, serde_json::json!(42))
    );

    // Both lengths: RFC 9112 lets the server take the chunked one if it
    // then closes the connection (so nothing can be smuggled after it).
    let mut s = TcpStream::connect(server.addr).expect("connect");
    s.write_all(b"POST /ident HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n1\r\n7\r\n0\r\n\r\n")
        .expect("write");
    let answer = read_answer(&mut s).expect("an answer");
    assert!(
        answer.status == 400 || (answer.status, answer.json()) == (200, serde_json::json!(7)),
        "{answer:?}"
    );
    let mut more = Vec::new();
    s.read_to_end(&mut more).expect("closed");
    assert!(more.is_empty(), "{:?}", String::from_utf8_lossy(&more));

    let many_headers: String = (0..500).map(|i| format!("x-h{i}: {i}\r\n")).collect();
    let big_header = format!("x-big: {}\r\n", "a".repeat(1 << 20));
    let long_url = format!("/ident?{}", "q".repeat(100 * 1024));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "malformed chunk",
            b"POST /ident HTTP/1.1\r\nhost: x\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n1\r\n0\r\n\r\n".to_vec(),
        ),
        (
            "two lengths",
            b"POST /ident HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n12".to_vec(),
        ),
        (
            "500 headers",
            format!("POST /ident HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{many_headers}content-length: 1\r\n\r\n1").into_bytes(),
        ),
        (
            "a 1 MB header",
            format!("POST /ident HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{big_header}content-length: 1\r\n\r\n1").into_bytes(),
        ),
        (
            "a 100 KB url",
            format!("POST {long_url} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 1\r\n\r\n1").into_bytes(),
        ),
        ("not http", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n".to_vec()),
    ];
    for (what, request) in cases {
        let answer = raw(server.addr, &request);
        if let Some(a) = &answer {
            assert!(
                (400..500).contains(&a.status),
                "{what}: status {} {:?}",
                a.status,
                String::from_utf8_lossy(&a.body)
            );
        }
        println!("{what}: {:?}", answer.map(|a| a.status));
        assert_eq!(
            post(&server.url("/ident"), b"5").1,
            serde_json::json!(5),
            "after {what}"
        );
    }
}

/// An ingress with no routes, and one whose pipeline has no step (its
/// input is its output), still serve every inspection endpoint: health,
/// readiness, metrics, the graph in each format and the dashboard page.
#[test]
fn degenerate_ingresses_serve_every_endpoint() {
    let bare = Input::<i64>::new()
        .deploy()
        .expect("a graph with no step deploys");
    for ingress in [Ingress::new(), Ingress::new().json("/bare", bare)] {
        let server = Server::start(ingress);
        for path in [
            "/healthz",
            "/readyz",
            "/metrics",
            "/graph",
            "/graph?format=dot",
            "/graph?format=mermaid",
            "/dashboard",
        ] {
            let (status, text) = get(&server.url(path));
            assert_eq!(status, 200, "{path}: {text}");
        }
        let (_, graph) = get(&server.url("/graph"));
        let graph: serde_json::Value = serde_json::from_str(&graph).expect("JSON");
        assert!(graph["routes"].is_array(), "{graph}");
        let r = raw(
            server.addr,
            b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .expect("an answer");
        assert!((300..400).contains(&r.status), "GET / redirects: {r:?}");
    }
    let server =
        Server::start(Ingress::new().json("/bare", Input::<i64>::new().deploy().expect("deploy")));
    assert_eq!(post(&server.url("/bare"), b"9").1, serde_json::json!(9));
    assert_eq!(post(&server.url("/bare"), b"x").0, 400);
}

// ---------------------------------------------------------------------------
// HTTP: request ids
// ---------------------------------------------------------------------------

/// Request ids a client sends that the README's rule (1 to 128 visible
/// ASCII characters, no spaces) does not keep, or that could not be echoed as they came, are replaced
/// by a fresh id; those it keeps come back byte for byte, once, in the
/// header and the body alike.
#[test]
fn hostile_request_ids_are_replaced_or_echoed_exactly() {
    let p = ident(Input::<i64>::new()).deploy().expect("deploy");
    let server = Server::start(Ingress::new().json("/ident", p));
    let send = |headers: &[&[u8]]| {
        let r = post_raw(server.addr, "/ident", headers, b"oops");
        assert_eq!(r.status, 400);
        let ids = r.header("x-request-id");
        assert_eq!(ids.len(), 1, "exactly one id: {:?}", r.headers);
        let id = ids[0].to_string();
        assert_error_body(&r.json(), Some(&id));
        id
    };
    // Replaced: empty, only spaces, over 128 bytes, non-ASCII bytes,
    // inner spaces or tabs (a space could forge a field in the logs).
    let long = format!("x-request-id: {}", "a".repeat(129));
    let non_ascii = "x-request-id: caf\u{e9}-\u{1F600}".to_string();
    let latin1: &[u8] = b"x-request-id: caf\xe9";
    for h in [
        &b"x-request-id:"[..],
        b"x-request-id:    ",
        long.as_bytes(),
        non_ascii.as_bytes(),
        latin1,
        b"x-request-id: id with spaces",
        b"x-request-id: x=1 route=/admin status=200",
        b"x-request-id: tab\tinside",
    ] {
        let id = send(&[h]);
        assert!(is_fresh_id(&id), "{:?} -> {id}", String::from_utf8_lossy(h));
    }
    // Kept: odd but visible ASCII, quotes, JSON and log syntax included;
    // surrounding whitespace is not part of the value.
    for id in [
        "a",
        "\"}{\"kind\":\"ok\"",
        "<script>alert(1)</script>",
        "x=1,route=/admin",
        "../../etc/passwd",
    ] {
        let header = format!("x-request-id:   {id}  ");
        assert_eq!(send(&[header.as_bytes()]), id);
    }
    // Two ids: the first is the one kept, and only one comes back.
    assert_eq!(
        send(&[b"x-request-id: first", b"x-request-id: second"]),
        "first"
    );
    // A control character in a header is refused by the parser before
    // any handler (a 400 with no id to echo), and the server stays up.
    let r = raw(
        server.addr,
        b"POST /ident HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-request-id: a\x01b\r\ncontent-length: 1\r\n\r\n1",
    );
    if let Some(r) = r {
        assert_eq!(r.status, 400);
        assert!(r
            .header("x-request-id")
            .iter()
            .all(|v| !v.contains('\u{1}')));
    }
    assert_eq!(post(&server.url("/ident"), b"2").1, serde_json::json!(2));
}

/// The request span logs the id as it is (`id = %id`), so an id with
/// spaces could forge log fields: `x-request-id: x status=200
/// route=/admin` would write a line with two `route=` and two `status=`.
/// Such an id is replaced by a fresh one, and the line has one of each.
#[test]
fn a_hostile_request_id_cannot_forge_log_fields() {
    let capture = Capture::default();
    let writer = capture.clone();
    // This binary's only subscriber; the other tests' events land in it too.
    tracing_subscriber::fmt()
        .with_env_filter("pipeline_core::http=info")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("the one subscriber");
    let p = ident(Input::<i64>::new()).deploy().expect("deploy");
    let server = Server::start(Ingress::new().json("/forge", p));
    let r = post_raw(
        server.addr,
        "/forge",
        &[b"x-request-id: forged status=200 route=/admin"],
        b"oops",
    );
    assert_eq!(r.status, 400);
    server.shutdown().expect("stops");
    let text = capture.text();
    let line = text
        .lines()
        .find(|l| l.contains(": answered") && l.contains("/forge"))
        .unwrap_or_else(|| panic!("no answered line in:\n{text}"));
    assert_eq!(line.matches("route=").count(), 1, "{line}");
    assert_eq!(line.matches("status=").count(), 1, "{line}");
    assert!(!line.contains("forged"), "{line}");
}

// ---------------------------------------------------------------------------
// HTTP: failing steps
// ---------------------------------------------------------------------------

/// A step that panics answers 500 `step_panicked` naming the step, in
/// every mode (a local step runs inside the request's own task), and the
/// server and the step keep serving.
#[test]
fn a_panicking_step_is_a_500_in_every_mode_and_the_server_stays_up() {
    let ingress = Ingress::new()
        .json("/local", boom_local(Input::new()).deploy().expect("deploy"))
        .json("/actor", boom_actor(Input::new()).deploy().expect("deploy"))
        .json("/task", boom_task(Input::new()).deploy().expect("deploy"));
    let server = Server::start(ingress);
    for (route, step) in [
        ("/local", "boom_local"),
        ("/actor", "boom_actor"),
        ("/task", "boom_task"),
    ] {
        for _ in 0..3 {
            let (status, json, headers) = post(&server.url(route), b"-1");
            assert_eq!(status, 500, "{route}: {json}");
            assert_eq!(json["kind"], "step_panicked", "{route}: {json}");
            assert_eq!(json["step"], step, "{route}: {json}");
            assert!(
                json["error"].as_str().unwrap().contains("boom at -1"),
                "{route}: {json}"
            );
            assert_error_body(&json, Some(headers["x-request-id"].to_str().unwrap()));
            assert_eq!(post(&server.url(route), b"4").1, serde_json::json!(4));
        }
        let errors = format!("pipeline_step_errors_total{{route=\"{route}\",step=\"{step}\"}}");
        assert_eq!(sample(&server, &errors), Some(3.0), "{errors}");
        let answered = format!("pipeline_http_responses_total{{route=\"{route}\",code=\"500\"}}");
        assert_eq!(sample(&server, &answered), Some(3.0), "{answered}");
    }
    assert_eq!(get(&server.url("/healthz")).0, 200);
    assert_eq!(get(&server.url("/readyz")).0, 200, "replicas rebuilt");
}

/// A step's `BadRequest` is the client's fault whatever status it carries:
/// the answer is a 4xx (as `client_error` clamps anything else to 400),
/// never a 2xx, 3xx or 5xx with an error body.
#[test]
fn a_bad_request_with_a_non_4xx_status_is_still_a_4xx() {
    let p = refuse(Input::<u16>::new()).deploy().expect("deploy");
    let server = Server::start(Ingress::new().json("/refuse", p));
    for (asked, want) in [
        (400, 400),
        (422, 422),
        (418, 418),
        (0, 400),
        (999, 400),
        (200, 400),
        (302, 400),
        (500, 400),
    ] {
        let (status, json, _) = post(&server.url("/refuse"), asked.to_string().as_bytes());
        assert_eq!(status, want, "BadRequest {{ status: {asked} }}: {json}");
        assert!(
            json["error"].as_str().unwrap().contains("refused"),
            "{json}"
        );
        assert_eq!(json["step"], "refuse", "the step that refused: {json}");
    }
}

/// An output JSON cannot represent is a 500 with a JSON body saying so,
/// not a dropped connection.
#[test]
fn an_unserializable_output_is_a_500_with_a_json_body() {
    let p = keyed(Input::<i64>::new()).deploy().expect("deploy");
    let server = Server::start(Ingress::new().json("/keyed", p));
    let (status, json, headers) = post(&server.url("/keyed"), b"1");
    assert_eq!(status, 500, "{json}");
    assert_eq!(json["kind"], "serialize");
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("key must be a string"),
        "{json}"
    );
    assert_error_body(&json, Some(headers["x-request-id"].to_str().unwrap()));
    assert_eq!(
        sample(
            &server,
            "pipeline_http_responses_total{route=\"/keyed\",code=\"500\"}"
        ),
        Some(1.0)
    );
}

// ---------------------------------------------------------------------------
// HTTP: overload, disconnects, durations
// ---------------------------------------------------------------------------

/// With one call running and the mailbox full, a burst of concurrent
/// requests is refused: each exactly 503 `overloaded` with `Retry-After:
/// 1` and its own id; meanwhile `/metrics`, `/graph`, `/readyz` and
/// `/healthz` answer; the admitted calls then finish, and the response
/// counters add up.
#[test]
fn a_concurrent_burst_over_a_full_queue_is_refused_exactly_and_counted() {
    let hold = Hold::closed();
    let p = Holder::bind(hold.clone(), Input::<i64>::new())
        .deploy_with(DeployOptions::new().queue_bound("Holder", 2))
        .expect("deploy");
    let server = Arc::new(Server::start(Ingress::new().json("/held", p)));
    let url = server.url("/held");
    let spawn_post = |body: &'static [u8]| {
        let url = url.clone();
        std::thread::spawn(move || post(&url, body))
    };
    let running = spawn_post(b"0");
    wait_until("the first call runs", || hold.arrived() == 1);
    let queued = [spawn_post(b"1"), spawn_post(b"2")];
    wait_until("two calls queued", || {
        sample(
            &server,
            "pipeline_step_queue_depth{route=\"/held\",step=\"Holder\"}",
        ) == Some(2.0)
    });
    let burst: Vec<_> = (0..16).map(|_| spawn_post(b"9")).collect();
    let mut ids = std::collections::BTreeSet::new();
    for t in burst {
        let (status, json, headers) = t.join().unwrap();
        assert_eq!(status, 503, "{json}");
        assert_eq!(json["kind"], "overloaded");
        assert_eq!(json["step"], "Holder");
        assert_eq!(headers["retry-after"], "1");
        let id = headers["x-request-id"].to_str().unwrap().to_string();
        assert_error_body(&json, Some(&id));
        assert!(ids.insert(id), "ids are unique");
    }
    // The inspection endpoints answer while the step is saturated.
    for path in [
        "/metrics",
        "/graph",
        "/graph?format=dot",
        "/readyz",
        "/healthz",
    ] {
        assert_eq!(get(&server.url(path)).0, 200, "{path}");
    }
    assert_eq!(hold.arrived(), 1, "refused calls never reached the step");
    hold.open();
    assert_eq!(running.join().unwrap().1, serde_json::json!(1));
    for (t, want) in queued.into_iter().zip([2, 3]) {
        assert_eq!(t.join().unwrap().1, serde_json::json!(want));
    }
    assert_eq!(
        sample(
            &server,
            "pipeline_http_responses_total{route=\"/held\",code=\"200\"}"
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &server,
            "pipeline_http_responses_total{route=\"/held\",code=\"503\"}"
        ),
        Some(16.0)
    );
    assert_eq!(
        sample(
            &server,
            "pipeline_step_overloaded_total{route=\"/held\",step=\"Holder\"}"
        ),
        Some(16.0)
    );
    for gauge in ["pipeline_step_in_flight", "pipeline_step_queue_depth"] {
        let series = format!("{gauge}{{route=\"/held\",step=\"Holder\"}}");
        assert_eq!(sample(&server, &series), Some(0.0), "{series}");
    }
}

/// A tasks-mode step at its in-flight bound refuses with the same 503
/// `overloaded` and `Retry-After: 1` as an actor step's full mailbox.
#[test]
fn a_tasks_step_at_its_bound_is_a_503_too() {
    let hold = Hold::closed();
    let p = TaskHolder::bind(hold.clone(), Input::<i64>::new())
        .deploy_with(DeployOptions::new().queue_bound("TaskHolder", 1))
        .expect("deploy");
    let server = Server::start(Ingress::new().json("/task", p));
    let url = server.url("/task");
    let first = std::thread::spawn(move || post(&url, b"0"));
    wait_until("the first call runs", || hold.arrived() == 1);
    let (status, json, headers) = post(&server.url("/task"), b"1");
    assert_eq!(status, 503, "{json}");
    assert_eq!(
        (json["kind"].as_str(), json["step"].as_str()),
        (Some("overloaded"), Some("TaskHolder"))
    );
    assert_eq!(headers["retry-after"], "1");
    hold.open();
    assert_eq!(first.join().unwrap().1, serde_json::json!(1));
    assert_eq!(post(&server.url("/task"), b"2").1, serde_json::json!(3));
}

/// A client that hangs up while its call waits in the queue leaves no
/// trace once the queue drains: the gauges return to 0 and the server
/// keeps serving. (The README: a dropped call still queued holds its slot
/// until its replica passes it by.)
#[test]
fn a_client_that_hangs_up_while_queued_leaves_the_counters_at_zero() {
    let hold = Hold::closed();
    let p = Holder::bind(hold.clone(), Input::<i64>::new())
        .deploy()
        .expect("deploy");
    let server = Server::start(Ingress::new().json("/held", p));
    let url = server.url("/held");
    let running = std::thread::spawn(move || post(&url, b"0"));
    wait_until("the first call runs", || hold.arrived() == 1);
    // Three clients queue a call each, then hang up.
    let depth = "pipeline_step_queue_depth{route=\"/held\",step=\"Holder\"}";
    for _ in 0..3 {
        let before = sample(&server, depth).expect("a queue depth");
        let mut s = TcpStream::connect(server.addr).expect("connect");
        s.write_all(b"POST /held HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\n5")
            .expect("write");
        wait_until("its call is queued", || {
            sample(&server, depth).is_some_and(|d| d > before)
        });
        s.shutdown(std::net::Shutdown::Both).expect("hang up");
        drop(s);
    }
    hold.open();
    assert_eq!(running.join().unwrap().1, serde_json::json!(1));
    wait_until("the gauges settle", || {
        sample(
            &server,
            "pipeline_step_in_flight{route=\"/held\",step=\"Holder\"}",
        ) == Some(0.0)
            && sample(
                &server,
                "pipeline_step_queue_depth{route=\"/held\",step=\"Holder\"}",
            ) == Some(0.0)
    });
    let ran = hold.arrived();
    println!("calls the step ran: {ran} (1 answered, 3 hung up)");
    assert!((1..=4).contains(&ran));
    assert_eq!(post(&server.url("/held"), b"7").1, serde_json::json!(8));
}

/// Shutdown with one call running and two queued behind it: the listener
/// closes, and all three are answered once the step moves on (nothing
/// admitted is lost), then `serve` returns Ok.
#[test]
fn shutdown_answers_the_queued_calls_too() {
    let hold = Hold::closed();
    let p = Holder::bind(hold.clone(), Input::<i64>::new())
        .deploy()
        .expect("deploy");
    let server = Server::start(Ingress::new().json("/held", p));
    let url = server.url("/held");
    let spawn_post = |body: &'static [u8]| {
        let url = url.clone();
        std::thread::spawn(move || post(&url, body))
    };
    let running = spawn_post(b"0");
    wait_until("the first call runs", || hold.arrived() == 1);
    let queued = [spawn_post(b"1"), spawn_post(b"2")];
    wait_until("two calls queued", || {
        sample(
            &server,
            "pipeline_step_queue_depth{route=\"/held\",step=\"Holder\"}",
        ) == Some(2.0)
    });
    let addr = server.addr;
    let stopping = std::thread::spawn(move || server.shutdown());
    while TcpStream::connect(addr).is_ok() {
        std::thread::yield_now();
    }
    hold.open();
    assert_eq!(running.join().unwrap().1, serde_json::json!(1));
    for (t, want) in queued.into_iter().zip([2, 3]) {
        assert_eq!(t.join().unwrap().1, serde_json::json!(want));
    }
    stopping.join().unwrap().expect("serve returns Ok");
}

/// Durations at their extremes (a user's "no limit") must not break
/// serving: `Duration::MAX` for the call timeout, the header read timeout
/// and the shutdown grace.
#[test]
fn extreme_durations_do_not_break_serving() {
    let p = ident(Input::<i64>::new()).deploy().expect("deploy");
    let server = Server::start(
        Ingress::new()
            .json("/ident", p)
            .timeout(Duration::MAX)
            .header_read_timeout(Duration::MAX)
            .shutdown_grace(Duration::MAX),
    );
    let r = raw(
        server.addr,
        b"POST /ident HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 1\r\n\r\n6",
    );
    assert_eq!(
        r.map(|r| (r.status, r.json())),
        Some((200, serde_json::json!(6)))
    );
    server.shutdown().expect("stops");
}

/// The call timeout alone at its extreme, and at zero: a huge timeout
/// serves normally; a zero one answers 504 `deadline` for a call that has
/// to wait, never a 500 or a panic.
#[test]
fn call_timeouts_of_zero_and_max_answer_cleanly() {
    let hold = Hold::closed();
    let ingress = Ingress::new()
        .json("/ident", ident(Input::new()).deploy().expect("deploy"))
        .timeout(Duration::MAX);
    let server = Server::start(ingress);
    assert_eq!(post(&server.url("/ident"), b"6").1, serde_json::json!(6));
    drop(server);
    let held = Holder::bind(hold.clone(), Input::<i64>::new())
        .deploy()
        .expect("deploy");
    let server = Server::start(Ingress::new().json("/held", held).timeout(Duration::ZERO));
    let (status, json, _) = post(&server.url("/held"), b"1");
    assert_eq!(status, 504, "{json}");
    assert_eq!(json["kind"], "deadline");
    hold.open();
}

/// A route given without its leading slash is served at `/route`, and a
/// route may share its path with an inspection endpoint's (different
/// methods).
#[test]
fn route_paths_without_a_slash_and_beside_the_endpoints() {
    let ingress = Ingress::new()
        .json("ident", ident(Input::new()).deploy().expect("deploy"))
        .json("/healthz", ident(Input::new()).deploy().expect("deploy"));
    let server = Server::start(ingress);
    assert_eq!(post(&server.url("/ident"), b"1").1, serde_json::json!(1));
    assert_eq!(post(&server.url("/healthz"), b"2").1, serde_json::json!(2));
    assert_eq!(get(&server.url("/healthz")), (200, "ok\n".into()));
}

// ---------------------------------------------------------------------------
// Deploy options
// ---------------------------------------------------------------------------

/// A scratch directory of this test's own.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("outsider-http-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

/// Deploys `scorer -> plain` with `opts`, turning a panic into a failure
/// that says so.
fn deploy_both(opts: DeployOptions) -> Result<Pipeline<i64, i64>, DeployError> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| {
        plain(scorer(Input::new())).deploy_with(opts)
    })) {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("deploy panicked instead of returning an error: {msg}")
        }
    }
}

fn toml_err(text: &str) -> String {
    let err = DeployOptions::from_toml_str(text).expect_err(text);
    match &err {
        DeployError::Options {
            source: OptionsError::Toml(e),
            path: None,
            ..
        } => e.message().to_string(),
        other => panic!("{text}: not a TOML options error: {other:?}"),
    }
}

fn json_err(text: &str) -> String {
    let err = DeployOptions::from_json_str(text).expect_err(text);
    match &err {
        DeployError::Options {
            source: OptionsError::Json(e),
            path: None,
            ..
        } => e.to_string(),
        other => panic!("{text}: not a JSON options error: {other:?}"),
    }
}

/// An unknown key at any level (top, step, autoscale) is refused, naming
/// the key, in TOML and JSON alike.
#[test]
fn unknown_keys_at_every_level_are_refused_naming_the_key() {
    for (toml, json, key) in [
        ("replicas = 4", r#"{"replicas": 4}"#, "replicas"),
        ("queue_bounds = 4", r#"{"queue_bounds": 4}"#, "queue_bounds"),
        ("[step.scorer]\nreplicas = 2", r#"{"step": {}}"#, "step"),
        (
            "[steps.scorer]\nreplica = 2",
            r#"{"steps": {"scorer": {"replica": 2}}}"#,
            "replica",
        ),
        (
            "[steps.scorer]\nDevice = \"cpu\"",
            r#"{"steps": {"scorer": {"Device": "cpu"}}}"#,
            "Device",
        ),
        (
            "[steps.scorer.autoscale]\nmax = 3",
            r#"{"steps": {"scorer": {"autoscale": {"max": 3}}}}"#,
            "max",
        ),
        (
            "[steps.scorer.autoscale]\ntarget_ongoing_request = 3",
            r#"{"steps": {"scorer": {"autoscale": {"target_ongoing_request": 3}}}}"#,
            "target_ongoing_request",
        ),
        // Set only in code, never from a file.
        ("runtime = \"current\"", r#"{"runtime": null}"#, "runtime"),
        // `steps.a.b` is a table `b` inside step `a`: an unknown key too.
        (
            "[steps.scorer.plain]\nreplicas = 2",
            r#"{"steps": {"scorer": {"plain": {}}}}"#,
            "plain",
        ),
    ] {
        let needle = format!("unknown field `{key}`");
        let t = toml_err(toml);
        assert!(t.contains(&needle), "{toml}: {t}");
        let j = json_err(json);
        assert!(j.contains(&needle), "{json}: {j}");
    }
}

/// Values of the wrong type (negative, fractional, quoted, boolean,
/// a table where a number goes) are typed parse errors, never a panic and
/// never a silent default.
#[test]
fn wrong_value_types_are_typed_parse_errors() {
    for toml in [
        "[steps.scorer]\nreplicas = -1",
        "[steps.scorer]\nreplicas = 2.5",
        "[steps.scorer]\nreplicas = \"2\"",
        "[steps.scorer]\nreplicas = true",
        "[steps.scorer]\nreplicas = [2]",
        "queue_bound = -5",
        "queue_bound = 1e3",
        "local = \"yes\"",
        "local = 1",
        "steps = 3",
        "steps = [\"scorer\"]",
        "[steps.scorer]\ndevice = 0",
        "[steps.scorer]\nautoscale = 3",
        "[steps.scorer.autoscale]\nupscale_delay_ms = -1",
        "[steps.scorer]\nremote = 4222",
    ] {
        let msg = toml_err(toml);
        assert!(
            msg.contains("invalid") || msg.contains("expected"),
            "{toml}: {msg}"
        );
    }
    for json in [
        r#"{"steps": {"scorer": {"replicas": -1}}}"#,
        r#"{"steps": {"scorer": {"replicas": 2.5}}}"#,
        r#"{"steps": {"scorer": {"replicas": "2"}}}"#,
        r#"{"steps": {"scorer": {"replicas": 18446744073709551616}}}"#,
        r#"{"queue_bound": null, "local": null}"#,
        r#"{"steps": null}"#,
        r#"{"steps": {"scorer": null}}"#,
        r#"{"steps": {"scorer": {"autoscale": []}}}"#,
        r#""local""#,
    ] {
        let msg = json_err(json);
        assert!(
            msg.contains("invalid") || msg.contains("expected"),
            "{json}: {msg}"
        );
    }
}

/// A JSON deploy file must be an object. serde's derive also accepts a
/// struct written as an array of its fields in order, so `[]` loads as
/// the defaults and `[true, 5]` as `local = true, queue_bound = 5`: a
/// file that is not what the README documents is silently taken.
#[test]
fn a_json_array_is_not_a_deploy_file() {
    for json in [
        "[]",
        "[true, 5]",
        "[false, null, {}]",
        r#"{"steps": {"scorer": [2]}}"#,
        r#"{"steps": {"scorer": {"autoscale": [1, 4]}}}"#,
    ] {
        let msg = json_err(json);
        assert!(msg.contains("invalid type: sequence"), "{json}: {msg}");
    }
}

/// Extreme replica counts fail `deploy` with a typed error naming the
/// step, as "bad values fail deploy with a clear error" promises, rather
/// than panicking (or trying to start that many replicas).
#[test]
fn absurd_replica_counts_fail_deploy_with_a_typed_error() {
    for opts in [
        DeployOptions::from_json_str(&format!(
            r#"{{"steps": {{"scorer": {{"replicas": {}}}}}}}"#,
            usize::MAX
        ))
        .unwrap(),
        DeployOptions::from_toml_str(&format!("[steps.scorer]\nreplicas = {}", i64::MAX)).unwrap(),
        DeployOptions::from_toml_str(&format!(
            "[steps.scorer.autoscale]\nmin_replicas = {0}\nmax_replicas = {0}",
            i64::MAX
        ))
        .unwrap(),
    ] {
        let err = deploy_both(opts).expect_err("refused");
        assert!(
            matches!(&err, DeployError::InvalidOption { step, .. } if step == "scorer"),
            "{err}"
        );
    }
}

/// An absurd queue bound fails `deploy` with a typed error naming the step
/// (or `*` for the pipeline-wide one) rather than panicking.
#[test]
fn absurd_queue_bounds_fail_deploy_with_a_typed_error() {
    for (text, step) in [
        (
            format!("[steps.scorer]\nqueue_bound = {}", i64::MAX),
            "scorer",
        ),
        (
            format!("[steps.plain]\nqueue_bound = {}", i64::MAX),
            "plain",
        ),
        (format!("queue_bound = {}", i64::MAX), "*"),
    ] {
        let opts = DeployOptions::from_toml_str(&text).unwrap();
        let err = deploy_both(opts).expect_err(&text);
        assert!(
            matches!(&err, DeployError::InvalidOption { step: s, .. } if s == step),
            "{text}: {err}"
        );
    }
}

/// Large but sane bounds deploy and serve: a queue bound of 2^40 and an
/// autoscale ceiling of `usize::MAX` (replicas start at the minimum).
#[test]
fn large_sane_bounds_deploy_and_serve() {
    let p = deploy_both(DeployOptions::new().default_queue_bound(1 << 40)).expect("deploy");
    assert_eq!(p.call(3).unwrap(), 3);
    assert!(p.report().iter().all(|r| r.queue_bound == 1 << 40));
    let opts = DeployOptions::from_json_str(&format!(
        r#"{{"steps": {{"scorer": {{"autoscale": {{"max_replicas": {}, "upscale_delay_ms": {}, "downscale_delay_ms": {}}}}}}}}}"#,
        usize::MAX,
        u64::MAX,
        u64::MAX
    ))
    .unwrap();
    let p = deploy_both(opts).expect("deploy");
    assert_eq!(p.call(4).unwrap(), 4);
    let r = &p.report()[0];
    assert_eq!((r.step, r.replicas), ("scorer", 1));
    assert_eq!(r.autoscale.map(|a| a.max_replicas), Some(usize::MAX));
}

/// Autoscale values that cannot work are refused naming the step and the
/// values, from a file; the message says where an unset bound comes from.
#[test]
fn unusable_autoscale_settings_in_a_file_name_the_problem() {
    let dir = scratch("autoscale");
    let path = dir.join("deploy.toml");
    for (text, needle) in [
        (
            "[steps.scorer.autoscale]\nmin_replicas = 5\nmax_replicas = 2",
            "max_replicas (2) is below min_replicas (5)",
        ),
        (
            "[steps.scorer.autoscale]\nmin_replicas = 0",
            "min_replicas must be at least 1",
        ),
        (
            "[steps.scorer.autoscale]\ntarget_ongoing_requests = 0",
            "target_ongoing_requests must be at least 1",
        ),
        (
            "[steps.scorer.autoscale]\nmax_replicas = 0",
            "min_replicas comes from the default",
        ),
        (
            "[steps.scorer]\nreplicas = 2\n[steps.scorer.autoscale]\nmax_replicas = 4",
            "replicas and autoscale both",
        ),
        (
            "[steps.plain.autoscale]\nmax_replicas = 4",
            "autoscale applies to actor steps",
        ),
    ] {
        std::fs::write(&path, text).unwrap();
        let opts = DeployOptions::from_file(&path).expect(text);
        let err = deploy_both(opts).expect_err(text);
        let step = if text.contains("plain") {
            "plain"
        } else {
            "scorer"
        };
        assert!(
            matches!(&err, DeployError::InvalidOption { step: s, message } if s == step && message.contains(needle)),
            "{text}: {err}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Device strings that are not `cpu` or `cuda:N` are parse errors saying
/// what is expected; `cuda:N` on a machine without it fails deploy naming
/// the step; `cpu` pins.
#[test]
fn garbage_device_strings_are_refused_saying_what_works() {
    for device in [
        "CPU",
        "gpu",
        "cuda",
        "cuda:",
        "cuda:-1",
        "cuda:1.5",
        "cuda:x",
        "cuda: 0",
        "cuda:0:1",
        "",
        "cuda:99999999999999999999999",
        "mps",
        "cpu:0",
    ] {
        let text = format!("[steps.scorer]\ndevice = {device:?}");
        let msg = toml_err(&text);
        assert!(
            msg.contains("expected `cpu` or `cuda:N`"),
            "{device:?}: {msg}"
        );
        let json = format!(r#"{{"steps": {{"scorer": {{"device": {device:?}}}}}}}"#);
        let msg = json_err(&json);
        assert!(
            msg.contains("expected `cpu` or `cuda:N`"),
            "{device:?}: {msg}"
        );
    }
    let opts = DeployOptions::from_toml_str("[steps.scorer]\ndevice = \"cuda:999\"").unwrap();
    let err = deploy_both(opts).expect_err("no machine has cuda:999");
    assert!(
        matches!(&err, DeployError::InvalidOption { step, message } if step == "scorer" && message.contains("cuda:999")),
        "{err}"
    );
    let p = deploy_both(DeployOptions::from_toml_str("[steps.scorer]\ndevice = \"cpu\"").unwrap())
        .expect("cpu");
    assert_eq!(p.call(1).unwrap(), 1);
}

/// Files: an empty TOML file is the defaults; an empty JSON file is a
/// parse error; the extension (not the content) picks the parser; a
/// directory, a non-UTF-8 file, a file with no or another extension each
/// fail with their typed cause and the path in the message.
#[test]
fn deploy_files_empty_misnamed_and_unreadable() {
    let dir = scratch("files");
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    // Empty TOML: the steps' own attributes.
    let empty = DeployOptions::from_file(write("empty.toml", b"")).expect("empty toml");
    assert_eq!(empty, DeployOptions::new());
    deploy_both(empty).expect("deploys");
    let comments = write("comments.toml", b"# nothing here\n\n");
    assert_eq!(
        DeployOptions::from_file(comments).unwrap(),
        DeployOptions::new()
    );

    let check = |path: std::path::PathBuf, is: fn(&OptionsError) -> bool| {
        let err = DeployOptions::from_file(&path).expect_err("refused");
        let DeployError::Options {
            path: Some(p),
            source,
            ..
        } = &err
        else {
            panic!("{}: {err:?}", path.display())
        };
        assert_eq!(p, &path);
        assert!(is(source), "{}: {source:?}", path.display());
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    };
    check(write("empty.json", b""), |e| {
        matches!(e, OptionsError::Json(_))
    });
    check(write("blank.json", b"  \n"), |e| {
        matches!(e, OptionsError::Json(_))
    });
    // The extension picks the parser, whatever the content looks like.
    check(
        write("toml-inside.json", b"[steps.scorer]\nreplicas = 2\n"),
        |e| matches!(e, OptionsError::Json(_)),
    );
    check(
        write(
            "json-inside.toml",
            br#"{"steps": {"scorer": {"replicas": 2}}}"#,
        ),
        |e| matches!(e, OptionsError::Toml(_)),
    );
    check(write("latin1.toml", b"# caf\xe9\n"), |e| {
        matches!(e, OptionsError::Io(_))
    });
    check(write("deploy", b"local = true"), |e| {
        matches!(e, OptionsError::Extension)
    });
    check(write("deploy.yml", b"local: true"), |e| {
        matches!(e, OptionsError::Extension)
    });
    check(write("deploy.toml.bak", b"local = true"), |e| {
        matches!(e, OptionsError::Extension)
    });
    let sub = dir.join("a-dir.toml");
    std::fs::create_dir_all(&sub).unwrap();
    check(sub, |e| matches!(e, OptionsError::Io(_)));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A step given twice in one file is refused, in TOML and in JSON alike
/// (JSON's objects allow repeated keys; the last silently winning would
/// hide a typo'd copy-paste).
#[test]
fn a_step_named_twice_is_refused_in_both_formats() {
    let msg = toml_err("[steps.scorer]\nreplicas = 2\n[steps.scorer]\nreplicas = 3\n");
    assert!(
        msg.contains("duplicate") || msg.contains("defined"),
        "{msg}"
    );
    let msg = json_err(r#"{"steps": {"scorer": {"replicas": 2}, "scorer": {"replicas": 3}}}"#);
    assert!(msg.contains("duplicate"), "{msg}");
}

/// A key given twice inside one step is refused in both formats.
#[test]
fn a_key_given_twice_in_a_step_is_refused_in_both_formats() {
    let msg = toml_err("[steps.scorer]\nreplicas = 2\nreplicas = 3\n");
    assert!(msg.contains("duplicate"), "{msg}");
    let msg = json_err(r#"{"steps": {"scorer": {"replicas": 2, "replicas": 3}}}"#);
    assert!(msg.contains("duplicate field `replicas`"), "{msg}");
    let msg = json_err(r#"{"local": true, "local": false}"#);
    assert!(msg.contains("duplicate field `local`"), "{msg}");
}

/// Step names in options that are not in the graph, however odd (empty,
/// spaces, another case, a dot, a newline, non-ASCII), fail deploy naming
/// exactly that name and listing the graph's steps, also with `local =
/// true`.
#[test]
fn odd_unknown_step_names_are_named_exactly() {
    for name in [
        "",
        " ",
        "Scorer",
        "scorer ",
        "scorer.plain",
        "scorer\n",
        "sc\u{f6}rer",
        "*",
    ] {
        for local in [false, true] {
            let text = format!(
                "local = {local}\n[steps.{}]\nqueue_bound = 4\n",
                toml_key(name)
            );
            let opts = DeployOptions::from_toml_str(&text).expect(&text);
            let err = deploy_both(opts).expect_err(&text);
            assert!(
                matches!(&err, DeployError::UnknownStep { name: n, known } if n == name && known == "plain, scorer"),
                "{name:?} (local {local}): {err:?}"
            );
        }
    }
}

/// A TOML key for `name` (quoted, escaped).
fn toml_key(name: &str) -> String {
    let mut s = String::from("\"");
    for c in name.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// A node named with odd characters (spaces, a slash, a quote, a dot,
/// non-ASCII) is addressed by exactly that name from a file; the step's
/// own name still reaches it; an empty name is refused at deploy.
#[test]
fn nodes_with_odd_names_are_addressed_by_them_from_a_file() {
    let name = "odd name/\u{fc}.\"q\"";
    let text = format!("[steps.{}]\nreplicas = 3\n", toml_key(name));
    let opts = DeployOptions::from_toml_str(&text).expect(&text);
    let p = scorer(Input::<i64>::new())
        .named(name)
        .deploy_with(opts)
        .expect("deploy");
    let r = &p.report()[0];
    assert_eq!((r.step, r.replicas), (name, 3), "{r:?}");
    assert_eq!(p.call(5).unwrap(), 5);
    let p = scorer(Input::<i64>::new())
        .named(name)
        .deploy_with(DeployOptions::from_toml_str("[steps.scorer]\nreplicas = 2").unwrap())
        .expect("deploy");
    assert_eq!(p.report()[0].replicas, 2);
    for empty in ["", "   "] {
        let err = scorer(Input::<i64>::new())
            .named(empty)
            .deploy()
            .expect_err("an empty name");
        assert!(
            matches!(&err, DeployError::InvalidOption { message, .. } if message.contains("non-empty name")),
            "{empty:?}: {err}"
        );
    }
}

/// `local = true` does not switch validation off: a bad value for a step
/// still fails deploy, naming it.
#[test]
fn local_mode_still_validates_values() {
    for (text, needle) in [
        (
            "local = true\n[steps.scorer]\nreplicas = 0",
            "replicas must be at least 1",
        ),
        (
            "local = true\n[steps.plain]\nqueue_bound = 0",
            "queue_bound must be at least 1",
        ),
        (
            "local = true\n[steps.plain]\nreplicas = 2",
            "replicas applies to actor steps",
        ),
    ] {
        let opts = DeployOptions::from_toml_str(text).unwrap();
        assert!(opts.is_local());
        let err = deploy_both(opts).expect_err(text);
        assert!(err.to_string().contains(needle), "{text}: {err}");
    }
}
