//! An outsider's second round of hostile tests, aimed at the ingress's
//! body reading (the size limit, the body timeout, the lingering close
//! after a refusal, `Expect: 100-continue`), at what a refused request
//! does to its connection (keep-alive, pipelining), at the JSON 405, at
//! truncated JSON on every kind of route, and at deploy files (tables only,
//! duplicate steps, nulls, boundaries of the replica and queue limits).
//!
//! No sleeps wait for work: every wait is on the thing itself (an answer,
//! a close, a thread), with a guard that fails instead of hanging. The
//! only sleeps are a slow client's pauses between the bytes it sends.

#![cfg(feature = "http")]

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pipeline_core::http::{BadRequest, HttpRequest, Ingress};
use pipeline_core::prelude::*;
use pipeline_core::{DeployError, OptionsError};
use support::http::{get, post, Server};
use support::raw::*;

/// The body / call timeout of the servers that test stalls: short, so a
/// stall is answered quickly, and far below [`GUARD`].
const SHORT: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------
// Steps
// ---------------------------------------------------------------------------

#[step]
fn ident(x: i64) -> i64 {
    x
}

#[step]
fn body_len(r: HttpRequest) -> usize {
    r.body().len()
}

#[step]
fn parse_u32(r: HttpRequest) -> Result<u32, BadRequest> {
    r.json()
}

#[step]
fn count_to(n: u32) -> ItemStream<u32> {
    ItemStream::iter(1..=n)
}

#[step(mode = "actors", replicas = 1)]
fn scorer(x: i64) -> i64 {
    x
}

#[step(mode = "tasks")]
fn plain(x: i64) -> i64 {
    x
}

// ---------------------------------------------------------------------------
// Helpers: servers and raw HTTP
// ---------------------------------------------------------------------------

