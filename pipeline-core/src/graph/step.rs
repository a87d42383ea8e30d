//! The generic node behind every `#[step]`: [`StepNode`] holds the step's
//! checked input edges and init args; it lowers to a [`StepEval`] that
//! evaluates the inputs concurrently and hands them to the step's runner.

use std::any::type_name;
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use super::describe::{GraphBuilder, NodeId};
use super::lower::Lowering;
use super::shared::{CloneFn, SharedEval};
use super::step_call::StepCall;
use super::{Produces, SharedOutput, Upstream};
use crate::error::{DeployError, PipelineError};
use crate::eval::{CallCx, Eval};
use crate::runtime::{StepCounters, StepRunner};
use crate::step::{StepFn, StepOutput};

/// A call of a step on its inputs, before deployment. Model steps'
/// `bind(..)` returns one; function steps wrap one in their generated node
/// type.
///
/// ```
/// use pipeline_core::prelude::*;
///
/// struct Scale(i64);
/// #[step]
/// impl Scale {
///     fn new(k: i64) -> Self { Scale(k) }
///     fn call(&self, x: i64) -> i64 { x * self.0 }
/// }
///
/// let node = Scale::bind(3, Input::<i64>::new()); // a StepNode<Scale, _>
/// assert_eq!(node.deploy()?.call(2)?, 6);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Cloning a node shares it, as [`Upstream::shared`] does: the step runs
/// once per call and each clone's consumer gets a clone of its output (so
/// the output must be `Clone`). A node that is never cloned costs nothing
/// for it.
///
/// ```
/// use pipeline_core::prelude::*;
///
/// #[step]
/// fn double(x: i64) -> i64 { x * 2 }
/// #[step]
/// fn add(a: i64, b: i64) -> i64 { a + b }
///
/// let d = double(Input::<i64>::new());
/// let p = add(d.clone(), d).deploy()?; // `double` runs once per call
/// assert_eq!(p.call(5)?, 20);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct StepNode<S: StepFn, E> {
    cell: Arc<NodeCell<S, E>>,
}

/// What the handles of one node share.
struct NodeCell<S: StepFn, E> {
    /// Taken by the first handle lowered.
    parts: Mutex<Option<Parts<S, E>>>,
    /// Set by the first `clone`: the node is then lowered once, as a shared
    /// node (where the output's `Clone` is known).
    clone_output: OnceLock<CloneFn<S::Output>>,
}

struct Parts<S: StepFn, E> {
    edges: E,
    init: S::Init,
    name: Option<&'static str>,
}

impl<S: StepFn, E> StepNode<S, E> {
    #[doc(hidden)]
    pub fn new(init: S::Init, edges: E) -> Self {
        StepNode {
            cell: Arc::new(NodeCell {
                parts: Mutex::new(Some(Parts {
                    edges,
                    init,
                    name: None,
                })),
                clone_output: OnceLock::new(),
            }),
        }
    }

    fn key(&self) -> usize {
        Arc::as_ptr(&self.cell) as *const () as usize
    }

