//! What a node is: [`Upstream`] (anything a step can take as input) and
//! the edge check [`Produces`], which every generated step constructor puts
//! on its arguments, so rustc checks each edge.

use super::describe::{Graph, GraphBuilder, NodeId};
use super::lower::Lowering;
use super::{Input, Node, Shared};
use crate::error::{DeployError, PipelineError};
use crate::eval::{CallCx, DynEval, Eval};
use std::marker::PhantomData;

/// A node of a pipeline graph: the pipeline's [`Input`], a call of a
/// `#[step]`, a [`Shared`] node, a `Vec` or array of nodes (gathered into a
/// `Vec`), a [`Node`] or a [`route`](super::route).
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

    /// Lowers this node for deployment: records it in the graph being
    /// deployed (so `lowering` knows its id afterwards) and returns its
    /// evaluator. The one traversal that names step nodes, describes the
    /// deployed graph and plans what gets started.
    #[doc(hidden)]
    fn lower(self, lowering: &mut Lowering<'_>) -> Result<Self::Eval, DeployError>;

    /// Describes this node without consuming it, to print a graph before
    /// it is deployed ([`graph`](Upstream::graph)).
    #[doc(hidden)]
    fn describe(&self, graph: &mut GraphBuilder) -> NodeId;

    /// [`lower`](Upstream::lower), its evaluator's type erased (for a
    /// [`Node`]): one that can do without a level of its own overrides it.
    #[doc(hidden)]
    fn lower_erased(
        self,
        lowering: &mut Lowering<'_>,
    ) -> Result<Box<dyn DynEval<Self::Output>>, DeployError> {
        Ok(Box::new(self.lower(lowering)?))
    }

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
        Self::Output: SharedOutput,
    {
        Shared::new(self.boxed())
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
        Node::new(self)
    }

    /// Not a method to use: a node describes a step and runs nothing. It
    /// is here so that `node.call(x)` is one error that says to deploy the
    /// graph first (`node.deploy()?.call(x)`).
    #[doc(hidden)]
    fn call<X>(&self, _input: X) -> Result<super::Unknown, super::Unknown>
    where
        Self: DeployFirst,
    {
        unreachable!("`DeployFirst` has no implementations")
    }

    /// Applies `step` to each item of this stream node: `step` gets a node
    /// standing for one item and returns the graph's last node (a step's
    /// name, or a closure binding a model: `|item| Model::bind(args,
    /// item)`). The answers come out in order, as a stream; at most
    /// [`DEFAULT_IN_FLIGHT`](crate::DEFAULT_IN_FLIGHT) items are in
    /// flight at once (see [`MapEach::in_flight`](super::MapEach::in_flight)).
    ///
    /// ```
    /// use pipeline_core::prelude::*;
    ///
    /// #[step]
    /// fn count_to(n: u32) -> ItemStream<u32> { ItemStream::iter(1..=n) }
    /// #[step(mode = "actors", replicas = 2)]
    /// fn square(x: u32) -> u32 { x * x }
    ///
    /// let p = count_to(Input::<u32>::new()).map_each(square).deploy()?;
    /// let squares: Vec<u32> = p.call_iter(4).collect::<Result<_, _>>()?;
    /// assert_eq!(squares, [1, 4, 9, 16]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn map_each<N>(
        self,
        step: fn(super::Item<<Self as super::StreamNode>::Item>) -> N,
    ) -> super::MapEach<Self, N>
    where
        Self: super::StreamNode,
        N: Upstream<Input = <Self as super::StreamNode>::Item>,
    {
        super::MapEach::new(self, step(super::Item::new()))
    }

    /// [`map_each`](Upstream::map_each) with a closure that captures
    /// something, e.g. a model step's constructor arguments:
    /// `.map_each_with(move |item| Embedder::bind(path.clone(), item))`.
    /// (`map_each` takes a function, so that a step whose input does not
    /// fit the items is one error, at the step.)
    ///
    /// ```
    /// use pipeline_core::prelude::*;
    ///
    /// #[step]
    /// fn count_to(n: u32) -> ItemStream<u32> { ItemStream::iter(1..=n) }
    ///
    /// struct Scale { by: u32 }
    /// #[step(mode = "actors")]
    /// impl Scale {
    ///     fn new(by: u32) -> Self { Scale { by } }
    ///     fn call(&self, x: u32) -> u32 { x * self.by }
    /// }
    ///
    /// let by = 10;
    /// let p = count_to(Input::<u32>::new()).map_each_with(move |item| Scale::bind(by, item)).collect().deploy()?;
    /// assert_eq!(p.call(3)?, [10, 20, 30]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn map_each_with<N, F>(self, step: F) -> super::MapEach<Self, N>
    where
        Self: super::StreamNode,
        F: FnOnce(super::Item<<Self as super::StreamNode>::Item>) -> N,
        N: Upstream<Input = <Self as super::StreamNode>::Item>,
    {
        super::MapEach::new(self, step(super::Item::new()))
    }

    /// Gathers this stream node's items into one `Vec` (a plain node; the
    /// first error fails the call).
    ///
    /// ```
    /// use pipeline_core::prelude::*;
    ///
    /// #[step]
    /// fn words(s: String) -> ItemStream<String> {
    ///     let words: Vec<String> = s.split_whitespace().map(String::from).collect();
    ///     ItemStream::iter(words)
    /// }
    ///
    /// let p = words(Input::<String>::new()).collect().deploy()?;
    /// assert_eq!(p.call("a b".into())?, ["a", "b"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn collect(self) -> super::Collect<Self>
    where
        Self: super::StreamNode,
    {
        super::Collect::new(self)
    }

    /// The graph this node ends, for printing before it is deployed.
    fn graph(&self) -> Graph {
        let mut builder = GraphBuilder::default();
        self.describe(&mut builder);
        builder.finish()
    }
}