/// A server with a JSON route `/ident` (i64), a request route `/len` (the
/// body's length), a request route `/u32` (`HttpRequest::json::<u32>`)
/// and a stream route `/count` (u32 -> 1..=n), with the given body limit
/// and timeout.
fn serve(limit: usize, timeout: Duration) -> Server {
    let ident = ident(Input::<i64>::new()).deploy().expect("deploy");
    let len = body_len(Input::<HttpRequest>::new())
        .deploy()
        .expect("deploy");
    let u32s = parse_u32(Input::<HttpRequest>::new())
        .deploy()
        .expect("deploy");
    let count = count_to(Input::<u32>::new()).deploy().expect("deploy");
    Server::start(
        Ingress::new()
            .json("/ident", ident)
            .request("/len", len)
            .request("/u32", u32s)
            .stream("/count", count)
            .body_limit(limit)
            .timeout(timeout),
    )
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// A request head: `POST path` with `headers` (each `Name: value`).
fn head(path: &str, headers: &[&str]) -> Vec<u8> {
    let mut h = format!("POST {path} HTTP/1.1\r\nhost: x\r\n");
    for line in headers {
        h.push_str(line);
        h.push_str("\r\n");
    }
    h.push_str("\r\n");
    h.into_bytes()
}

/// `body` as one chunk of a chunked body (no terminator).
fn chunk(body: &[u8]) -> Vec<u8> {
    let mut c = format!("{:x}\r\n", body.len()).into_bytes();
    c.extend_from_slice(body);
    c.extend_from_slice(b"\r\n");
    c
}

/// Sends `bytes` on a new connection and reads the first answer.
fn send(addr: SocketAddr, bytes: &[u8]) -> Raw {
    let mut s = connect(addr);
    let _ = s.write_all(bytes);
    next_answer(&mut s).expect("an answer")
}

/// A POST with a content-length body, closing after the answer.
fn post_cl(addr: SocketAddr, path: &str, body: &[u8]) -> Raw {
    let mut r = head(
        path,
        &[
            "connection: close",
            &format!("content-length: {}", body.len()),
        ],
    );
    r.extend_from_slice(body);
    send(addr, &r)
}

/// A POST with `chunks` as a chunked body, closing after the answer.
fn post_chunked(addr: SocketAddr, path: &str, chunks: &[&[u8]]) -> Raw {
    let mut r = head(path, &["connection: close", "transfer-encoding: chunked"]);
    for c in chunks {
        r.extend_from_slice(&chunk(c));
    }
    r.extend_from_slice(b"0\r\n\r\n");
    send(addr, &r)
}

/// The value of one sample in `/metrics`, by its whole name and labels
/// (0 when absent).
fn sample(server: &Server, series: &str) -> f64 {
    let (status, text) = get(&server.url("/metrics"));
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn responses(server: &Server, route: &str, code: u16) -> f64 {
    sample(
        server,
        &format!("pipeline_http_responses_total{{route=\"{route}\",code=\"{code}\"}}"),
    )
}

/// The server still answers an ordinary request.
fn assert_serving(server: &Server) {
    assert_eq!(post(&server.url("/ident"), b"41").1, serde_json::json!(41));
}

/// Writes `head`, then `piece` every `pause` until a write fails or `stop`
/// is set, on a thread; the thread returns whether a write failed (the
/// server closed the connection).
fn trickle(
    mut s: TcpStream,
    head: Vec<u8>,
    piece: Vec<u8>,
    pause: Duration,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<bool> {
    std::thread::spawn(move || {
        if s.write_all(&head).is_err() {
            return true;
        }
        while !stop.load(Ordering::SeqCst) {
            if s.write_all(&piece).is_err() {
                return true;
            }
            std::thread::sleep(pause);
        }
        false
    })
}

/// Joins `thread`, failing after [`GUARD`] instead of hanging.
fn join_within<T>(thread: std::thread::JoinHandle<T>, what: &str) -> T {
    let start = Instant::now();
    while !thread.is_finished() {
        assert!(start.elapsed() < GUARD, "{what}: still running");
        std::thread::yield_now();
    }
    thread.join().expect(what)
}

// ---------------------------------------------------------------------------
// The size limit
// ---------------------------------------------------------------------------

/// A body of exactly the limit is served and one byte over is 413, with a
/// `content-length` and chunked alike, whatever the chunking (a chunk that
/// crosses the limit, many one-byte chunks).
#[test]
fn a_body_at_the_limit_is_served_and_one_byte_over_is_413() {
    let server = serve(8, GUARD);
    let at = [b'7'; 8];
    let over = [b'7'; 9];
    let a = post_cl(server.addr, "/len", &at);
    assert_eq!((a.status, a.json()), (200, serde_json::json!(8)));
    post_cl(server.addr, "/len", &over).assert_error(413, "body_too_large");
    let a = post_cl(server.addr, "/ident", b"       7");
    assert_eq!((a.status, a.json()), (200, serde_json::json!(7)));
    post_cl(server.addr, "/ident", b"        7").assert_error(413, "body_too_large");

    let a = post_chunked(server.addr, "/len", &[b"777", b"77777"]);
    assert_eq!((a.status, a.json()), (200, serde_json::json!(8)));
    let ones: Vec<&[u8]> = (0..8).map(|_| &b"7"[..]).collect();
    let a = post_chunked(server.addr, "/len", &ones);
    assert_eq!((a.status, a.json()), (200, serde_json::json!(8)));
    let ones: Vec<&[u8]> = (0..9).map(|_| &b"7"[..]).collect();
    post_chunked(server.addr, "/len", &ones).assert_error(413, "body_too_large");
    post_chunked(server.addr, "/len", &[b"7777", &[b'7'; 100]]).assert_error(413, "body_too_large");
    post_chunked(server.addr, "/len", &[&over]).assert_error(413, "body_too_large");
    assert_serving(&server);
}

/// A limit of 0 takes an empty body (with `content-length: 0`, chunked
/// with only the last chunk, and with no length at all) and refuses one
/// byte, on a request route and a stream route.
#[test]
fn a_zero_limit_takes_only_empty_bodies() {
    let server = serve(0, GUARD);
    let a = post_cl(server.addr, "/len", b"");
    assert_eq!((a.status, a.json()), (200, serde_json::json!(0)));
    let a = post_chunked(server.addr, "/len", &[]);
    assert_eq!((a.status, a.json()), (200, serde_json::json!(0)));
    let a = send(
        server.addr,
        b"POST /len HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert_eq!((a.status, a.json()), (200, serde_json::json!(0)));
    post_cl(server.addr, "/len", b"1").assert_error(413, "body_too_large");
    post_chunked(server.addr, "/count", &[b"1"]).assert_error(413, "body_too_large");
}

/// A refused body's answer, announced (`content-length` over the limit,
/// nothing sent) or found out (a chunked body that crosses it), says
/// `connection: close`, is a JSON error carrying the client's request id,
/// and the server then closes the connection even though the client
/// keeps it open.
#[test]
fn a_413_says_close_carries_the_id_and_the_connection_closes() {
    let server = serve(16, SHORT);
    for (what, request) in [
        (
            "announced",
            head(
                "/ident",
                &["x-request-id: big-1", "content-length: 1000000"],
            ),
        ),
        ("sent", {
            let mut r = head(
                "/ident",
                &["x-request-id: big-1", "transfer-encoding: chunked"],
            );
            r.extend_from_slice(&chunk(&[b' '; 64]));
            r
        }),
    ] {
        let mut s = connect(server.addr);
        s.write_all(&request).expect("write");
        let a = next_answer(&mut s).unwrap_or_else(|| panic!("{what}: an answer"));
        a.assert_error(413, "body_too_large");
        assert_eq!(a.id(), "big-1", "{what}");
        assert!(a.closes(), "{what}: {:?}", a.headers);
        let after = until_closed(&mut s);
        assert!(
            after.is_empty(),
            "{what}: {:?}",
            String::from_utf8_lossy(&after)
        );
    }
    assert_serving(&server);
}

/// Sends `first`, then `piece` every 5 ms for ever; asserts the 413 comes
/// at once and that the server then closes the connection (the reader
/// sees the close, the writer a failed write) within `guard`, however
/// long the client would go on sending.
fn assert_trickled_upload_is_cut_off(
    server: &Server,
    first: Vec<u8>,
    piece: Vec<u8>,
    guard: Duration,
) {
    let mut s = connect(server.addr);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = trickle(
        s.try_clone().expect("clone"),
        first,
        piece,
        Duration::from_millis(5),
        Arc::clone(&stop),
    );
    let a = next_answer(&mut s).expect("the 413");
    a.assert_error(413, "body_too_large");
    assert!(a.closes(), "{:?}", a.headers);
    read_until(&mut s, guard, |_| false);
    // The writer sees the close too (a failed write); told to stop if not.
    let start = Instant::now();
    while !writer.is_finished() && start.elapsed() < GUARD {
        std::thread::yield_now();
    }
    stop.store(true, Ordering::SeqCst);
    assert!(
        join_within(writer, "the writer"),
        "the server never closed the trickling upload's connection"
    );
}

/// A client that announces a huge body, then sends it slowly for ever,
/// gets its 413 at once and has its connection cut once the lingering
/// read is over (the 300 ms timeout here), instead of holding it as long
/// as it keeps sending.
#[test]
fn an_announced_over_limit_upload_trickled_for_ever_is_cut_off() {
    let server = serve(16, SHORT);
    assert_trickled_upload_is_cut_off(
        &server,
        head("/ident", &["content-length: 1000000000000"]),
        vec![b' '; 1024],
        GUARD,
    );
    assert_serving(&server);
}

/// The same with a chunked upload that crosses the limit, then trickles
/// chunks for ever.
#[test]
fn a_chunked_over_limit_upload_trickled_for_ever_is_cut_off() {
    let server = serve(16, SHORT);
    let mut first = head("/len", &["transfer-encoding: chunked"]);
    first.extend_from_slice(&chunk(&[b'x'; 32]));
    assert_trickled_upload_is_cut_off(&server, first, chunk(&[b'x'; 1024]), GUARD);
    assert_serving(&server);
}

/// With an hour's timeout, the lingering read of a refused body still
/// ends after 30 s: a trickling upload is cut off within a minute (this
/// test takes about 30 s).
#[test]
fn the_linger_is_capped_at_30_s_whatever_the_timeout() {
    let server = serve(16, Duration::from_secs(3600));
    assert_trickled_upload_is_cut_off(
        &server,
        head("/ident", &["content-length: 1000000000000"]),
        vec![b' '; 1024],
        Duration::from_secs(60),
    );
}

/// Many clients uploading over-limit bodies at once (half announced, half
/// chunked, each reading as it writes) each get a 413; meanwhile and after,
/// ordinary requests are served; each refused connection is closed; and
/// `/metrics` counts exactly one 413 per upload.
#[test]
fn many_concurrent_over_limit_uploads_are_each_refused_and_the_server_stays_up() {
    const UPLOADS: usize = 24;
    let server = serve(1024, Duration::from_secs(5));
    let addr = server.addr;
    let uploads: Vec<_> = (0..UPLOADS)
        .map(|i| {
            std::thread::spawn(move || {
                let mut s = connect(addr);
                let mut w = s.try_clone().expect("clone");
                let size = 4 * 1024 * 1024;
                let writer = std::thread::spawn(move || {
                    let piece = vec![b' '; 64 * 1024];
                    if i % 2 == 0 {
                        w.write_all(&head("/ident", &[&format!("content-length: {size}")]))?;
                        for _ in 0..size / piece.len() {
                            w.write_all(&piece)?;
                        }
                    } else {
                        w.write_all(&head("/ident", &["transfer-encoding: chunked"]))?;
                        for _ in 0..size / piece.len() {
                            w.write_all(&chunk(&piece))?;
                        }
                        w.write_all(b"0\r\n\r\n")?;
                    }
                    Ok::<(), std::io::Error>(())
                });
                let answers = all_answers(&mut s);
                let _ = writer.join();
                answers.iter().map(|a| a.status).collect::<Vec<_>>()
            })
        })
        .collect();
    // Served while the uploads run.
    for n in 0..5 {
        assert_eq!(
            post(&server.url("/ident"), n.to_string().as_bytes()).1,
            serde_json::json!(n)
        );
    }
    for (i, u) in uploads.into_iter().enumerate() {
        let statuses = join_within(u, "an upload");
        assert_eq!(statuses, [413], "upload {i}");
    }
    assert_serving(&server);
    assert_eq!(responses(&server, "/ident", 413), UPLOADS as f64);
    assert_eq!(responses(&server, "/ident", 200), 6.0);
}

/// Sends an 8 MiB body to a 1 KiB limit right after its head, which asks
/// for `100 Continue` when `expect` (RFC 9110 lets a client send on
/// without waiting: it "MAY proceed to send the content even if it has
/// not yet received a response"), reading the answer while it writes, or
/// only once it has written everything (as ureq and most simple clients
/// do). How the upload ended, and the answer (`None` if the server closed
/// or reset without one the client could read).
fn eager_upload(
    addr: SocketAddr,
    expect: bool,
    read_while_writing: bool,
) -> (std::io::Result<()>, Option<Raw>) {
    let mut s = connect(addr);
    let mut w = s.try_clone().expect("clone");
    let size = 8 * 1024 * 1024;
    let writer = std::thread::spawn(move || {
        let length = format!("content-length: {size}");
        let headers: &[&str] = if expect {
            &["expect: 100-continue", &length]
        } else {
            &[&length]
        };
        w.write_all(&head("/ident", headers))?;
        let piece = vec![b' '; 64 * 1024];
        for _ in 0..size / piece.len() {
            w.write_all(&piece)?;
        }
        Ok::<(), std::io::Error>(())
    });
    if read_while_writing {
        let answer = next_answer(&mut s);
        (join_within(writer, "the writer"), answer)
    } else {
        let wrote = join_within(writer, "the writer");
        (wrote, next_answer(&mut s))
    }
}

/// A client that sends its body at once despite `Expect: 100-continue`,
/// reading while it writes, sees the 413 (five times in a row).
#[test]
fn an_eager_client_behind_expect_100_continue_reading_as_it_writes_sees_the_413() {
    let server = serve(1024, Duration::from_secs(5));
    for round in 0..5 {
        eager_upload(server.addr, true, true)
            .1
            .unwrap_or_else(|| panic!("round {round}: closed without an answer"))
            .assert_error(413, "body_too_large");
    }
    assert_serving(&server);
}

/// A client that writes its whole over-limit body before it reads has its
/// upload drained (no broken pipe) and then reads the 413: the README's
/// "the rest of the body is read and dropped so that a client that writes
/// before it reads still sees the 413".
#[test]
fn a_client_writing_first_has_its_refused_body_drained_and_sees_the_413() {
    let server = serve(1024, Duration::from_secs(5));
    for round in 0..3 {
        let (wrote, answer) = eager_upload(server.addr, false, false);
        assert!(wrote.is_ok(), "round {round}: the upload failed: {wrote:?}");
        answer
            .unwrap_or_else(|| panic!("round {round}: closed without an answer"))
            .assert_error(413, "body_too_large");
    }
}

/// A body sent with a request no route takes (an unknown path, a wrong
/// method, a body on an inspection endpoint) by a client that writes it
/// all before it reads (ureq) still gets its JSON 404 / 405, as a refused
/// body gets its 413, rather than a broken pipe or a reset.
#[test]
fn a_large_body_on_an_unknown_route_or_method_still_gets_its_answer() {
    let server = serve(1024, Duration::from_secs(5));
    let body = vec![b' '; 8 * 1024 * 1024];
    let mut failed = Vec::new();
    for (method, path, status) in [
        ("POST", "/nowhere", 404),
        ("PUT", "/ident", 405),
        ("POST", "/healthz", 405),
        ("POST", "/metrics", 405),
    ] {
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(server.url(path))
            .body(&body[..])
            .expect("request");
        match support::http::agent().run(request) {
            Ok(mut r) => {
                let text = r.body_mut().read_to_string().expect("body");
                assert_eq!(r.status().as_u16(), status, "{method} {path}: {text}");
            }
            Err(e) => failed.push(format!(
                "{method} {path}: no answer, a transport error: {e}"
            )),
        }
    }
    assert_serving(&server);
    assert!(failed.is_empty(), "{failed:#?}");
}

/// A chunked body that turns out malformed mid-way (a chunk size that is
/// not hex) is a JSON 400 `bad_body` with the id, saying `connection:
/// close`, and the connection is then closed.
#[test]
fn a_malformed_chunk_mid_body_is_a_json_400_that_closes() {
    let server = serve(1024, GUARD);
    for path in ["/ident", "/len", "/count"] {
        let mut r = head(
            path,
            &["transfer-encoding: chunked", "x-request-id: chunky"],
        );
        r.extend_from_slice(b"2\r\n12\r\nzz\r\n1\r\n");
        let mut s = connect(server.addr);
        s.write_all(&r).expect("write");
        let a = next_answer(&mut s).unwrap_or_else(|| panic!("{path}: no answer"));
        a.assert_error(400, "bad_body");
        assert_eq!(a.id(), "chunky");
        assert!(a.closes(), "{path}: {:?}", a.headers);
        assert!(until_closed(&mut s).is_empty(), "{path}");
    }
    assert_serving(&server);
}

/// `Expect: 100-continue` compares case-insensitively: within the limit
/// the client is invited and served, over it refused without the
/// invitation; on a stream route too.
#[test]
fn expect_100_continue_in_any_case() {
    let server = serve(64, GUARD);
    for expect in ["expect: 100-CONTINUE", "Expect: 100-Continue"] {
        let mut s = connect(server.addr);
        s.write_all(&head(
            "/ident",
            &[expect, "content-length: 2", "connection: close"],
        ))
        .expect("write");
        let (got, _) = read_until(&mut s, GUARD, |b| parse_head(b).is_some());
        assert!(
            got.starts_with(b"HTTP/1.1 100 Continue\r\n\r\n"),
            "{expect}: {:?}",
            String::from_utf8_lossy(&got)
        );
        s.write_all(b"12").expect("the body");
        let a = next_answer(&mut s).expect("an answer");
        assert_eq!(
            (a.status, a.json()),
            (200, serde_json::json!(12)),
            "{expect}"
        );

        for path in ["/ident", "/count"] {
            let mut s = connect(server.addr);
            s.write_all(&head(path, &[expect, "content-length: 65"]))
                .expect("write");
            let got = until_closed(&mut s);
            let text = String::from_utf8_lossy(&got);
            assert!(text.starts_with("HTTP/1.1 413"), "{expect} {path}: {text}");
            assert!(!text.contains("100 Continue"), "{expect} {path}: {text}");
        }
    }
}

// ---------------------------------------------------------------------------
// The body timeout
// ---------------------------------------------------------------------------

/// A body that stalls (mid-chunk, between chunks, or before its first
/// byte of a `content-length`) is a 408 `body_timeout` on a JSON route,
/// a request route and a stream route alike; the answer says `connection:
/// close`, carries the client's id, and the connection is then closed.
#[test]
fn a_stalled_body_is_a_408_on_every_kind_of_route() {
    let server = serve(1024, SHORT);
    for path in ["/ident", "/len", "/count"] {
        for (what, tail) in [
            ("mid-chunk", &b"5\r\n12"[..]),
            ("between chunks", b"2\r\n12\r\n"),
            ("before the body", b""),
        ] {
            let framing = if tail.is_empty() {
                "content-length: 10"
            } else {
                "transfer-encoding: chunked"
            };
            let mut r = head(path, &[framing, "x-request-id: slow-1"]);
            r.extend_from_slice(tail);
            let mut s = connect(server.addr);
            s.write_all(&r).expect("write");
            let a = next_answer(&mut s).unwrap_or_else(|| panic!("{path} {what}: no answer"));
            a.assert_error(408, "body_timeout");
            assert_eq!(a.id(), "slow-1", "{path} {what}");
            assert!(a.closes(), "{path} {what}: {:?}", a.headers);
            let after = until_closed(&mut s);
            assert!(after.is_empty(), "{path} {what}");
        }
    }
    assert_serving(&server);
}

/// The body timeout bounds the whole body, not each read: a client that
/// sends a byte every 20 ms (each well within the 300 ms timeout) of a
/// body that would take 20 s is answered 408 while it is still sending.
#[test]
fn a_trickled_body_is_bounded_by_the_total_timeout() {
    let server = serve(1 << 20, SHORT);
    let mut s = connect(server.addr);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = trickle(
        s.try_clone().expect("clone"),
        head("/ident", &["content-length: 1000"]),
        b" ".to_vec(),
        Duration::from_millis(20),
        Arc::clone(&stop),
    );
    let a = next_answer(&mut s).expect("an answer");
    let still_sending = !writer.is_finished();
    stop.store(true, Ordering::SeqCst);
    a.assert_error(408, "body_timeout");
    assert!(still_sending, "answered only once the client stopped");
    let _ = join_within(writer, "the writer");
}

// ---------------------------------------------------------------------------
// Connections: keep-alive and pipelining
// ---------------------------------------------------------------------------

/// On one connection: two ordinary requests (each read before the next is
/// sent) are both served; an error that is not about the body (malformed
/// JSON, a 404, a 405) leaves the connection usable; a 413 then closes it.
#[test]
fn keep_alive_survives_ordinary_errors_and_ends_at_a_413() {
    let server = serve(16, SHORT);
    let mut s = connect(server.addr);
    let mut ids = Vec::new();
    for (request, status) in [
        (
            [head("/ident", &["content-length: 1"]), b"1".to_vec()].concat(),
            200,
        ),
        (
            [head("/ident", &["content-length: 2"]), b"22".to_vec()].concat(),
            200,
        ),
        (
            [head("/ident", &["content-length: 1"]), b"{".to_vec()].concat(),
            400,
        ),
        (
            [head("/nowhere", &["content-length: 1"]), b"1".to_vec()].concat(),
            404,
        ),
        (b"GET /ident HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(), 405),
        (
            [head("/len", &["content-length: 3"]), b"abc".to_vec()].concat(),
            200,
        ),
    ] {
        s.write_all(&request)
            .expect("write on the kept-alive connection");
        let a = next_answer(&mut s).expect("an answer on the kept-alive connection");
        assert_eq!(a.status, status, "{:?}", String::from_utf8_lossy(&request));
        assert!(!a.closes(), "{:?}", a.headers);
        ids.push(a.id().to_string());
    }
    ids.dedup();
    assert_eq!(ids.len(), 6, "each its own id: {ids:?}");
    let mut over = head("/ident", &["content-length: 17"]);
    over.extend_from_slice(&[b' '; 17]);
    s.write_all(&over).expect("write");
    let a = next_answer(&mut s).expect("the 413");
    a.assert_error(413, "body_too_large");
    assert!(a.closes());
    assert!(until_closed(&mut s).is_empty());
}

/// A request pipelined behind a refused body is never served, whether the
/// refused body is chunked and ends (the next request follows its last
/// chunk) or announced over the limit (the next request is then part of
/// its body): only the 413 comes back, then the close.
#[test]
fn a_request_pipelined_behind_a_refused_body_is_never_served() {
    let server = serve(8, SHORT);
    let next = [
        head("/len", &["content-length: 3", "connection: close"]),
        b"abc".to_vec(),
    ]
    .concat();
    let mut chunked = head("/ident", &["transfer-encoding: chunked"]);
    chunked.extend_from_slice(&chunk(&[b' '; 20]));
    chunked.extend_from_slice(b"0\r\n\r\n");
    chunked.extend_from_slice(&next);
    let mut announced = head("/ident", &[&format!("content-length: {}", next.len())]);
    announced.extend_from_slice(&next);
    for (what, bytes) in [("chunked", chunked), ("announced", announced)] {
        let mut s = connect(server.addr);
        s.write_all(&bytes).expect("write");
        let statuses: Vec<u16> = all_answers(&mut s).iter().map(|a| a.status).collect();
        assert_eq!(statuses, [413], "{what}");
    }
    assert_eq!(responses(&server, "/len", 200), 0.0, "/len was served");
}

/// Requests pipelined behind an ordinary error (a malformed body read in
/// full) are served in order on the same connection.
#[test]
fn requests_pipelined_behind_an_ordinary_error_are_served() {
    let server = serve(8, GUARD);
    let mut s = connect(server.addr);
    let mut bytes = Vec::new();
    for (body, last) in [
        (&b"{"[..], false),
        (b"12345678", false),
        (b"\"x\"", false),
        (b"3", true),
    ] {
        let cl = format!("content-length: {}", body.len());
        let mut headers = vec![cl.as_str()];
        if last {
            headers.push("connection: close");
        }
        bytes.extend_from_slice(&head("/ident", &headers));
        bytes.extend_from_slice(body);
    }
    s.write_all(&bytes).expect("write");
    let statuses: Vec<u16> = all_answers(&mut s).iter().map(|a| a.status).collect();
    assert_eq!(statuses, [400, 200, 422, 200]);
}

// ---------------------------------------------------------------------------
// Methods and parsing
// ---------------------------------------------------------------------------

/// A method a path does not take is a 405 with `Allow` and a JSON error
/// body with the id, on the routes and the inspection endpoints alike;
/// `HEAD` on a POST route answers the 405 without a body, and the
/// kept-alive connection then serves the next request.
#[test]
fn a_405_is_json_with_allow_everywhere_and_head_gets_no_body() {
    let server = serve(64, GUARD);
    for (method, path, allowed) in [
        ("GET", "/ident", "POST"),
        ("PUT", "/len", "POST"),
        ("DELETE", "/count", "POST"),
        ("POST", "/healthz", "GET"),
        ("DELETE", "/metrics", "GET"),
        ("PUT", "/graph", "GET"),
        ("POST", "/readyz", "GET"),
    ] {
        let a = send(
            server.addr,
            format!("{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-request-id: m-1\r\ncontent-length: 0\r\n\r\n")
                .as_bytes(),
        );
        a.assert_error(405, "method_not_allowed");
        assert_eq!(a.id(), "m-1");
        assert!(
            a.header("allow").iter().any(|v| v.contains(allowed)),
            "{method} {path}: {:?}",
            a.headers
        );
        let text = a.json()["error"].as_str().unwrap().to_string();
        assert!(text.contains(method) && text.contains(path), "{text}");
    }
    let mut s = connect(server.addr);
    s.write_all(b"HEAD /ident HTTP/1.1\r\nhost: x\r\n\r\nGET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .expect("write");
    let all = until_closed(&mut s);
    let (n, first) = parse_answer(&all, true).expect("the HEAD's answer");
    assert_eq!(first.status, 405);
    let rest = &all[n..];
    let (_, second) = parse_answer(rest, false).unwrap_or_else(|| {
        panic!(
            "the HEAD's answer carried a body, or the next answer is missing: {:?}",
            String::from_utf8_lossy(rest)
        )
    });
    assert_eq!((second.status, second.body), (200, b"ok\n".to_vec()));
}

/// Truncated JSON is 400 `malformed` (never 422) on a stream route and
/// through `HttpRequest::json` on a request route, as on a JSON route;
/// complete JSON of the wrong shape stays 422, and trailing garbage after
/// a valid value is 400.
#[test]
fn truncated_json_is_400_on_stream_and_request_routes_too() {
    let server = serve(1024, GUARD);
    for path in ["/count", "/u32", "/ident"] {
        for body in [
            &b"{"[..],
            b"[",
            b"{\"n\": [1",
            b"[1, 2",
            b"\"abc",
            b"{\"a\":",
            b"3 4",
            b"3}",
            b"\xef\xbb\xbf3",
        ] {
            post_cl(server.addr, path, body).assert_error(400, "malformed");
        }
        let negative: &[u8] = if path == "/ident" { b"{}" } else { b"-1" };
        for body in [
            &b"{}"[..],
            b"[1, 2]",
            b"\"abc\"",
            negative,
            b"true",
            b"null",
        ] {
            post_cl(server.addr, path, body).assert_error(422, "wrong_shape");
        }
    }
}

// ---------------------------------------------------------------------------
// Deploy files
// ---------------------------------------------------------------------------

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

/// The JSON parser's message for `text`, which must be refused.
fn json_err(text: &str) -> String {
    match DeployOptions::from_json_str(text).expect_err(text) {
        DeployError::Options {
            source: OptionsError::Json(e),
            path: None,
            ..
        } => e.to_string(),
        other => panic!("{text}: not a JSON options error: {other:?}"),
    }
}

/// The TOML parser's message for `text`, which must be refused.
fn toml_err(text: &str) -> String {
    match DeployOptions::from_toml_str(text).expect_err(text) {
        DeployError::Options {
            source: OptionsError::Toml(e),
            path: None,
            ..
        } => e.message().to_string(),
        other => panic!("{text}: not a TOML options error: {other:?}"),
    }
}

fn json_ok(text: &str) -> DeployOptions {
    DeployOptions::from_json_str(text).unwrap_or_else(|e| panic!("{text}: {e:?}"))
}

fn toml_ok(text: &str) -> DeployOptions {
    DeployOptions::from_toml_str(text).unwrap_or_else(|e| panic!("{text}: {e:?}"))
}

/// Asserts `deploy_both(opts)` fails with `InvalidOption` for `step`
/// whose message contains `needle`.
fn assert_invalid(opts: DeployOptions, step: &str, needle: &str) {
    let err = deploy_both(opts).expect_err("refused");
    assert!(
        matches!(&err, DeployError::InvalidOption { step: s, message } if s == step && message.contains(needle)),
        "{err:?}"
    );
}

/// JSON `null` means "not set" for every optional key, `autoscale`
/// included: with it beside `replicas` the file is not "both set", and
/// deploys with the replicas given.
#[test]
fn json_nulls_are_unset_including_autoscale() {
    let o = json_ok(
        r#"{"queue_bound": null, "steps": {"scorer": {"replicas": 2, "autoscale": null,
            "queue_bound": null, "device": null, "remote": null}}}"#,
    );
    assert_eq!(o, DeployOptions::new().replicas("scorer", 2));
    let p = deploy_both(o).expect("deploy");
    assert_eq!(p.report()[0].replicas, 2);
    assert_eq!(p.call(5).unwrap(), 5);
    let o = json_ok(
        r#"{"steps": {"scorer": {"autoscale": {"min_replicas": null, "max_replicas": 3}}}}"#,
    );
    let a = o.step("scorer").autoscale.expect("autoscale set");
    assert_eq!((a.min_replicas, a.max_replicas), (None, Some(3)));
}

/// Step names equal once their JSON escapes are decoded are the same step
/// given twice; names that differ only in case are two names (the second
/// then fails deploy as unknown, naming it).
#[test]
fn json_step_names_equal_after_unescaping_are_duplicates() {
    for text in [
        r#"{"steps": {"scorer": {"replicas": 2}, "sc\u006frer": {"replicas": 3}}}"#,
        r#"{"steps": {"scorer": {}, "scorer": {}}}"#,
        r#"{"steps": {"scorer": {"replicas": 2}, "plain": {}, "scorer": {"replicas": 2}}}"#,
    ] {
        let msg = json_err(text);
        assert!(msg.contains("duplicate step `scorer`"), "{text}: {msg}");
    }
    let o = json_ok(r#"{"steps": {"scorer": {"replicas": 2}, "Scorer": {"replicas": 3}}}"#);
    let err = deploy_both(o).expect_err("Scorer is no step");
    assert!(
        matches!(&err, DeployError::UnknownStep { name, .. } if name == "Scorer"),
        "{err:?}"
    );
}

/// A key given twice is refused at every level, even when one of the two
/// is `null` (`autoscale: null` then a table, `steps` twice).
#[test]
fn json_keys_given_twice_are_refused_even_with_null() {
    for (text, key) in [
        (
            r#"{"steps": {"scorer": {"autoscale": null, "autoscale": {"max_replicas": 3}}}}"#,
            "autoscale",
        ),
        (
            r#"{"steps": {"scorer": {"replicas": null, "replicas": 2}}}"#,
            "replicas",
        ),
        (
            r#"{"steps": {"scorer": {}}, "steps": {"plain": {}}}"#,
            "steps",
        ),
        (r#"{"queue_bound": null, "queue_bound": 4}"#, "queue_bound"),
        (
            r#"{"steps": {"scorer": {"autoscale": {"max_replicas": 3, "max_replicas": 4}}}}"#,
            "max_replicas",
        ),
    ] {
        let msg = json_err(text);
        assert!(
            msg.contains(&format!("duplicate field `{key}`")),
            "{text}: {msg}"
        );
    }
}

/// Whatever is not a table where a table goes is refused: nested arrays,
/// a step table as a list of pairs, scalars and `null` at the top, an
/// autoscale of nested arrays.
#[test]
fn json_non_tables_are_refused_at_every_level() {
    for text in [
        "null",
        "42",
        "\"local\"",
        "[[]]",
        "[{}]",
        r#"{"steps": [["scorer", {"replicas": 2}]]}"#,
        r#"{"steps": {"scorer": [["replicas", 2]]}}"#,
        r#"{"steps": {"scorer": {"autoscale": [[1, 4]]}}}"#,
        r#"{"steps": {"scorer": {"autoscale": 3}}}"#,
        r#"{"steps": {"scorer": "replicas=2"}}"#,
        r#"{"steps": "scorer"}"#,
    ] {
        let msg = json_err(text);
        assert!(
            msg.contains("invalid type") || msg.contains("expected"),
            "{text}: {msg}"
        );
    }
}

/// Numbers JSON can write but a count cannot hold are parse errors, not
/// wrapped or rounded: floats (even `4.0`), exponents, beyond u64.
#[test]
fn json_huge_and_fractional_numbers_are_parse_errors() {
    for value in [
        "4.0",
        "4e0",
        "1e400",
        "18446744073709551616",
        "-1",
        "99999999999999999999999999",
    ] {
        for text in [
            format!(r#"{{"steps": {{"scorer": {{"replicas": {value}}}}}}}"#),
            format!(r#"{{"queue_bound": {value}}}"#),
            format!(
                r#"{{"steps": {{"scorer": {{"autoscale": {{"upscale_delay_ms": {value}}}}}}}}}"#
            ),
        ] {
            let msg = json_err(&text);
            assert!(
                msg.contains("invalid") || msg.contains("number out of range"),
                "{text}: {msg}"
            );
        }
    }
}

/// The limits' boundaries: 4097 replicas (fixed, or an autoscale minimum)
/// fail deploy naming the step; a queue bound of exactly tokio's
/// `MAX_PERMITS` deploys and serves in both modes, one more fails deploy
/// naming the step (or `*` for the pipeline-wide bound).
#[test]
fn replica_and_queue_limits_at_their_boundaries() {
    assert_invalid(
        json_ok(r#"{"steps": {"scorer": {"replicas": 4097}}}"#),
        "scorer",
        "4096",
    );
    assert_invalid(
        toml_ok("[steps.scorer.autoscale]\nmin_replicas = 4097\nmax_replicas = 5000"),
        "scorer",
        "4096",
    );
    let max = tokio::sync::Semaphore::MAX_PERMITS;
    let p = deploy_both(json_ok(&format!(r#"{{"queue_bound": {max}}}"#))).expect("MAX_PERMITS");
    assert_eq!(p.call(3).unwrap(), 3);
    assert!(p.report().iter().all(|r| r.queue_bound == max));
    let over = max + 1;
    assert_invalid(
        json_ok(&format!(r#"{{"queue_bound": {over}}}"#)),
        "*",
        "at most",
    );
    for step in ["scorer", "plain"] {
        assert_invalid(
            toml_ok(&format!("[steps.{step}]\nqueue_bound = {over}")),
            step,
            "at most",
        );
    }
}

/// TOML's ways of writing the same table agree (dotted keys, inline
/// tables, `[steps]` with inline steps), an empty autoscale table turns
/// autoscaling on with the step's own policy, and what is not a table
/// (`[[steps]]`, `steps.scorer = []`) is refused.
#[test]
fn toml_spellings_of_one_table_agree_and_non_tables_are_refused() {
    let want = DeployOptions::new()
        .replicas("scorer", 2)
        .queue_bound("plain", 7);
    for text in [
        "steps.scorer.replicas = 2\nsteps.plain.queue_bound = 7",
        "steps = { scorer = { replicas = 2 }, plain = { queue_bound = 7 } }",
        "[steps]\nscorer = { replicas = 2 }\nplain.queue_bound = 7",
        "[steps.scorer]\nreplicas = 2\n[steps.plain]\nqueue_bound = 7",
    ] {
        assert_eq!(toml_ok(text), want, "{text}");
    }
    let o = toml_ok("[steps.scorer]\nautoscale = {}");
    assert_eq!(o.step("scorer").autoscale, Some(Default::default()));
    let p = deploy_both(o).expect("deploy");
    assert!(p.report()[0].autoscale.is_some());
    for text in [
        "[[steps]]\nscorer = 1",
        "steps.scorer = []",
        "steps.scorer.autoscale = []",
        "[steps.scorer]\nautoscale = [1, 2]",
    ] {
        let msg = toml_err(text);
        assert!(
            msg.contains("invalid type") || msg.contains("expected"),
            "{text}: {msg}"
        );
    }
}

/// From a file, a JSON step given twice is refused with the path in the
/// message and the parser's error as the typed cause.
#[test]
fn a_json_file_naming_a_step_twice_is_refused_with_its_path() {
    let dir = std::env::temp_dir().join(format!("outsider-http2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("deploy.json");
    std::fs::write(
        &path,
        r#"{"steps": {"scorer": {"replicas": 2}, "scorer": {"replicas": 3}}}"#,
    )
    .expect("write");
    let err = DeployOptions::from_file(&path).expect_err("refused");
    let DeployError::Options {
        path: Some(p),
        source: OptionsError::Json(e),
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(p, &path);
    assert!(e.to_string().contains("duplicate step `scorer`"), "{e}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
