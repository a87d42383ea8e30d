//! The pipeline's [`Input`] node.

use std::any::type_name;
use std::fmt::Debug;
use std::sync::{Arc, OnceLock};

use super::describe::{GraphBuilder, NodeId, NodeKind};
use super::lower::Lowering;
use super::shared::{CloneFn, SharedEval};
use super::{SharedOutput, Upstream};
use crate::error::{DeployError, PipelineError};
use crate::eval::{CallCx, Eval};

/// The pipeline's input: the value passed to [`Pipeline::call`](crate::Pipeline::call).
///
/// A graph reads one `Input`. To feed it to several steps, clone it (for a
/// `Clone` input type): the clones are the same input, each consumer gets a
/// clone of the value. (A second `Input::new()` is a second input, which a
/// pipeline cannot have: `deploy()` refuses it.)
///
/// ```
/// use pipeline_core::prelude::*;
///
/// #[step]
/// fn add(a: i64, b: i64) -> i64 { a + b }
///
/// let x = Input::<i64>::new();
/// assert_eq!(add(x.clone(), x).deploy()?.call(21)?, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// ```
/// use pipeline_core::prelude::*;
///
/// let echo = Input::<i64>::new().deploy()?;
/// assert_eq!(echo.call(42)?, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Input<T> {
    /// Shared by clones; set by the first `clone` (the input is then read
    /// as a shared node).
    clone: Arc<OnceLock<CloneFn<T>>>,
}

impl<T> Input<T> {
    /// The input node of a pipeline that takes a `T`.
    pub fn new() -> Self {
        Input {
            clone: Arc::new(OnceLock::new()),
        }
    }
}

impl<T: SharedOutput> Clone for Input<T> {
    fn clone(&self) -> Self {
        let _ = self.clone.set(T::clone);
        Input {
            clone: Arc::clone(&self.clone),
        }
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
        let key = Arc::as_ptr(&self.clone) as *const () as usize;
        if let Some(eval) = lowering.shared_again::<SharedEval<T>>(key)? {
            return Ok(InputEval(Some(eval)));
        }
        lowering.input(type_name::<T>())?;
        match self.clone.get() {
            None => Ok(InputEval(None)),
            Some(&clone) => {
                let read: Arc<dyn crate::eval::DynEval<T>> = Arc::new(InputEval::<T>(None));
                let shared = SharedEval::new(read, lowering.new_slot(), clone, "input");
                lowering.shared_first(key, shared.clone())?;
                Ok(InputEval(Some(shared)))
            }
        }
    }

    fn describe(&self, graph: &mut GraphBuilder) -> NodeId {
        let key = Arc::as_ptr(&self.clone) as *const () as usize;
        let describe = |graph: &mut GraphBuilder| {
            graph.push("input", NodeKind::Input, type_name::<T>(), Vec::new())
        };
        if self.clone.get().is_some() {
            graph.shared(key, describe)
        } else {
            describe(graph)
        }
    }
}

/// Reads the call's input: takes it, or (for a cloned `Input`) clones it
/// out of the shared node that took it.
#[doc(hidden)]
#[derive(Debug)]
pub struct InputEval<T>(Option<SharedEval<T>>);

impl<T: Send + 'static> Eval for InputEval<T> {
    type Output = T;
    async fn eval(&self, cx: &CallCx<'_>) -> Result<T, PipelineError> {
        match &self.0 {
            None => cx.take_input::<T>(),
            Some(shared) => shared.eval(cx).await,
        }
    }
}
