//! How one step runs: inline ([`Runner::Local`]), one task per call
//! ([`Runner::Tasks`]), or on long-lived actor replicas behind bounded
//! mailboxes ([`Runner::Actors`]). Every runner turns a step's `Err` and
//! panics into a [`PipelineError`] naming the step.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::metrics::StepCounters;
use crate::error::{BoxError, PipelineError};
use crate::step::{Placement, ReplicaContext, StepFn};

/// Runs one step of a deployed graph.
#[doc(hidden)]
pub enum Runner<S: StepFn> {
    /// Inline in the caller.
    Local {
        state: S::State,
        /// The node's instance name, for errors.
        name: &'static str,
    },
    /// One task per call, at most `permits` at once.
    Tasks {
        state: Arc<S::State>,
        handle: Handle,
        permits: Arc<Semaphore>,
        name: &'static str,
    },
    /// Long-lived replicas.
    #[allow(private_interfaces)]
    Actors(Actors<S>),
}

impl<S: StepFn> std::fmt::Debug for Runner<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Runner::Local { .. } => "local",
            Runner::Tasks { .. } => "tasks",
            Runner::Actors(_) => "actors",
        };
        write!(f, "Runner<{}>({kind})", self.name())
    }
}

/// Runs the step once on `state`, catching panics (including those of a
/// sync body, which runs when `S::call` is called).
async fn call_once<S: StepFn>(
    name: &'static str,
    state: &S::State,
    inputs: S::Inputs,
) -> Result<S::Output, PipelineError> {
    match AssertUnwindSafe(async move { S::call(state, inputs).await })
        .catch_unwind()
        .await
    {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(PipelineError::step_failed(name, e)),
        Err(payload) => Err(PipelineError::panicked(name, payload)),
    }
}

impl<S: StepFn> Runner<S> {
    /// The node's instance name (see `step::names`).
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Runner::Local { name, .. } | Runner::Tasks { name, .. } => name,
            Runner::Actors(actors) => actors.name,
        }
    }

    pub(crate) async fn run(&self, inputs: S::Inputs) -> Result<S::Output, PipelineError> {
        match self {
            Runner::Local { state, name } => call_once::<S>(name, state, inputs).await,
            Runner::Tasks {
                state,
                handle,
                permits,
                name,
            } => {
                let name = *name;
                let permit = Arc::clone(permits)
                    .try_acquire_owned()
                    .map_err(|_| PipelineError::Overloaded { step: name })?;
                let state = Arc::clone(state);
                let task = if S::INFO.is_async {
                    handle.spawn(async move {
                        let _permit = permit;
                        call_once::<S>(name, &state, inputs).await
                    })
                } else {
                    handle.spawn_blocking(move || {
                        let _permit = permit;
                        futures::executor::block_on(call_once::<S>(name, &state, inputs))
                    })
                };
                // Dropping the call aborts a task that has not started.
                let mut task = AbortOnDrop(task);
                match (&mut task.0).await {
                    Ok(result) => result,
                    Err(e) if e.is_panic() => Err(PipelineError::panicked(name, e.into_panic())),
                    Err(_) => Err(PipelineError::ReplicaLost { step: name }),
                }
            }
            Runner::Actors(actors) => actors.call(inputs).await,
        }
    }
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

type Reply<O> = oneshot::Sender<Result<O, PipelineError>>;

struct Job<S: StepFn> {
    inputs: S::Inputs,
    reply: Reply<S::Output>,
}

struct Replica<S: StepFn> {
    mailbox: mpsc::Sender<Job<S>>,
    /// Calls sent to this replica and not yet answered (or skipped).
    outstanding: Arc<AtomicUsize>,
}

/// A step's replicas: the router, their mailboxes and their threads.
#[doc(hidden)]
pub(crate) struct Actors<S: StepFn> {
    name: &'static str,
    replicas: Vec<Replica<S>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    counters: Arc<StepCounters>,
}

