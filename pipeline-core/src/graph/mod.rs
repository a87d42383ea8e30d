//! The typed graph: [`Upstream`] (anything a step can take as input),
//! [`Input`], fan-out with [`Shared`], gather (`Vec`/arrays of nodes), type
//! erasure with [`Node`], and per-request routing with [`route`].
//!
//! Edges are checked by rustc through the [`Produces`] bound that every
//! generated step constructor puts on its arguments. This module builds and
//! describes graphs; it never schedules work (that is `runtime`).

use std::any::type_name;
use std::fmt::Debug;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::{DeployError, PipelineError};
use crate::runtime::{CallCx, DeployOptions, DynEval, Eval, Lowering, Pipeline};

mod describe;
mod route;

pub use describe::{Graph, GraphBuilder, GraphNode, NodeId, NodeKind};
pub use route::{route, Route, RouteEval, RouteStart};

/// A node of a pipeline graph: the pipeline's [`Input`], a call of a
/// `#[step]`, a [`Shared`] node, a `Vec` or array of nodes (gathered into a
/// `Vec`), a [`Node`] or a [`route`].
///
/// Every node knows the type it produces ([`Upstream::Output`]) and the type
/// of the pipeline input it reads ([`Upstream::Input`]), so a mismatched edge
/// is a compile error.
///
/// ```
/// use pipeline_core::prelude::*;
///
/// #[step]
/// fn add_one(x: i64) -> i64 { x + 1 }
/// #[step]
/// fn square(x: i64) -> i64 { x * x }
///
/// let p = square(add_one(Input::<i64>::new())).deploy()?;
/// assert_eq!(p.call(1)?, 4);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a pipeline node",
    label = "not a node",
    note = "steps take nodes as inputs: `Input::<T>::new()`, a call of a `#[step]`, `.shared()`, a `Vec` or array of nodes, or `route(..)`"
)]
pub trait Upstream: Sized + Send + 'static {
    /// The type of the pipeline input this node reads.
    type Input: Send + 'static;
    /// The type this node produces.
    type Output: Send + 'static;
    #[doc(hidden)]
    type Eval: Eval<Output = Self::Output>;

    #[doc(hidden)]
    fn lower(self, lowering: &mut Lowering<'_>) -> Result<Self::Eval, DeployError>;

    #[doc(hidden)]
    fn describe(&self, graph: &mut GraphBuilder) -> NodeId;

    /// Makes this node a fan-out point: clone the returned handle to feed
    /// several steps; the node runs once per call and each consumer gets a
    /// clone of its output.
    ///
    /// ```
    /// use pipeline_core::prelude::*;
    ///
    /// #[step]
    /// fn add(a: i64, b: i64) -> i64 { a + b }
    ///
    /// let x = Input::<i64>::new().shared();
    /// let p = add(x.clone(), x).deploy()?;
    /// assert_eq!(p.call(21)?, 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn shared(self) -> Shared<Self>
    where
        Self::Output: Clone + Sync,
    {
        Shared {
            node: Arc::new(Mutex::new(Some(self))),
        }
    }

    /// Feeds this node into `step`, as Ray's `.bind().then()`:
    /// `a.then(b)` is `b(a)`, and reads left to right.
    ///
    /// ```
    /// use pipeline_core::prelude::*;
    ///
    /// #[step]
    /// fn add_one(x: i64) -> i64 { x + 1 }
    /// #[step]
    /// fn square(x: i64) -> i64 { x * x }
    ///
    /// let p = Input::<i64>::new().then(add_one).then(square).deploy()?;
    /// assert_eq!(p.call(1)?, 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn then<F, N>(self, step: F) -> N
    where
        F: FnOnce(Self) -> N,
    {
        step(self)
    }

    /// Erases this node's type, e.g. to put different steps in one `Vec`.
    ///
    /// ```
    /// use pipeline_core::prelude::*;
    ///
    /// #[step]
    /// fn add_one(x: i64) -> i64 { x + 1 }
    /// #[step]
    /// fn double(x: i64) -> i64 { x * 2 }
    /// #[step]
    /// fn sum(xs: Vec<i64>) -> i64 { xs.iter().sum() }
    ///
    /// let x = Input::<i64>::new().shared();
    /// let p = sum(vec![add_one(x.clone()).boxed(), double(x).boxed()]).deploy()?;
    /// assert_eq!(p.call(10)?, 31);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn boxed(self) -> Node<Self::Input, Self::Output> {
        Node {
            inner: Box::new(self),
        }
    }

    /// The graph this node ends, for printing before it is deployed.
    fn graph(&self) -> Graph {
        let mut builder = GraphBuilder::default();
        self.describe(&mut builder);
        builder.finish()
    }

    /// Deploys the graph with each step's own attributes.
    ///
    /// Fails if a model constructor fails, or if the graph does not read
    /// exactly one [`Input`].
    fn deploy(self) -> Result<Pipeline<Self::Input, Self::Output>, DeployError> {
        Pipeline::deploy(self, DeployOptions::default())
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
        Pipeline::deploy(self, options)
    }
}

