//! Tasks mode: each call is its own task (the blocking pool for sync
//! bodies), at most `queue_bound` at once; one stateless state shared.

use std::sync::Arc;

use tokio::runtime::Handle;

use tokio::sync::oneshot;

use super::admission::Permits;
use super::closing::{drive, Closing};
use super::executor::Runtimes;
use super::plan::StepPlan;
use super::runner::{call_once, Run, RunCx, StepRunner};
use crate::error::{DeployError, PipelineError};
use crate::step::{Pump, ReplicaContext, StepFn};

/// Spawns one task per call.
pub(crate) struct TasksRunner<S: StepFn> {
    state: Arc<S::State>,
    handle: Handle,
    permits: Permits,
    name: &'static str,
    /// Closed when this runner is dropped: its streams stop.
    closing: Closing,
}

impl<S: StepFn> Drop for TasksRunner<S> {
    fn drop(&mut self) {
        self.closing.close();
    }
}

impl<S: StepFn> std::fmt::Debug for TasksRunner<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TasksRunner({})", self.name)
    }
}

impl<S: StepFn> TasksRunner<S> {
    pub(crate) fn start(
        plan: &StepPlan,
        init: &S::Init,
        runtimes: &mut Runtimes,
    ) -> Result<Self, DeployError> {
        let ctx = ReplicaContext::new(plan.node, 0, 1, plan.device_of(0));
        let state = S::build(&ctx, init).map_err(|e| plan.build_error(0, e))?;
        Ok(TasksRunner {
            state: Arc::new(state),
            handle: runtimes.tasks()?,
            permits: Permits::new(plan.queue_bound),
            name: plan.node,
            closing: Closing::default(),
        })
    }
}

impl<S: StepFn> StepRunner<S> for TasksRunner<S> {
    fn run<'a>(&'a self, inputs: S::Inputs, cx: RunCx<'a>) -> Run<'a, S::Output> {
        Run::Boxed(cx.place(self.spawn(inputs)))
    }
}

impl<S: StepFn> TasksRunner<S> {
    /// One call as its own task.
    async fn spawn(&self, inputs: S::Inputs) -> Result<S::Output, PipelineError> {
        let name = self.name;
        let permit = self.permits.admit(name)?;
        let state = Arc::clone(&self.state);
        if let Some(pump) = S::pump() {
            return self.spawn_stream(pump, permit, state, inputs).await;
        }
        let task = if S::INFO.is_async {
            self.handle.spawn(async move {
                let _permit = permit;
                call_once::<S>(name, &state, inputs).await
            })
        } else {
            self.handle.spawn_blocking(move || {
                let _permit = permit;
                futures::executor::block_on(call_once::<S>(name, &state, inputs))
            })
        };
        // Dropping the call aborts a task that has not started.
        let mut task = AbortOnDrop::new(task);
        match task.join().await {
            Ok(result) => result,
            Err(e) if e.is_panic() => Err(PipelineError::panicked(name, e.into_panic())),
            Err(_) => Err(PipelineError::ReplicaLost { step: name }),
        }
    }
}

impl<S: StepFn> TasksRunner<S> {
    /// A stream step's call: its task answers the stream at once, then
    /// pulls the step's items into it (holding its permit) until they end
    /// or the consumer drops the stream.
    async fn spawn_stream(
        &self,
        pump: Pump<S::Output>,
        permit: tokio::sync::OwnedSemaphorePermit,
        state: Arc<S::State>,
        inputs: S::Inputs,
    ) -> Result<S::Output, PipelineError> {
        let name = self.name;
        let closing = self.closing.clone();
        let (answer, front) = oneshot::channel();
        let task = if S::INFO.is_async {
            self.handle.spawn(async move {
                let _permit = permit;
                let lazy = call_once::<S>(name, &state, inputs).await;
                answer_then_drive(pump, name, lazy, answer, &closing).await;
            })
        } else {
            self.handle.spawn_blocking(move || {
                let _permit = permit;
                futures::executor::block_on(async {
                    let lazy = call_once::<S>(name, &state, inputs).await;
                    answer_then_drive(pump, name, lazy, answer, &closing).await;
                });
            })
        };
        // Dropping the call before the stream is answered aborts the task;
        // once answered, the task lives as long as its consumer.
        let mut task = AbortOnDrop::new(task);
        let answered = front.await;
        match answered {
            Ok(result) => {
                task.detach();
                result
            }
            Err(_) => match task.join().await {
                Err(e) if e.is_panic() => Err(PipelineError::panicked(name, e.into_panic())),
                _ => Err(PipelineError::ReplicaLost { step: name }),
            },
        }
    }
}

/// Sends a stream step's answer (its stream, or its error), then drives
/// the stream's items.
async fn answer_then_drive<O>(
    pump: Pump<O>,
    name: &'static str,
    lazy: Result<O, PipelineError>,
    answer: oneshot::Sender<Result<O, PipelineError>>,
    closing: &Closing,
) {
    match lazy {
        Ok(lazy) => {
            let (front, driver) = pump.split(lazy, name);
            if answer.send(Ok(front)).is_ok() {
                drive(driver, closing).await;
            }
        }
        Err(e) => {
            let _ = answer.send(Err(e));
        }
    }
}

/// A spawned call's task, aborted if the call is dropped before it
/// answers (a task that has not started then never runs).
struct AbortOnDrop<T>(Option<tokio::task::JoinHandle<T>>);

impl<T> AbortOnDrop<T> {
    fn new(task: tokio::task::JoinHandle<T>) -> Self {
        AbortOnDrop(Some(task))
    }

    /// Waits for the task.
    async fn join(&mut self) -> Result<T, tokio::task::JoinError> {
        match self.0.as_mut() {
            Some(task) => task.await,
            None => std::future::pending().await,
        }
    }

    /// Lets the task run on by itself (dropping a `JoinHandle` detaches).
    fn detach(mut self) {
        self.0.take();
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}
