//! Stream nodes: [`StreamNode`] (a node producing an [`ItemStream`]) and
//! its combinators, [`MapEach`] (`.map_each(step)`: a plain step applied
//! to each item, order kept, a bounded number in flight) and [`Collect`]
//! (`.collect()`: the items gathered into one `Vec`).

use std::any::type_name;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};

use super::describe::{GraphBuilder, NodeId, NodeKind};
use super::lower::Lowering;
use super::Upstream;
use crate::error::{DeployError, PipelineError};
use crate::eval::{CallArena, CallCx, Eval};
use crate::step::ItemStream;

/// How many items `.map_each(step)` has in flight at once unless told
/// ([`MapEach::in_flight`]): enough to fill a default batch (32) of a
/// batched step downstream.
pub const DEFAULT_IN_FLIGHT: usize = 32;

/// A node that produces a stream of items: a stream step's node, or
/// `.map_each(..)` of one. Implemented for every node whose output is an
/// [`ItemStream<T>`](ItemStream) (see [`IsItemStream`]).
pub trait StreamNode: Upstream {
    /// The type of each item.
    type Item: Send + 'static;
    #[doc(hidden)]
    fn into_items(output: Self::Output) -> ItemStream<Self::Item>;
}

impl<U> StreamNode for U
where
    U: Upstream,
    U::Output: IsItemStream,
{
    type Item = <U::Output as IsItemStream>::Item;
    #[inline(always)]
    fn into_items(output: U::Output) -> ItemStream<Self::Item> {
        output.into_items()
    }
}

/// What a stream node's output is: an [`ItemStream<T>`](ItemStream).
/// Named so that using a plain node as a stream is one error, in these
/// words.
#[diagnostic::on_unimplemented(
    message = "this node produces `{Self}`, one value per call, not a stream of items (`ItemStream<_>`)",
    label = "not a stream node",
    note = "`.map_each(step)` and `.collect()` apply to nodes of stream steps (steps returning `ItemStream<T>`); pass a plain node straight to the step instead: `step(node)`"
)]
pub trait IsItemStream: Send + 'static {
    /// The type of each item.
    type Item: Send + 'static;
    #[doc(hidden)]
    fn into_items(self) -> ItemStream<Self::Item>;
}

impl<T: Send + 'static> IsItemStream for ItemStream<T> {
    type Item = T;
    #[inline(always)]
    fn into_items(self) -> ItemStream<T> {
        self
    }
}

/// Each item of a stream, as the node that `.map_each` hands its step:
/// the input of the graph applied to each item.
pub struct Item<T>(PhantomData<fn() -> T>);

impl<T> std::fmt::Debug for Item<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Item<{}>", type_name::<T>())
    }
}

impl<T: Send + 'static> Upstream for Item<T> {
    type Input = T;
    type Output = T;
    type Eval = ItemEval<T>;

    fn lower(self, lowering: &mut Lowering<'_>) -> Result<Self::Eval, DeployError> {
        let source = lowering.each_source()?;
        lowering.push(
            "each item",
            NodeKind::Each,
            type_name::<T>(),
            vec![(source, None)],
        );
        Ok(ItemEval(PhantomData))
    }

    fn describe(&self, graph: &mut GraphBuilder) -> NodeId {
        let inputs = graph
            .each_source()
            .map(|s| vec![(s, None)])
            .unwrap_or_default();
        graph.push("each item", NodeKind::Each, type_name::<T>(), inputs)
    }
}

impl<T: Send + 'static> super::Produces<T> for Item<T> {
    #[inline(always)]
    fn cast(output: T) -> T {
        output
    }
}

/// Reads the item an item's evaluation was given.
#[doc(hidden)]
#[derive(Debug)]
pub struct ItemEval<T>(PhantomData<fn() -> T>);

impl<T: Send + 'static> Eval for ItemEval<T> {
    type Output = T;
    async fn eval(&self, cx: &CallCx<'_>) -> Result<T, PipelineError> {
        cx.take_input::<T>()
    }
}

/// `stream.map_each(step)`: `step`'s graph applied to each item of the
/// stream, in order, at most [`in_flight`](MapEach::in_flight) items at
/// once (so an actor or batched step is kept busy: items of one stream
/// may be batched together).
#[derive(Debug)]
pub struct MapEach<U, N> {
    up: U,
    each: N,
    in_flight: usize,
}

impl<U, N> MapEach<U, N> {
    pub(crate) fn new(up: U, each: N) -> Self {
        MapEach {
            up,
            each,
            in_flight: DEFAULT_IN_FLIGHT,
        }
    }

