//! Deploying a graph's nodes: one traversal, inputs first, that gives each
//! step node its name, records the deployed graph's description, plans how
//! each step runs and builds the evaluators. Nothing is started here: each
//! step leaves a start for the pipeline to run once the whole graph is
//! planned and every option checked.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use super::describe::{Graph, GraphBuilder, NodeId, NodeKind};
use super::step::RunnerSlot;
use crate::error::DeployError;
use crate::runtime::{plan, start, DeployOptions, Runtimes, StepCounters, StepPlan};
use crate::step::StepFn;

/// Starts one planned step (builds its replicas) on the given runtimes.
type Start = Box<dyn FnOnce(&mut Runtimes) -> Result<(), DeployError> + Send>;

/// A planned step node, not yet started.
pub(crate) struct PlannedStep {
    pub(crate) plan: StepPlan,
    pub(crate) counters: Arc<StepCounters>,
    pub(crate) start: Start,
}

impl std::fmt::Debug for PlannedStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlannedStep")
            .field("plan", &self.plan)
            .finish_non_exhaustive()
    }
}

/// A step node as lowering hands it back to the node.
pub(crate) struct LoweredStep<S: StepFn> {
    pub(crate) runner: RunnerSlot<S>,
    pub(crate) counters: Arc<StepCounters>,
    pub(crate) name: &'static str,
}

/// A shared node lowered already: its evaluator, its id, and the
/// `.map_each` graphs around it (see [`Lowering::shared_again`]).
type SharedSeen = (Box<dyn Any + Send>, NodeId, Vec<NodeId>);

/// The traversal's state. Passed to the hidden `Upstream::lower`.
#[derive(Debug)]
pub struct Lowering<'o> {
    options: &'o DeployOptions,
    graph: GraphBuilder,
    /// The node lowered last: a parent reads its child's id from here.
    last: Option<NodeId>,
    /// Each shared node's evaluator and id, once lowered.
    shared: HashMap<usize, SharedSeen>,
    slots: usize,
    inputs: usize,
    steps: Vec<PlannedStep>,
    gpus: Option<usize>,
}

/// What a traversal yields.
#[derive(Debug)]
pub(crate) struct Lowered {
    pub(crate) graph: Graph,
    /// Shared-node slots a call needs.
    pub(crate) slots: usize,
    /// `Input` nodes seen.
    pub(crate) inputs: usize,
    pub(crate) steps: Vec<PlannedStep>,
}

impl<'o> Lowering<'o> {
    pub(crate) fn new(options: &'o DeployOptions) -> Self {
        Lowering {
            options,
            graph: GraphBuilder::default(),
            last: None,
            shared: HashMap::new(),
            slots: 0,
            inputs: 0,
            steps: Vec::new(),
            gpus: None,
        }
    }

    pub(crate) fn finish(self) -> Lowered {
        Lowered {
            graph: self.graph.finish(),
            slots: self.slots,
            inputs: self.inputs,
            steps: self.steps,
        }
    }

    /// Records a node that is neither input nor step.
    pub(crate) fn push(
        &mut self,
        label: impl Into<String>,
        kind: NodeKind,
        output: &'static str,
        inputs: Vec<(NodeId, Option<String>)>,
    ) {
        self.last = Some(self.graph.push(label, kind, output, inputs));
    }

    /// Node `id`'s label (a step node's name).
    pub(crate) fn label_of(&self, id: NodeId) -> Option<&str> {
        self.graph.label(id)
    }

    /// The id of the node lowered last.
    pub(crate) fn last_id(&self) -> Result<NodeId, DeployError> {
        self.last.ok_or(DeployError::Internal(
            "a node lowered without recording itself",
        ))
    }

