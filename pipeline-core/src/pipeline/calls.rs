//! The deployed [`Pipeline`]: calling it (blocking, async, with a
//! deadline), cancellation by dropping a call, and graceful shutdown.

use std::fmt::Debug;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;

use crate::error::{DeployError, PipelineError};
use crate::eval::{CallArena, CallCx, CallMeta, DynEval};
use crate::graph::Graph;
use crate::runtime::{Closing, OwnedRuntime, StepCounters, StepPlan};

/// A deployed graph: call it with an `In`, get an `Out`.
///
/// Cheap to clone, and callable from many threads at once.
///
/// ```
/// use pipeline_core::prelude::*;
///
/// #[step]
/// fn add_one(x: i64) -> i64 { x + 1 }
///
/// let p: Pipeline<i64, i64> = add_one(Input::new()).deploy()?;
/// let handles: Vec<_> = (0..4)
///     .map(|i| { let p = p.clone(); std::thread::spawn(move || p.call(i)) })
///     .collect();
/// let outs: Vec<i64> = handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect();
/// assert_eq!(outs, [1, 2, 3, 4]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Pipeline<In, Out> {
    inner: Arc<Inner<Out>>,
    _input: PhantomData<fn(In)>,
}

pub(crate) struct Inner<Out> {
    // Dropped first: the runners join their replica threads, which still
    // need the runtime below.
    pub(crate) root: Box<dyn DynEval<Out>>,
    pub(crate) slots: usize,
    pub(crate) graph: Graph,
    /// Each step node's plan and live counters, in graph order.
    pub(crate) steps: Vec<(StepPlan, Arc<StepCounters>)>,
    pub(crate) closing: AtomicBool,
    /// Closed with `closing`: the replicas' batches being formed leave at
    /// once (no call can join them any more).
    pub(crate) stopping: Closing,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) idle: Notify,
    pub(crate) runtime: OnceLock<OwnedRuntime>,
    /// `DeployOptions::runtime`: deadlines are timed on its clock (a
    /// paused test clock included), as batch waits and autoscalers are.
    pub(crate) chosen: Option<tokio::runtime::Handle>,
}

impl<In, Out> Clone for Pipeline<In, Out> {
    fn clone(&self) -> Self {
        Pipeline {
            inner: Arc::clone(&self.inner),
            _input: PhantomData,
        }
    }
}

impl<In, Out> Debug for Pipeline<In, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("input", &std::any::type_name::<In>())
            .field("output", &std::any::type_name::<Out>())
            .field(
                "steps",
                &self
                    .inner
                    .graph
                    .steps()
                    .map(|n| n.label.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Counts a call in flight; the last one out during shutdown wakes it.
struct InFlight<'a, Out>(&'a Inner<Out>);

impl<Out> Drop for InFlight<'_, Out> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1
            && self.0.closing.load(Ordering::SeqCst)
        {
            self.0.idle.notify_waiters();
        }
    }
}

impl<In: Send + 'static, Out: Send + 'static> Pipeline<In, Out> {
    pub(crate) fn from_inner(inner: Inner<Out>) -> Self {
        Pipeline {
            inner: Arc::new(inner),
            _input: PhantomData,
        }
    }

    pub(crate) fn steps(&self) -> &[(StepPlan, Arc<StepCounters>)] {
        &self.inner.steps
    }

    /// Runs the pipeline on `input`, blocking this thread until it is done.
    ///
    /// From async code use [`call_async`](Self::call_async): `call` returns
    /// [`PipelineError::BlockingCallInAsyncContext`] on a runtime thread.
    pub fn call(&self, input: In) -> Result<Out, PipelineError> {
        self.block_on(self.call_async(input))
    }

