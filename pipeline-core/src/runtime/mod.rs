//! Running a graph: lowering typed nodes into evaluators ([`Lowering`]),
//! choosing how each step runs (`runner`), deploy options (`options`) and
//! the deployed [`Pipeline`].

use std::any::Any;
use std::collections::HashMap;
use std::fmt::Debug;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;

use crate::error::{DeployError, PipelineError};
use crate::graph::{Graph, NodeKind, Upstream};
use crate::step::{Device, InstanceNames, Mode, ReplicaContext, StepFn};

mod eval;
mod metrics;
mod options;
mod runner;

pub use eval::{CallCx, DynEval, Eval};
pub(crate) use metrics::StepCounters;
pub use metrics::{HistogramSnapshot, StepMetrics, BATCH_BUCKETS, LATENCY_BUCKETS};
pub use options::{DeployOptions, StepOptions, DEFAULT_QUEUE_BOUND};
use runner::Actors;
pub use runner::Runner;

/// How one step of a deployed pipeline runs, next to what it asked for.
///
/// ```
/// use pipeline_core::prelude::*;
///
/// #[step(mode = "actors", replicas = 2)]
/// fn embed(x: i64) -> i64 { x }
///
/// let p = embed(Input::<i64>::new()).deploy_with(DeployOptions::new().replicas("embed", 3))?;
/// let r = &p.report()[0];
/// assert_eq!((r.step, r.running, r.replicas), ("embed", Mode::Actors, 3));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReport {
    /// The step's name.
    pub step: &'static str,
    /// The mode its attribute asked for.
    pub requested: Mode,
    /// The mode it runs in.
    pub running: Mode,
    /// How many replicas (instances) it has.
    pub replicas: usize,
    /// Its queue bound (per replica for actors, in flight for tasks).
    pub queue_bound: usize,
    /// Why `running` differs from `requested`, if it does.
    pub note: Option<&'static str>,
    /// The device each replica owns, by replica index.
    pub devices: Vec<Device>,
}

/// A step's live state, from [`Pipeline::health`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepHealth {
    /// The step's name.
    pub step: &'static str,
    /// Replicas rebuilt after a panic so far.
    pub rebuilds: u64,
    /// Replicas being rebuilt right now.
    pub replicas_down: usize,
    /// Batches run so far (batched steps).
    pub batches: u64,
    /// Calls served in those batches.
    pub batched_calls: u64,
}

/// Whether a pipeline serves at full strength.
///
/// ```
/// use pipeline_core::prelude::*;
///
/// #[step(mode = "actors")]
/// fn embed(x: i64) -> i64 { x }
///
/// let p = embed(Input::<i64>::new()).deploy()?;
/// let health = p.health();
/// assert!(health.is_healthy());
/// assert_eq!(health.steps[0].rebuilds, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Every step, in graph order.
    pub steps: Vec<StepHealth>,
}

impl Health {
    /// No replica is down.
    pub fn is_healthy(&self) -> bool {
        self.steps.iter().all(|s| s.replicas_down == 0)
    }
    /// The steps with a replica down.
    pub fn degraded(&self) -> Vec<&'static str> {
        self.steps
            .iter()
            .filter(|s| s.replicas_down > 0)
            .map(|s| s.step)
            .collect()
    }
}

/// Lowers a typed graph into evaluators. Passed to the hidden
/// `Upstream::lower`.
#[derive(Debug)]
pub struct Lowering<'o> {
    options: &'o DeployOptions,
    shared: HashMap<usize, Box<dyn Any + Send>>,
    slots: usize,
    inputs: usize,
    report: Vec<StepReport>,
    counters: Vec<(&'static str, Arc<StepCounters>)>,
    runtime: Option<OwnedRuntime>,
    names: InstanceNames,
}

impl<'o> Lowering<'o> {
    fn new(options: &'o DeployOptions) -> Self {
        Lowering {
            names: InstanceNames::default(),
            options,
            shared: HashMap::new(),
            slots: 0,
            inputs: 0,
            report: Vec::new(),
            counters: Vec::new(),
            runtime: None,
        }
    }