impl<S: StepFn> Actors<S> {
    /// Starts `count` replicas, each built by its own constructor where it
    /// runs, and waits until all are built. Fails with the first
    /// constructor error (the others are stopped).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        name: &'static str,
        init: S::Init,
        count: usize,
        queue_bound: usize,
        handle: &Handle,
        timer: &Handle,
        counters: Arc<StepCounters>,
        device: impl Fn(usize) -> crate::step::Device,
    ) -> Result<Self, (usize, BoxError)> {
        let placement = S::INFO.resolved_placement();
        let mut replicas = Vec::with_capacity(count);
        let mut threads = Vec::new();
        let mut built = Vec::with_capacity(count);
        for index in 0..count {
            let (mailbox, rx) = mpsc::channel(queue_bound);
            let outstanding = Arc::new(AtomicUsize::new(0));
            let (built_tx, built_rx) = std::sync::mpsc::sync_channel(1);
            let worker = ReplicaWorker::<S> {
                ctx: ReplicaContext::new(name, index, count, device(index)),
                init: init.clone(),
                rx,
                outstanding: Arc::clone(&outstanding),
                counters: Arc::clone(&counters),
                timer: timer.clone(),
            };
            match placement {
                Placement::Task => {
                    handle.spawn(worker.run(built_tx, true));
                }
                _ => {
                    let handle = handle.clone();
                    let thread = std::thread::Builder::new()
                        .name(format!("{name}-{index}"))
                        .spawn(move || handle.block_on(worker.run(built_tx, false)))
                        .map_err(|e| (index, Box::new(e) as BoxError))?;
                    threads.push(thread);
                }
            }
            replicas.push(Replica {
                mailbox,
                outstanding,
            });
            built.push(built_rx);
        }
        let actors = Actors {
            name,
            replicas,
            threads,
            counters,
        };
        // Deploying from a runtime worker: hand the worker's other tasks
        // (our task replicas among them) to another thread while we wait.
        let on_worker = Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let wait = |rx: std::sync::mpsc::Receiver<Result<(), BoxError>>| {
            if on_worker {
                tokio::task::block_in_place(|| rx.recv())
            } else {
                rx.recv()
            }
        };
        for (index, rx) in built.into_iter().enumerate() {
            match wait(rx) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err((index, e)),
                Err(_) => {
                    return Err((index, "the replica stopped while it was being built".into()))
                }
            }
        }
        Ok(actors)
    }

    async fn call(&self, inputs: S::Inputs) -> Result<S::Output, PipelineError> {
        let name = self.name;
        // Least outstanding work; ties go to the first.
        let replica = self
            .replicas
            .iter()
            .min_by_key(|r| r.outstanding.load(Ordering::SeqCst))
            .ok_or(PipelineError::ReplicaLost { step: name })?;
        let (reply, answer) = oneshot::channel();
        replica.outstanding.fetch_add(1, Ordering::SeqCst);
        if let Err(e) = replica.mailbox.try_send(Job { inputs, reply }) {
            replica.outstanding.fetch_sub(1, Ordering::SeqCst);
            return Err(match e {
                mpsc::error::TrySendError::Full(_) => PipelineError::Overloaded { step: name },
                mpsc::error::TrySendError::Closed(_) => PipelineError::ShuttingDown,
            });
        }
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        // Dropping this future drops `answer`; the replica then skips the job.
        answer
            .await
            .unwrap_or(Err(PipelineError::ReplicaLost { step: name }))
    }
}

