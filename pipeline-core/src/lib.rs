#![doc = include_str!("../README.md")]

mod error;
mod graph;
mod runtime;
mod step;

pub use error::{BoxError, DeployError, PipelineError, StepError};
pub use graph::{
    route, Graph, GraphNode, Input, Node, NodeId, NodeKind, Produces, Route, RouteStart, Shared,
    Upstream,
};
pub use pipeline_macros::step;
pub use runtime::{DeployOptions, Pipeline, StepReport};
pub use step::{Device, Mode, ReplicaContext, StepFn, StepInfo, StepKind, StepNode};

/// The names most pipelines need: `use pipeline_core::prelude::*;`.
pub mod prelude {
    pub use crate::{
        route, step, DeployError, DeployOptions, Device, Input, Mode, Pipeline, PipelineError,
        ReplicaContext, Upstream,
    };
}

/// Paths the `#[step]` macro's generated code uses. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::graph::{
        edge, CastEval, GatherEval, GraphBuilder, InputEval, Node, NodeId, RouteEval, SharedEval,
    };
    pub use crate::runtime::{CallCx, DynEval, Eval, Lowering, Runner};
    /// The evaluator of a type-erased node producing `T`.
    pub type BoxedEval<T> = Box<dyn DynEval<T>>;
    pub use crate::step::{
        EdgeList, EdgesEval, StepEval, StepFn, StepInfo, StepKind, StepNode, StepOutput,
    };
    pub use crate::{
        BoxError, DeployError, Device, Input, Mode, Produces, ReplicaContext, Upstream,
    };
    pub use core::future::{ready, Future};
    pub use std::sync::{Mutex as StdMutex, PoisonError};
    pub use tokio::sync::Mutex as AsyncMutex;
}
