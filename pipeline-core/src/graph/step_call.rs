//! [`StepCall`]: one call of a step node, from its inputs to its answer,
//! written out as one future rather than an `async fn` around a `poll_fn`
//! around a `map`.
//!
//! Why by hand: a call's future nests one step's future in the next
//! (each step awaits its inputs), and every time the call's task wakes it
//! is polled from the top, through every level of every step still under
//! way. Each `async` block, `poll_fn` and `map` is one more level (a
//! function call, a state match, the output moved once more); a chain of
//! four task-placed actors went through six per hop. This one level per
//! step took about a fifth off a same-worker hop (`benches/runtime.rs`,
//! `-- same-worker`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use crate::error::PipelineError;
use crate::eval::CallCx;
use crate::runtime::{CallGuard, Run, RunCx, StepCounters};
use crate::step::StepFn;

use super::step::{EdgesEval, RunnerSlot};

pin_project_lite::pin_project! {
    /// One call of a step node (see the module docs).
    pub(crate) struct StepCall<'a, S: StepFn, E: EdgesEval, F> {
        // The inputs' future; done with once `stage` is `Running`.
        #[pin]
        edges: F,
        stage: Stage<'a, S::Output>,
        runner: &'a RunnerSlot<S>,
        counters: &'a Arc<StepCounters>,
        name: &'static str,
        cx: RunCx<'a>,
        // The call's identity, for the clock handoff between the steps of
        // one call (`StepCounters::start_after`).
        id: usize,
        _edges: std::marker::PhantomData<fn() -> E>,
    }
}

enum Stage<'a, O> {
    Inputs,
    Running {
        run: Run<'a, O>,
        call: CallGuard<'a>,
        /// `Some` only when a subscriber wants debug spans.
        span: Option<tracing::Span>,
    },
    Answered,
}

impl<'a, S: StepFn, E: EdgesEval<Inputs = S::Inputs>, F> StepCall<'a, S, E, F> {
    /// The call of a step whose inputs `edges` (`E::eval`'s future) yields.
    pub(super) fn new(
        edges: F,
        cx: &'a CallCx<'_>,
        runner: &'a RunnerSlot<S>,
        counters: &'a Arc<StepCounters>,
        name: &'static str,
    ) -> Self {
        StepCall {
            edges,
            stage: Stage::Inputs,
            runner,
            counters,
            name,
            cx: RunCx::of(cx),
            id: std::ptr::from_ref(cx).cast::<()>() as usize,
            _edges: std::marker::PhantomData,
        }
    }
}

impl<'a, S, E, F> Future for StepCall<'a, S, E, F>
where
    S: StepFn,
    E: EdgesEval<Inputs = S::Inputs>,
    F: Future<Output = Result<E::Ready, PipelineError>>,
{
    type Output = Result<S::Output, PipelineError>;

    fn poll(self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Stage::Inputs = this.stage {
            let mark = StepCounters::clock_mark();
            let inputs = match ready!(this.edges.poll(task)) {
                Ok(ready) => E::inputs(ready),
                Err(e) => {
                    *this.stage = Stage::Answered;
                    return Poll::Ready(Err(e));
                }
            };
            let Some(runner) = this.runner.get() else {
                *this.stage = Stage::Answered;
                return Poll::Ready(Err(PipelineError::Internal(
                    "a step ran before it was started",
                )));
            };
            // In the poll that produced the inputs: no await since `mark`.
            let call = this.counters.start_after(mark, *this.id);
            // No subscriber wants debug: no span, no event, one check. (A
            // disabled span and event still cost about 15 ns per step call.)
            let span = tracing::level_enabled!(tracing::Level::DEBUG)
                .then(|| tracing::debug_span!("step", step = *this.name))
                .filter(|span| !span.is_disabled());
            let run = match &span {
                None => runner.run(inputs, *this.cx),
                Some(span) => span.in_scope(|| runner.run(inputs, *this.cx)),
            };
            *this.stage = Stage::Running { run, call, span };
        }
        let result = match this.stage {
            Stage::Running { run, span, .. } => {
                let _entered = span.as_ref().map(tracing::Span::enter);
                ready!(Pin::new(run).poll(task))
            }
            Stage::Inputs => unreachable!("the inputs' stage ends above"),
            Stage::Answered => {
                return Poll::Ready(Err(PipelineError::Internal(
                    "a step call polled after it answered",
                )))
            }
        };
        let Stage::Running { call, span, .. } = std::mem::replace(this.stage, Stage::Answered)
        else {
            unreachable!("matched above")
        };
        if let Err(error) = &result {
            call.failed(error);
        }
        call.finish();
        // A stream step answered its stream: an error that ends it later
        // counts as the step's too.
        let result = match (result, S::pump()) {
            (Ok(items), Some(pump)) => {
                let counters = Arc::clone(this.counters);
                Ok((pump.watched)(
                    items,
                    Arc::new(move || counters.count_error()),
                ))
            }
            (result, _) => result,
        };
        if let Some(span) = span {
            tracing::debug!(parent: &span, ok = result.is_ok(), "step answered");
        }
        Poll::Ready(result)
    }
}
