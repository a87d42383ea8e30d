//! What a `#[step]` is at run time: its static description ([`StepInfo`]), the
//! context a replica is built with ([`ReplicaContext`]), and the hidden
//! [`StepFn`] contract the macro implements. This module owns no scheduling:
//! where and how a step runs is `runtime`'s business.

use std::future::Future;

use crate::error::BoxError;

mod names;
mod node;

pub(crate) use names::{intern, InstanceNames};
pub use node::StepNode;
#[doc(hidden)]
pub use node::{EdgeList, EdgesEval, StepEval};

/// How a step is run, as chosen by `#[step(mode = "...")]`.
///
/// ```
/// use pipeline_core::Mode;
/// assert_eq!(Mode::default(), Mode::Local);
/// assert_eq!(Mode::Actors.as_str(), "actors");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
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
pub enum Placement {
    /// Thread for sync bodies, task for async bodies.
    #[default]
    Auto,
    /// A dedicated OS thread per replica.
    Thread,
    /// A task on the pipeline's runtime per replica.
    Task,
}

/// A compute device a replica may own. Parsed from `"cpu"` or `"cuda:N"`
/// (as in deploy options files).
///
/// ```
/// use pipeline_core::Device;
/// assert_eq!(Device::Cuda(1).to_string(), "cuda:1");
/// assert_eq!("cuda:1".parse::<Device>(), Ok(Device::Cuda(1)));
/// assert_eq!("cpu".parse::<Device>(), Ok(Device::Cpu));
/// assert!("gpu".parse::<Device>().unwrap_err().contains("expected `cpu` or `cuda:N`"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum Device {
    /// The CPU.
    #[default]
    Cpu,
    /// The CUDA device with this index.
    Cuda(usize),
}

impl std::str::FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let index = |i: &str| i.parse::<usize>().ok();
        match s.trim() {
            "cpu" => Ok(Device::Cpu),
            d => match d.strip_prefix("cuda:").and_then(index) {
                Some(i) => Ok(Device::Cuda(i)),
                None => Err(format!(
                    "unknown device `{d}`: expected `cpu` or `cuda:N` (N a device index)"
                )),
            },
        }
    }
}

impl TryFrom<String> for Device {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// What a model step's constructor learns about the replica it builds.
///
/// ```
/// use pipeline_core::prelude::*;
///
/// struct Scaler { factor: i64 }
///
/// #[step]
/// impl Scaler {
///     fn new(ctx: &ReplicaContext, factor: i64) -> Self {
///         assert_eq!(ctx.device(), Device::Cpu);
///         Scaler { factor: factor * (ctx.index() as i64 + 1) }
///     }
///     fn call(&self, x: i64) -> i64 { x * self.factor }
/// }
///
/// let p = Scaler::bind(10, Input::<i64>::new()).deploy()?;
/// assert_eq!(p.call(2)?, 20);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaContext {
    pub(crate) step: &'static str,
    pub(crate) index: usize,
    pub(crate) replicas: usize,
    pub(crate) device: Device,
}

impl ReplicaContext {
    /// A context for building a model by hand, e.g. in a unit test.
    pub fn new(step: &'static str, index: usize, replicas: usize, device: Device) -> Self {
        ReplicaContext {
            step,
            index,
            replicas,
            device,
        }
    }
    /// The step's name.
    pub fn step(&self) -> &'static str {
        self.step
    }
    /// This replica's index, `0..replicas()`.
    pub fn index(&self) -> usize {
        self.index
    }
    /// How many replicas the step has.
    pub fn replicas(&self) -> usize {
        self.replicas
    }
    /// The device this replica owns.
    pub fn device(&self) -> Device {
        self.device
    }
}

/// The contract between `#[step]` and the runtime. Implemented by the macro;
/// you should not need to implement or call it yourself.
///
/// For a function step it is implemented on `name<()>` (the node type's
/// marker instance, which also carries `name::call`), for a model step on
/// the model type.
pub trait StepFn: 'static {
    /// The step's inputs, as a tuple (`(i64,)` for one input).
    type Inputs: Send + 'static;
    /// What the step produces (the `T` of `-> T` or `-> Result<T, E>`).
    type Output: Send + 'static;
    /// One replica's state: `()` for functions, the model (behind a lock
    /// where `call` takes `&mut self`).
    type State: Send + Sync + 'static;
    /// The constructor's arguments, cloned into each replica.
    type Init: Clone + Send + Sync + 'static;
    /// What the attribute said.
    const INFO: StepInfo;
    /// Builds one replica.
    fn build(ctx: &ReplicaContext, init: &Self::Init) -> Result<Self::State, BoxError>;
    /// Dynamic batching, from `batch(max_size = .., wait_ms = ..)`.
    const BATCH: Option<BatchPolicy> = None;
    /// Runs the step once.
    fn call(
        state: &Self::State,
        inputs: Self::Inputs,
    ) -> impl Future<Output = Result<Self::Output, BoxError>> + Send + '_;
    /// Runs the step on a batch; one output per input, in order. Batched
    /// steps implement it with their `Vec` body; others call `call` in turn.
    fn call_batch(
        state: &Self::State,
        batch: Vec<Self::Inputs>,
    ) -> impl Future<Output = Result<Vec<Self::Output>, BoxError>> + Send + '_ {
        async move {
            let mut outputs = Vec::with_capacity(batch.len());
            for inputs in batch {
                outputs.push(Self::call(state, inputs).await?);
            }
            Ok(outputs)
        }
    }
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
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

/// `S: StepOutput<T>` when step `S` produces `T`: implemented by the macro
/// with the concrete output type, so that an edge mismatch on a model step
/// is reported as "does not produce" rather than as a projection mismatch.
#[doc(hidden)]
pub trait StepOutput<T>: StepFn {
    fn cast_output(output: Self::Output) -> T;
}