    /// Sets how many items are in flight at once (at least 1; default
    /// [`DEFAULT_IN_FLIGHT`]). Their answers still come out in order.
    pub fn in_flight(mut self, n: usize) -> Self {
        self.in_flight = n.max(1);
        self
    }
}

impl<U, N> Upstream for MapEach<U, N>
where
    U: StreamNode,
    N: Upstream<Input = U::Item>,
{
    type Input = U::Input;
    type Output = ItemStream<N::Output>;
    type Eval = MapEachEval<U, N::Eval>;

    fn lower(self, lowering: &mut Lowering<'_>) -> Result<Self::Eval, DeployError> {
        let up = self.up.lower(lowering)?;
        let source = lowering.last_id()?;
        lowering.enter_each(source);
        let each = self.each.lower(lowering);
        lowering.leave_each();
        let each = each?;
        Ok(MapEachEval {
            up,
            each: Arc::new(each),
            slots: lowering.slots(),
            in_flight: self.in_flight,
        })
    }

    fn describe(&self, graph: &mut GraphBuilder) -> NodeId {
        let source = self.up.describe(graph);
        graph.enter_each(source);
        let id = self.each.describe(graph);
        graph.leave_each();
        id
    }
}

impl<U, N> super::Produces<ItemStream<N::Output>> for MapEach<U, N>
where
    U: StreamNode,
    N: Upstream<Input = U::Item>,
{
    #[inline(always)]
    fn cast(output: ItemStream<N::Output>) -> ItemStream<N::Output> {
        output
    }
}

#[doc(hidden)]
pub struct MapEachEval<U: StreamNode, E> {
    up: U::Eval,
    each: Arc<E>,
    /// The pipeline's slots so far (the item graph's shared nodes among
    /// them): each item gets its own.
    slots: usize,
    in_flight: usize,
}

impl<U: StreamNode, E> std::fmt::Debug for MapEachEval<U, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapEachEval")
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl<U, E> Eval for MapEachEval<U, E>
where
    U: StreamNode,
    E: Eval,
{
    type Output = ItemStream<E::Output>;

    async fn eval(&self, cx: &CallCx<'_>) -> Result<Self::Output, PipelineError> {
        let items = U::into_items(self.up.eval(cx).await?);
        let (each, slots, meta) = (Arc::clone(&self.each), self.slots, cx.meta().clone());
        let answers = items
            .map(move |item| {
                let (each, meta) = (Arc::clone(&each), meta.clone());
                async move {
                    let input = Mutex::new(Some(item?));
                    let arena = CallArena::new();
                    let cx = CallCx::new(&input, slots, meta, &arena);
                    each.eval(&cx).await
                }
            })
            .buffered(self.in_flight);
        Ok(ItemStream::from_results(answers))
    }
}

/// `stream.collect()`: the stream's items gathered into one `Vec` (the
/// first error fails the call instead).
#[derive(Debug)]
pub struct Collect<U>(U);

impl<U: StreamNode> Upstream for Collect<U> {
    type Input = U::Input;
    type Output = Vec<U::Item>;
    type Eval = CollectEval<U>;

    fn lower(self, lowering: &mut Lowering<'_>) -> Result<Self::Eval, DeployError> {
        let up = self.0.lower(lowering)?;
        let source = lowering.last_id()?;
        lowering.push(
            "collect",
            NodeKind::Collect,
            type_name::<Vec<U::Item>>(),
            vec![(source, None)],
        );
        Ok(CollectEval(up))
    }

    fn describe(&self, graph: &mut GraphBuilder) -> NodeId {
        let source = self.0.describe(graph);
        graph.push(
            "collect",
            NodeKind::Collect,
            type_name::<Vec<U::Item>>(),
            vec![(source, None)],
        )
    }
}

impl<U: StreamNode> super::Produces<Vec<U::Item>> for Collect<U> {
    #[inline(always)]
    fn cast(output: Vec<U::Item>) -> Vec<U::Item> {
        output
    }
}

impl<U: StreamNode> Collect<U> {
    pub(crate) fn new(up: U) -> Self {
        Collect(up)
    }
}

#[doc(hidden)]
pub struct CollectEval<U: StreamNode>(U::Eval);

impl<U: StreamNode> std::fmt::Debug for CollectEval<U> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CollectEval")
    }
}

impl<U: StreamNode> Eval for CollectEval<U> {
    type Output = Vec<U::Item>;

    async fn eval(&self, cx: &CallCx<'_>) -> Result<Vec<U::Item>, PipelineError> {
        U::into_items(self.0.eval(cx).await?).try_collect().await
    }
}

impl<T> Item<T> {
    pub(crate) fn new() -> Self {
        Item(PhantomData)
    }
}
