//! The pipeline's [`Input`] node.

use std::any::type_name;
use std::fmt::Debug;
use std::marker::PhantomData;

use super::describe::{GraphBuilder, NodeId, NodeKind};
use super::lower::Lowering;
use super::Upstream;
use crate::error::{DeployError, PipelineError};
use crate::eval::{CallCx, Eval};

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
        lowering.input(type_name::<T>());
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
