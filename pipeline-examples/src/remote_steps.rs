//! Steps marked `#[step(remote)]` for the remote-step tests, the remote
//! benchmark and the `remote_worker` example: a pipeline and its worker
//! processes both use these definitions (the same types on both sides is
//! what a remote step's fingerprint checks).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pipeline_core::prelude::*;
use serde::{Deserialize, Serialize};
pub use serde_bytes::ByteBuf;

/// A unit of work: its id, and how long it takes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// The caller's id for it.
    pub id: u64,
    /// How long the step sleeps (milliseconds).
    pub work_ms: u64,
}

/// What a worker answers: the job's id and which process ran it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// The job's id.
    pub id: u64,
    /// The worker process's id.
    pub pid: u32,
}

static EXECUTED: AtomicU64 = AtomicU64::new(0);
static ON_START: std::sync::OnceLock<fn(&Job)> = std::sync::OnceLock::new();

/// Calls `hook` as each `work` call starts (the test worker prints it, so
/// a test knows which calls are running).
pub fn on_start(hook: fn(&Job)) {
    let _ = ON_START.set(hook);
}

/// How many `work` calls this process has run.
pub fn executed() -> u64 {
    EXECUTED.load(Ordering::SeqCst)
}

/// Sleeps for the job's time; answers the job's id and this process's id.
#[step(mode = "actors", replicas = 2, remote)]
pub async fn work(job: Job) -> Done {
    EXECUTED.fetch_add(1, Ordering::SeqCst);
    if let Some(hook) = ON_START.get() {
        hook(&job);
    }
    if job.work_ms > 0 {
        tokio::time::sleep(Duration::from_millis(job.work_ms)).await;
    }
    Done {
        id: job.id,
        pid: std::process::id(),
    }
}

/// Spins the CPU for about `ms` milliseconds (a CPU-bound step).
#[step(mode = "actors", remote)]
pub fn crunch(ms: u64) -> u64 {
    let start = std::time::Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_millis(ms) {
        n = n.wrapping_add(1);
        std::hint::spin_loop();
    }
    n
}

/// Why `checked` refuses an input.
#[derive(Debug, thiserror::Error)]
#[error("{0} is odd")]
pub struct Odd(pub u64);

/// Halves an even number; an odd one is the step's error; 13 panics.
#[step(mode = "actors", remote)]
pub fn checked(x: u64) -> Result<u64, Odd> {
    if x == 13 {
        panic!("unlucky {x}");
    }
    if x % 2 == 1 {
        return Err(Odd(x));
    }
    Ok(x / 2)
}

/// Bytes in, their count and sum out (payload tests and benchmarks).
/// `ByteBuf` crosses as its length and its bytes; a `Vec<u8>` would cross
/// as a sequence of numbers (serde's default), about 1 ms per 600 KB.
#[step(mode = "actors", remote)]
pub fn bytes_sum(bytes: ByteBuf) -> (u64, u64) {
    (
        bytes.len() as u64,
        bytes.iter().map(|&b| u64::from(b)).sum(),
    )
}

/// The same `x + 1` locally and remotely (hop benchmarks).
#[step(mode = "actors", placement = "task", remote)]
pub fn inc(x: u64) -> u64 {
    x + 1
}
