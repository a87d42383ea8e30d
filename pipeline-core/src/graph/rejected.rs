//! What a `#[step]` the macro rejected expands to: a node that fits any
//! edge, so that code using the step adds no errors to the one the macro
//! reported (thiserror's fallback expansion). It never reaches a binary:
//! the macro's `compile_error!` stops the build.

use std::any::type_name;
use std::fmt::Debug;
use std::marker::PhantomData;

use super::describe::{GraphBuilder, NodeId, NodeKind};
use super::lower::Lowering;
use super::{Produces, Upstream};
use crate::error::{BoxError, DeployError};
use crate::eval::DynEval;

/// A node of a rejected step, reading pipeline input `I` and producing `O`
/// (the step's declared output, or [`Unknown`] when it had none the macro
/// could use).
pub struct Rejected<I, O>(PhantomData<fn() -> (I, O)>);

/// The output of a rejected step whose declared output could not be used
/// (`impl Trait`, a generic parameter). It prints, compares, orders and
/// converts into errors as anything, so that code using the pipeline's
/// answers adds no errors of its own. No value of it is ever made (its
/// field is private); it is not an empty enum, so that code after it is
/// not reported unreachable either.
#[derive(Clone, Copy, Debug)]
pub struct Unknown(());

impl std::fmt::Display for Unknown {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        unreachable!("no `Unknown` is ever made")
    }
}

impl std::error::Error for Unknown {}

impl<T: ?Sized> PartialEq<T> for Unknown {
    fn eq(&self, _: &T) -> bool {
        unreachable!("no `Unknown` is ever made")
    }
}

impl<T: ?Sized> PartialOrd<T> for Unknown {
    fn partial_cmp(&self, _: &T) -> Option<std::cmp::Ordering> {
        unreachable!("no `Unknown` is ever made")
    }
}

impl<I, O> Rejected<I, O> {
    /// The node.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Rejected(PhantomData)
    }

    /// As the generated node types' `named`.
    #[must_use]
    pub fn named(self, _name: &str) -> Self {
        self
    }
}

impl<I, O> Debug for Rejected<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("rejected step")
    }
}

impl<I: Send + 'static, O: Send + 'static> Upstream for Rejected<I, O> {
    type Input = I;
    type Output = O;
    type Eval = Box<dyn DynEval<O>>;

    fn lower(self, _: &mut Lowering<'_>) -> Result<Self::Eval, DeployError> {
        Err(DeployError::Build {
            step: "rejected",
            replica: 0,
            source: BoxError::from("this `#[step]` did not compile"),
        })
    }

    fn describe(&self, graph: &mut GraphBuilder) -> NodeId {
        graph.push("rejected", NodeKind::Input, type_name::<O>(), Vec::new())
    }
}

#[diagnostic::do_not_recommend]
impl<I: Send + 'static, O: Send + 'static, T> Produces<T> for Rejected<I, O> {
    fn cast(_: O) -> T {
        unreachable!("a rejected `#[step]` never compiles")
    }
}
