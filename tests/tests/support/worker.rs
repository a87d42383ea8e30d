//! A `remote_worker` process (this crate's binary) serving some steps of
//! `pipeline_examples::remote_steps`, for the remote-step tests.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};

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
        let line = self.next_line(true);
        let executed = line
            .strip_prefix("executed ")
            .unwrap_or_else(|| panic!("unexpected worker output {line:?}"))
            .parse()
            .unwrap();
        assert!(self.child.wait().unwrap().success());
        executed
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
