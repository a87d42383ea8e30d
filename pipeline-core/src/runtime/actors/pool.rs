//! A step's actor replicas: the live set the router picks from, the
//! replicas being built, and their threads. The router sends each call to
//! the replica with the least outstanding work (its mailbox's length plus
//! the calls it has taken and not answered: read, never counted up and
//! down per call). Replicas join the set only
//! once built (so a constructor's time never stalls a call) and leave it by
//! having their mailbox closed: the replica answers what it holds, then
//! stops, so scaling down loses no call. Adding and removing replicas for
//! the autoscaler is in `pool/scaling.rs`.

mod scaling;

use crate::runtime::closing::Closing;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock, Weak};

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use self::scaling::Builds;
use super::mailbox::{mailbox, Job, Left, Mailbox};
use super::worker::ReplicaWorker;
use crate::error::{BoxError, DeployError, PipelineError};
use crate::runtime::executor::{blocking, Runtimes};
use crate::runtime::metrics::StepCounters;
use crate::runtime::plan::StepPlan;
use crate::runtime::runner::Run;
use crate::step::{Placement, ReplicaContext, StepFn};

/// A built replica, as the router sees it.
struct Replica<S: StepFn> {
    /// Its `ReplicaContext::index`.
    index: usize,
    mailbox: Mailbox<S>,
    /// Calls the replica has taken and not yet answered; written by the
    /// replica alone (a plain store, no read-modify-write per call).
    busy: Arc<AtomicUsize>,
    /// Rebuilding after a panic (set by the replica).
    down: Arc<AtomicBool>,
}

impl<S: StepFn> Replica<S> {
    /// Calls sent to the replica and not yet answered (or skipped).
    fn outstanding(&self) -> usize {
        self.mailbox.len() + self.busy.load(Ordering::Relaxed)
    }
}

/// The replicas the router picks from.
enum Live<S: StepFn> {
    /// A fixed number (no autoscaling): set once, when all are built, and
    /// read with no lock (a read lock is two locked instructions, about a
    /// tenth of a same-worker hop). The mailboxes close when the pool is
    /// dropped, which the runner does right after [`Pool::close`].
    Fixed(OnceLock<Box<[Replica<S>]>>),
    /// Autoscaled: replicas join once built and leave when scaled down.
    Scaled(RwLock<Vec<Replica<S>>>),
}

/// The replicas of one actor step node.
pub(crate) struct Pool<S: StepFn> {
    plan: StepPlan,
    init: S::Init,
    /// Where task-placed replicas run; thread-placed ones enter it.
    handle: Handle,
    /// A runtime with a time driver.
    timer: Handle,
    live: Live<S>,
    /// What the replicas scaled down (draining) still hold, for the queue
    /// gauge.
    draining: Mutex<Vec<Left>>,
    builds: Mutex<Builds>,
    /// Calls refused for a full queue since the autoscaler last looked:
    /// load too (see [`Scale::load`]).
    refused: AtomicUsize,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Replicas built or being built, as last decided.
    target: AtomicUsize,
    /// Set by `close`; replicas rebuilding see it and give up.
    closed: Arc<AtomicBool>,
    /// Closed by `close`: replicas streaming stop (their consumers may be
    /// gone with the pipeline, and `close` joins the replica threads).
    closing: Closing,
    /// Closed when the pipeline stops taking calls (shutdown): batches
    /// being formed leave at once.
    stopping: Closing,
    counters: Arc<StepCounters>,
    me: Weak<Pool<S>>,
}

