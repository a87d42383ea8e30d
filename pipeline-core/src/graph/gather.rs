//! Gather: a `Vec` or array of nodes is a node producing a `Vec` of their
//! outputs, computed concurrently, in order.

use std::any::type_name;

use super::describe::{GraphBuilder, NodeId, NodeKind};
use super::lower::Lowering;
use super::Upstream;
use crate::error::{DeployError, PipelineError};
use crate::eval::{CallCx, Eval};

/// Gather: a `Vec` of nodes is a node producing a `Vec` of their outputs,
/// computed concurrently, in order.
impl<U: Upstream> Upstream for Vec<U> {
    type Input = U::Input;
    type Output = Vec<U::Output>;
    type Eval = GatherEval<U::Eval>;

    fn lower(self, lowering: &mut Lowering<'_>) -> Result<Self::Eval, DeployError> {
        let mut items = Vec::with_capacity(self.len());
        let mut inputs = Vec::with_capacity(self.len());
        for u in self {
            items.push(u.lower(lowering)?);
            inputs.push((lowering.last_id()?, None));
        }
        lowering.push(
            "gather",
            NodeKind::Gather,
            type_name::<Vec<U::Output>>(),
            inputs,
        );
        Ok(GatherEval(items))
    }

    fn describe(&self, graph: &mut GraphBuilder) -> NodeId {
        describe_gather::<U>(self, graph)
    }
}

/// Gather: an array of nodes is a node producing a `Vec` of their outputs
/// (so `fn combine(xs: Vec<T>)` takes `[a, b]`).
impl<U: Upstream, const N: usize> Upstream for [U; N] {
    type Input = U::Input;
    type Output = Vec<U::Output>;
    type Eval = GatherEval<U::Eval>;

    fn lower(self, lowering: &mut Lowering<'_>) -> Result<Self::Eval, DeployError> {
        Vec::from(self).lower(lowering)
    }

    fn describe(&self, graph: &mut GraphBuilder) -> NodeId {
        describe_gather::<U>(self, graph)
    }
}

fn describe_gather<U: Upstream>(items: &[U], graph: &mut GraphBuilder) -> NodeId {
    let inputs = items.iter().map(|u| (u.describe(graph), None)).collect();
    graph.push(
        "gather",
        NodeKind::Gather,
        type_name::<Vec<U::Output>>(),
        inputs,
    )
}

#[doc(hidden)]
#[derive(Debug)]
pub struct GatherEval<E>(Vec<E>);

impl<E: Eval> Eval for GatherEval<E> {
    type Output = Vec<E::Output>;
    async fn eval(&self, cx: &CallCx<'_>) -> Result<Vec<E::Output>, PipelineError> {
        futures::future::try_join_all(self.0.iter().map(|e| e.eval(cx))).await
    }
}
