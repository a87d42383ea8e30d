#![doc = include_str!("../README.md")]

// Layers, each using only those above it (see DESIGN.md, section 2):
// error, step (the contract) -> eval -> runtime -> graph -> pipeline -> http.
// `#[step]` inside this crate (the TorchScript steps) names `::pipeline_core`.
extern crate self as pipeline_core;

mod error;
mod step;

mod eval;

mod runtime;

mod graph;

mod pipeline;

#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "remote")]
pub mod remote;
#[cfg(feature = "torch")]
pub mod torch;

pub use error::{BoxError, DeployError, OptionsError, PipelineError, RemoteError, StepError};
pub use graph::{
    route, BranchKey, Collect, Graph, GraphNode, Input, IsItemStream, Item, MapEach, Node, NodeId,
    NodeKind, Produces, Route, RouteKey, RouteOn, RouteStart, Shared, SharedOutput, StepNode,
    StreamNode, Upstream, DEFAULT_IN_FLIGHT,
};
pub use pipeline::{Deploy, Health, Pipeline, StepHealth, StepReport};
/// Turns a function or a model type's `impl` block into a typed pipeline
/// step.
///
/// # On a function
///
/// `#[step] fn name(a: A, b: B) -> Out` (or `-> Result<Out, E>`, or
/// `async fn`) generates:
///
/// - `name(a, b)`: the node constructor. Each argument is a node whose output
///   must be exactly the parameter's type, checked at compile time;
/// - `name<In>`: the node type, for a pipeline whose input is `In`;
/// - `name::call(a, b)`: the original body, for unit tests.
///
/// ```
/// use pipeline_core::prelude::*;
///
/// #[step]
/// fn parse(s: String) -> Result<i64, std::num::ParseIntError> { s.parse() }
///
/// #[step]
/// async fn add(a: i64, b: i64) -> i64 { a + b }
///
/// let x = parse(Input::<String>::new()); // a cloned node is shared: `parse` runs once
/// let p = add(x.clone(), x).deploy()?;
/// assert_eq!(p.call("21".into())?, 42);
/// assert_eq!(parse::call("7".into()), Ok(7));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # On a model type
///
/// Put `#[step]` on the type's own `impl` block. It needs a constructor
/// `fn new(..) -> Self` (or `-> Result<Self, E>`), which may take
/// `ctx: &ReplicaContext` first, and a method `fn call(&self, ..)` or
/// `fn call(&mut self, ..)` (sync or `async`). It generates
/// `Model::bind(constructor args.., input nodes..)`, with the visibility of
/// `new`. The constructor arguments are cloned into each replica, so they
/// must be `Clone`.
///
/// ```
/// use pipeline_core::prelude::*;
///
/// struct Adder { increment: i64 }
///
/// #[step]
/// impl Adder {
///     fn new(increment: i64) -> Self { Adder { increment } }
///     fn call(&self, x: i64) -> i64 { x + self.increment }
/// }
///
/// let p = Adder::bind(2, Input::<i64>::new()).deploy()?;
/// assert_eq!(p.call(2)?, 4);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Attribute keys
///
/// | key | values | default |
/// | --- | --- | --- |
/// | `mode` | `"local"`, `"tasks"`, `"actors"` | `"local"` |
/// | `replicas` | a whole number >= 1, with `mode = "actors"` only | 1 |
/// | `placement` | `"thread"`, `"task"`, with `mode = "actors"` only | thread for sync bodies, task for async |
/// | `batch(max_size = N, wait_ms = M)` | dynamic batching, actors only; the body takes `Vec<In>` and returns `Vec<Out>` | `max_size = 32, wait_ms = 5` |
/// | `autoscale(min_replicas = 1, max_replicas = 8, target_ongoing_requests = 2, upscale_delay_ms = 1000, downscale_delay_ms = 30000)` | replicas follow the load (queued + running calls), actors only, instead of `replicas`; every key optional (see [`AutoscalePolicy`]) | off |
/// | `remote` | the step may be served by worker processes over NATS (feature `remote`; chosen at deploy with [`DeployOptions::remote`]); its inputs and output must be serde types, checked here | off |
/// | `concurrent` | model steps in tasks or local mode: calls share the one model unlocked (`call` takes `&self`, the model is `Sync`) instead of taking turns; for a model that only holds handles or read-only data and whose async `call` waits | off: a model's calls take turns, one at a time per replica |
///
/// # Mistakes
///
/// Each mistake is one compile error, on the offending tokens, in words
/// that say what to write instead: unknown or duplicate keys (with "did you
/// mean"), bad values (`mode = actors` is told to quote it, `"ACTORS"` to
/// use lower case, `replicas = "2"` to drop the quotes), keys that need
/// `mode = "actors"`, a batched signature that is not `Vec` in and out,
/// unsupported items (a struct: put the attribute on its `impl` block;
/// trait impls, generic or input-less steps, reference inputs: take the
/// owned type, `impl Trait` or non-`Send` types such as `Rc`), a `new`
/// that does not return `Self` or `Result<Self, E>`, an `Err` that is not
/// an error type, and model types without `new` or `call` (a `predict` is
/// told to be renamed). A step with a mistake still expands (with the
/// types it declares, or as a stand-in node), so the code that uses it adds
/// no errors of its own. Values may come through `macro_rules!` fragments
/// (`mode = $mode`).
///
/// On the graph side, a wrong edge is one error at the argument ("`x<In>`
/// is not a node producing `T`", with a note that `Model::bind` takes its
/// constructor arguments first), and `.shared()` or
/// `route(..)` on an output without `Clone` / `PartialEq + Debug` is one
/// error at that call. The catalogue of checked mistakes is
/// `tests/ui/**`, one mistake per file with its error beside it.
pub use pipeline_macros::step;