    /// Records an `Input` node.
    /// The pipeline's input; an error inside the graph `.map_each`
    /// applies to each item, whose input is the item.
    pub(crate) fn input(&mut self, output: &'static str) -> Result<(), DeployError> {
        if self.graph.each_source().is_some() {
            return Err(DeployError::OutsideItem {
                node: "the pipeline's `Input`".to_string(),
            });
        }
        self.inputs += 1;
        self.push("input", NodeKind::Input, output, Vec::new());
        Ok(())
    }

    /// A shared node met again: its evaluator, its id now the last.
    ///
    /// A shared node belongs to the graph it was first met in: the
    /// pipeline's, or the graph `.map_each` applies to each item (which
    /// runs once per item, with the item as its input). Met again in
    /// another one, it is an error: its value there would be computed
    /// again from the wrong input.
    pub(crate) fn shared_again<T: Clone + 'static>(
        &mut self,
        key: usize,
    ) -> Result<Option<T>, DeployError> {
        let Some((eval, id, each)) = self.shared.get(&key) else {
            return Ok(None);
        };
        if *each != self.graph.each_sources() {
            let label = self.graph.label(*id).unwrap_or("a node").to_string();
            return Err(DeployError::OutsideItem { node: label });
        }
        let Some(eval) = eval.downcast_ref::<T>() else {
            return Ok(None);
        };
        let eval = eval.clone();
        self.last = Some(*id);
        Ok(Some(eval))
    }

    /// A shared node lowered for the first time (its node is the last).
    pub(crate) fn shared_first<T: Send + 'static>(
        &mut self,
        key: usize,
        eval: T,
    ) -> Result<(), DeployError> {
        let id = self.last_id()?;
        self.graph.mark_shared(id);
        let each = self.graph.each_sources();
        self.shared.insert(key, (Box::new(eval), id, each));
        Ok(())
    }

    /// A slot for one shared node's value per call.
    /// How many shared-node slots the graph has so far.
    pub(crate) fn slots(&self) -> usize {
        self.slots
    }

    /// Starts lowering the graph applied to each item of node `source`.
    pub(crate) fn enter_each(&mut self, source: NodeId) {
        self.graph.enter_each(source);
    }

    /// Ends [`enter_each`](Self::enter_each).
    pub(crate) fn leave_each(&mut self) {
        self.graph.leave_each();
    }

    /// The stream node whose items the graph being lowered takes; an
    /// error outside `.map_each`.
    pub(crate) fn each_source(&self) -> Result<NodeId, DeployError> {
        self.graph.each_source().ok_or(DeployError::Internal(
            "an item node lowered outside `.map_each`",
        ))
    }

    pub(crate) fn new_slot(&mut self) -> usize {
        self.slots += 1;
        self.slots - 1
    }

    /// Records a step node of `S`, names it, plans it, and leaves its
    /// start for later.
    pub(crate) fn step<S: StepFn>(
        &mut self,
        named: Option<&'static str>,
        output: &'static str,
        inputs: Vec<NodeId>,
        init: S::Init,
    ) -> Result<LoweredStep<S>, DeployError> {
        let (id, name) = self.graph.step(&S::INFO, named, output, inputs);
        self.last = Some(id);
        let gpus = &mut self.gpus;
        let mut count = || *gpus.get_or_insert_with(crate::runtime::cuda_device_count);
        let plan = plan(&S::INFO, S::BATCH, name, self.options, &mut count)?;
        let counters = Arc::new(StepCounters::default());
        let runner: RunnerSlot<S> = Arc::new(OnceLock::new());
        let slot = Arc::clone(&runner);
        let (for_start, started) = (plan.clone(), Arc::clone(&counters));
        self.steps.push(PlannedStep {
            plan,
            counters: Arc::clone(&counters),
            start: Box::new(move |runtimes| {
                let runner = start::<S>(&for_start, init, started, runtimes)?;
                slot.set(runner)
                    .map_err(|_| DeployError::Internal("a step started twice"))
            }),
        });
        Ok(LoweredStep {
            runner,
            counters,
            name,
        })
    }
}
