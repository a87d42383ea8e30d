//! The one trait every way of running a step implements ([`StepRunner`]),
//! and [`start`], which picks the runner a step's plan names. A new mode is
//! a new file with a runner, a `Mode` variant and one arm here.

use std::fmt::Debug;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::FutureExt;
use tokio::sync::oneshot;

use super::executor::Runtimes;
use super::metrics::StepCounters;
use super::plan::StepPlan;
use super::{actors, local, remote, tasks};
use crate::error::{DeployError, PipelineError};
use crate::eval::{CallArena, CallCx, CallMeta, CxFuture};
use crate::step::{Mode, StepFn};

/// Runs one step node of a deployed graph: inline, as tasks, on actor
/// replicas (and, later, on remote workers). Object-safe, so a step node
/// holds `Box<dyn StepRunner<S>>` whatever its mode.
///
/// `run` returns a [`Run`], a concrete future, rather than a boxed one
/// (`async_trait`): the common cases (an answer known at once, an answer
/// coming over a oneshot) then cost no allocation per call, which is a
/// measurable part of a same-worker hop (see `benches/runtime.rs`).
pub(crate) trait StepRunner<S: StepFn>: Send + Sync + Debug {
    /// Starts the step once; the returned future answers. Every runner
    /// turns the step's `Err` into [`PipelineError::Step`] and a panic into
    /// [`PipelineError::Panicked`], both naming the node. Dropping the
    /// future cancels the call's work where it has not started.
    /// `cx` gives the call's deadline and request id (for runners that
    /// pass them on: remote workers) and where a boxed future goes.
    fn run<'a>(&'a self, inputs: S::Inputs, cx: RunCx<'a>) -> Run<'a, S::Output>;
}

/// What a runner is handed with a call, beside its inputs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunCx<'a> {
    meta: &'a CallMeta,
    arena: &'a CallArena,
}

impl<'a> RunCx<'a> {
    /// The call `cx`'s: its meta and its arena.
    pub(crate) fn of(cx: &'a CallCx<'_>) -> Self {
        RunCx {
            meta: cx.meta(),
            arena: cx.arena(),
        }
    }

    /// A call with no arena (a remote worker's, whose calls outlive the
    /// request that started them): boxed futures go to the heap.
    #[cfg_attr(not(feature = "remote"), allow(dead_code))]
    pub(crate) fn detached(meta: &'a CallMeta) -> Self {
        RunCx {
            meta,
            arena: CallArena::heap(),
        }
    }

    /// The call's deadline and request id.
    #[cfg_attr(not(feature = "remote"), allow(dead_code))]
    pub(crate) fn meta(self) -> &'a CallMeta {
        self.meta
    }

    /// A runner's future for [`Run::Boxed`], in the call's memory: a
    /// remote call's future is about 1.5 KiB, past the size glibc's
    /// malloc serves from its per-thread cache, so boxing it cost the
    /// caller a fifth of its CPU time per call (`benches/remote.rs`).
    pub(crate) fn place<F: Future + Send + 'a>(self, future: F) -> CxFuture<'a, F::Output> {
        self.arena.place(future)
    }
}

/// A step call under way, as [`StepRunner::run`] returns it.
pub(crate) enum Run<'a, O> {
    /// Answered already (a sync body run inline, or a refused call).
    Done(Option<Result<O, PipelineError>>),
    /// The answer comes over a oneshot (an actor replica); dropping this
    /// drops the receiver, which tells the sender to skip the work. A
    /// sender dropped unanswered means the replica is gone.
    Answer {
        answer: oneshot::Receiver<Result<O, PipelineError>>,
        step: &'static str,
    },
    /// Any other future (an async body, a task, a remote call), placed
    /// in the call's memory ([`RunCx::place`]).
    Boxed(CxFuture<'a, Result<O, PipelineError>>),
}