/// How a `#[step(remote)]` step's values cross to a worker process
/// (postcard-encoded serde types; see the README's "Remote steps").
pub mod wire {
    pub use crate::step::{wire_type, Wire, WireError, WireFns, WireTuple, WireType, WIRE_FORMAT};
}
pub use runtime::{
    AutoscaleOptions, DeployOptions, HistogramSnapshot, RemoteUrl, StepMetrics, StepOptions,
    BATCH_BUCKETS, DEFAULT_QUEUE_BOUND, LATENCY_BUCKETS,
};
pub use step::{
    AutoscalePolicy, BatchPolicy, Device, ItemStream, Mode, Placement, ReplicaContext, StepFn,
    StepInfo, StepKind,
};

/// The names most pipelines need: `use pipeline_core::prelude::*;`.
pub mod prelude {
    pub use crate::{
        route, step, BoxError, Deploy, DeployError, DeployOptions, Device, Input, ItemStream, Mode,
        Pipeline, PipelineError, ReplicaContext, Upstream,
    };
}

/// Paths the `#[step]` macro's generated code uses. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::eval::{CallCx, CxFuture, DynEval, Eval};
    pub use crate::graph::{
        edge, CastEval, EdgeList, EdgesEval, GatherEval, GraphBuilder, InputEval, IsClone,
        Lowering, Node, NodeId, Output, Rejected, RouteEval, SharedEval, StepEdges, StepEval,
        StepNode, StepNodeEval, Unknown,
    };
    /// The evaluator of a type-erased node producing `T`.
    pub type BoxedEval<T> = Box<dyn DynEval<T>>;
    pub use crate::step::{
        clone_init, ready_output, wire_type, IntoStepError, Probe, Pump, PumpOfStream, PumpOfValue,
        StepFn, StepInfo, StepKind, StepOutput, Wire,
    };
    pub use crate::{
        AutoscalePolicy, BatchPolicy, BoxError, DeployError, Device, Input, Mode, Placement,
        Produces, ReplicaContext, Upstream,
    };
    pub use core::future::{ready, Future};
    pub use std::sync::{Mutex as StdMutex, PoisonError};
    pub use tokio::sync::Mutex as AsyncMutex;
}
