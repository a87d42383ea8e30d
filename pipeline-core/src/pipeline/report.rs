//! What a deployed pipeline tells about itself: how each step runs
//! ([`StepReport`]), whether it serves at full strength ([`Health`]), and
//! live counters ([`StepMetrics`]).

use std::sync::atomic::Ordering;

use super::calls::Pipeline;
use crate::runtime::StepMetrics;
use crate::step::{AutoscalePolicy, Device, Mode};

/// How one step of a deployed pipeline runs, next to what it asked for.
///
/// ```
/// use pipeline_core::prelude::*;
///
/// #[step(mode = "actors", replicas = 2)]
/// fn embed(x: i64) -> i64 { x }
///
/// let p = embed(Input::<i64>::new()).deploy_with(DeployOptions::new().replicas("embed", 3))?;
/// let r = &p.report()[0];
/// assert_eq!((r.step, r.running, r.replicas, r.target_replicas), ("embed", Mode::Actors, 3, 3));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReport {
    /// The step's name.
    pub step: &'static str,
    /// The mode its attribute asked for.
    pub requested: Mode,
    /// The mode it runs in.
    pub running: Mode,
    /// How many replicas (instances) it has now.
    pub replicas: usize,
    /// How many it is heading for (differs while an autoscaled step adds
    /// or drains replicas).
    pub target_replicas: usize,
    /// Its autoscaling policy, if it scales.
    pub autoscale: Option<AutoscalePolicy>,
    /// Its queue bound (per replica for actors, in flight for tasks).
    pub queue_bound: usize,
    /// Why `running` differs from `requested`, if it does.
    pub note: Option<&'static str>,
    /// The device each replica owns, by replica index (the first
    /// `replicas`; an autoscaled step's later replicas continue the turn;
    /// none for a remote step: its workers own theirs).
    pub devices: Vec<Device>,
    /// Where the step is served, if by remote workers (`replicas` then
    /// counts the workers this pipeline knows of).
    pub remote: Option<&'static str>,
}

/// A step's live state, from [`Pipeline::health`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepHealth {
    /// The step's name.
    pub step: &'static str,
    /// Replicas built and taking calls.
    pub replicas: usize,
    /// Replicas it is heading for (autoscaling).
    pub target_replicas: usize,
    /// Replicas rebuilt after a panic so far.
    pub rebuilds: u64,
    /// Replicas being rebuilt, or failing to be built, right now.
    pub replicas_down: usize,
    /// Batches run so far (batched steps).
    pub batches: u64,
    /// Calls served in those batches.
    pub batched_calls: u64,
    /// Where the step is served, if by remote workers; `replicas` then
    /// counts the workers this pipeline knows of (none: degraded).
    pub remote: Option<&'static str>,
}

impl StepHealth {
    /// No replica down; a remote step has at least one worker.
    pub fn is_up(&self) -> bool {
        self.replicas_down == 0 && (self.remote.is_none() || self.replicas > 0)
    }
}

/// Whether a pipeline serves at full strength.
///
/// ```
/// use pipeline_core::prelude::*;
///
/// #[step(mode = "actors")]
/// fn embed(x: i64) -> i64 { x }
///
/// let p = embed(Input::<i64>::new()).deploy()?;
/// let health = p.health();
/// assert!(health.is_healthy());
/// assert_eq!(health.steps[0].rebuilds, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Every step, in graph order.
    pub steps: Vec<StepHealth>,
}

impl Health {
    /// No replica is down, and every remote step has a worker.
    pub fn is_healthy(&self) -> bool {
        self.steps.iter().all(StepHealth::is_up)
    }
    /// The steps with a replica down, or remote with no worker.
    pub fn degraded(&self) -> Vec<&'static str> {
        self.steps
            .iter()
            .filter(|s| !s.is_up())
            .map(|s| s.step)
            .collect()
    }
}

impl<In: Send + 'static, Out: Send + 'static> Pipeline<In, Out> {
    /// How each step node runs, in graph order, with its live replica
    /// counts.
    pub fn report(&self) -> Vec<StepReport> {
        self.steps()
            .iter()
            .map(|(plan, counters)| StepReport {
                step: plan.node,
                requested: plan.requested,
                running: plan.mode,
                replicas: counters.replicas_up(),
                target_replicas: counters.target_replicas.load(Ordering::Relaxed),
                autoscale: plan.autoscale,
                queue_bound: plan.queue_bound,
                note: plan.note,
                devices: match plan.remote {
                    Some(_) => Vec::new(),
                    None => (0..plan.replicas).map(|i| plan.device_of(i)).collect(),
                },
                remote: plan.remote.map(|u| u.as_str()),
            })
            .collect()
    }

    /// Live counters per step node: calls, errors, latency, queue depth,
    /// calls in flight, batch sizes, replicas, rebuilds (see
    /// [`StepMetrics`]).
    pub fn metrics(&self) -> Vec<StepMetrics> {
        self.steps()
            .iter()
            .map(|(plan, c)| StepMetrics {
                remote: plan.remote.map(|u| u.as_str()),
                ..c.snapshot(plan.node)
            })
            .collect()
    }

    /// Replicas up, heading for, down and rebuilt, per step node.
    pub fn health(&self) -> Health {
        Health {
            steps: self
                .steps()
                .iter()
                .map(|(plan, c)| StepHealth {
                    step: plan.node,
                    replicas: c.replicas_up(),
                    target_replicas: c.target_replicas.load(Ordering::SeqCst),
                    rebuilds: c.rebuilds.load(Ordering::SeqCst),
                    replicas_down: c.replicas_down.load(Ordering::SeqCst),
                    batches: c.batches.load(Ordering::SeqCst),
                    batched_calls: c.batched_calls.load(Ordering::SeqCst),
                    remote: plan.remote.map(|u| u.as_str()),
                })
                .collect(),
        }
    }
}
