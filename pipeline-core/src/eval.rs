//! The runnable form of a graph: every node lowers to an [`Eval`], a typed
//! value that computes its output for one call from a [`CallCx`]. Below the
//! runtime and the graph, which both build on it.

use std::any::Any;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use crate::error::PipelineError;

mod arena;
pub(crate) use arena::CallArena;
pub use arena::CxFuture;

/// A shared node's value for one call, computed once (success or failure).
pub(crate) type SlotValue = Result<Box<dyn Any + Send + Sync>, PipelineError>;

/// Per-call state: the call's input and one slot per shared node.
#[derive(Debug)]
pub struct CallCx<'c> {
    /// Points at a `Mutex<Option<In>>` owned by the call.
    input: &'c (dyn Any + Send + Sync),
    slots: Box<[OnceCell<SlotValue>]>,
    meta: CallMeta,
    /// Where the call's type-erased futures are placed.
    arena: &'c CallArena,
}

/// What a call carries beyond its input, for runners that pass it on (a
/// remote step sends both to its worker in headers).
#[derive(Debug, Clone, Default)]
#[cfg_attr(not(feature = "remote"), allow(dead_code))]
pub(crate) struct CallMeta {
    /// When the caller gives up.
    pub(crate) deadline: Option<std::time::Instant>,
    /// The request's id (the HTTP ingress's `x-request-id`).
    pub(crate) request_id: Option<Arc<str>>,
}

impl<'c> CallCx<'c> {
    pub(crate) fn new<In: Send + 'static>(
        input: &'c Mutex<Option<In>>,
        slots: usize,
        meta: CallMeta,
        arena: &'c CallArena,
    ) -> Self {
        CallCx {
            input,
            slots: (0..slots).map(|_| OnceCell::new()).collect(),
            meta,
            arena,
        }
    }

    /// `future`, type-erased, in the call's own memory.
    pub(crate) fn place<'a, F: Future + Send + 'a>(&'a self, future: F) -> CxFuture<'a, F::Output> {
        self.arena.place(future)
    }

    /// The call's deadline and request id.
    pub(crate) fn meta(&self) -> &CallMeta {
        &self.meta
    }

    /// Where the call's futures are placed (for a runner's).
    pub(crate) fn arena(&self) -> &'c CallArena {
        self.arena
    }

    pub(crate) fn take_input<T: 'static>(&self) -> Result<T, PipelineError> {
        let slot = self
            .input
            .downcast_ref::<Mutex<Option<T>>>()
            .ok_or_else(|| PipelineError::Internal("input type differs from the graph's"))?;
        slot.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .ok_or_else(|| PipelineError::Internal("input read twice"))
    }

    pub(crate) fn slot(&self, index: usize) -> Result<&OnceCell<SlotValue>, PipelineError> {
        self.slots
            .get(index)
            .ok_or_else(|| PipelineError::Internal("shared slot out of range"))
    }
}

/// A lowered node: computes its output for one call.
pub trait Eval: Send + Sync + 'static {
    /// What the node produces.
    type Output: Send + 'static;
    /// Computes the output for the call `cx`.
    fn eval<'a>(
        &'a self,
        cx: &'a CallCx<'_>,
    ) -> impl Future<Output = Result<Self::Output, PipelineError>> + Send + 'a;

    /// [`eval`](Eval::eval), type-erased in the call's memory (for
    /// [`DynEval`]): an evaluator whose future is one of several (an
    /// `Either`) erases the one it has, so that the choice is not made
    /// again on each poll.
    #[doc(hidden)]
    fn eval_dyn<'a>(
        &'a self,
        cx: &'a CallCx<'_>,
    ) -> CxFuture<'a, Result<Self::Output, PipelineError>> {
        cx.place(self.eval(cx))
    }
}

/// Object-safe [`Eval`], for type-erased nodes (`Node<I, O>`, route branches,
/// the pipeline's root).
pub trait DynEval<O>: Send + Sync + 'static {
    /// Computes the output, boxing the future.
    fn eval_boxed<'a>(&'a self, cx: &'a CallCx<'_>) -> CxFuture<'a, Result<O, PipelineError>>;
}

impl<E: Eval> DynEval<E::Output> for E {
    fn eval_boxed<'a>(
        &'a self,
        cx: &'a CallCx<'_>,
    ) -> CxFuture<'a, Result<E::Output, PipelineError>> {
        self.eval_dyn(cx)
    }
}

impl<O: Send + 'static> Eval for Box<dyn DynEval<O>> {
    type Output = O;
    fn eval<'a>(
        &'a self,
        cx: &'a CallCx<'_>,
    ) -> impl Future<Output = Result<O, PipelineError>> + Send + 'a {
        (**self).eval_boxed(cx)
    }
}
