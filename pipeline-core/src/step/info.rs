//! What the `#[step]` attribute says about a step, fixed at compile time:
//! [`StepInfo`] with its [`Mode`], [`Placement`], [`BatchPolicy`] and
//! [`AutoscalePolicy`].

/// How a step is run, as chosen by `#[step(mode = "...")]`.
///
/// ```
/// use pipeline_core::Mode;
/// assert_eq!(Mode::default(), Mode::Local);
/// assert_eq!(Mode::Actors.as_str(), "actors");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Mode {
    /// Inline in the caller: no spawn, no channel.
    #[default]
    Local,
    /// Each invocation is its own task; stateless.
    Tasks,
    /// Long-lived replicas, each with its own state and mailbox.
    Actors,
}

impl Mode {
    /// The name used in `#[step(mode = "...")]`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Local => "local",
            Mode::Tasks => "tasks",
            Mode::Actors => "actors",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a step is a plain function or a model type with per-replica state.
///
/// ```
/// use pipeline_core::prelude::*;
/// use pipeline_core::{StepFn, StepKind};
///
/// #[step]
/// fn f(x: i64) -> i64 { x }
/// assert_eq!(<f<()> as StepFn>::INFO.kind, StepKind::Function);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StepKind {
    /// `#[step] fn ...`
    Function,
    /// `#[step] impl Model { fn new(..); fn call(..) }`
    Model,
}

/// Everything the `#[step]` attribute said about a step, fixed at compile time.
///
/// ```
/// use pipeline_core::prelude::*;
/// use pipeline_core::{Mode, StepFn};
///
/// #[step(mode = "actors", replicas = 3)]
/// fn embed(x: i64) -> i64 { x }
///
/// let info = <embed<()> as StepFn>::INFO;
/// assert_eq!((info.name, info.mode, info.replicas), ("embed", Mode::Actors, 3));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepInfo {
    /// The function's or the model type's name.
    pub name: &'static str,
    /// The requested mode.
    pub mode: Mode,
    /// The requested number of replicas (1 unless actors).
    pub replicas: usize,
    /// Function or model.
    pub kind: StepKind,
    /// Whether the body is an `async fn`.
    pub is_async: bool,
    /// Where an actor replica runs, from `placement = "..."`.
    pub placement: Placement,
    /// Autoscaling of actor replicas, from `autoscale(..)`; `replicas` is
    /// then its `min_replicas`.
    pub autoscale: Option<AutoscalePolicy>,
    /// `remote`: may be served by worker processes (see
    /// [`DeployOptions::remote`](crate::DeployOptions::remote)).
    pub remote: bool,
}

impl StepInfo {
    /// Where this step's actor replicas run: the attribute's choice, else a
    /// dedicated thread for sync bodies (model work blocks, e.g. libtorch)
    /// and a task on the runtime for async bodies.
    pub const fn resolved_placement(&self) -> Placement {
        match (self.placement, self.is_async) {
            (Placement::Auto, false) => Placement::Thread,
            (Placement::Auto, true) => Placement::Task,
            (p, _) => p,
        }
    }
}

/// Where an actor replica runs (`#[step(mode = "actors", placement = "...")]`).
///
/// A thread costs a thread wake-up per hop (tens of microseconds) but never
/// stalls the runtime; a task hops in about a microsecond but must not block.
///
/// ```
/// use pipeline_core::prelude::*;
/// use pipeline_core::{Placement, StepFn};
///
/// #[step(mode = "actors")]
/// fn blocking(x: i64) -> i64 { x }
/// #[step(mode = "actors")]
/// async fn light(x: i64) -> i64 { x }
/// #[step(mode = "actors", placement = "task")]
/// fn quick(x: i64) -> i64 { x }
///
/// assert_eq!(<blocking<()> as StepFn>::INFO.resolved_placement(), Placement::Thread);
/// assert_eq!(<light<()> as StepFn>::INFO.resolved_placement(), Placement::Task);
/// assert_eq!(<quick<()> as StepFn>::INFO.resolved_placement(), Placement::Task);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Placement {
    /// Thread for sync bodies, task for async bodies.
    #[default]
    Auto,
    /// A dedicated OS thread per replica.
    Thread,
    /// A task on the pipeline's runtime per replica.
    Task,
}

/// How an actor step batches calls: a replica takes up to `max_size` queued
/// calls, waiting at most `wait_ms` after the first for more.
///
/// ```
/// use pipeline_core::prelude::*;
/// use pipeline_core::{BatchPolicy, StepFn};
///
/// #[step(mode = "actors", batch(max_size = 16, wait_ms = 2))]
/// fn embed(texts: Vec<String>) -> Vec<usize> {
///     texts.iter().map(|t| t.len()).collect()
/// }
///
/// assert_eq!(<embed<()> as StepFn>::BATCH, Some(BatchPolicy { max_size: 16, wait_ms: 2 }));
/// let p = embed(Input::<String>::new()).deploy()?; // the graph sees String -> usize
/// assert_eq!(p.call("four".into())?, 4);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPolicy {
    /// The most calls in one batch.
    pub max_size: usize,
    /// How long a replica waits for more calls after the first, in ms.
    pub wait_ms: u64,
}

/// How an actor step's replica count follows its load, as
/// `#[step(mode = "actors", autoscale(min_replicas = 1, max_replicas = 8))]`
/// or per step in deploy options. Names are Ray Serve's.
///
/// Load is the calls queued at the step's replicas plus those running
/// (Ray counts only the ones at replicas, which never scales a step whose
/// queue is the bottleneck). The step wants
/// `ceil(load / target_ongoing_requests)` replicas, within
/// `min_replicas..=max_replicas`; it scales up once it has wanted more for
/// `upscale_delay_ms`, and down once it has wanted fewer for
/// `downscale_delay_ms`.
///
/// ```
/// use pipeline_core::AutoscalePolicy;
/// let p = AutoscalePolicy::DEFAULT;
/// assert_eq!((p.min_replicas, p.max_replicas, p.target_ongoing_requests), (1, 8, 2));
/// assert_eq!((p.upscale_delay_ms, p.downscale_delay_ms), (1_000, 30_000));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AutoscalePolicy {
    /// Never fewer replicas (at least 1).
    pub min_replicas: usize,
    /// Never more replicas.
    pub max_replicas: usize,
    /// Calls (queued + running) one replica should carry.
    pub target_ongoing_requests: usize,
    /// How long the load must call for more replicas before they start.
    pub upscale_delay_ms: u64,
    /// How long the load must call for fewer replicas before some stop.
    pub downscale_delay_ms: u64,
}

impl AutoscalePolicy {
    /// The defaults: 1 to 8 replicas, 2 ongoing calls each (Ray Serve's
    /// target), up after 1 s (a replica starts in milliseconds to seconds,
    /// not the minutes a cluster node takes, so Ray's 30 s would only
    /// queue), down after 30 s (slow: a replica torn down during a lull
    /// must be rebuilt, weights and all, when the next burst comes).
    pub const DEFAULT: AutoscalePolicy = AutoscalePolicy {
        min_replicas: 1,
        max_replicas: 8,
        target_ongoing_requests: 2,
        upscale_delay_ms: 1_000,
        downscale_delay_ms: 30_000,
    };
}

impl Default for AutoscalePolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}
