//! The typed graph: [`Upstream`] (anything a step can take as input),
//! [`Input`], fan-out with [`Shared`], gather (`Vec`/arrays of nodes), type
//! erasure with [`Node`], step nodes ([`StepNode`]) and per-request routing
//! with [`route`]. Above the runtime: a graph plans and starts its steps
//! through `crate::runtime`, and knows nothing of the deployed `Pipeline`.
//!
//! Edges are checked by rustc through the [`Produces`] bound that every
//! generated step constructor puts on its arguments.
//!
//! | file | owns |
//! | --- | --- |
//! | `upstream.rs` | the node trait and the edge check |
//! | `input.rs`, `shared.rs`, `gather.rs`, `node.rs`, `step.rs`, `route.rs` | one node kind each |
//! | `step_call.rs` | one call of a step node, as one hand-written future |
//! | `rejected.rs` | what a `#[step]` the macro rejected expands to |
//! | `lower.rs` | the deploy traversal: names, description, plans, evaluators |
//! | `describe.rs` | the printable graph (DOT, Mermaid) |
//! | `names.rs` | step node names |

mod describe;
mod each;
mod gather;
mod input;
mod lower;
mod names;
mod node;
mod rejected;
mod route;
mod shared;
mod step;
mod step_call;
mod upstream;

pub use describe::{Graph, GraphBuilder, GraphNode, NodeId, NodeKind};
pub use each::{Collect, IsItemStream, Item, MapEach, StreamNode, DEFAULT_IN_FLIGHT};
#[doc(hidden)]
pub use gather::GatherEval;
pub use input::Input;
#[doc(hidden)]
pub use input::InputEval;
pub(crate) use lower::Lowered;
pub use lower::Lowering;
#[cfg(feature = "remote")]
pub(crate) use names::intern;
pub use node::Node;
#[doc(hidden)]
pub use rejected::{Rejected, Unknown};
pub use route::{route, BranchKey, Route, RouteEval, RouteKey, RouteOn, RouteStart};
pub use shared::Shared;
#[doc(hidden)]
pub use shared::SharedEval;
pub use step::StepNode;
#[doc(hidden)]
pub use step::{EdgeList, EdgesEval, IsClone, Output, StepEval, StepNodeEval};
#[doc(hidden)]
pub use upstream::{edge, CastEval, StepEdges};
pub use upstream::{Produces, SharedOutput, Upstream};