/// Never implemented: see [`Upstream::call`].
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "a node runs nothing by itself: deploy its graph first, then call the pipeline",
    label = "`{Self}` is a node of the graph",
    note = "write `let p = node.deploy()?; p.call(input)` (or `deploy_with(DeployOptions::local())` in tests); `step::call(..)` runs a step's body directly"
)]
pub trait DeployFirst {}

/// What [`Upstream::shared`] needs of a node's output: each consumer gets
/// a clone of it. Implemented for every `Clone` type; named so that a
/// missing `Clone` is one error at `.shared()`, in these words.
#[diagnostic::on_unimplemented(
    message = "`.shared()` gives each consumer a clone of the node's output, but `{Self}` is not `Clone`",
    label = "this node's output is not `Clone`",
    note = "derive or implement `Clone` for `{Self}`, or make the step return an `Arc` of it"
)]
pub trait SharedOutput: Clone {}

#[diagnostic::do_not_recommend]
impl<T: Clone> SharedOutput for T {}

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
    note = "a step node's type is `step_name<PipelineInput>`; an input must be a node whose output type is exactly the parameter's type (add a small `#[step]` in between to convert)",
    note = "for a model step, `Model::bind` takes the constructor arguments first, then the input nodes",
    note = "a stream step's node produces `ItemStream<T>`, a stream of items: apply a step to each item with `.map_each(step)`, or gather them into a `Vec<T>` with `.collect()`"
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

impl<I: Send + 'static, O: Send + 'static> Produces<O> for Shared<I, O> {
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

/// The checked input edges of a function step's node on a pipeline reading
/// `I`: implemented by `#[step]` on the step's marker type, so that the
/// node type (which lives in a module of its own, see the macro's docs)
/// names the step's input types without naming them itself.
#[doc(hidden)]
pub trait StepEdges<I> {
    /// `(Node<I, T0>, Node<I, T1>, ..)`.
    type Edges;
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
    Cast::<A, T> {
        up,
        _to: PhantomData,
    }
    .boxed()
}

/// Applies the (identity) cast that `Produces<T>` proved: statically, so
/// that it compiles to nothing on the hop's path.
struct Cast<A, T> {
    up: A,
    _to: PhantomData<fn() -> T>,
}

impl<A: Produces<T>, T: Send + 'static> Upstream for Cast<A, T> {
    type Input = A::Input;
    type Output = T;
    type Eval = CastEval<A, T>;

    fn lower(self, lowering: &mut Lowering<'_>) -> Result<Self::Eval, DeployError> {
        // The cast is no node of its own: the upstream's id stays the last.
        Ok(CastEval {
            inner: self.up.lower(lowering)?,
            _to: PhantomData,
        })
    }

    fn describe(&self, graph: &mut GraphBuilder) -> NodeId {
        self.up.describe(graph)
    }

    /// Where the upstream already produces `T` (the usual edge), the cast
    /// is the identity (every `Produces<T>` for its own output type is)
    /// and the upstream's evaluator is this edge's: no `map` level on the
    /// hop's path, polled each time the call's future is.
    fn lower_erased(self, lowering: &mut Lowering<'_>) -> Result<Box<dyn DynEval<T>>, DeployError> {
        use std::any::{Any, TypeId};
        if TypeId::of::<A::Output>() != TypeId::of::<T>() {
            return Ok(Box::new(self.lower(lowering)?));
        }
        let same: Box<dyn Any> = Box::new(self.up.lower_erased(lowering)?);
        match same.downcast::<Box<dyn DynEval<T>>>() {
            Ok(eval) => Ok(*eval),
            Err(_) => Err(DeployError::Internal(
                "an edge's types compared equal and did not downcast",
            )),
        }
    }
}

#[doc(hidden)]
pub struct CastEval<A: Upstream, T> {
    inner: A::Eval,
    _to: PhantomData<fn() -> T>,
}

impl<A: Upstream, T> std::fmt::Debug for CastEval<A, T>
where
    A::Eval: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CastEval")
            .field("inner", &self.inner)
            .finish()
    }
}

impl<A: Produces<T>, T: Send + 'static> Eval for CastEval<A, T> {
    type Output = T;
    // A plain `map`, not an `async fn`: no state machine of its own to go
    // through each time the call's future is polled.
    fn eval<'a>(
        &'a self,
        cx: &'a CallCx<'_>,
    ) -> impl std::future::Future<Output = Result<T, PipelineError>> + Send + 'a {
        futures::FutureExt::map(self.inner.eval(cx), |r| r.map(A::cast))
    }
}