impl<S: StepFn> std::fmt::Debug for Pool<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("step", &self.plan.node)
            .field("target", &self.target.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<S: StepFn> Pool<S> {
    /// Starts the plan's replicas, each built by its own constructor where
    /// it runs, and waits until all are built. Fails with the first
    /// constructor error (the others are stopped).
    pub(crate) fn start(
        plan: &StepPlan,
        init: S::Init,
        counters: Arc<StepCounters>,
        runtimes: &mut Runtimes,
    ) -> Result<Arc<Self>, DeployError> {
        let handle = runtimes.tasks()?;
        let timer = if plan.batch.is_some() || plan.autoscale.is_some() {
            runtimes.timer()?
        } else {
            handle.clone()
        };
        let pool = Arc::new_cyclic(|me| Pool {
            plan: plan.clone(),
            init,
            handle,
            timer,
            live: match plan.autoscale {
                None => Live::Fixed(OnceLock::new()),
                Some(_) => Live::Scaled(RwLock::new(Vec::with_capacity(plan.replicas))),
            },
            draining: Mutex::new(Vec::new()),
            builds: Mutex::new(Builds::default()),
            refused: AtomicUsize::new(0),
            threads: Mutex::new(Vec::new()),
            target: AtomicUsize::new(plan.replicas),
            closed: Arc::new(AtomicBool::new(false)),
            closing: Closing::default(),
            stopping: runtimes.stopping(),
            counters,
            me: me.clone(),
        });
        pool.counters
            .target_replicas
            .store(plan.replicas, Ordering::Relaxed);
        let weak = Arc::downgrade(&pool);
        pool.counters
            .read_queue_depth_with(move || weak.upgrade().map_or(0, |pool| pool.queued()));
        let weak = Arc::downgrade(&pool);
        pool.counters
            .read_replicas_up_with(move || weak.upgrade().map_or(0, |pool| pool.up()));
        let mut built = Vec::with_capacity(plan.replicas);
        for index in 0..plan.replicas {
            match pool.start_at_deploy(index) {
                Ok(wait) => built.push(wait),
                Err(e) => {
                    // The started replicas' mailboxes close as `built`
                    // goes, so their threads can be joined.
                    drop(built);
                    pool.shut();
                    return Err(plan.build_error(index, e));
                }
            }
        }
        let mut joined = Vec::with_capacity(plan.replicas);
        let mut failed = None;
        for (index, wait) in built.into_iter().enumerate() {
            let outcome = match wait {
                Built::Now(replica) => Ok(replica),
                // Deploying from a runtime worker: hand the worker's other
                // tasks to another thread while we wait.
                Built::Later(rx, replica) => match blocking(true, || rx.recv()) {
                    Ok(Ok(())) => Ok(replica),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err("the replica stopped while it was being built".into()),
                },
            };
            match outcome {
                Ok(replica) => joined.push(replica),
                Err(e) => {
                    failed = Some((index, e));
                    break;
                }
            }
        }
        // Past the loop, the replicas not waited for are dropped too.
        if let Some((index, e)) = failed {
            drop(joined);
            pool.shut();
            return Err(plan.build_error(index, e));
        }
        match &pool.live {
            Live::Fixed(fixed) => {
                pool.counters
                    .replicas
                    .store(joined.len(), Ordering::Relaxed);
                let _ = fixed.set(joined.into_boxed_slice());
            }
            Live::Scaled(_) => joined.into_iter().for_each(|r| pool.join(r)),
        }
        Ok(pool)
    }

    /// The live replicas, for reading.
    fn with_live<R>(&self, read: impl FnOnce(&[Replica<S>]) -> R) -> R {
        match &self.live {
            Live::Fixed(fixed) => read(fixed.get().map_or(&[], |r| &r[..])),
            Live::Scaled(live) => read(&live.read().unwrap_or_else(PoisonError::into_inner)),
        }
    }

    /// The live replicas of an autoscaled pool, for changing.
    fn scaled(&self) -> Option<std::sync::RwLockWriteGuard<'_, Vec<Replica<S>>>> {
        match &self.live {
            Live::Fixed(_) => None,
            Live::Scaled(live) => Some(live.write().unwrap_or_else(PoisonError::into_inner)),
        }
    }

    fn worker(&self, index: usize) -> (ReplicaWorker<S>, Replica<S>) {
        let (mailbox, inbox) = mailbox(self.plan.queue_bound);
        let busy = Arc::new(AtomicUsize::new(0));
        let down = Arc::new(AtomicBool::new(false));
        let replicas = self.target.load(Ordering::Relaxed);
        let worker = ReplicaWorker {
            ctx: ReplicaContext::new(self.plan.node, index, replicas, self.plan.device_of(index)),
            init: self.init.clone(),
            inbox,
            busy: Arc::clone(&busy),
            down: Arc::clone(&down),
            counters: Arc::clone(&self.counters),
            timer: self.timer.clone(),
            batch: self.plan.batch,
            in_task: self.plan.placement == Placement::Task,
            pool_closed: Arc::clone(&self.closed),
            closing: self.closing.clone(),
            stopping: self.stopping.clone(),
        };
        (
            worker,
            Replica {
                index,
                mailbox,
                busy,
                down,
            },
        )
    }

    /// Starts replica `index` at deploy time. A task-placed replica is
    /// built here and now; a thread-placed one on its thread, which says
    /// when it is built.
    fn start_at_deploy(&self, index: usize) -> Result<Built<S>, BoxError> {
        let (worker, replica) = self.worker(index);
        if worker.in_task {
            let state = worker.build()?;
            self.handle.spawn(worker.serve(state));
            return Ok(Built::Now(replica));
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let thread = self.spawn_thread(index, async move {
            match worker.build() {
                Ok(state) => {
                    let _ = tx.send(Ok(()));
                    worker.serve(state).await;
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        })?;
        self.keep_thread(thread);
        Ok(Built::Later(rx, replica))
    }

    /// A thread for replica `index` running `work`; see
    /// [`keep_thread`](Self::keep_thread).
    fn spawn_thread(
        &self,
        index: usize,
        work: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<std::thread::JoinHandle<()>, BoxError> {
        let handle = self.handle.clone();
        Ok(std::thread::Builder::new()
            .name(format!("{}-{index}", self.plan.node))
            .spawn(move || handle.block_on(work))?)
    }

    /// Keeps a replica's thread, to be joined when the pool closes. (The
    /// thread of a replica still being built for the autoscaler is kept
    /// with its build instead, and not joined if the pool closes first:
    /// see `scaling.rs`.)
    fn keep_thread(&self, thread: std::thread::JoinHandle<()>) {
        let mut threads = lock(&self.threads);
        threads.retain(|t| !t.is_finished());
        threads.push(thread);
    }

    /// Lets the router send calls to `replica`.
    fn join(&self, replica: Replica<S>) {
        let Some(mut live) = self.scaled() else {
            return;
        };
        live.push(replica);
    }

    /// Sends `inputs` to the replica with the least outstanding work; the
    /// returned future waits for its answer (no allocation beyond the
    /// answer's oneshot). Dropping it drops the answer's receiver; the
    /// replica then skips the job.
    pub(crate) fn call(&self, inputs: S::Inputs) -> Run<'static, S::Output> {
        match &self.live {
            Live::Fixed(fixed) => match fixed.get() {
                Some(replicas) if !self.closed.load(Ordering::Relaxed) => {
                    self.send(replicas, inputs)
                }
                _ => Run::Done(Some(Err(PipelineError::ShuttingDown))),
            },
            Live::Scaled(live) => {
                self.send(&live.read().unwrap_or_else(PoisonError::into_inner), inputs)
            }
        }
    }

    fn send(&self, replicas: &[Replica<S>], inputs: S::Inputs) -> Run<'static, S::Output> {
        let name = self.plan.node;
        // Ties go to the first.
        let replica = match replicas {
            [one] => one,
            _ => match replicas.iter().min_by_key(|r| r.outstanding()) {
                Some(least) => least,
                None => return Run::Done(Some(Err(PipelineError::ShuttingDown))),
            },
        };
        let (reply, answer) = oneshot::channel();
        if let Err(e) = replica.mailbox.offer(name, Job { inputs, reply }) {
            if let PipelineError::Overloaded { .. } = e {
                self.refused.fetch_add(1, Ordering::Relaxed);
            }
            return Run::Done(Some(Err(e)));
        }
        Run::Answer { answer, step: name }
    }

    /// Live replicas taking calls now: not closed, not rebuilding.
    fn up(&self) -> usize {
        if self.closed.load(Ordering::SeqCst) {
            return 0;
        }
        self.with_live(|live| {
            live.iter()
                .filter(|r| !r.down.load(Ordering::SeqCst))
                .count()
        })
    }

    /// Calls waiting in the replicas' mailboxes now, draining ones too.
    fn queued(&self) -> usize {
        let live: usize = self.with_live(|live| live.iter().map(|r| r.mailbox.len()).sum());
        let mut draining = lock(&self.draining);
        draining.retain(Left::is_held);
        live + draining.iter().map(Left::get).sum::<usize>()
    }

    /// Stops taking calls and gives up on replicas being built. An
    /// autoscaled pool closes its mailboxes here, a fixed one when it is
    /// dropped (each replica then answers what it holds, and stops). The
    /// replica threads are returned, to be joined once the pool is gone.
    #[must_use = "join the replica threads once the pool is dropped"]
    pub(crate) fn close(&self) -> Threads {
        self.closed.store(true, Ordering::SeqCst);
        self.closing.close();
        lock(&self.builds).give_up_all();
        if let Some(mut live) = self.scaled() {
            live.clear();
        }
        Threads(std::mem::take(&mut *lock(&self.threads)))
    }

    /// Closes the pool, drops it, and joins its replica threads (a start
    /// that failed: nothing else holds the pool).
    fn shut(self: Arc<Self>) {
        let threads = self.close();
        drop(self);
        drop(threads);
    }
}

/// Replica threads, joined when dropped. Dropped on a multi-thread
/// runtime's worker (the last handle of a pipeline dropped in a task), the
/// worker hands its other tasks over while it waits: a replica finishing
/// its last call may be waiting for one of them.
#[derive(Default)]
pub(crate) struct Threads(Vec<std::thread::JoinHandle<()>>);

impl Drop for Threads {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let threads = std::mem::take(&mut self.0);
        blocking(true, || {
            for thread in threads {
                let _ = thread.join();
            }
        });
    }
}

/// A replica started at deploy time: built already, or building on its
/// thread.
enum Built<S: StepFn> {
    Now(Replica<S>),
    Later(std::sync::mpsc::Receiver<Result<(), BoxError>>, Replica<S>),
}