    /// Like [`call`](Self::call), failing with
    /// [`PipelineError::DeadlineExceeded`] if the call takes longer than
    /// `deadline` (its work is then cancelled where it has not started).
    ///
    /// ```
    /// use std::time::Duration;
    /// use pipeline_core::prelude::*;
    ///
    /// #[step]
    /// async fn slow(x: u64) -> u64 {
    ///     tokio::time::sleep(Duration::from_millis(x)).await;
    ///     x
    /// }
    ///
    /// let p = slow(Input::new()).deploy()?;
    /// assert_eq!(p.call_timeout(1, Duration::from_secs(60))?, 1);
    /// let err = p.call_timeout(60_000, Duration::from_millis(10)).unwrap_err();
    /// assert!(matches!(err, PipelineError::DeadlineExceeded { .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn call_timeout(&self, input: In, deadline: Duration) -> Result<Out, PipelineError> {
        self.block_on(self.call_async_timeout(input, deadline))
    }

    pub(crate) fn block_on<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, PipelineError>>,
    ) -> Result<T, PipelineError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(PipelineError::BlockingCallInAsyncContext);
        }
        // Polls on this thread: local steps run inline, no spawn.
        self.inner.runtime()?.block_on(fut)
    }

    /// Runs the pipeline on `input`.
    ///
    /// Dropping the returned future cancels the call: work queued for it at
    /// an actor replica is skipped, a task that has not started is aborted.
    ///
    /// ```
    /// use pipeline_core::prelude::*;
    ///
    /// #[step]
    /// async fn add_one(x: i64) -> i64 { x + 1 }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let p = add_one(Input::<i64>::new()).deploy()?;
    /// assert_eq!(p.call_async(1).await?, 2);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn call_async(&self, input: In) -> Result<Out, PipelineError> {
        self.call_with(input, CallMeta::default()).await
    }

    async fn call_with(&self, input: In, meta: CallMeta) -> Result<Out, PipelineError> {
        let inner = &*self.inner;
        inner.in_flight.fetch_add(1, Ordering::SeqCst);
        let _in_flight = InFlight(inner);
        if inner.closing.load(Ordering::SeqCst) {
            return Err(PipelineError::ShuttingDown);
        }
        let input = Mutex::new(Some(input));
        let arena = CallArena::new();
        let cx = CallCx::new(&input, inner.slots, meta, &arena);
        inner.root.eval_boxed(&cx).await
    }

    /// [`call_async`](Self::call_async) with a deadline.
    pub async fn call_async_timeout(
        &self,
        input: In,
        deadline: Duration,
    ) -> Result<Out, PipelineError> {
        self.call_with_deadline(input, deadline, None).await
    }

    /// A timer on the chosen runtime or the pipeline's own (the caller's
    /// may have no time driver); only its creation needs that context.
    pub(crate) fn timer(&self, after: Duration) -> Result<tokio::time::Sleep, PipelineError> {
        let _context = self.inner.timer_context()?;
        Ok(tokio::time::sleep(after))
    }

    /// [`call_async_timeout`](Self::call_async_timeout) for the request
    /// `request_id`, which remote steps pass to their workers.
    pub(crate) async fn call_with_deadline(
        &self,
        input: In,
        deadline: Duration,
        request_id: Option<Arc<str>>,
    ) -> Result<Out, PipelineError> {
        let meta = CallMeta {
            deadline: std::time::Instant::now().checked_add(deadline),
            request_id,
        };
        // The timer comes from the chosen runtime or the pipeline's own (the
        // caller's may have no time driver); only its creation needs that.
        let timeout = {
            let _context = self.inner.timer_context()?;
            tokio::time::timeout(deadline, self.call_with(input, meta))
        };
        match timeout.await {
            Ok(result) => result,
            Err(_) => Err(PipelineError::DeadlineExceeded { after: deadline }),
        }
    }

    /// Stops taking calls (new ones fail with
    /// [`PipelineError::ShuttingDown`]) and waits until the calls in flight
    /// have finished. Replica threads stop when the last handle is dropped.
    pub async fn shutdown_async(&self) {
        let inner = &*self.inner;
        inner.closing.store(true, Ordering::SeqCst);
        inner.stopping.close();
        loop {
            let idle = inner.idle.notified();
            if inner.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Whether [`shutdown`](Self::shutdown) has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.closing.load(Ordering::SeqCst)
    }

    /// Blocking [`shutdown_async`](Self::shutdown_async).
    pub fn shutdown(&self) -> Result<(), PipelineError> {
        self.block_on(async {
            self.shutdown_async().await;
            Ok(())
        })
    }

    /// The deployed graph, for printing.
    pub fn graph(&self) -> &Graph {
        &self.inner.graph
    }
}

impl<Out> Inner<Out> {
    /// Where deadlines are timed: the chosen runtime, else the pipeline's
    /// own (the caller's may have no time driver).
    fn timer_context(&self) -> Result<tokio::runtime::EnterGuard<'_>, PipelineError> {
        match &self.chosen {
            Some(chosen) => Ok(chosen.enter()),
            None => Ok(self.runtime()?.enter()),
        }
    }

    fn runtime(&self) -> Result<&tokio::runtime::Runtime, PipelineError> {
        if self.runtime.get().is_none() {
            let runtime = OwnedRuntime::start().map_err(|e| match e {
                DeployError::Runtime(e) => PipelineError::Runtime(Arc::new(e)),
                _ => PipelineError::Internal("runtime start"),
            })?;
            // Another thread may have won the race; its runtime is as good.
            let _ = self.runtime.set(runtime);
        }
        self.runtime
            .get()
            .and_then(OwnedRuntime::get)
            .ok_or(PipelineError::Internal("runtime missing after start"))
    }
}