    fn parts(&self) -> std::sync::MutexGuard<'_, Option<Parts<S, E>>> {
        self.cell
            .parts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Names this node, as Ray Serve's `.options(name=..)`: graphs,
    /// metrics, errors, spans and [`Pipeline::report`](crate::Pipeline::report)
    /// call it `name`, and deploy options given for `name` apply to it
    /// alone (options for the step's own name apply to every node of the
    /// step that has none of its own). Unnamed, a node takes its step's
    /// name, with `_1`, `_2`, ... when the graph holds the step twice.
    /// Each distinct name is kept once for the life of the process (errors
    /// and reports carry `&'static str`), so names should come from a
    /// fixed set, not from request data.
    ///
    /// ```
    /// use pipeline_core::prelude::*;
    ///
    /// struct Scale(i64);
    /// #[step(mode = "actors")]
    /// impl Scale {
    ///     fn new(k: i64) -> Self { Scale(k) }
    ///     fn call(&self, x: i64) -> i64 { x * self.0 }
    /// }
    /// #[step]
    /// fn sum(xs: Vec<i64>) -> i64 { xs.iter().sum() }
    ///
    /// let x = Input::<i64>::new().shared();
    /// let p = sum([Scale::bind(2, x.clone()).named("double"), Scale::bind(3, x)])
    ///     .deploy_with(DeployOptions::new().replicas("double", 3))?;
    /// assert_eq!(p.call(1)?, 5);
    /// let steps: Vec<_> = p.report().iter().map(|r| (r.step, r.replicas)).collect();
    /// assert_eq!(steps, [("double", 3), ("Scale", 1), ("sum", 1)]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn named(self, name: &str) -> Self {
        if let Some(parts) = self.parts().as_mut() {
            parts.name = Some(super::names::intern(name));
        }
        self
    }
}

/// A step's output type `T`, on a pipeline reading `I`: [`IsClone`] when
/// `T` is `Clone`. A generated node's `Clone` puts its bound on this, so
/// that cloning a node whose output is not `Clone` names the output type
/// ("the trait bound `Output<Big, i64>: IsClone` was not satisfied").
#[doc(hidden)]
#[derive(Debug)]
pub struct Output<T, I>(std::marker::PhantomData<fn() -> (T, I)>);

/// See [`Output`].
#[doc(hidden)]
pub trait IsClone<T> {
    /// `T::clone`.
    fn clone_fn() -> CloneFn<T>;
}

impl<T: Clone, I> IsClone<T> for Output<T, I> {
    fn clone_fn() -> CloneFn<T> {
        T::clone
    }
}

impl<S: StepFn, E> StepNode<S, E> {
    /// Another handle to this node, which is now shared: `clone` is the
    /// output's `Clone::clone` (what generated nodes' `Clone` calls).
    #[doc(hidden)]
    pub fn share(&self, clone: CloneFn<S::Output>) -> Self {
        let _ = self.cell.clone_output.set(clone);
        StepNode {
            cell: Arc::clone(&self.cell),
        }
    }
}

impl<S: StepFn, E> Clone for StepNode<S, E>
where
    S::Output: SharedOutput,
{
    fn clone(&self) -> Self {
        self.share(<S::Output as Clone>::clone)
    }
}

impl<S: StepFn, E> Debug for StepNode<S, E> {
    // (Named by its step; the parts may be lowered already.)
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StepNode<{}>", S::INFO.name)
    }
}

impl<S, E> Upstream for StepNode<S, E>
where
    S: StepFn,
    E: EdgeList<Inputs = S::Inputs>,
{
    type Input = E::Input;
    type Output = S::Output;
    type Eval = StepNodeEval<S, E::Eval>;

    fn lower(self, lowering: &mut Lowering<'_>) -> Result<Self::Eval, DeployError> {
        let key = self.key();
        if let Some(eval) = lowering.shared_again::<SharedEval<S::Output>>(key)? {
            return Ok(StepNodeEval::Shared(eval));
        }
        let parts = self
            .parts()
            .take()
            .ok_or_else(|| DeployError::NodeDeployed {
                node: format!("step `{}`", S::INFO.name),
            })?;
        let (edges, inputs) = parts.edges.lower(lowering)?;
        let step = lowering.step::<S>(parts.name, type_name::<S::Output>(), inputs, parts.init)?;
        let eval = StepEval {
            edges,
            runner: step.runner,
            counters: step.counters,
            name: step.name,
        };
        match self.cell.clone_output.get() {
            None => Ok(StepNodeEval::Once(eval)),
            Some(&clone) => {
                let name = eval.name;
                let shared = SharedEval::new(Arc::new(eval), lowering.new_slot(), clone, name);
                lowering.shared_first(key, shared.clone())?;
                Ok(StepNodeEval::Shared(shared))
            }
        }
    }

    fn describe(&self, graph: &mut GraphBuilder) -> NodeId {
        let describe = |graph: &mut GraphBuilder| match self.parts().as_ref() {
            Some(parts) => {
                let inputs = parts.edges.describe(graph);
                graph
                    .step(&S::INFO, parts.name, type_name::<S::Output>(), inputs)
                    .0
            }
            None => graph.push(
                "(deployed elsewhere)",
                super::NodeKind::Gather,
                type_name::<S::Output>(),
                Vec::new(),
            ),
        };
        if self.cell.clone_output.get().is_some() {
            graph.shared(self.key(), describe)
        } else {
            describe(graph)
        }
    }
}

