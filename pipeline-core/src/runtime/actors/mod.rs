//! Actors mode: long-lived replicas, each with its own state and a bounded
//! mailbox, behind a least-outstanding-work router.
//!
//! | file | owns |
//! | --- | --- |
//! | `pool.rs` | the replica set, routing, adding and draining replicas |
//! | `mailbox.rs` | a replica's bounded queue and its depth gauge |
//! | `worker.rs` | one replica: build, answer calls, rebuild after a panic |
//! | `batch.rs` | a replica answering calls in batches |
//!
//! Autoscaling decisions are `runtime/autoscale.rs`'s; they reach the pool
//! through its `Scale` trait.

mod batch;
mod mailbox;
mod pool;
mod worker;

use std::sync::{Arc, Weak};

use super::autoscale::{control, Scale};
use super::executor::Runtimes;
use super::metrics::StepCounters;
use super::plan::StepPlan;
use super::runner::{Run, StepRunner};
use crate::error::DeployError;
use crate::step::StepFn;
use pool::Pool;

/// An actor step node: its pool, and its autoscaler if it has one.
pub(crate) struct ActorRunner<S: StepFn> {
    pool: Arc<Pool<S>>,
    autoscaler: Option<tokio::task::JoinHandle<()>>,
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
        Ok(ActorRunner { pool, autoscaler })
    }
}

impl<S: StepFn> Drop for ActorRunner<S> {
    fn drop(&mut self) {
        if let Some(autoscaler) = self.autoscaler.take() {
            autoscaler.abort();
        }
        self.pool.close();
    }
}

impl<S: StepFn> StepRunner<S> for ActorRunner<S> {
    fn run(&self, inputs: S::Inputs) -> Run<'_, S::Output> {
        self.pool.call(inputs)
    }
}
