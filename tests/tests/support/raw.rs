//! Raw HTTP/1.1 over a socket, for tests that send what no client would
//! (stalls, pipelining, odd heads) and read answers byte for byte.

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// How long a read waits for something that should come at once before
/// the test fails instead of hanging.
pub(crate) const GUARD: Duration = Duration::from_secs(30);

/// A raw answer: status, headers (lower-case names), body.
#[derive(Debug)]
pub(crate) struct Raw {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Raw {
    pub(crate) fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    /// The one `x-request-id` of the answer.
    pub(crate) fn id(&self) -> &str {
        let ids = self.header("x-request-id");
        assert_eq!(ids.len(), 1, "exactly one id: {:?}", self.headers);
        ids[0]
    }
    /// Whether the answer says the connection closes after it.
    pub(crate) fn closes(&self) -> bool {
        self.header("connection")
            .iter()
            .any(|v| v.eq_ignore_ascii_case("close"))
    }
    /// Asserts an error answer: `status`, a JSON body of `kind` with
    /// exactly the documented keys, its `request_id` the header's.
    pub(crate) fn assert_error(&self, status: u16, kind: &str) {
        assert_eq!(
            self.status,
            status,
            "{:?}",
            String::from_utf8_lossy(&self.body)
        );
        let json = self.json();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {json}"))
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["error", "kind", "request_id", "step"], "{json}");
        assert_eq!(json["kind"], kind, "{json}");
        assert_eq!(json["request_id"], self.id(), "body and header: {json}");
    }
}

/// Where the head of the answer at the start of `buf` ends, and the answer
/// with its head parsed (its body left empty).
pub(crate) fn parse_head(buf: &[u8]) -> Option<(usize, Raw)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end - 4]).expect("ascii head");
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some((
        end,
        Raw {
            status,
            headers,
            body: Vec::new(),
        },
    ))
}

/// One whole answer at the start of `buf` (its body content-length
/// delimited, or none when `head_only`), and how many bytes it took.
pub(crate) fn parse_answer(buf: &[u8], head_only: bool) -> Option<(usize, Raw)> {
    let (end, mut raw) = parse_head(buf)?;
    if head_only || raw.status == 100 {
        return Some((end, raw));
    }
    let len: usize = raw
        .header("content-length")
        .first()
        .map_or(0, |v| v.parse().expect("content-length"));
    let body = buf.get(end..end + len)?;
    raw.body = body.to_vec();
    Some((end + len, raw))
}

/// Reads from `s` until `done(buf)` holds or the server closes (a reset
/// counts as a close). Fails after `guard` without either.
pub(crate) fn read_until(
    s: &mut TcpStream,
    guard: Duration,
    mut done: impl FnMut(&[u8]) -> bool,
) -> (Vec<u8>, bool) {
    s.set_read_timeout(Some(guard)).expect("read timeout");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let start = Instant::now();
    loop {
        if done(&buf) {
            return (buf, false);
        }
        assert!(
            start.elapsed() < guard,
            "neither done nor closed within {guard:?}: {:?}",
            String::from_utf8_lossy(&buf)
        );
        match s.read(&mut chunk) {
            Ok(0) => return (buf, true),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!(
                    "no answer (and no close) within {guard:?}; read so far: {:?}",
                    String::from_utf8_lossy(&buf)
                )
            }
            Err(_) => return (buf, true),
        }
    }
}

/// Reads the next answer on `s` (skipping a `100 Continue`); `None` when
/// the server closed first.
pub(crate) fn next_answer(s: &mut TcpStream) -> Option<Raw> {
    let (buf, _) = read_until(s, GUARD, |b| match parse_answer(b, false) {
        Some((n, r)) if r.status == 100 => parse_answer(&b[n..], false).is_some(),
        answer => answer.is_some(),
    });
    let (n, first) = parse_answer(&buf, false)?;
    if first.status == 100 {
        return parse_answer(&buf[n..], false).map(|(_, r)| r);
    }
    Some(first)
}

/// Reads until the server closes `s`; what came meanwhile. Fails after
/// [`GUARD`] if the connection stays open.
pub(crate) fn until_closed(s: &mut TcpStream) -> Vec<u8> {
    read_until(s, GUARD, |_| false).0
}

/// Every answer the server sends on `s` until it closes it.
pub(crate) fn all_answers(s: &mut TcpStream) -> Vec<Raw> {
    let buf = until_closed(s);
    let mut answers = Vec::new();
    let mut rest = &buf[..];
    while let Some((n, a)) = parse_answer(rest, false) {
        rest = &rest[n..];
        answers.push(a);
    }
    assert!(
        rest.is_empty(),
        "a partial answer: {:?}",
        String::from_utf8_lossy(rest)
    );
    answers
}