#[diagnostic::do_not_recommend]
impl<S, E, T> Produces<T> for StepNode<S, E>
where
    S: StepOutput<T>,
    E: EdgeList<Inputs = S::Inputs>,
{
    #[inline(always)]
    fn cast(output: S::Output) -> T {
        S::cast_output(output)
    }
}

/// Where a step node's runner will be: filled when the deploy starts the
/// step, after every node is planned and every option checked.
pub(crate) type RunnerSlot<S> = Arc<OnceLock<Box<dyn StepRunner<S>>>>;

/// A step node's evaluator: the step itself, or (for a node that was
/// cloned) the shared node that runs it once per call.
#[doc(hidden)]
#[derive(Debug)]
pub enum StepNodeEval<S: StepFn, E> {
    Once(StepEval<S, E>),
    Shared(SharedEval<S::Output>),
}

impl<S, E> Eval for StepNodeEval<S, E>
where
    S: StepFn,
    E: EdgesEval<Inputs = S::Inputs>,
{
    type Output = S::Output;
    fn eval<'a>(
        &'a self,
        cx: &'a CallCx<'_>,
    ) -> impl Future<Output = Result<S::Output, PipelineError>> + Send + 'a {
        use futures::future::Either;
        match self {
            StepNodeEval::Once(step) => Either::Left(step.eval(cx)),
            StepNodeEval::Shared(shared) => Either::Right(shared.eval(cx)),
        }
    }

    /// Boxed (a node's inputs are), each case's own future: no `Either`
    /// level polled on every wake of the call.
    fn eval_dyn<'a>(
        &'a self,
        cx: &'a CallCx<'_>,
    ) -> crate::eval::CxFuture<'a, Result<S::Output, PipelineError>> {
        match self {
            StepNodeEval::Once(step) => cx.place(step.eval(cx)),
            StepNodeEval::Shared(shared) => cx.place(shared.eval(cx)),
        }
    }
}

#[doc(hidden)]
#[derive(Debug)]
pub struct StepEval<S: StepFn, E> {
    edges: E,
    runner: RunnerSlot<S>,
    counters: Arc<StepCounters>,
    /// The node's name, for spans.
    name: &'static str,
}

impl<S, E> Eval for StepEval<S, E>
where
    S: StepFn,
    E: EdgesEval<Inputs = S::Inputs>,
{
    type Output = S::Output;
    fn eval<'a>(
        &'a self,
        cx: &'a CallCx<'_>,
    ) -> impl Future<Output = Result<S::Output, PipelineError>> + Send + 'a {
        StepCall::<S, E, _>::new(
            self.edges.eval(cx),
            cx,
            &self.runner,
            &self.counters,
            self.name,
        )
    }
}

/// A step's input edges: a tuple of nodes that all read the same pipeline
/// input.
#[doc(hidden)]
pub trait EdgeList: Send + 'static {
    type Input: Send + 'static;
    type Inputs: Send + 'static;
    type Eval: EdgesEval<Inputs = Self::Inputs>;
    /// The edges' evaluators and their nodes' ids.
    fn lower(self, lowering: &mut Lowering<'_>) -> Result<(Self::Eval, Vec<NodeId>), DeployError>;
    fn describe(&self, graph: &mut GraphBuilder) -> Vec<NodeId>;
}

