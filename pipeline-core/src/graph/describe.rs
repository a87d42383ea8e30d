//! A printable picture of a graph: [`Graph`], with DOT and Mermaid output.
//! Built by walking the typed nodes without consuming them, so a graph can be
//! printed before it is deployed.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::names::InstanceNames;
use crate::step::{AutoscalePolicy, Mode, StepInfo, StepKind};

/// Index of a node in a [`Graph`].
pub type NodeId = usize;

/// What kind of node a [`GraphNode`] is.
///
/// ```
/// use pipeline_core::prelude::*;
/// use pipeline_core::NodeKind;
///
/// #[step(mode = "actors", replicas = 2)]
/// fn embed(x: i64) -> i64 { x }
///
/// let graph = embed(Input::<i64>::new()).graph();
/// assert_eq!(graph.nodes()[0].kind, NodeKind::Input);
/// assert!(matches!(graph.nodes()[1].kind, NodeKind::Step { mode: Mode::Actors, replicas: 2, .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeKind {
    /// The pipeline's input.
    Input,
    /// A `#[step]`.
    Step {
        /// The step's own name (the function or the model type); the
        /// node's label is this instance's name, which differs when the
        /// node was `.named(..)` or the graph holds the step twice.
        step: &'static str,
        /// Function or model.
        kind: StepKind,
        /// The requested mode.
        mode: Mode,
        /// The requested replicas (the minimum when autoscaled).
        replicas: usize,
        /// The attribute's autoscaling, if any.
        autoscale: Option<AutoscalePolicy>,
    },
    /// A list of nodes gathered into one `Vec`.
    Gather,
    /// A route: runs the one branch whose key matches.
    Route,
    /// Each item of a stream, fed to the graph `.map_each(..)` applies.
    Each,
    /// A stream's items gathered into one `Vec` (`.collect()`).
    Collect,
}

/// One node of a [`Graph`].
///
/// ```
/// use pipeline_core::prelude::*;
///
/// #[step]
/// fn add_one(x: i64) -> i64 { x + 1 }
///
/// let graph = add_one(Input::<i64>::new()).graph();
/// let node = &graph.nodes()[1];
/// assert_eq!((node.label.as_str(), node.output), ("add_one", "i64"));
/// assert_eq!(node.inputs, [(0, None)]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphNode {
    /// Its index.
    pub id: NodeId,
    /// Its label: for a step, this instance's name (the step's name, the
    /// one given with `.named(..)`, or either with `_1`, `_2`, ... when the
    /// graph holds it twice; metrics and errors use the same); else
    /// `input`, `gather` or `route`.
    pub label: String,
    /// What it is.
    pub kind: NodeKind,
    /// The Rust type it produces.
    pub output: &'static str,
    /// Whether several nodes consume it (a `.shared()` node).
    pub shared: bool,
    /// Its upstream nodes, each with an edge label (a route's keys).
    pub inputs: Vec<(NodeId, Option<String>)>,
}

/// The shape of a graph: nodes and edges, printable as DOT or Mermaid.
///
/// ```
/// use pipeline_core::prelude::*;
///
/// #[step]
/// fn add_one(x: i64) -> i64 { x + 1 }
///
/// let node = add_one(Input::<i64>::new());
/// let graph = node.graph();
/// assert_eq!(graph.nodes().len(), 2);
/// assert!(graph.to_dot().contains("\"add_one\""));
/// assert!(graph.to_mermaid().starts_with("flowchart LR"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Graph {
    nodes: Vec<GraphNode>,
}

impl Graph {
    /// The nodes, upstream before downstream; the last one is the output.
    pub fn nodes(&self) -> &[GraphNode] {
        &self.nodes
    }

    /// The step nodes, in graph order.
    pub fn steps(&self) -> impl Iterator<Item = &GraphNode> {
        self.nodes
            .iter()
            .filter(|n| matches!(n.kind, NodeKind::Step { .. }))
    }

    /// Graphviz DOT text (`dot -Tsvg`).
    pub fn to_dot(&self) -> String {
        self.to_dot_annotated(|_| None)
    }

    /// DOT text with an extra line under the nodes `note` returns one for
    /// (live counters, say).
    ///
    /// ```
    /// use pipeline_core::prelude::*;
    /// #[step]
    /// fn f(x: i64) -> i64 { x }
    /// let g = f(Input::<i64>::new()).graph();
    /// let dot = g.to_dot_annotated(|n| (n.label == "f").then(|| "3 calls".to_string()));
    /// assert!(dot.contains("f\\n3 calls"));
    /// assert!(g.to_mermaid_annotated(|_| Some("x".into())).contains("<br/>x"));
    /// ```
    pub fn to_dot_annotated(&self, note: impl Fn(&GraphNode) -> Option<String>) -> String {
        let mut out = String::from("digraph pipeline {\n  rankdir=LR;\n  node [shape=box];\n");
        for n in &self.nodes {
            let shape = match n.kind {
                NodeKind::Input => "ellipse",
                NodeKind::Gather => "invtriangle",
                NodeKind::Route => "diamond",
                NodeKind::Each => "parallelogram",
                NodeKind::Collect => "invtriangle",
                NodeKind::Step { .. } => "box",
            };
            let mut label = escape(&self.caption(n));
            if let Some(note) = note(n) {
                label = format!("{label}\\n{}", escape(&note));
            }
            let _ = writeln!(
                out,
                "  n{} [label=\"{label}\", shape={shape}, tooltip=\"{}\"];",
                n.id,
                escape(n.output)
            );
        }
        for n in &self.nodes {
            for (from, label) in &n.inputs {
                match label {
                    Some(l) => {
                        let _ = writeln!(out, "  n{from} -> n{} [label=\"{}\"];", n.id, escape(l));
                    }
                    None => {
                        let _ = writeln!(out, "  n{from} -> n{};", n.id);
                    }
                }
            }
        }
        out.push_str("}\n");
        out
    }

