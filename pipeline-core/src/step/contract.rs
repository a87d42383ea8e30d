//! The hidden contract the `#[step]` macro implements: [`StepFn`] (build a
//! replica, call it once or on a batch) and [`StepOutput`] (the edge cast).

use std::future::Future;

use super::stream::Pump;
use super::{BatchPolicy, ReplicaContext, StepInfo, Wire};
use crate::error::BoxError;

/// The contract between `#[step]` and the runtime. Implemented by the macro;
/// you should not need to implement or call it yourself.
///
/// For a function step it is implemented on `name<()>` (the node type's
/// marker instance, which also carries `name::call`), for a model step on
/// the model type.
pub trait StepFn: 'static {
    /// The step's inputs, as a tuple (`(i64,)` for one input).
    type Inputs: Send + 'static;
    /// What the step produces (the `T` of `-> T` or `-> Result<T, E>`).
    type Output: Send + 'static;
    /// One replica's state: `()` for functions, the model (behind a lock
    /// where `call` takes `&mut self`).
    type State: Send + Sync + 'static;
    /// The constructor's arguments, cloned into each replica.
    type Init: Clone + Send + Sync + 'static;
    /// What the attribute said.
    const INFO: StepInfo;
    /// Builds one replica.
    fn build(ctx: &ReplicaContext, init: &Self::Init) -> Result<Self::State, BoxError>;
    /// Dynamic batching, from `batch(max_size = .., wait_ms = ..)`.
    const BATCH: Option<BatchPolicy> = None;
    /// How calls cross to a worker process: `Some` for `#[step(remote)]`
    /// steps, whose inputs and output the macro checked are serde types.
    fn wire() -> Option<Wire<Self::Inputs, Self::Output>> {
        None
    }
    /// For a stream step (output `ItemStream<T>`), how a runner drives
    /// its items where it runs; `None` for every other step. The macro
    /// writes it for each step.
    fn pump() -> Option<Pump<Self::Output>> {
        None
    }
    /// Runs the step once.
    fn call(
        state: &Self::State,
        inputs: Self::Inputs,
    ) -> impl Future<Output = Result<Self::Output, BoxError>> + Send + '_;
    /// Runs the step on a batch; one output per input, in order. Batched
    /// steps implement it with their `Vec` body; others call `call` in turn.
    fn call_batch(
        state: &Self::State,
        batch: Vec<Self::Inputs>,
    ) -> impl Future<Output = Result<Vec<Self::Output>, BoxError>> + Send + '_ {
        async move {
            let mut outputs = Vec::with_capacity(batch.len());
            for inputs in batch {
                outputs.push(Self::call(state, inputs).await?);
            }
            Ok(outputs)
        }
    }
}

/// `S: StepOutput<T>` when step `S` produces `T`: implemented by the macro
/// with the concrete output type, so that an edge mismatch on a model step
/// is reported as "does not produce" rather than as a projection mismatch.
#[doc(hidden)]
pub trait StepOutput<T>: StepFn {
    fn cast_output(output: Self::Output) -> T;
}

/// How a step's (or a constructor's) `Err` becomes the pipeline's boxed
/// error: implemented for every type that converts into [`BoxError`] (error
/// types, `String`, `&str`, boxed errors, `anyhow::Error`). Named so that an
/// `E` that is not an error is one error at `E`, in these words.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a step's `Err`: it must be an error type that can cross threads (`std::error::Error + Send + Sync + 'static`)",
    label = "not an error type that is `Send + Sync`",
    note = "for your own type, implement `std::error::Error` (e.g. `#[derive(Debug, thiserror::Error)]`); for a boxed error write `BoxError` (`Box<dyn Error + Send + Sync>`), or return `Result<T, String>`"
)]
pub trait IntoStepError {
    /// Boxes the error.
    fn into_step_error(self) -> BoxError;
}

#[diagnostic::do_not_recommend]
impl<E: Into<BoxError>> IntoStepError for E {
    fn into_step_error(self) -> BoxError {
        self.into()
    }
}

/// A clone of a step's constructor arguments, for one replica. Generic so
/// that a non-`Clone` argument is reported once, where the step declares
/// it, and not again in the generated `build`.
#[doc(hidden)]
pub fn clone_init<S: StepFn>(init: &S::Init) -> S::Init {
    init.clone()
}

/// A sync step's answer as a ready future. Generic so that the future's
/// `Send` comes from `StepFn::Output: Send` and a non-`Send` output is
/// reported once, at the step's output type.
#[doc(hidden)]
#[inline(always)]
pub fn ready_output<S: StepFn + ?Sized>(
    value: Result<S::Output, BoxError>,
) -> impl Future<Output = Result<S::Output, BoxError>> + Send {
    std::future::ready(value)
}
