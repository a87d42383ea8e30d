//! One actor replica: builds its state with the step's constructor where it
//! runs, then answers the jobs of its [`Inbox`] one by one (or in batches,
//! `batch.rs`). A panic fails only the call that caused it; the replica is
//! then rebuilt, retrying with backoff while the constructor fails, and
//! reports itself down meanwhile.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;

use super::mailbox::{Inbox, Job};
use crate::error::{BoxError, PipelineError};
use crate::runtime::closing::{drive, Closing};
use crate::runtime::executor::blocking;
use crate::runtime::metrics::StepCounters;
use crate::runtime::runner::{call_once, call_sync};
use crate::step::{BatchPolicy, Drained, ReplicaContext, StepFn};

/// Runs the constructor once; a panic in it is a failed build like an
/// `Err` (retried with backoff when rebuilding or scaling up, a
/// `DeployError::Build` at deploy), whichever thread it runs on: uncaught,
/// it ended a thread replica for good, its mailbox still in the router.
fn build_caught<S: StepFn>(ctx: &ReplicaContext, init: &S::Init) -> Result<S::State, BoxError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| S::build(ctx, init))).unwrap_or_else(
        |payload| {
            Err(format!(
                "the constructor panicked: {}",
                crate::error::panic_message(&*payload)
            )
            .into())
        },
    )
}

/// Everything one replica needs, before and after it is built.
pub(crate) struct ReplicaWorker<S: StepFn> {
    pub(crate) ctx: ReplicaContext,
    pub(crate) init: S::Init,
    pub(crate) inbox: Inbox<S>,
    /// Calls this replica has taken and not yet answered. Written here
    /// alone, with plain stores; the router adds the mailbox's length.
    pub(crate) busy: Arc<AtomicUsize>,
    /// Set while the replica rebuilds after a panic (it takes no call
    /// meanwhile); read by the pool for the replicas up.
    pub(crate) down: Arc<AtomicBool>,
    pub(crate) counters: Arc<StepCounters>,
    /// A runtime with a time driver, for batch waits and backoff.
    pub(crate) timer: Handle,
    pub(crate) batch: Option<BatchPolicy>,
    /// Runs as a task (not on a thread of its own).
    pub(crate) in_task: bool,
    /// The pool closed (the pipeline is being dropped): stop rebuilding.
    pub(crate) pool_closed: Arc<AtomicBool>,
    /// The same, for a replica streaming: stop driving the stream.
    pub(crate) closing: Closing,
    /// The pipeline stopped taking calls: a batch being formed leaves
    /// with what is queued, without waiting for more.
    pub(crate) stopping: Closing,
}

impl<S: StepFn> ReplicaWorker<S> {
    /// Runs the constructor once.
    pub(crate) fn build(&self) -> Result<S::State, BoxError> {
        blocking(self.in_task, || build_caught::<S>(&self.ctx, &self.init))
    }

    /// Runs the constructor off the runtime's threads when the replica is
    /// a task (on the blocking pool, so neither a `current_thread` runtime
    /// nor the calls on a worker wait for it); a replica on its own thread
    /// just runs it.
    async fn build_off_the_request_path(&self) -> Result<S::State, BoxError> {
        if !self.in_task {
            return self.build();
        }
        let (ctx, init) = (self.ctx.clone(), self.init.clone());
        tokio::task::spawn_blocking(move || build_caught::<S>(&ctx, &init))
            .await
            .unwrap_or_else(|e| Err(format!("the constructor did not finish: {e}").into()))
    }

