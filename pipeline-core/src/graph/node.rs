//! Type erasure: [`Node`] hides a node's type behind its input and output
//! types.

use std::any::type_name;
use std::fmt::Debug;

use super::describe::{GraphBuilder, NodeId};
use super::lower::Lowering;
use super::Upstream;
use crate::error::DeployError;
use crate::eval::DynEval;

/// A node with its type erased to its input and output types (see
/// [`Upstream::boxed`]).
///
/// ```
/// use pipeline_core::prelude::*;
/// use pipeline_core::Node;
///
/// #[step]
/// fn add_one(x: i64) -> i64 { x + 1 }
///
/// // Build a chain whose length is known only at run time.
/// let mut node: Node<i64, i64> = Input::new().boxed();
/// for _ in 0..3 {
///     node = add_one(node).boxed();
/// }
/// assert_eq!(node.deploy()?.call(0)?, 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Node<I, O> {
    inner: Box<dyn DynUpstream<I, O>>,
}

impl<I, O> Debug for Node<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node<{}, {}>", type_name::<I>(), type_name::<O>())
    }
}

impl<I, O> Node<I, O> {
    pub(crate) fn new<U: Upstream<Input = I, Output = O>>(node: U) -> Self {
        Node {
            inner: Box::new(node),
        }
    }
}

trait DynUpstream<I, O>: Send {
    fn lower_boxed(
        self: Box<Self>,
        lowering: &mut Lowering<'_>,
    ) -> Result<Box<dyn DynEval<O>>, DeployError>;
    fn describe_dyn(&self, graph: &mut GraphBuilder) -> NodeId;
}

impl<U: Upstream> DynUpstream<U::Input, U::Output> for U {
    fn lower_boxed(
        self: Box<Self>,
        lowering: &mut Lowering<'_>,
    ) -> Result<Box<dyn DynEval<U::Output>>, DeployError> {
        (*self).lower_erased(lowering)
    }
    fn describe_dyn(&self, graph: &mut GraphBuilder) -> NodeId {
        self.describe(graph)
    }
}

impl<I: Send + 'static, O: Send + 'static> Upstream for Node<I, O> {
    type Input = I;
    type Output = O;
    type Eval = Box<dyn DynEval<O>>;

    fn lower(self, lowering: &mut Lowering<'_>) -> Result<Self::Eval, DeployError> {
        self.inner.lower_boxed(lowering)
    }

    fn describe(&self, graph: &mut GraphBuilder) -> NodeId {
        self.inner.describe_dyn(graph)
    }

    /// Already erased: not boxed twice.
    fn lower_erased(self, lowering: &mut Lowering<'_>) -> Result<Self::Eval, DeployError> {
        self.lower(lowering)
    }

    fn boxed(self) -> Node<I, O> {
        self
    }
}