    /// Where tasks and task replicas run: the runtime `deploy` was called
    /// in, if it is a multi-thread one (so calls from it stay on its
    /// threads), else the pipeline's own, started on first need.
    fn handle(&mut self) -> Result<tokio::runtime::Handle, DeployError> {
        if let Ok(current) = tokio::runtime::Handle::try_current() {
            if current.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
                return Ok(current);
            }
        }
        self.own_handle()
    }

    /// The pipeline's own runtime (it has a time driver), started on first
    /// need.
    fn own_handle(&mut self) -> Result<tokio::runtime::Handle, DeployError> {
        if self.runtime.is_none() {
            self.runtime = Some(OwnedRuntime::start()?);
        }
        self.runtime
            .as_ref()
            .and_then(|r| r.0.as_ref())
            .map(|r| r.handle().clone())
            .ok_or(DeployError::Internal("runtime missing after start"))
    }

    /// The counters of the step node called `step`: one set per node (names
    /// are unique in a graph), shared by its runner and its evaluator.
    pub(crate) fn counters(&mut self, step: &'static str) -> Arc<StepCounters> {
        if let Some((_, c)) = self.counters.iter().find(|(s, _)| *s == step) {
            return Arc::clone(c);
        }
        let c = Arc::new(StepCounters::default());
        self.counters.push((step, Arc::clone(&c)));
        c
    }

    pub(crate) fn count_input(&mut self) {
        self.inputs += 1;
    }

    pub(crate) fn new_slot(&mut self) -> usize {
        self.slots += 1;
        self.slots - 1
    }

    pub(crate) fn shared_get<T: Clone + 'static>(&self, key: usize) -> Option<T> {
        self.shared.get(&key)?.downcast_ref::<T>().cloned()
    }

    pub(crate) fn shared_put<T: Send + 'static>(&mut self, key: usize, value: T) {
        self.shared.insert(key, Box::new(value));
    }

    /// The name of the next step node in the graph (see `step::names`).
    pub(crate) fn instance_name<S: StepFn>(
        &mut self,
        named: Option<&'static str>,
    ) -> Result<&'static str, DeployError> {
        if named.is_some_and(|n| n.trim().is_empty()) {
            return Err(DeployError::InvalidOption {
                step: S::INFO.name.to_string(),
                message: "`.named(..)` needs a non-empty name".into(),
            });
        }
        Ok(self.names.unique(named.unwrap_or(S::INFO.name)))
    }

    /// Builds the runner of one step node, called `name`, and records (and
    /// logs) how it runs.
    pub(crate) fn runner<S: StepFn>(
        &mut self,
        name: &'static str,
        init: S::Init,
    ) -> Result<Runner<S>, DeployError> {
        let info = S::INFO;
        let step_opts = self.options.instance(name, info.name);
        let queue_bound = self.options.queue_bound_for(name, info.name);
        if queue_bound == 0 {
            return Err(DeployError::InvalidOption {
                step: name.to_string(),
                message: "queue_bound must be at least 1".into(),
            });
        }
        let running = if self.options.is_local() {
            Mode::Local
        } else {
            info.mode
        };
        let replicas = match (running, step_opts.replicas) {
            (Mode::Actors, Some(0)) => {
                return Err(DeployError::InvalidOption {
                    step: name.to_string(),
                    message: "replicas must be at least 1".into(),
                })
            }
            (Mode::Actors, Some(n)) => n,
            (Mode::Actors, None) => info.replicas,
            (_, Some(_)) if info.mode != Mode::Actors => {
                return Err(DeployError::InvalidOption {
                    step: name.to_string(),
                    message: format!(
                        "replicas applies to actor steps; this step is `{}`",
                        info.mode
                    ),
                })
            }
            _ => 1,
        };
        let device = match step_opts.device {
            Some(Device::Cuda(i)) if i >= cuda_devices() => {
                return Err(DeployError::InvalidOption {
                    step: name.to_string(),
                    message: format!(
                        "device cuda:{i} requested, but this machine has {} CUDA device(s){}",
                        cuda_devices(),
                        if cfg!(feature = "torch") {
                            ""
                        } else {
                            " (CUDA needs the `torch` feature)"
                        }
                    ),
                })
            }
            pinned => pinned,
        };
        let devices: Vec<Device> = match running {
            Mode::Actors => (0..replicas)
                .map(|i| device.unwrap_or_else(|| replica_device(i)))
                .collect(),
            _ => vec![device.unwrap_or(Device::Cpu)],
        };
        let note = (running != info.mode).then_some("forced local by DeployOptions::local()");
        tracing::info!(step = name, requested = %info.mode, running = %running, replicas, queue_bound, "deploying step");
        self.report.push(StepReport {
            step: name,
            requested: info.mode,
            running,
            replicas,
            queue_bound,
            note,
            devices: devices.clone(),
        });
        let counters = self.counters(name);
        let build_error = |replica, source| DeployError::Build {
            step: name,
            replica,
            source,
        };
        match running {
            Mode::Local => {
                let ctx = ReplicaContext::new(name, 0, 1, device.unwrap_or(Device::Cpu));
                let state = S::build(&ctx, &init).map_err(|e| build_error(0, e))?;
                Ok(Runner::Local { state, name })
            }
            Mode::Tasks => {
                let handle = self.handle()?;
                let ctx = ReplicaContext::new(name, 0, 1, device.unwrap_or(Device::Cpu));
                let state = S::build(&ctx, &init).map_err(|e| build_error(0, e))?;
                Ok(Runner::Tasks {
                    state: Arc::new(state),
                    handle,
                    permits: Arc::new(tokio::sync::Semaphore::new(queue_bound)),
                    name,
                })
            }
            Mode::Actors => {
                let handle = self.handle()?;
                // Batch waits need a time driver, which the caller's
                // runtime may lack.
                let timer = match S::BATCH {
                    Some(_) => self.own_handle()?,
                    None => handle.clone(),
                };
                let actors = Actors::start(
                    name,
                    init,
                    replicas,
                    queue_bound,
                    &handle,
                    &timer,
                    counters,
                    |index| devices.get(index).copied().unwrap_or_default(),
                )
                .map_err(|(replica, e)| build_error(replica, e))?;
                Ok(Runner::Actors(actors))
            }
        }
    }
}

