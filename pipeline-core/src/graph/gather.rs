//! Gather: a `Vec`, array or tuple of nodes is a node producing a `Vec` of
//! their outputs, computed concurrently, in order.

use std::any::type_name;

use super::describe::{GraphBuilder, NodeId, NodeKind};
use super::lower::Lowering;
use super::{Produces, Upstream};
use crate::error::{DeployError, PipelineError};
use crate::eval::{CallCx, DynEval, Eval};

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

/// Gather from a tuple: nodes of different steps (so of different types)
/// that produce one type, `(a(x.clone()), b(x))`, are a node producing a
/// `Vec` of their outputs, computed concurrently, in order. (An array or
/// `Vec` needs its nodes to be of one type: `.boxed()` each, or use a
/// tuple.)
macro_rules! gather_tuple {
    ($first:ident $(, $rest:ident)+) => {
        #[allow(non_snake_case)]
        impl<$first: Upstream, $($rest),+> Upstream for ($first, $($rest),+)
        where
            $($rest: Upstream<Input = $first::Input, Output = $first::Output>),+
        {
            type Input = $first::Input;
            type Output = Vec<$first::Output>;
            type Eval = GatherEval<Box<dyn DynEval<$first::Output>>>;

            fn lower(self, lowering: &mut Lowering<'_>) -> Result<Self::Eval, DeployError> {
                let ($first, $($rest),+) = self;
                vec![$first.boxed(), $($rest.boxed()),+].lower(lowering)
            }

            fn describe(&self, graph: &mut GraphBuilder) -> NodeId {
                let ($first, $($rest),+) = self;
                let inputs = vec![($first.describe(graph), None), $(($rest.describe(graph), None)),+];
                graph.push(
                    "gather",
                    NodeKind::Gather,
                    type_name::<Vec<$first::Output>>(),
                    inputs,
                )
            }
        }

        #[diagnostic::do_not_recommend]
        impl<$first, $($rest),+> super::RouteOn for ($first, $($rest),+)
        where
            Self: Upstream,
        {
            type Node = Self;
            fn node(self) -> Self {
                self
            }
        }

        #[allow(non_snake_case)]
        #[diagnostic::do_not_recommend]
        impl<T: Send + 'static, $first: Produces<T>, $($rest),+> Produces<Vec<T>> for ($first, $($rest),+)
        where
            $($rest: Upstream<Input = $first::Input, Output = $first::Output>),+
        {
            fn cast(output: Vec<$first::Output>) -> Vec<T> {
                output.into_iter().map($first::cast).collect()
            }
        }
    };
}

gather_tuple!(A, B);
gather_tuple!(A, B, C);
gather_tuple!(A, B, C, D);
gather_tuple!(A, B, C, D, E);
gather_tuple!(A, B, C, D, E, F);
gather_tuple!(A, B, C, D, E, F, G);
gather_tuple!(A, B, C, D, E, F, G, H);
