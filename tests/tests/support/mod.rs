//! Pieces several test binaries share (each includes it with `mod support;`
//! and uses what it needs).
#![allow(dead_code)]

#[cfg(all(feature = "http", feature = "torch"))]
pub(crate) mod browser;
#[cfg(feature = "http")]
pub(crate) mod http;
pub(crate) mod nats;
#[cfg(feature = "http")]
pub(crate) mod raw;
#[cfg(feature = "remote")]
pub(crate) mod worker;

use std::io::Write;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use pipeline_core::prelude::*;
use pipeline_core::StepMetrics;
use tokio::sync::Semaphore;

/// Collects what a tracing subscriber writes.
#[derive(Clone, Default)]
pub(crate) struct Capture(pub(crate) Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// Everything written so far.
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).expect("utf8")
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A capture of this test binary's tracing, at `filter`, installed once
/// (the subscriber is process-wide: the first caller's filter holds).
/// Spans are written when they open (`FmtSpan::NEW`).
pub(crate) fn log_capture(filter: &str) -> Capture {
    static LOG: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let capture = Capture::default();
        let writer = capture.clone();
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::NEW)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        capture
    })
    .clone()
}

/// Counts the lines of a captured log holding every one of its needles,
/// reading only what was written since it last looked. (Scanning the whole
/// log at every look of `wait_until_async`, which spins, held the log's
/// lock so much that the workers' own logging stalled behind it: with the
/// other tests' lines in the log, about 800 KB, a wait took seconds, and
/// now and then calls waiting on it ran past a 60 s deadline.)
pub(crate) struct Lines {
    log: Capture,
    needles: Vec<String>,
    read: usize,
    count: usize,
}

impl Lines {
    pub(crate) fn new(log: &Capture, needles: &[&str]) -> Self {
        Lines {
            log: log.clone(),
            needles: needles.iter().map(|n| n.to_string()).collect(),
            read: 0,
            count: 0,
        }
    }

    /// The lines holding every needle, up to the last whole line written.
    pub(crate) fn count(&mut self) -> usize {
        let bytes = self.log.0.lock().unwrap();
        let new = &bytes[self.read..];
        let Some(last) = new.iter().rposition(|&b| b == b'\n') else {
            return self.count;
        };
        let whole = &new[..=last];
        self.count += String::from_utf8_lossy(whole)
            .lines()
            .filter(|l| self.needles.iter().all(|n| l.contains(n.as_str())))
            .count();
        self.read += whole.len();
        self.count
    }

    /// Waits until exactly `n` lines hold the needles.
    pub(crate) async fn wait_for(&mut self, what: &str, n: usize) {
        wait_until_async(what, || self.count() >= n).await;
        assert_eq!(self.count(), n, "{what}: more than expected");
    }
}

/// Holds each call until the test hands out a permit.
#[derive(Clone)]
pub(crate) struct Gate(pub(crate) Arc<Semaphore>);

impl Gate {
    /// A gate with no permit yet.
    pub(crate) fn closed() -> Self {
        Gate(Arc::new(Semaphore::new(0)))
    }
}

/// A task-placed actor step whose calls wait at the gate, then answer
/// `x + 1`.
pub(crate) struct Held {
    gate: Gate,
}

#[step(mode = "actors", placement = "task")]
impl Held {
    pub(crate) fn new(gate: Gate) -> Self {
        Held { gate }
    }
    async fn call(&self, x: u64) -> u64 {
        self.gate.0.acquire().await.expect("gate open").forget();
        x + 1
    }
}

/// How long a test waits for something before failing: a hang guard,
/// never a timing assertion.
pub(crate) const GUARD: Duration = Duration::from_secs(60);

/// Waits until `cond` holds (something the runtime does right after an
/// event the test already caused), failing after the guard.
pub(crate) fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < GUARD, "never held: {what}");
        std::thread::yield_now();
    }
}

/// The async form: yields to the runtime between looks.
pub(crate) async fn wait_until_async(what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < GUARD, "never held: {what}");
        tokio::task::yield_now().await;
    }
}

/// Step `step`'s metrics among `ms`.
pub(crate) fn metric<'a>(ms: &'a [StepMetrics], step: &str) -> &'a StepMetrics {
    ms.iter().find(|m| m.step == step).unwrap_or_else(|| {
        panic!(
            "no step {step} in {:?}",
            ms.iter().map(|m| m.step).collect::<Vec<_>>()
        )
    })
}

/// The next message, failing after the guard.
pub(crate) fn recv<T>(rx: &Receiver<T>) -> T {
    rx.recv_timeout(GUARD).expect("waited too long")
}

/// A gate sync steps wait at (blocking their thread) until the test opens
/// it; every waiter passes once it is open.
#[derive(Clone, Default)]
pub(crate) struct Latch(Arc<(Mutex<bool>, Condvar)>);

impl Latch {
    pub(crate) fn open(&self) {
        *self.0 .0.lock().unwrap() = true;
        self.0 .1.notify_all();
    }
    pub(crate) fn wait(&self) {
        let (lock, cv) = &*self.0;
        let (_g, timeout) = cv
            .wait_timeout_while(lock.lock().unwrap(), GUARD, |open| !*open)
            .unwrap();
        assert!(!timeout.timed_out(), "gate never opened");
    }
}

/// Threads of this process whose name starts with `prefix` (replica
/// threads are named `<node>-<index>`).
pub(crate) fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|dir| {
            dir.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .filter(|name| name.starts_with(prefix))
                .count()
        })
        .unwrap_or(0)
}

/// An async gate: each call through it takes one permit the test hands
/// out.
#[derive(Clone)]
pub(crate) struct AsyncGate(std::sync::Arc<tokio::sync::Semaphore>);

impl AsyncGate {
    pub(crate) fn closed() -> Self {
        AsyncGate(std::sync::Arc::new(tokio::sync::Semaphore::new(0)))
    }
    pub(crate) fn add(&self, n: usize) {
        self.0.add_permits(n);
    }
    pub(crate) async fn pass(&self) {
        self.0.acquire().await.expect("gate").forget();
    }
}

/// Silences the panics a test causes on purpose (their message says "on
/// purpose"); any other still prints.
pub(crate) fn quiet_expected_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            if !msg.contains("on purpose") {
                default(info);
            }
        }));
    });
}