impl<'a, O> Run<'a, O> {
    /// The same call, not borrowing its runner, unless it is a boxed
    /// future (which may).
    #[cfg_attr(not(feature = "remote"), allow(dead_code))]
    pub(crate) fn into_owned(self) -> Result<Run<'static, O>, Self> {
        match self {
            Run::Done(result) => Ok(Run::Done(result)),
            Run::Answer { answer, step } => Ok(Run::Answer { answer, step }),
            boxed @ Run::Boxed(_) => Err(boxed),
        }
    }
}

// No variant is ever pinned in place (the placed future stays where it
// was placed), so moving a `Run` is fine whatever `O` is.
impl<O> Unpin for Run<'_, O> {}

impl<O> Future for Run<'_, O> {
    type Output = Result<O, PipelineError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Run::Done(result) => Poll::Ready(result.take().unwrap_or_else(|| {
                Err(PipelineError::Internal(
                    "a step call polled after it answered",
                ))
            })),
            Run::Answer { answer, step } => answer
                .poll_unpin(cx)
                // Built only when needed: an error made and dropped on
                // every answer cost a drop of its own.
                .map(|r| r.unwrap_or_else(|_| Err(PipelineError::ReplicaLost { step }))),
            Run::Boxed(future) => Pin::new(future).poll(cx),
        }
    }
}

/// Starts the runner `plan` names (building its replicas) with `init`.
pub(crate) fn start<S: StepFn>(
    plan: &StepPlan,
    init: S::Init,
    counters: Arc<StepCounters>,
    runtimes: &mut Runtimes,
) -> Result<Box<dyn StepRunner<S>>, DeployError> {
    if S::pump().is_some() {
        let refused = if plan.remote.is_some() {
            Some("a stream step cannot run on remote workers yet; serve it in this process")
        } else if S::BATCH.is_some() && plan.mode == Mode::Actors {
            Some("a stream step cannot be batched; batch the step applied to its items (`.map_each(step)`) instead")
        } else {
            None
        };
        if let Some(message) = refused {
            return Err(DeployError::InvalidOption {
                step: plan.node.to_string(),
                message: message.to_string(),
            });
        }
    }
    if let Some(url) = plan.remote {
        return remote::start::<S>(plan, url, counters, runtimes);
    }
    Ok(match plan.mode {
        Mode::Local => Box::new(local::LocalRunner::<S>::start(plan, &init)?),
        Mode::Tasks => Box::new(tasks::TasksRunner::<S>::start(plan, &init, runtimes)?),
        Mode::Actors => Box::new(actors::ActorRunner::<S>::start(
            plan, init, counters, runtimes,
        )?),
    })
}

/// Runs the step once on `state`, catching panics (including those of a
/// sync body, which runs when `S::call` is called).
pub(crate) async fn call_once<S: StepFn>(
    name: &'static str,
    state: &S::State,
    inputs: S::Inputs,
) -> Result<S::Output, PipelineError> {
    match AssertUnwindSafe(async move { S::call(state, inputs).await })
        .catch_unwind()
        .await
    {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(PipelineError::step_failed(name, e)),
        Err(payload) => Err(PipelineError::panicked(name, payload)),
    }
}

/// Runs a sync step (`!S::INFO.is_async`) once on `state`, here and now:
/// its body runs when `S::call` is called and its future is ready at once,
/// so no future is kept (nor boxed). Panics are caught as in [`call_once`].
pub(crate) fn call_sync<S: StepFn>(
    name: &'static str,
    state: &S::State,
    inputs: S::Inputs,
) -> Result<S::Output, PipelineError> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| S::call(state, inputs).now_or_never())) {
        Ok(Some(Ok(out))) => Ok(out),
        Ok(Some(Err(e))) => Err(PipelineError::step_failed(name, e)),
        Ok(None) => Err(PipelineError::Internal(
            "a sync step's future was not ready when called",
        )),
        Err(payload) => Err(PipelineError::panicked(name, payload)),
    }
}
