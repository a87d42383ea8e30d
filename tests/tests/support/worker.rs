//! A `remote_worker` process (this crate's binary) serving some steps of
//! `pipeline_examples::remote_steps`, for the remote-step tests.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};

use std::future::Future;
use std::pin::Pin;

use pipeline_core::remote::Worker;
use pipeline_core::DeployError;

use super::nats::NatsServer;

/// A worker process serving some steps.
pub(crate) struct WorkerProcess {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl WorkerProcess {
    /// Starts one and waits until it says it is ready (subscribed).
    pub(crate) fn start(nats: &NatsServer, steps: &str) -> Self {
        Self::start_with(nats, steps, false)
    }

    /// `traced`: it prints `start ID` as each `work` call starts.
    pub(crate) fn start_with(nats: &NatsServer, steps: &str, traced: bool) -> Self {
        Self::start_bounded(nats, steps, traced, None)
    }

    /// With each replica's queue bounded at `queue_bound`.
    pub(crate) fn start_bounded(
        nats: &NatsServer,
        steps: &str,
        traced: bool,
        queue_bound: Option<usize>,
    ) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_remote_worker"));
        command.arg(nats.url()).arg(steps);
        if let Some(bound) = queue_bound {
            command.arg(bound.to_string());
        }
        if traced {
            command.env("REMOTE_WORKER_TRACE", "1");
        }
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("start remote_worker");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the worker did not start");
        WorkerProcess { child, out }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line the worker prints that is not a `start` line when
    /// `skip_starts`.
    fn next_line(&mut self, skip_starts: bool) -> String {
        loop {
            let mut line = String::new();
            assert!(
                self.out.read_line(&mut line).unwrap() > 0,
                "the worker exited"
            );
            if !(skip_starts && line.starts_with("start ")) {
                return line.trim().to_string();
            }
        }
    }

    /// Waits until the worker has started `work` calls `ids` (in any order).
    pub(crate) fn wait_started(&mut self, ids: &[u64]) {
        let mut left: HashSet<u64> = ids.iter().copied().collect();
        while !left.is_empty() {
            let line = self.next_line(false);
            let id = line.strip_prefix("start ").and_then(|i| i.parse().ok());
            left.remove(&id.unwrap_or_else(|| panic!("unexpected worker output {line:?}")));
        }
    }

    /// SIGTERM, then the `work` calls it ran.
    pub(crate) fn terminate(mut self) -> u64 {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let executed = self.executed();
        assert!(self.child.wait().unwrap().success());
        executed
    }

    /// Waits until it stops by itself (its `run` failed), then the
    /// `work` calls it ran.
    pub(crate) fn wait_stopped(mut self) -> u64 {
        let executed = self.executed();
        let status = self.child.wait().unwrap();
        assert_eq!(status.code(), Some(1), "a worker whose run failed exits 1");
        executed
    }

    /// The `executed N` line a stopping worker prints last.
    fn executed(&mut self) -> u64 {
        let line = self.next_line(true);
        line.strip_prefix("executed ")
            .unwrap_or_else(|| panic!("unexpected worker output {line:?}"))
            .parse()
            .unwrap()
    }

    /// SIGKILL: it answers nothing more.
    pub(crate) fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What an in-process worker serves.
pub(crate) type Serve = Box<
    dyn for<'a> FnOnce(
            &'a mut Worker,
        ) -> Pin<Box<dyn Future<Output = Result<(), DeployError>> + 'a>>
        + Send,
>;

/// A worker on a `current_thread` runtime on a thread of this process,
/// leaving (`run_until`) when told, or when dropped.
pub(crate) struct InProcess {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), DeployError>>>,
}

impl InProcess {
    /// Connects to `url`, serves what `serve` says, and returns once it is
    /// serving.
    pub(crate) fn start(url: String, serve: Serve) -> InProcess {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, is_ready) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut worker = Worker::connect(&url).await?;
                serve(&mut worker).await?;
                ready.send(()).unwrap();
                worker
                    .run_until(async move {
                        let _ = stopped.await;
                    })
                    .await
            })
        });
        is_ready.recv().expect("the in-process worker is serving");
        InProcess {
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Tells it to leave (as SIGTERM does a worker process).
    pub(crate) fn leave(&mut self) {
        let _ = self.stop.take().expect("told once").send(());
    }

    /// Waits until `run_until` has returned (a worker that cannot leave
    /// hangs the test, which CI's time limit reports).
    pub(crate) fn join(mut self) -> Result<(), DeployError> {
        self.thread
            .take()
            .expect("joined once")
            .join()
            .expect("the worker thread")
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
