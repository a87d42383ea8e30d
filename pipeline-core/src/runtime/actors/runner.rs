//! The actors runner: a step node's replica pool, and the autoscaler that
//! resizes it when the plan says so.

use std::sync::{Arc, Weak};

use super::pool::{Pool, Threads};
use crate::error::DeployError;
use crate::runtime::autoscale::{control, Scale};
use crate::runtime::executor::Runtimes;
use crate::runtime::metrics::StepCounters;
use crate::runtime::plan::StepPlan;
use crate::runtime::runner::{Run, RunCx, StepRunner};
use crate::step::StepFn;

/// An actor step node: its pool, and its autoscaler if it has one.
pub(crate) struct ActorRunner<S: StepFn> {
    pool: Arc<Pool<S>>,
    autoscaler: Option<tokio::task::JoinHandle<()>>,
    /// Filled by `drop`, and joined after `pool` is dropped (fields drop
    /// in order): a fixed pool's mailboxes close when the pool goes, and
    /// only then do its replica threads end.
    threads: Threads,
}

impl<S: StepFn> std::fmt::Debug for ActorRunner<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActorRunner")
            .field("pool", &self.pool)
            .field("autoscaled", &self.autoscaler.is_some())
            .finish()
    }
}

impl<S: StepFn> ActorRunner<S> {
    pub(crate) fn start(
        plan: &StepPlan,
        init: S::Init,
        counters: Arc<StepCounters>,
        runtimes: &mut Runtimes,
    ) -> Result<Self, DeployError> {
        let pool = Pool::<S>::start(plan, init, counters, runtimes)?;
        let autoscaler = match plan.autoscale {
            Some(policy) => {
                let weak: Weak<dyn Scale> = Arc::downgrade(&pool) as Weak<dyn Scale>;
                Some(runtimes.timer()?.spawn(control(weak, plan.node, policy)))
            }
            None => None,
        };
        Ok(ActorRunner {
            pool,
            autoscaler,
            threads: Threads::default(),
        })
    }
}

impl<S: StepFn> Drop for ActorRunner<S> {
    fn drop(&mut self) {
        if let Some(autoscaler) = self.autoscaler.take() {
            autoscaler.abort();
        }
        self.threads = self.pool.close();
    }
}

impl<S: StepFn> StepRunner<S> for ActorRunner<S> {
    fn run<'a>(&'a self, inputs: S::Inputs, _cx: RunCx<'a>) -> Run<'a, S::Output> {
        self.pool.call(inputs)
    }
}