    /// Mermaid flowchart text.
    pub fn to_mermaid(&self) -> String {
        self.to_mermaid_annotated(|_| None)
    }

    /// Mermaid text with an extra line under the nodes `note` returns one
    /// for (see [`Graph::to_dot_annotated`]).
    pub fn to_mermaid_annotated(&self, note: impl Fn(&GraphNode) -> Option<String>) -> String {
        let mut out = String::from("flowchart LR\n");
        for n in &self.nodes {
            let mut caption = self
                .caption(n)
                .replace('"', "#quot;")
                .replace('\n', "<br/>");
            if let Some(note) = note(n) {
                caption = format!("{caption}<br/>{}", note.replace('"', "#quot;"));
            }
            let (open, close) = match n.kind {
                NodeKind::Input => ("([", "])"),
                NodeKind::Gather => ("[/", "\\]"),
                NodeKind::Route => ("{", "}"),
                NodeKind::Each => ("[/", "/]"),
                NodeKind::Collect => ("[/", "\\]"),
                NodeKind::Step { .. } => ("[", "]"),
            };
            let _ = writeln!(out, "  n{}{open}\"{caption}\"{close}", n.id);
        }
        for n in &self.nodes {
            for (from, label) in &n.inputs {
                match label {
                    Some(l) => {
                        let _ = writeln!(
                            out,
                            "  n{from} -->|\"{}\"| n{}",
                            l.replace('"', "#quot;").replace('\n', " "),
                            n.id
                        );
                    }
                    None => {
                        let _ = writeln!(out, "  n{from} --> n{}", n.id);
                    }
                }
            }
        }
        out
    }

    fn caption(&self, n: &GraphNode) -> String {
        match &n.kind {
            NodeKind::Step {
                mode: Mode::Actors,
                autoscale: Some(a),
                ..
            } => format!(
                "{} (actors {}..{})",
                n.label, a.min_replicas, a.max_replicas
            ),
            NodeKind::Step { mode, replicas, .. } if *mode == Mode::Actors => {
                format!("{} (actors x{replicas})", n.label)
            }
            NodeKind::Step { mode, .. } if *mode == Mode::Tasks => format!("{} (tasks)", n.label),
            _ => n.label.clone(),
        }
    }
}

impl std::fmt::Display for Graph {
    /// Prints the Mermaid form.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_mermaid())
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Collects [`GraphNode`]s while nodes describe themselves.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    graph: Graph,
    shared: HashMap<usize, NodeId>,
    names: InstanceNames,
    /// The stream nodes whose items the graphs being described take
    /// (`.map_each`), innermost last.
    each: Vec<NodeId>,
}

impl GraphBuilder {
    pub(crate) fn finish(self) -> Graph {
        self.graph
    }

    pub(crate) fn push(
        &mut self,
        label: impl Into<String>,
        kind: NodeKind,
        output: &'static str,
        inputs: Vec<(NodeId, Option<String>)>,
    ) -> NodeId {
        let id = self.graph.nodes.len();
        self.graph.nodes.push(GraphNode {
            id,
            label: label.into(),
            kind,
            output,
            shared: false,
            inputs,
        });
        id
    }

    /// Records a step node and gives it its name (the one place names are
    /// given: see `names.rs`).
    pub(crate) fn step(
        &mut self,
        info: &StepInfo,
        name: Option<&'static str>,
        output: &'static str,
        inputs: Vec<NodeId>,
    ) -> (NodeId, &'static str) {
        let label = self.names.unique(name.unwrap_or(info.name));
        let kind = NodeKind::Step {
            step: info.name,
            kind: info.kind,
            mode: info.mode,
            replicas: info.replicas,
            autoscale: info.autoscale,
        };
        let id = self.push(
            label,
            kind,
            output,
            inputs.into_iter().map(|i| (i, None)).collect(),
        );
        (id, label)
    }

    /// Starts describing the graph applied to each item of node `source`.
    pub(crate) fn enter_each(&mut self, source: NodeId) {
        self.each.push(source);
    }

    /// Ends [`enter_each`](Self::enter_each).
    pub(crate) fn leave_each(&mut self) {
        self.each.pop();
    }

    /// The stream node whose items the graph being described takes.
    pub(crate) fn each_source(&self) -> Option<NodeId> {
        self.each.last().copied()
    }

    /// Every enclosing `.map_each`'s stream node, outermost first.
    pub(crate) fn each_sources(&self) -> Vec<NodeId> {
        self.each.clone()
    }

    /// Node `id`'s label.
    pub(crate) fn label(&self, id: NodeId) -> Option<&str> {
        self.graph.nodes.get(id).map(|n| n.label.as_str())
    }

    /// Marks node `id` as consumed by several nodes.
    pub(crate) fn mark_shared(&mut self, id: NodeId) {
        if let Some(node) = self.graph.nodes.get_mut(id) {
            node.shared = true;
        }
    }

    /// Describes a shared node once, however many consumers it has.
    pub(crate) fn shared(
        &mut self,
        key: usize,
        describe: impl FnOnce(&mut Self) -> NodeId,
    ) -> NodeId {
        if let Some(&id) = self.shared.get(&key) {
            return id;
        }
        let id = describe(self);
        self.mark_shared(id);
        self.shared.insert(key, id);
        id
    }
}