/// The edge check: `N: Produces<T>` holds when node `N`'s output is `T`.
///
/// Generated step constructors require it of each argument, so a mismatched
/// edge is reported at the argument, once.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not produce `{T}`",
    label = "this input must produce `{T}`",
    note = "a step's input must be a node whose output type is exactly the parameter's type; convert with a small `#[step]` in between if needed"
)]
pub trait Produces<T>: Upstream {
    #[doc(hidden)]
    fn cast(output: Self::Output) -> T;
}

#[diagnostic::do_not_recommend]
impl<U: Upstream> Produces<U::Output> for U {
    #[inline(always)]
    fn cast(output: U::Output) -> U::Output {
        output
    }
}

/// A checked edge into a step: the upstream node and the proof (a cast
/// function, the identity) that it produces `T`. Built by the generated
/// constructors; holding the proof keeps every later bound free of `T`, so a
/// wrong edge gives exactly one error.
#[doc(hidden)]
pub struct Edge<A: Upstream, T> {
    up: A,
    cast: fn(A::Output) -> T,
}

impl<A: Upstream, T> Edge<A, T> {
    /// Checks `A` against `T`.
    #[inline]
    pub fn new(up: A) -> Self
    where
        A: Produces<T>,
    {
        Edge {
            up,
            cast: <A as Produces<T>>::cast,
        }
    }
}

impl<A: Upstream, T> Debug for Edge<A, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Edge<{}, {}>", type_name::<A>(), type_name::<T>())
    }
}

impl<A: Upstream, T: Send + 'static> Upstream for Edge<A, T> {
    type Input = A::Input;
    type Output = T;
    type Eval = CastEval<A::Eval, T>;

    fn lower(self, lowering: &mut Lowering<'_>) -> Result<Self::Eval, DeployError> {
        Ok(CastEval {
            inner: self.up.lower(lowering)?,
            cast: self.cast,
        })
    }

    fn describe(&self, graph: &mut GraphBuilder) -> NodeId {
        self.up.describe(graph)
    }
}

#[doc(hidden)]
#[derive(Debug)]
pub struct CastEval<E: Eval, T> {
    inner: E,
    cast: fn(E::Output) -> T,
}

impl<E: Eval, T: Send + 'static> Eval for CastEval<E, T> {
    type Output = T;
    async fn eval(&self, cx: &CallCx<'_>) -> Result<T, PipelineError> {
        self.inner.eval(cx).await.map(self.cast)
    }
}

/// The pipeline's input: the value passed to [`Pipeline::call`].
///
/// A graph reads one `Input`. To feed it to several steps, make it
/// [`shared`](Upstream::shared) and clone the handle.
///
/// ```
/// use pipeline_core::prelude::*;
///
/// let echo = Input::<i64>::new().deploy()?;
/// assert_eq!(echo.call(42)?, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Input<T>(PhantomData<fn() -> T>);

impl<T> Input<T> {
    /// The input node of a pipeline that takes a `T`.
    pub fn new() -> Self {
        Input(PhantomData)
    }
}

impl<T> Default for Input<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Debug for Input<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Input<{}>", type_name::<T>())
    }
}

impl<T: Send + 'static> Upstream for Input<T> {
    type Input = T;
    type Output = T;
    type Eval = InputEval<T>;

    fn lower(self, lowering: &mut Lowering<'_>) -> Result<Self::Eval, DeployError> {
        lowering.count_input();
        Ok(InputEval(PhantomData))
    }

    fn describe(&self, graph: &mut GraphBuilder) -> NodeId {
        graph.push("input", NodeKind::Input, type_name::<T>(), Vec::new())
    }
}

