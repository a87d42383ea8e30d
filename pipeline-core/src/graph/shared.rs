//! Fan-out: a [`Shared`] node runs once per call, whatever its number of
//! consumers, and each gets a clone of its output.

use std::any::type_name;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};

use super::describe::{GraphBuilder, NodeId, NodeKind};
use super::lower::Lowering;
use super::{Node, Upstream};
use crate::error::{DeployError, PipelineError};
use crate::eval::{CallCx, DynEval, Eval};

/// How a shared node's consumers each get its output: the output type's
/// `Clone::clone`, taken where `Clone` is known.
pub(crate) type CloneFn<T> = fn(&T) -> T;

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
    /// `O::clone`, taken where `O: Clone` is known ([`Upstream::shared`]),
    /// so that no other use of a shared node repeats the bound: a shared
    /// output that is not `Clone` is one error, at `.shared()`.
    clone: CloneFn<O>,
}

impl<I, O> Shared<I, O> {
    pub(crate) fn new(node: Node<I, O>) -> Self
    where
        O: Clone,
    {
        Shared {
            node: Arc::new(Mutex::new(Some(node))),
            clone: O::clone,
        }
    }

    fn key(&self) -> usize {
        Arc::as_ptr(&self.node) as *const () as usize
    }
}

impl<I, O> Clone for Shared<I, O> {
    fn clone(&self) -> Self {
        Shared {
            node: Arc::clone(&self.node),
            clone: self.clone,
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
    O: Send + 'static,
{
    type Input = I;
    type Output = O;
    type Eval = SharedEval<O>;

    fn lower(self, lowering: &mut Lowering<'_>) -> Result<Self::Eval, DeployError> {
        let key = self.key();
        if let Some(eval) = lowering.shared_again::<SharedEval<O>>(key)? {
            return Ok(eval);
        }
        let node = self
            .node
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| DeployError::NodeDeployed {
                node: "a shared node".to_string(),
            })?;
        let inner = Arc::from(node.lower(lowering)?);
        let name = lowering
            .label_of(lowering.last_id()?)
            .map_or("a shared node", super::names::intern);
        let eval = SharedEval::new(inner, lowering.new_slot(), self.clone, name);
        lowering.shared_first(key, eval.clone())?;
        Ok(eval)
    }

    fn describe(&self, graph: &mut GraphBuilder) -> NodeId {
        let node = Arc::clone(&self.node);
        graph.shared(self.key(), move |graph| {
            match node.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
                Some(node) => node.describe(graph),
                None => graph.push(
                    "(deployed elsewhere)",
                    NodeKind::Gather,
                    type_name::<O>(),
                    Vec::new(),
                ),
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
    clone: CloneFn<O>,
    /// The node whose output this shares (a step node's name, `input`),
    /// named when the output's `Clone` panics.
    name: &'static str,
}

impl<O> SharedEval<O> {
    /// A shared evaluator of `inner` (the node `name`), its value kept in
    /// `slot` per call.
    pub(super) fn new(
        inner: Arc<dyn DynEval<O>>,
        slot: usize,
        clone: CloneFn<O>,
        name: &'static str,
    ) -> Self {
        SharedEval {
            inner,
            slot,
            clone,
            name,
        }
    }
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
            clone: self.clone,
            name: self.name,
        }
    }
}

impl<O> Eval for SharedEval<O>
where
    O: Send + 'static,
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
        let value = match value {
            Ok(v) => v
                .downcast_ref::<Mutex<O>>()
                .ok_or(PipelineError::Internal("shared slot holds another type"))?,
            Err(e) => return Err(e.clone()),
        };
        // The output's `Clone` is the user's code.
        let value = value.lock().unwrap_or_else(PoisonError::into_inner);
        PipelineError::caught(self.name, || (self.clone)(&value))
    }
}