    /// Runs the constructor until it works, waiting longer after each
    /// failure (10 ms doubling to 5 s); `None` once `stop()` says to give
    /// up (checked during the wait too). With `count_down`, the replica
    /// counts as down from its first failure until it is built.
    pub(crate) async fn build_retrying(
        &self,
        stop: impl Fn() -> bool,
        count_down: bool,
    ) -> Option<S::State> {
        let mut backoff = Duration::from_millis(10);
        let mut down = false;
        let state = loop {
            match self.build_off_the_request_path().await {
                Ok(state) => break Some(state),
                Err(e) => {
                    tracing::warn!(step = self.ctx.step(), replica = self.ctx.index(), error = %e, ?backoff, "replica constructor failed; retrying");
                    if count_down && !down {
                        down = true;
                        self.counters.replicas_down.fetch_add(1, Ordering::SeqCst);
                    }
                    if self.wait_unless_stopped(backoff, &stop).await {
                        break None;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        if down {
            self.counters.replicas_down.fetch_sub(1, Ordering::SeqCst);
        }
        state
    }

    /// Waits `backoff`, looking at `stop()` every 10 ms; true when told to
    /// stop. A replica on its own thread waits on that thread, with no
    /// timer: the runtime whose timer it would use may be the very one
    /// blocked in dropping the pipeline, which joins this thread.
    async fn wait_unless_stopped(&self, backoff: Duration, stop: &impl Fn() -> bool) -> bool {
        let slice = Duration::from_millis(10);
        let mut waited = Duration::ZERO;
        while waited < backoff {
            if stop() {
                return true;
            }
            let step = slice.min(backoff - waited);
            if self.in_task {
                let sleep = {
                    let _timer = self.timer.enter();
                    tokio::time::sleep(step)
                };
                sleep.await;
            } else {
                std::thread::sleep(step);
            }
            waited += step;
        }
        stop()
    }

    /// Rebuilds after a panic, down (and counted so) until built. Gives up
    /// once the mailbox is closed and empty (calls queued at a replica
    /// being drained are still answered by it), or the pipeline is being
    /// dropped.
    pub(crate) async fn rebuild(&self) -> Option<S::State> {
        self.down.store(true, Ordering::SeqCst);
        self.counters.replicas_down.fetch_add(1, Ordering::SeqCst);
        let stop = || {
            self.pool_closed.load(Ordering::SeqCst)
                || (self.inbox.is_closed() && self.inbox.is_empty())
        };
        let state = self.build_retrying(stop, false).await;
        self.counters.rebuilds.fetch_add(1, Ordering::SeqCst);
        self.counters.replicas_down.fetch_sub(1, Ordering::SeqCst);
        self.down.store(false, Ordering::SeqCst);
        state
    }

    /// Answers jobs until the mailbox is closed and empty.
    pub(crate) async fn serve(self, state: S::State) {
        match self.batch {
            Some(policy) => self.serve_batched(state, policy).await,
            None => self.serve_one_by_one(state).await,
        }
    }

    /// Replaces a replica's state after a panic. It stays counted as busy
    /// while it rebuilds, so the router prefers the other replicas
    /// meanwhile.
    async fn rebuild_after_panic(&self, state: &mut Option<S::State>) {
        tracing::warn!(
            step = self.ctx.step(),
            replica = self.ctx.index(),
            "step panicked; rebuilding the replica"
        );
        drop(state.take()); // the old model goes before a new one is built
        *state = self.rebuild().await;
        self.busy.store(0, Ordering::Relaxed);
    }

    async fn serve_one_by_one(mut self, state: S::State) {
        let mut state = Some(state);
        while let Some(Job { inputs, reply }) = self.inbox.recv().await {
            // A closed reply means the caller gave up: skip its work.
            let cancelled = reply.is_closed();
            if !cancelled {
                self.busy.store(1, Ordering::Relaxed);
            }
            let result = match (&state, cancelled) {
                // A sync body answers when called: no future to poll.
                (Some(current), false) if !S::INFO.is_async => {
                    Some(call_sync::<S>(self.ctx.step(), current, inputs))
                }
                (Some(current), false) => {
                    Some(call_once::<S>(self.ctx.step(), current, inputs).await)
                }
                _ => None,
            };
            let result = match (result, S::pump()) {
                // A stream step: the caller gets its stream now, and this
                // replica pulls the items into it, busy until they end or
                // the consumer drops the stream.
                (Some(Ok(lazy)), Some(pump)) => {
                    let (front, driver) = pump.split(lazy, self.ctx.step());
                    let drained = match reply.send(Ok(front)) {
                        Ok(()) => drive(driver, &self.closing).await,
                        Err(_) => Drained::Cancelled,
                    };
                    if drained == Drained::Panicked {
                        self.rebuild_after_panic(&mut state).await;
                    } else {
                        self.busy.store(0, Ordering::Relaxed);
                    }
                    if state.is_none() {
                        break;
                    }
                    continue;
                }
                (result, _) => result,
            };
            match result {
                Some(result @ Err(PipelineError::Panicked { .. })) => {
                    let _ = reply.send(result);
                    self.rebuild_after_panic(&mut state).await;
                }
                Some(result) => {
                    // Free before answering, so a caller that follows up at
                    // once already sees this replica idle.
                    self.busy.store(0, Ordering::Relaxed);
                    let _ = reply.send(result);
                }
                None => {}
            }
            if state.is_none() {
                break;
            }
        }
    }
}