/// Evaluates a step's inputs (concurrently when there are several).
#[doc(hidden)]
pub trait EdgesEval: Send + Sync + 'static {
    type Inputs: Send + 'static;
    /// What [`eval`](Self::eval)'s future yields, made [`Inputs`](Self::Inputs)
    /// by [`inputs`](Self::inputs): one input's own output, so that a step
    /// of one input awaits it with no `map` level in between.
    type Ready: Send + 'static;
    fn eval<'a>(
        &'a self,
        cx: &'a CallCx<'_>,
    ) -> impl std::future::Future<Output = Result<Self::Ready, PipelineError>> + Send + 'a;
    fn inputs(ready: Self::Ready) -> Self::Inputs;
}

impl<A: Upstream> EdgeList for (A,) {
    type Input = A::Input;
    type Inputs = (A::Output,);
    type Eval = (A::Eval,);
    fn lower(self, lowering: &mut Lowering<'_>) -> Result<(Self::Eval, Vec<NodeId>), DeployError> {
        let eval = self.0.lower(lowering)?;
        Ok(((eval,), vec![lowering.last_id()?]))
    }
    fn describe(&self, graph: &mut GraphBuilder) -> Vec<NodeId> {
        vec![self.0.describe(graph)]
    }
}

impl<A: Eval> EdgesEval for (A,) {
    type Inputs = (A::Output,);
    type Ready = A::Output;
    fn eval<'a>(
        &'a self,
        cx: &'a CallCx<'_>,
    ) -> impl std::future::Future<Output = Result<A::Output, PipelineError>> + Send + 'a {
        self.0.eval(cx)
    }
    #[inline(always)]
    fn inputs(ready: A::Output) -> Self::Inputs {
        (ready,)
    }
}

macro_rules! edge_tuples {
    ($first:ident $($rest:ident)+) => {
        #[allow(non_snake_case)]
        impl<$first: Upstream, $($rest: Upstream<Input = $first::Input>),+> EdgeList for ($first, $($rest),+) {
            type Input = $first::Input;
            type Inputs = ($first::Output, $($rest::Output),+);
            type Eval = ($first::Eval, $($rest::Eval),+);
            fn lower(self, lowering: &mut Lowering<'_>) -> Result<(Self::Eval, Vec<NodeId>), DeployError> {
                let ($first, $($rest),+) = self;
                let mut ids = Vec::new();
                let $first = $first.lower(lowering)?;
                ids.push(lowering.last_id()?);
                $(
                    let $rest = $rest.lower(lowering)?;
                    ids.push(lowering.last_id()?);
                )+
                Ok((($first, $($rest),+), ids))
            }
            fn describe(&self, graph: &mut GraphBuilder) -> Vec<NodeId> {
                let ($first, $($rest),+) = self;
                vec![$first.describe(graph), $($rest.describe(graph)),+]
            }
        }

        #[allow(non_snake_case)]
        impl<$first: Eval, $($rest: Eval),+> EdgesEval for ($first, $($rest),+) {
            type Inputs = ($first::Output, $($rest::Output),+);
            type Ready = Self::Inputs;
            async fn eval(&self, cx: &CallCx<'_>) -> Result<Self::Inputs, PipelineError> {
                let ($first, $($rest),+) = self;
                futures::try_join!($first.eval(cx), $($rest.eval(cx)),+)
            }
            #[inline(always)]
            fn inputs(ready: Self::Ready) -> Self::Inputs {
                ready
            }
        }
    };
}

edge_tuples!(A B);
edge_tuples!(A B C);
edge_tuples!(A B C D);
edge_tuples!(A B C D E);
edge_tuples!(A B C D E F);
edge_tuples!(A B C D E F G);
edge_tuples!(A B C D E F G H);
