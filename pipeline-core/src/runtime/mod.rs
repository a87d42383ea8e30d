//! Running a graph: lowering typed nodes into evaluators ([`Lowering`]),
//! choosing how each step runs ([`Runner`]), and the deployed [`Pipeline`].
//!
//! Today every step runs in local mode (inline in the caller); steps that ask
//! for tasks or actors are reported as running locally.

use std::any::Any;
use std::collections::HashMap;
use std::fmt::Debug;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::{DeployError, PipelineError};
use crate::graph::{Graph, Upstream};
use crate::step::{Device, Mode, ReplicaContext, StepFn};

mod eval;

pub use eval::{CallCx, DynEval, Eval};

/// Deploy-time settings that override what the steps' attributes say,
/// without recompiling.
///
/// ```
/// use pipeline_core::DeployOptions;
/// let opts = DeployOptions::local();
/// assert!(opts.is_local());
/// ```
#[derive(Debug, Clone, Default)]
pub struct DeployOptions {
    force_local: bool,
}

impl DeployOptions {
    /// The steps' own attributes, unchanged.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every step runs inline in the caller, whatever its attribute says:
    /// for tests.
    pub fn local() -> Self {
        DeployOptions { force_local: true }
    }

    /// Whether every step is forced local.
    pub fn is_local(&self) -> bool {
        self.force_local
    }
}

/// How one step of a deployed pipeline runs, next to what it asked for.
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
    /// Why `running` differs from `requested`, if it does.
    pub note: Option<&'static str>,
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
}

impl<'o> Lowering<'o> {
    fn new(options: &'o DeployOptions) -> Self {
        Lowering {
            options,
            shared: HashMap::new(),
            slots: 0,
            inputs: 0,
            report: Vec::new(),
        }
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

    /// Builds the runner of one step and records (and logs) how it runs.
    pub(crate) fn runner<S: StepFn>(&mut self, init: S::Init) -> Result<Runner<S>, DeployError> {
        let info = S::INFO;
        let note = match (self.options.force_local, info.mode) {
            (_, Mode::Local) => None,
            (true, _) => Some("forced local by DeployOptions::local()"),
            (false, _) => Some("tasks and actors modes are not implemented yet; running inline"),
        };
        if let Some(note) = note {
            tracing::info!(step = info.name, requested = %info.mode, running = "local", "{note}");
        }
        self.report.push(StepReport {
            step: info.name,
            requested: info.mode,
            running: Mode::Local,
            replicas: 1,
            note,
        });
        let ctx = ReplicaContext::new(info.name, 0, 1, Device::Cpu);
        let state = S::build(&ctx, &init).map_err(|source| DeployError::Build {
            step: info.name,
            replica: 0,
            source,
        })?;
        Ok(Runner { state })
    }
}

/// Runs one step: today inline (local mode), on one replica's state.
#[doc(hidden)]
pub struct Runner<S: StepFn> {
    state: S::State,
}

impl<S: StepFn> Debug for Runner<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Runner<{}>", S::INFO.name)
    }
}

impl<S: StepFn> Runner<S> {
    #[inline]
    pub(crate) async fn run(&self, inputs: S::Inputs) -> Result<S::Output, PipelineError> {
        S::call(&self.state, inputs)
            .await
            .map_err(|e| PipelineError::step_failed(S::INFO.name, e))
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
    root: Box<dyn DynEval<Out>>,
    slots: usize,
    graph: Graph,
    report: Vec<StepReport>,
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

impl<In: Send + 'static, Out: Send + 'static> Pipeline<In, Out> {
    pub(crate) fn deploy<U>(node: U, options: DeployOptions) -> Result<Self, DeployError>
    where
        U: Upstream<Input = In, Output = Out>,
    {
        let graph = node.graph();
        let mut lowering = Lowering::new(&options);
        let root = node.lower(&mut lowering)?;
        match lowering.inputs {
            1 => {}
            0 => return Err(DeployError::NoInput),
            count => return Err(DeployError::SeveralInputs { count }),
        }
        Ok(Pipeline {
            inner: Arc::new(Inner {
                root: Box::new(root),
                slots: lowering.slots,
                graph,
                report: lowering.report,
                runtime: OnceLock::new(),
            }),
            _input: PhantomData,
        })
    }

    /// Runs the pipeline on `input`, blocking this thread until it is done.
    ///
    /// From async code use [`call_async`](Self::call_async): `call` returns
    /// [`PipelineError::BlockingCallInAsyncContext`] on a runtime thread.
    pub fn call(&self, input: In) -> Result<Out, PipelineError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(PipelineError::BlockingCallInAsyncContext);
        }
        let runtime = self.inner.runtime()?;
        // Polls on this thread: local steps run inline, no spawn.
        runtime.block_on(self.call_async(input))
    }

    /// Runs the pipeline on `input`.
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
        let input = Mutex::new(Some(input));
        let cx = CallCx::new(&input, self.inner.slots);
        self.inner.root.eval_boxed(&cx).await
    }

    /// The deployed graph, for printing.
    pub fn graph(&self) -> &Graph {
        &self.inner.graph
    }

    /// How each step runs, in graph order.
    pub fn report(&self) -> &[StepReport] {
        &self.inner.report
    }
}

impl<Out> Inner<Out> {
    fn runtime(&self) -> Result<&tokio::runtime::Runtime, PipelineError> {
        if self.runtime.get().is_none() {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("pipeline-runtime")
                .enable_all()
                .build()
                .map_err(|e| PipelineError::Runtime(Arc::new(e)))?;
            // Another thread may have won the race; its runtime is as good.
            let _ = self.runtime.set(OwnedRuntime(Some(runtime)));
        }
        self.runtime
            .get()
            .and_then(|r| r.0.as_ref())
            .ok_or(PipelineError::Internal("runtime missing after start"))
    }
}

/// A runtime that may be dropped anywhere, even inside async code.
struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}
