//! The one trait every way of running a step implements ([`StepRunner`]),
//! and [`start`], which picks the runner a step's plan names. A new mode is
//! a new file with a runner, a `Mode` variant and one arm here.

use std::fmt::Debug;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;

use super::executor::Runtimes;
use super::metrics::StepCounters;
use super::plan::StepPlan;
use super::{actors, local, tasks};
use crate::error::{DeployError, PipelineError};
use crate::step::{Mode, StepFn};

/// Runs one step node of a deployed graph: inline, as tasks, on actor
/// replicas (and, later, on remote workers). Object-safe, so a step node
/// holds `Box<dyn StepRunner<S>>` whatever its mode.
#[async_trait::async_trait]
pub(crate) trait StepRunner<S: StepFn>: Send + Sync + Debug {
    /// Runs the step once. Every runner turns the step's `Err` into
    /// [`PipelineError::Step`] and a panic into [`PipelineError::Panicked`],
    /// both naming the node.
    async fn run(&self, inputs: S::Inputs) -> Result<S::Output, PipelineError>;
}

/// Starts the runner `plan` names (building its replicas) with `init`.
pub(crate) fn start<S: StepFn>(
    plan: &StepPlan,
    init: S::Init,
    counters: Arc<StepCounters>,
    runtimes: &mut Runtimes,
) -> Result<Box<dyn StepRunner<S>>, DeployError> {
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