/// The device replica `index` owns: `cuda:(index % gpus)` with the `torch`
/// feature and CUDA present, else the CPU.
fn replica_device(index: usize) -> Device {
    #[cfg(feature = "torch")]
    {
        crate::torch::replica_device(index)
    }
    #[cfg(not(feature = "torch"))]
    {
        let _ = index;
        Device::Cpu
    }
}

/// How many CUDA devices replicas can own (none without the `torch` feature).
fn cuda_devices() -> usize {
    #[cfg(feature = "torch")]
    {
        crate::torch::cuda_device_count()
    }
    #[cfg(not(feature = "torch"))]
    {
        0
    }
}

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

struct Inner<Out> {
    // Dropped first: the runners join their replica threads, which still
    // need the runtime below.
    root: Box<dyn DynEval<Out>>,
    slots: usize,
    graph: Graph,
    report: Vec<StepReport>,
    counters: Vec<(&'static str, Arc<StepCounters>)>,
    closing: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
    runtime: OnceLock<OwnedRuntime>,
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
            .field("steps", &self.inner.report)
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
    pub(crate) fn deploy<U>(node: U, options: DeployOptions) -> Result<Self, DeployError>
    where
        U: Upstream<Input = In, Output = Out>,
    {
        let graph = node.graph();
        // Options may name a node or a step (every node of it).
        let known: Vec<&str> = graph
            .steps()
            .flat_map(|n| match n.kind {
                NodeKind::Step { step, .. } => [n.label.as_str(), step],
                _ => [n.label.as_str(); 2],
            })
            .collect();
        if let Some(name) = options.step_names().find(|n| !known.contains(n)) {
            let mut known = known.clone();
            known.sort_unstable();
            known.dedup();
            return Err(DeployError::UnknownStep {
                name: name.to_string(),
                known: known.join(", "),
            });
        }
        let mut lowering = Lowering::new(&options);
        let root = node.lower(&mut lowering)?;
        match lowering.inputs {
            1 => {}
            0 => return Err(DeployError::NoInput),
            count => return Err(DeployError::SeveralInputs { count }),
        }
        let runtime = OnceLock::new();
        if let Some(rt) = lowering.runtime.take() {
            let _ = runtime.set(rt);
        }
        Ok(Pipeline {
            inner: Arc::new(Inner {
                root: Box::new(root),
                slots: lowering.slots,
                graph,
                report: lowering.report,
                counters: lowering.counters,
                closing: AtomicBool::new(false),
                in_flight: AtomicUsize::new(0),
                idle: Notify::new(),
                runtime,
            }),
            _input: PhantomData,
        })
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

    fn block_on<T>(
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
        let inner = &*self.inner;
        inner.in_flight.fetch_add(1, Ordering::SeqCst);
        let _in_flight = InFlight(inner);
        if inner.closing.load(Ordering::SeqCst) {
            return Err(PipelineError::ShuttingDown);
        }
        let input = Mutex::new(Some(input));
        let cx = CallCx::new(&input, inner.slots);
        inner.root.eval_boxed(&cx).await
    }

    /// [`call_async`](Self::call_async) with a deadline.
    pub async fn call_async_timeout(
        &self,
        input: In,
        deadline: Duration,
    ) -> Result<Out, PipelineError> {
        // The timer comes from the pipeline's runtime (the caller's may have
        // no time driver); only its creation needs that context.
        let timeout = {
            let _context = self.inner.runtime()?.enter();
            tokio::time::timeout(deadline, self.call_async(input))
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

    /// How each step runs, in graph order.
    pub fn report(&self) -> &[StepReport] {
        &self.inner.report
    }

    /// Live counters per step: calls, errors, latency, queue depth, calls
    /// in flight, batch sizes, rebuilds (see [`StepMetrics`]).
    pub fn metrics(&self) -> Vec<StepMetrics> {
        self.inner
            .counters
            .iter()
            .map(|(step, c)| {
                let replicas = self
                    .inner
                    .report
                    .iter()
                    .filter(|r| r.step == *step)
                    .map(|r| r.replicas)
                    .sum();
                c.snapshot(step, replicas)
            })
            .collect()
    }

    /// Replica rebuilds and replicas down, per step.
    pub fn health(&self) -> Health {
        Health {
            steps: self
                .inner
                .counters
                .iter()
                .map(|(step, c)| StepHealth {
                    step,
                    rebuilds: c.rebuilds.load(Ordering::SeqCst),
                    replicas_down: c.replicas_down.load(Ordering::SeqCst),
                    batches: c.batches.load(Ordering::SeqCst),
                    batched_calls: c.batched_calls.load(Ordering::SeqCst),
                })
                .collect(),
        }
    }
}

impl<Out> Inner<Out> {
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
            .and_then(|r| r.0.as_ref())
            .ok_or(PipelineError::Internal("runtime missing after start"))
    }
}

/// A runtime that may be dropped anywhere, even inside async code.
#[derive(Debug)]
struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl OwnedRuntime {
    fn start() -> Result<Self, DeployError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("pipeline-runtime")
            .enable_all()
            .build()?;
        Ok(OwnedRuntime(Some(runtime)))
    }
}

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                rt.shutdown_background();
            } else {
                // Joins the runtime's threads: nothing is left behind.
                drop(rt);
            }
        }
    }
}
