//! Deploying a graph: [`Deploy`], the extension trait that gives every
//! node `.deploy()` and `.deploy_with(options)` (as tower's `ServiceExt`
//! adds behaviour from the layer above, so the graph never imports the
//! pipeline). One traversal names, describes and plans every step node;
//! the options are checked against the names it found; then the steps are
//! started, inputs first.

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::OnceLock;

use tokio::sync::Notify;

use super::calls::{Inner, Pipeline};
use crate::error::DeployError;
use crate::graph::{Lowered, Lowering, Upstream};
use crate::runtime::{check_names, DeployOptions, Runtimes};

/// Deploys a graph: `.deploy()` and `.deploy_with(..)` on any node. In the
/// [`prelude`](crate::prelude).
///
/// ```
/// use pipeline_core::prelude::*;
///
/// #[step(mode = "actors", replicas = 4)]
/// fn add_one(x: i64) -> i64 { x + 1 }
///
/// let p = add_one(Input::<i64>::new()).deploy()?;
/// assert_eq!(p.call(1)?, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Deploy: Upstream {
    /// Deploys the graph with each step's own attributes.
    ///
    /// Fails if a model constructor fails, or if the graph does not read
    /// exactly one [`Input`](crate::Input).
    fn deploy(self) -> Result<Pipeline<Self::Input, Self::Output>, DeployError> {
        self.deploy_with(DeployOptions::default())
    }

    /// Deploys the graph with options that override the steps' attributes,
    /// e.g. [`DeployOptions::local`] to run every step inline in tests.
    ///
    /// ```
    /// use pipeline_core::prelude::*;
    ///
    /// #[step(mode = "actors", replicas = 4)]
    /// fn add_one(x: i64) -> i64 { x + 1 }
    ///
    /// let p = add_one(Input::<i64>::new()).deploy_with(DeployOptions::local())?;
    /// assert_eq!(p.report()[0].running, Mode::Local);
    /// assert_eq!(p.call(1)?, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn deploy_with(
        self,
        options: DeployOptions,
    ) -> Result<Pipeline<Self::Input, Self::Output>, DeployError> {
        deploy(self, &options)
    }
}

impl<U: Upstream> Deploy for U {}

fn deploy<U: Upstream>(
    node: U,
    options: &DeployOptions,
) -> Result<Pipeline<U::Input, U::Output>, DeployError> {
    let (
        root,
        Lowered {
            graph,
            slots,
            inputs,
            steps,
        },
    ) = lower(node, options)?;
    match inputs {
        1 => {}
        0 => return Err(DeployError::NoInput),
        count => return Err(DeployError::SeveralInputs { count }),
    }
    let names: Vec<_> = steps.iter().map(|s| (s.plan.node, s.plan.step)).collect();
    check_names(options, &names)?;
    let mut runtimes = Runtimes::new(options.chosen_runtime().cloned());
    let mut started = Vec::with_capacity(steps.len());
    for step in steps {
        let p = &step.plan;
        tracing::info!(step = p.node, requested = %p.requested, running = %p.mode, replicas = p.replicas, queue_bound = p.queue_bound, autoscale = ?p.autoscale, "deploying step");
        (step.start)(&mut runtimes)?;
        started.push((step.plan, step.counters));
    }
    let stopping = runtimes.stopping();
    let runtime = OnceLock::new();
    if let Some(own) = runtimes.into_own() {
        let _ = runtime.set(own);
    }
    Ok(Pipeline::from_inner(Inner {
        root: Box::new(root),
        slots,
        graph,
        steps: started,
        closing: AtomicBool::new(false),
        stopping,
        in_flight: AtomicUsize::new(0),
        idle: Notify::new(),
        runtime,
        chosen: options.chosen_runtime().cloned(),
    }))
}

/// The stack lowering runs on: lowering recurses once per level of the
/// graph, about 4.5 KiB a level in a debug build, so a chain of a
/// thousand boxed steps would overflow a test's or a runtime worker's
/// 2 MiB. 64 MiB is about 14,000 levels, far past what a call of the
/// graph can take on a usual stack (see the README's "Depth"); only the
/// pages used are ever touched, and a machine that will not map it fails
/// `deploy` with `DeployError::Runtime`, not a crash.
const LOWERING_STACK: usize = 64 << 20;

/// Lowers `node` on a thread of its own with a large stack (see
/// [`LOWERING_STACK`]), so that deploying a deep graph never needs more
/// stack than calling it. Lowering runs no user code and reads no
/// thread-local state; the steps are started afterwards, on the caller's
/// thread.
fn lower<U: Upstream>(node: U, options: &DeployOptions) -> Result<(U::Eval, Lowered), DeployError> {
    std::thread::scope(|scope| {
        let lowering = std::thread::Builder::new()
            .name("pipeline-deploy".into())
            .stack_size(LOWERING_STACK)
            .spawn_scoped(scope, || {
                let mut lowering = Lowering::new(options);
                let root = node.lower(&mut lowering)?;
                Ok((root, lowering.finish()))
            })?;
        lowering
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