#[doc(hidden)]
#[derive(Debug)]
pub struct InputEval<T>(PhantomData<fn() -> T>);

impl<T: Send + 'static> Eval for InputEval<T> {
    type Output = T;
    async fn eval(&self, cx: &CallCx<'_>) -> Result<T, PipelineError> {
        cx.take_input::<T>()
    }
}

/// A fan-out point made by [`Upstream::shared`]: cloning it gives more
/// handles to the same node, which runs once per call.
pub struct Shared<A: Upstream> {
    node: Arc<Mutex<Option<A>>>,
}

impl<A: Upstream> Shared<A> {
    fn key(&self) -> usize {
        Arc::as_ptr(&self.node) as *const () as usize
    }
}

impl<A: Upstream> Clone for Shared<A> {
    fn clone(&self) -> Self {
        Shared {
            node: Arc::clone(&self.node),
        }
    }
}

impl<A: Upstream> Debug for Shared<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shared<{}>", type_name::<A>())
    }
}

impl<A> Upstream for Shared<A>
where
    A: Upstream,
    A::Output: Clone + Sync,
{
    type Input = A::Input;
    type Output = A::Output;
    type Eval = SharedEval<A::Eval>;

    fn lower(self, lowering: &mut Lowering<'_>) -> Result<Self::Eval, DeployError> {
        let key = self.key();
        if let Some(eval) = lowering.shared_get::<SharedEval<A::Eval>>(key) {
            return Ok(eval);
        }
        let node = self
            .node
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or(DeployError::Internal("shared node lowered twice"))?;
        let inner = Arc::new(node.lower(lowering)?);
        let eval = SharedEval {
            inner,
            slot: lowering.new_slot(),
        };
        lowering.shared_put(key, eval.clone());
        Ok(eval)
    }

    fn describe(&self, graph: &mut GraphBuilder) -> NodeId {
        let node = Arc::clone(&self.node);
        graph.shared(self.key(), move |graph| {
            match node.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
                Some(node) => node.describe(graph),
                None => graph.push(
                    "(deployed)",
                    NodeKind::Gather,
                    type_name::<A::Output>(),
                    Vec::new(),
                ),
            }
        })
    }
}

#[doc(hidden)]
#[derive(Debug)]
pub struct SharedEval<E> {
    inner: Arc<E>,
    slot: usize,
}

impl<E> Clone for SharedEval<E> {
    fn clone(&self) -> Self {
        SharedEval {
            inner: Arc::clone(&self.inner),
            slot: self.slot,
        }
    }
}

impl<E> Eval for SharedEval<E>
where
    E: Eval,
    E::Output: Clone + Sync,
{
    type Output = E::Output;
    async fn eval(&self, cx: &CallCx<'_>) -> Result<E::Output, PipelineError> {
        let value = cx
            .slot(self.slot)?
            .get_or_init(|| async {
                self.inner
                    .eval(cx)
                    .await
                    .map(|v| Box::new(v) as Box<dyn std::any::Any + Send + Sync>)
            })
            .await;
        match value {
            Ok(v) => v
                .downcast_ref::<E::Output>()
                .cloned()
                .ok_or(PipelineError::Internal("shared slot holds another type")),
            Err(e) => Err(e.clone()),
        }
    }
}

/// Gather: a `Vec` of nodes is a node producing a `Vec` of their outputs,
/// computed concurrently, in order.
impl<U: Upstream> Upstream for Vec<U> {
    type Input = U::Input;
    type Output = Vec<U::Output>;
    type Eval = GatherEval<U::Eval>;

    fn lower(self, lowering: &mut Lowering<'_>) -> Result<Self::Eval, DeployError> {
        let items = self
            .into_iter()
            .map(|u| u.lower(lowering))
            .collect::<Result<_, _>>()?;
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

/// A node with its type erased to its input and output types (see
/// [`Upstream::boxed`]).
pub struct Node<I, O> {
    inner: Box<dyn DynUpstream<I, O>>,
}

impl<I, O> Debug for Node<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node<{}, {}>", type_name::<I>(), type_name::<O>())
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
        Ok(Box::new((*self).lower(lowering)?))
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

    fn boxed(self) -> Node<I, O> {
        self
    }
}
