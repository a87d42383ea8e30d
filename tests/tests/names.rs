//! Step node names: a step bound twice gets `_1`, `.named(..)` renames a
//! node, and every view of a deployed pipeline (graph, report, metrics,
//! health, errors, deploy options) uses the same names.

use std::error::Error as _;

use pipeline_core::prelude::*;

struct Scale(i64);

#[step(mode = "actors")]
impl Scale {
    fn new(k: i64) -> Self {
        Scale(k)
    }
    fn call(&self, x: i64) -> Result<i64, String> {
        // Each scale refuses one input: its own negative.
        if x == -self.0 {
            return Err(format!("scale by {} refuses {x}", self.0));
        }
        Ok(x * self.0)
    }
}

#[step]
fn sum(xs: Vec<i64>) -> i64 {
    xs.iter().sum()
}

#[step]
fn inc(x: i64) -> i64 {
    x + 1
}

#[step]
fn parity(x: i64) -> bool {
    x % 2 == 0
}

fn labels(graph: &pipeline_core::Graph) -> Vec<String> {
    graph.steps().map(|n| n.label.clone()).collect()
}

#[test]
fn a_step_bound_twice_keeps_two_sets_of_counters() {
    let x = Input::<i64>::new().shared();
    let node = sum([Scale::bind(2, x.clone()), Scale::bind(3, x)]);
    assert_eq!(labels(&node.graph()), ["Scale", "Scale_1", "sum"]);
    let p = node.deploy().expect("deploy");
    assert_eq!(p.call(1).expect("call"), 5);
    assert_eq!(p.call(2).expect("call"), 10);

    let names: Vec<_> = p.report().iter().map(|r| r.step).collect();
    assert_eq!(names, ["Scale", "Scale_1", "sum"]);
    let metrics = p.metrics();
    let requests: Vec<_> = metrics
        .iter()
        .map(|m| (m.step, m.requests, m.replicas))
        .collect();
    assert_eq!(
        requests,
        [("Scale", 2, 1), ("Scale_1", 2, 1), ("sum", 2, 1)]
    );
    assert_eq!(labels(p.graph()), ["Scale", "Scale_1", "sum"]);
    let health: Vec<_> = p.health().steps.iter().map(|s| s.step).collect();
    assert_eq!(health, ["Scale", "Scale_1", "sum"]);
}

#[test]
fn named_nodes_are_named_everywhere_and_take_their_own_options() {
    let x = Input::<i64>::new().shared();
    let node = sum(vec![
        Scale::bind(2, x.clone()).named("double").boxed(),
        Scale::bind(3, x.clone()).boxed(),
        Scale::bind(4, x.clone()).boxed(),
        inc(x).named("plus one").boxed(),
    ]);
    assert_eq!(
        labels(&node.graph()),
        ["double", "Scale", "Scale_1", "plus one", "sum"]
    );
    assert!(node.graph().to_mermaid().contains("double (actors x1)"));
    // By node name for that node alone; by step name for the others.
    let options = DeployOptions::new()
        .replicas("double", 3)
        .replicas("Scale", 2)
        .queue_bound("Scale_1", 7);
    let p = node.deploy_with(options).expect("deploy");
    assert_eq!(p.call(1).expect("call"), 2 + 3 + 4 + 2);
    let report: Vec<_> = p
        .report()
        .iter()
        .map(|r| (r.step, r.replicas, r.queue_bound))
        .collect();
    assert_eq!(
        report,
        [
            ("double", 3, 256),
            ("Scale", 2, 256),
            ("Scale_1", 2, 7),
            ("plus one", 1, 256),
            ("sum", 1, 256)
        ]
    );

    // A failing call names the node it failed in.
    let err = p.call(-2).expect_err("refused by the scale by 2");
    assert_eq!(err.step(), Some("double"), "{err}");
    assert!(err.to_string().contains("`double`"), "{err}");
    assert_eq!(
        err.source().map(ToString::to_string).as_deref(),
        Some("scale by 2 refuses -2")
    );
}

#[test]
fn deploy_options_must_name_a_node_or_a_step() {
    let node = || inc(Scale::bind(2, Input::<i64>::new()).named("double"));
    let err = node()
        .deploy_with(DeployOptions::new().replicas("tripple", 2))
        .expect_err("unknown name");
    let message = err.to_string();
    assert!(message.contains("`tripple`"), "{message}");
    assert!(
        message.contains("double") && message.contains("Scale"),
        "{message}"
    );
    assert!(node()
        .deploy_with(DeployOptions::new().replicas("Scale", 2))
        .is_ok());

    let err = Scale::bind(2, Input::<i64>::new())
        .named(" ")
        .deploy()
        .expect_err("empty name");
    assert!(err.to_string().contains("non-empty name"), "{err}");
}

#[test]
fn graph_labels_match_the_deployed_names_through_shares_and_routes() {
    let x = Input::<i64>::new().shared();
    let scaled = Scale::bind(10, x.clone()).shared();
    let node = route(parity(x.clone()))
        .branch(true, inc(scaled.clone()))
        .branch(false, sum([inc(scaled), inc(x)]));
    let described = labels(&node.graph());
    assert_eq!(
        described,
        ["parity", "Scale", "inc", "inc_1", "inc_2", "sum"]
    );
    let p = node.deploy().expect("deploy");
    let deployed: Vec<_> = p.metrics().iter().map(|m| m.step.to_string()).collect();
    assert_eq!(deployed, described);
    assert_eq!(p.call(2).expect("even"), 21);
    assert_eq!(p.call(3).expect("odd"), 31 + 4);
    let requests: Vec<_> = p.metrics().iter().map(|m| m.requests).collect();
    // Each call: parity and Scale; then one branch.
    assert_eq!(requests, [2, 2, 1, 1, 1, 1]);
}