impl<S: StepFn> Drop for Actors<S> {
    fn drop(&mut self) {
        // Closing the mailboxes ends each replica after the work it holds.
        self.replicas.clear();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

struct ReplicaWorker<S: StepFn> {
    ctx: ReplicaContext,
    init: S::Init,
    rx: mpsc::Receiver<Job<S>>,
    outstanding: Arc<AtomicUsize>,
    counters: Arc<StepCounters>,
    /// A runtime with a time driver, for batch waits.
    timer: Handle,
}

impl<S: StepFn> ReplicaWorker<S> {
    fn build(&self, on_worker: bool) -> Result<S::State, BoxError> {
        if on_worker {
            // A constructor may block (loading weights): tell the runtime.
            tokio::task::block_in_place(|| S::build(&self.ctx, &self.init))
        } else {
            S::build(&self.ctx, &self.init)
        }
    }

    /// Rebuilds after a panic, retrying with backoff while the constructor
    /// fails; the step reports itself degraded meanwhile.
    async fn rebuild(&self, on_worker: bool) -> Option<S::State> {
        self.counters.replicas_down.fetch_add(1, Ordering::SeqCst);
        let mut backoff = Duration::from_millis(10);
        let state = loop {
            match self.build(on_worker) {
                Ok(state) => break Some(state),
                Err(e) => {
                    tracing::warn!(step = self.ctx.step(), replica = self.ctx.index(), error = %e, ?backoff, "rebuild failed; retrying");
                    if self.rx.is_closed() {
                        break None;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        self.counters.rebuilds.fetch_add(1, Ordering::SeqCst);
        self.counters.replicas_down.fetch_sub(1, Ordering::SeqCst);
        state
    }

    async fn run(
        mut self,
        built: std::sync::mpsc::SyncSender<Result<(), BoxError>>,
        on_worker: bool,
    ) {
        let mut state = match self.build(on_worker) {
            Ok(state) => {
                let _ = built.send(Ok(()));
                Some(state)
            }
            Err(e) => {
                let _ = built.send(Err(e));
                return;
            }
        };
        if let Some(policy) = S::BATCH {
            return self.run_batched(state, policy, on_worker).await;
        }
        while let Some(Job { inputs, reply }) = self.rx.recv().await {
            self.counters.queued.fetch_sub(1, Ordering::Relaxed);
            // A closed reply means the caller gave up: skip its work.
            let result = match (&state, reply.is_closed()) {
                (Some(current), false) => {
                    Some(call_once::<S>(self.ctx.step(), current, inputs).await)
                }
                _ => None,
            };
            match result {
                Some(result @ Err(PipelineError::Panicked { .. })) => {
                    // Stays counted as busy while it rebuilds, so the
                    // router prefers the other replicas meanwhile.
                    let _ = reply.send(result);
                    tracing::warn!(
                        step = self.ctx.step(),
                        replica = self.ctx.index(),
                        "step panicked; rebuilding the replica"
                    );
                    drop(state.take()); // the old model goes before a new one is built
                    state = self.rebuild(on_worker).await;
                    self.outstanding.fetch_sub(1, Ordering::SeqCst);
                }
                Some(result) => {
                    // Free before answering, so a caller that follows up at
                    // once already sees this replica idle.
                    self.outstanding.fetch_sub(1, Ordering::SeqCst);
                    let _ = reply.send(result);
                }
                None => {
                    self.outstanding.fetch_sub(1, Ordering::SeqCst);
                }
            }
            if state.is_none() {
                break;
            }
        }
    }
}

impl<S: StepFn> ReplicaWorker<S> {
    /// Takes up to `max_size` queued calls, waiting at most `wait_ms` after
    /// the first for more, and runs them as one batch. An error or a panic
    /// fails that batch's calls, and only those.
    async fn run_batched(
        mut self,
        mut state: Option<S::State>,
        policy: crate::step::BatchPolicy,
        on_worker: bool,
    ) {
        let name = self.ctx.step();
        let wait = Duration::from_millis(policy.wait_ms);
        while let Some(first) = self.rx.recv().await {
            let mut jobs = vec![first];
            let deadline = tokio::time::Instant::now() + wait;
            while jobs.len() < policy.max_size {
                if let Ok(job) = self.rx.try_recv() {
                    jobs.push(job);
                    continue;
                }
                let timeout = {
                    let _timer = self.timer.enter();
                    tokio::time::timeout_at(deadline, self.rx.recv())
                };
                match timeout.await {
                    Ok(Some(job)) => {
                        self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                        jobs.push(job)
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            // Calls whose caller gave up are skipped.
            let queued = jobs.len();
            let (inputs, replies): (Vec<_>, Vec<_>) = jobs
                .into_iter()
                .filter(|job| !job.reply.is_closed())
                .map(|job| (job.inputs, job.reply))
                .unzip();
            self.outstanding
                .fetch_sub(queued - replies.len(), Ordering::SeqCst);
            let Some(current) = &state else { break };
            if replies.is_empty() {
                continue;
            }
            let n = replies.len();
            self.counters.batches.fetch_add(1, Ordering::SeqCst);
            self.counters.batch_size.observe(n as f64);
            self.counters
                .batched_calls
                .fetch_add(n as u64, Ordering::SeqCst);
            let result = AssertUnwindSafe(async move { S::call_batch(current, inputs).await })
                .catch_unwind()
                .await;
            let mut panicked = false;
            let all_fail = |e: PipelineError| (0..n).map(|_| Err(e.clone())).collect();
            let outcomes: Vec<Result<S::Output, PipelineError>> = match result {
                Ok(Ok(outputs)) if outputs.len() == n => outputs.into_iter().map(Ok).collect(),
                Ok(Ok(outputs)) => all_fail(PipelineError::step_failed(
                    name,
                    format!(
                        "the batched step returned {} outputs for {n} inputs",
                        outputs.len()
                    )
                    .into(),
                )),
                Ok(Err(e)) => all_fail(PipelineError::step_failed(name, e)),
                Err(payload) => {
                    panicked = true;
                    all_fail(PipelineError::panicked(name, payload))
                }
            };
            if !panicked {
                self.outstanding.fetch_sub(n, Ordering::SeqCst);
            }
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(outcome);
            }
            if panicked {
                tracing::warn!(
                    step = name,
                    replica = self.ctx.index(),
                    "batched step panicked; rebuilding the replica"
                );
                drop(state.take());
                state = self.rebuild(on_worker).await;
                self.outstanding.fetch_sub(n, Ordering::SeqCst);
            }
        }
    }
}
