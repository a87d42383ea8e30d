//! Which tokio runtime a pipeline's work runs on: the one chosen in
//! `DeployOptions::runtime`, else the multi-thread runtime `deploy` was
//! called in (so calls from it stay on its threads), else the pipeline's
//! own, started on first need. Timers (batch waits, autoscalers) need a
//! time driver, which a caller's runtime may lack, so they use the chosen
//! runtime or the pipeline's own.

use tokio::runtime::{Handle, Runtime, RuntimeFlavor};

use super::closing::Closing;
use crate::error::DeployError;

/// The runtimes one deploy hands out, and the pipeline's own if it started
/// one (the pipeline keeps it).
#[derive(Debug)]
pub(crate) struct Runtimes {
    chosen: Option<Handle>,
    own: Option<OwnedRuntime>,
    stopping: Closing,
}

impl Runtimes {
    pub(crate) fn new(chosen: Option<Handle>) -> Self {
        Runtimes {
            chosen,
            own: None,
            stopping: Closing::default(),
        }
    }

    /// Closed when what was deployed with these runtimes stops taking
    /// calls (`Pipeline::shutdown`, a worker leaving): no call can join a
    /// batch being formed any more, so it leaves without waiting out
    /// `wait_ms`.
    pub(crate) fn stopping(&self) -> Closing {
        self.stopping.clone()
    }

    /// Where tasks and task-placed replicas run.
    pub(crate) fn tasks(&mut self) -> Result<Handle, DeployError> {
        if let Some(chosen) = &self.chosen {
            return Ok(chosen.clone());
        }
        if let Ok(current) = Handle::try_current() {
            if current.runtime_flavor() == RuntimeFlavor::MultiThread {
                return Ok(current);
            }
        }
        self.own()
    }

    /// A runtime with a time driver, for batch waits and autoscalers.
    pub(crate) fn timer(&mut self) -> Result<Handle, DeployError> {
        match &self.chosen {
            Some(chosen) => Ok(chosen.clone()),
            None => self.own(),
        }
    }

    /// Where network clients (remote steps' NATS connections) run: the
    /// multi-thread runtime calls come from (the chosen one, else the one
    /// `deploy` is called in), so a call's request and answer need no hop
    /// to another runtime's threads (measured: 40-60 us a call); else the
    /// pipeline's own. Never a `current_thread` runtime: connecting from
    /// `deploy` would wait on the very thread that drives it.
    #[cfg_attr(not(feature = "remote"), allow(dead_code))]
    pub(crate) fn io(&mut self) -> Result<Handle, DeployError> {
        let multi = |h: &Handle| h.runtime_flavor() == RuntimeFlavor::MultiThread;
        if let Some(chosen) = self.chosen.as_ref().filter(|h| multi(h)) {
            return Ok(chosen.clone());
        }
        if self.chosen.is_none() {
            if let Some(current) = Handle::try_current().ok().filter(multi) {
                return Ok(current);
            }
        }
        self.own()
    }

    fn own(&mut self) -> Result<Handle, DeployError> {
        if self.own.is_none() {
            self.own = Some(OwnedRuntime::start()?);
        }
        self.own
            .as_ref()
            .and_then(|r| r.0.as_ref())
            .map(|r| r.handle().clone())
            .ok_or(DeployError::Internal("runtime missing after start"))
    }

    /// The pipeline's own runtime, if this deploy started it.
    pub(crate) fn into_own(self) -> Option<OwnedRuntime> {
        self.own
    }
}

/// A runtime that may be dropped anywhere, even inside async code.
#[derive(Debug)]
pub(crate) struct OwnedRuntime(Option<Runtime>);

impl OwnedRuntime {
    pub(crate) fn start() -> Result<Self, DeployError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("pipeline-runtime")
            .enable_all()
            .build()?;
        Ok(OwnedRuntime(Some(runtime)))
    }

    pub(crate) fn get(&self) -> Option<&Runtime> {
        self.0.as_ref()
    }
}

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            if Handle::try_current().is_ok() {
                rt.shutdown_background();
            } else {
                // Joins the runtime's threads: nothing is left behind.
                drop(rt);
            }
        }
    }
}

/// Runs `f`, which may block (a constructor loading weights). In a task
/// on a multi-thread runtime's worker, the worker hands its other tasks
/// over meanwhile; a `current_thread` runtime has no one to hand them to,
/// and a replica's own thread blocks nobody else, so those just call `f`.
pub(crate) fn blocking<T>(in_task: bool, f: impl FnOnce() -> T) -> T {
    match Handle::try_current() {
        Ok(h) if in_task && h.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
