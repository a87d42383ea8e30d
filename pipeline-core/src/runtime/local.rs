//! Local mode: the step runs inline in the caller's future; no spawn, no
//! channel, no queue.

use super::plan::StepPlan;
use super::runner::{call_once, call_sync, Run, RunCx, StepRunner};
use crate::error::DeployError;
use crate::step::{ReplicaContext, StepFn};

/// One state, called inline.
pub(crate) struct LocalRunner<S: StepFn> {
    state: S::State,
    name: &'static str,
}

impl<S: StepFn> std::fmt::Debug for LocalRunner<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LocalRunner({})", self.name)
    }
}

impl<S: StepFn> LocalRunner<S> {
    pub(crate) fn start(plan: &StepPlan, init: &S::Init) -> Result<Self, DeployError> {
        let ctx = ReplicaContext::new(plan.node, 0, 1, plan.device_of(0));
        let state = S::build(&ctx, init).map_err(|e| plan.build_error(0, e))?;
        Ok(LocalRunner {
            state,
            name: plan.node,
        })
    }
}

impl<S: StepFn> StepRunner<S> for LocalRunner<S> {
    fn run<'a>(&'a self, inputs: S::Inputs, cx: RunCx<'a>) -> Run<'a, S::Output> {
        if let Some(pump) = S::pump() {
            // A stream step's items are pulled by its consumer, inline.
            let name = self.name;
            let named = move |r: Result<S::Output, _>| r.map(|lazy| (pump.named)(lazy, name));
            return if S::INFO.is_async {
                Run::Boxed(cx.place(futures::FutureExt::map(
                    call_once::<S>(name, &self.state, inputs),
                    named,
                )))
            } else {
                Run::Done(Some(named(call_sync::<S>(name, &self.state, inputs))))
            };
        }
        if S::INFO.is_async {
            Run::Boxed(cx.place(call_once::<S>(self.name, &self.state, inputs)))
        } else {
            // A sync body answers at once: no future to keep.
            Run::Done(Some(call_sync::<S>(self.name, &self.state, inputs)))
        }
    }
}
