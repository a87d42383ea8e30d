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
    fn shared(self) -> Shared<Self::Input, Self::Output>
    where
        Self::Output: Clone,
    {
        Shared {
            node: Arc::new(Mutex::new(Some(self.boxed()))),
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
    ///
    /// `step` is a function (a step's name, or a closure that captures
    /// nothing): taking a function pointer lets rustc report a mismatched
    /// step once, at `step`. For a model step with constructor arguments,
    /// write `Model::bind(args, node)`.
    fn then<N>(self, step: fn(Self) -> N) -> N {
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
/// ```
/// use pipeline_core::prelude::*;
/// use pipeline_core::Produces;
///
/// #[step]
/// fn len(s: String) -> usize { s.len() }
///
/// fn wants_usize<N: Produces<usize>>(_: &N) {}
/// wants_usize(&len(Input::<String>::new()));
/// ```
///
/// Generated step constructors require it of each argument, so a mismatched
/// edge is reported at the argument, once. It is implemented for each node
/// type with its concrete output (never through a projection), so rustc can
/// name the problem: "`shout<String>` is not a node producing `i64`".
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a node producing `{T}`",
    label = "this input must produce `{T}`",
    note = "a step node's type is `step_name<PipelineInput>`; an input must be a node whose output type is exactly the parameter's type (add a small `#[step]` in between to convert)"
)]
pub trait Produces<T>: Upstream {
    #[doc(hidden)]
    fn cast(output: Self::Output) -> T;
}

impl<T: Send + 'static> Produces<T> for Input<T> {
    #[inline(always)]
    fn cast(output: T) -> T {
        output
    }
}

impl<I: Send + 'static, O: Send + 'static> Produces<O> for Node<I, O> {
    #[inline(always)]
    fn cast(output: O) -> O {
        output
    }
}

impl<I: Send + 'static, O: Clone + Send + 'static> Produces<O> for Shared<I, O> {
    #[inline(always)]
    fn cast(output: O) -> O {
        output
    }
}

#[diagnostic::do_not_recommend]
impl<U: Produces<T>, T: Send + 'static> Produces<Vec<T>> for Vec<U> {
    fn cast(output: Vec<U::Output>) -> Vec<T> {
        output.into_iter().map(U::cast).collect()
    }
}

#[diagnostic::do_not_recommend]
impl<U: Produces<T>, T: Send + 'static, const N: usize> Produces<Vec<T>> for [U; N] {
    fn cast(output: Vec<U::Output>) -> Vec<T> {
        output.into_iter().map(U::cast).collect()
    }
}

/// Checks an edge and erases the upstream node's type: the one place where
/// generated constructors turn an argument into a step input.
///
/// Erasing here keeps node and evaluator types flat however long the graph
/// (typed nesting overflows rustc's limits near 20 steps); the cost is one
/// boxed future per hop.
#[doc(hidden)]
#[inline]
pub fn edge<T: Send + 'static, A: Produces<T>>(up: A) -> Node<A::Input, T> {
    Cast {
        up,
        cast: <A as Produces<T>>::cast,
    }
    .boxed()
}

/// Applies the (identity) cast that `Produces<T>` proved.
struct Cast<A: Upstream, T> {
    up: A,
    cast: fn(A::Output) -> T,
}

impl<A: Upstream, T: Send + 'static> Upstream for Cast<A, T> {
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
///
/// ```
/// use pipeline_core::prelude::*;
///
/// #[step]
/// fn embed(s: String) -> Vec<f32> { vec![s.len() as f32] }
/// #[step]
/// fn score(a: Vec<f32>, b: Vec<f32>) -> f32 { a[0] * b[0] }
///
/// let e = embed(Input::<String>::new()).shared(); // runs once per call
/// let p = score(e.clone(), e).deploy()?;
/// assert_eq!(p.call("abc".into())?, 9.0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Shared<I, O> {
    node: Arc<Mutex<Option<Node<I, O>>>>,
}

impl<I, O> Shared<I, O> {
    fn key(&self) -> usize {
        Arc::as_ptr(&self.node) as *const () as usize
    }
}

impl<I, O> Clone for Shared<I, O> {
    fn clone(&self) -> Self {
        Shared {
            node: Arc::clone(&self.node),
        }
    }
}

impl<I, O> Debug for Shared<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shared<{}, {}>", type_name::<I>(), type_name::<O>())
    }
}

impl<I, O> Upstream for Shared<I, O>
where
    I: Send + 'static,
    O: Clone + Send + 'static,
{
    type Input = I;
    type Output = O;
    type Eval = SharedEval<O>;

    fn lower(self, lowering: &mut Lowering<'_>) -> Result<Self::Eval, DeployError> {
        let key = self.key();
        if let Some(eval) = lowering.shared_get::<SharedEval<O>>(key) {
            return Ok(eval);
        }
        let node = self
            .node
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or(DeployError::Internal("shared node lowered twice"))?;
        let eval = SharedEval {
            inner: Arc::from(node.lower(lowering)?),
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
                None => graph.push("(deployed)", NodeKind::Gather, type_name::<O>(), Vec::new()),
            }
        })
    }
}

/// A shared node's evaluator. The upstream's type is erased here: it runs
/// once per call, so the one boxed future costs nothing noticeable, and it
/// keeps each consumer's type from repeating the whole upstream graph
/// (which would make rustc's type nesting grow with the fan-out).
#[doc(hidden)]
pub struct SharedEval<O> {
    inner: Arc<dyn DynEval<O>>,
    slot: usize,
}

impl<O> Debug for SharedEval<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedEval<{}>(slot {})", type_name::<O>(), self.slot)
    }
}

impl<O> Clone for SharedEval<O> {
    fn clone(&self) -> Self {
        SharedEval {
            inner: Arc::clone(&self.inner),
            slot: self.slot,
        }
    }
}

impl<O> Eval for SharedEval<O>
where
    O: Clone + Send + 'static,
{
    type Output = O;
    async fn eval(&self, cx: &CallCx<'_>) -> Result<O, PipelineError> {
        // The value sits behind a mutex so that outputs that are `Send` but
        // not `Sync` (a `tch::Tensor`) can fan out too; each consumer takes
        // the lock once, only to clone.
        let value = cx
            .slot(self.slot)?
            .get_or_init(|| async {
                self.inner
                    .eval_boxed(cx)
                    .await
                    .map(|v| Box::new(Mutex::new(v)) as Box<dyn std::any::Any + Send + Sync>)
            })
            .await;
        match value {
            Ok(v) => v
                .downcast_ref::<Mutex<O>>()
                .map(|m| m.lock().unwrap_or_else(PoisonError::into_inner).clone())
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
