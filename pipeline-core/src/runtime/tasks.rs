//! Tasks mode: each call is its own task (the blocking pool for sync
//! bodies), at most `queue_bound` at once; one stateless state shared.

use std::sync::Arc;

use tokio::runtime::Handle;

use super::admission::Permits;
use super::executor::Runtimes;
use super::plan::StepPlan;
use super::runner::{call_once, Run, StepRunner};
use crate::error::{DeployError, PipelineError};
use crate::eval::CallMeta;
use crate::step::{ReplicaContext, StepFn};

/// Spawns one task per call.
pub(crate) struct TasksRunner<S: StepFn> {
    state: Arc<S::State>,
    handle: Handle,
    permits: Permits,
    name: &'static str,
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
        })
    }
}

impl<S: StepFn> StepRunner<S> for TasksRunner<S> {
    fn run(&self, inputs: S::Inputs, _meta: &CallMeta) -> Run<'_, S::Output> {
        Run::Boxed(Box::pin(self.spawn(inputs)))
    }
}

impl<S: StepFn> TasksRunner<S> {
    /// One call as its own task (the spawn allocates anyway, so the future
    /// is boxed).
    async fn spawn(&self, inputs: S::Inputs) -> Result<S::Output, PipelineError> {
        let name = self.name;
        let permit = self.permits.admit(name)?;
        let state = Arc::clone(&self.state);
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
        let mut task = AbortOnDrop(task);
        match (&mut task.0).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => Err(PipelineError::panicked(name, e.into_panic())),
            Err(_) => Err(PipelineError::ReplicaLost { step: name }),
        }
    }
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
