//! Graph semantics in local mode: fan-out runs once, gather keeps order,
//! routes run only the chosen branch, errors name their step, deploy checks
//! the graph, and pipelines serve many threads at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use pipeline_core::prelude::*;
use pipeline_core::{NodeKind, StepFn};

static PREPROCESS_RUNS: AtomicUsize = AtomicUsize::new(0);

#[step]
fn preprocess(x: i64) -> i64 {
    PREPROCESS_RUNS.fetch_add(1, Ordering::SeqCst);
    x * 10
}

#[step]
fn add_one(x: i64) -> i64 {
    x + 1
}

#[step]
fn add_two(x: i64) -> i64 {
    x + 2
}

#[step]
fn combine(xs: Vec<i64>) -> Vec<i64> {
    xs
}

#[test]
fn shared_node_runs_once_per_call() {
    let pre = preprocess(Input::<i64>::new()).shared();
    let p = combine(vec![
        add_one(pre.clone()).boxed(),
        add_two(pre.clone()).boxed(),
        pre.boxed(),
    ])
    .deploy()
    .unwrap();
    let before = PREPROCESS_RUNS.load(Ordering::SeqCst);
    assert_eq!(p.call(1).unwrap(), vec![11, 12, 10]);
    assert_eq!(PREPROCESS_RUNS.load(Ordering::SeqCst) - before, 1);
    assert_eq!(p.call(2).unwrap(), vec![21, 22, 20]);
    assert_eq!(PREPROCESS_RUNS.load(Ordering::SeqCst) - before, 2);
}

static CLONED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[step]
fn counted(x: i64) -> i64 {
    CLONED_RUNS.fetch_add(1, Ordering::SeqCst);
    x * 10
}

#[test]
fn a_cloned_node_is_shared_and_runs_once_per_call() {
    #[step]
    fn add(a: i64, b: i64) -> i64 {
        a + b
    }
    // A step node, a model node and the input, each cloned rather than
    // `.shared()`: one run of `counted` per call, one input, and the model
    // node is one step of the graph.
    let x = Input::<i64>::new();
    let c = counted(x.clone());
    let m = Model::bind(5, x);
    let p = add(add(c.clone(), c), add(m.clone(), m)).deploy().unwrap();
    let before = CLONED_RUNS.load(Ordering::SeqCst);
    assert_eq!(p.call(1).unwrap(), 10 + 10 + 6 + 6);
    assert_eq!(p.call(2).unwrap(), 20 + 20 + 7 + 7);
    assert_eq!(CLONED_RUNS.load(Ordering::SeqCst) - before, 2);
    let steps: Vec<_> = p.report().iter().map(|r| r.step).collect();
    assert_eq!(steps, ["counted", "add", "Model", "add_1", "add_2"]);
    // Described once each, marked shared, before and after deploy alike.
    let x = Input::<i64>::new();
    let c = counted(x.clone());
    let g = add(c.clone(), add(c, x)).graph();
    assert_eq!(
        g.nodes()
            .iter()
            .filter(|n| n.label.starts_with("counted"))
            .count(),
        1
    );
    assert_eq!(
        g.nodes()
            .iter()
            .filter(|n| n.kind == NodeKind::Input)
            .count(),
        1
    );
}

#[test]
fn an_unused_clone_and_a_failing_cloned_node_behave_as_shared_nodes() {
    #[step]
    fn fail_on_odd(x: i64) -> Result<i64, String> {
        if x % 2 == 1 {
            Err(format!("{x} is odd"))
        } else {
            Ok(x)
        }
    }
    #[step]
    fn add(a: i64, b: i64) -> i64 {
        a + b
    }
    let f = fail_on_odd(Input::<i64>::new());
    let spare = f.clone();
    let p = add(f.clone(), f).deploy().unwrap();
    drop(spare);
    assert_eq!(p.call(4).unwrap(), 8);
    let err = p.call(3).unwrap_err();
    assert_eq!(err.step(), Some("fail_on_odd"));
}

#[test]
fn a_node_kept_after_deploy_is_refused_by_a_second_deploy_in_words() {
    #[step]
    fn add(a: i64, b: i64) -> i64 {
        a + b
    }
    // Its own step, not `counted`: that one's run counter belongs to the
    // test above, which runs at the same time.
    #[step]
    fn counted(x: i64) -> i64 {
        x * 10
    }
    let c = counted(Input::<i64>::new());
    let kept = c.clone();
    let p = add(c.clone(), c).deploy().unwrap();
    assert_eq!(p.call(1).unwrap(), 20);
    let err = add(kept.clone(), kept).deploy().unwrap_err();
    assert!(matches!(err, DeployError::NodeDeployed { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("step `counted` was taken by an earlier `deploy()`"),
        "{err}"
    );
    // The same for a `.shared()` node, and after a deploy that failed.
    let s = counted(Input::<i64>::new()).shared();
    let kept = s.clone();
    let bad = add(s.clone(), s).deploy_with(DeployOptions::new().replicas("typo", 2));
    assert!(matches!(bad, Err(DeployError::UnknownStep { .. })));
    let err = add(kept.clone(), kept).deploy().unwrap_err();
    assert!(
        err.to_string().starts_with("a shared node was taken"),
        "{err}"
    );
}

struct Model {
    bias: i64,
}

#[step]
impl Model {
    fn new(bias: i64) -> Self {
        Model { bias }
    }
    fn call(&self, x: i64) -> i64 {
        x + self.bias
    }
}

#[test]
fn ensemble_of_model_instances_gathers_in_order() {
    let pre = Input::<i64>::new().shared();
    let models = [1, 10, 100].map(|b| Model::bind(b, pre.clone()));
    let p = combine(models).deploy().unwrap();
    assert_eq!(p.call(5).unwrap(), vec![6, 15, 105]);
}

#[derive(Clone, Debug)]
struct Request {
    model: String,
    x: i64,
}

static SMALL_RUNS: AtomicUsize = AtomicUsize::new(0);
static LARGE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[step]
fn pick(r: Request) -> String {
    r.model
}

#[step]
fn small(r: Request) -> i64 {
    SMALL_RUNS.fetch_add(1, Ordering::SeqCst);
    r.x + 1
}

#[step]
fn large(r: Request) -> i64 {
    LARGE_RUNS.fetch_add(1, Ordering::SeqCst);
    r.x * 100
}

#[test]
fn route_runs_only_the_chosen_branch() {
    let req = Input::<Request>::new().shared();
    let p = route(pick(req.clone()))
        .branch("small".to_string(), small(req.clone()))
        .branch("large".to_string(), large(req))
        .deploy()
        .unwrap();
    let call = |model: &str| {
        p.call(Request {
            model: model.into(),
            x: 3,
        })
    };
    let (s0, l0) = (
        SMALL_RUNS.load(Ordering::SeqCst),
        LARGE_RUNS.load(Ordering::SeqCst),
    );
    assert_eq!(call("small").unwrap(), 4);
    assert_eq!(
        (
            SMALL_RUNS.load(Ordering::SeqCst) - s0,
            LARGE_RUNS.load(Ordering::SeqCst) - l0
        ),
        (1, 0)
    );
    assert_eq!(call("large").unwrap(), 300);
    assert_eq!(
        (
            SMALL_RUNS.load(Ordering::SeqCst) - s0,
            LARGE_RUNS.load(Ordering::SeqCst) - l0
        ),
        (1, 1)
    );

    let err = call("medium").unwrap_err();
    assert!(
        matches!(&err, PipelineError::NoBranch { key, .. } if key == "\"medium\""),
        "{err}"
    );
}

#[step]
fn fallback(r: Request) -> i64 {
    r.x + 1
}

#[test]
fn route_otherwise_catches_unknown_keys_and_duplicate_keys_fail_deploy() {
    let req = Input::<Request>::new().shared();
    let p = route(pick(req.clone()))
        .branch("large".to_string(), large(req.clone()))
        .otherwise(fallback(req))
        .deploy()
        .unwrap();
    assert_eq!(
        p.call(Request {
            model: "other".into(),
            x: 1
        })
        .unwrap(),
        2
    );

    let req = Input::<Request>::new().shared();
    let err = route(pick(req.clone()))
        .branch("a".to_string(), small(req.clone()))
        .branch("a".to_string(), large(req))
        .deploy()
        .unwrap_err();
    assert!(
        matches!(&err, DeployError::DuplicateBranch { route, key } if route == "pick" && key == "\"a\""),
        "{err}"
    );

    // `.otherwise` twice: the later would silently replace the earlier.
    let req = Input::<Request>::new().shared();
    let err = route(pick(req.clone()))
        .branch("a".to_string(), small(req.clone()))
        .otherwise(large(req.clone()))
        .otherwise(fallback(req))
        .deploy()
        .unwrap_err();
    assert!(
        matches!(&err, DeployError::DuplicateOtherwise { route } if route == "pick"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "route `pick` was given `.otherwise(..)` twice: give one"
    );
}

#[derive(Debug)]
enum ParseError {
    Empty,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("empty input")
    }
}
impl std::error::Error for ParseError {}

#[step]
fn parse(s: String) -> Result<i64, ParseError> {
    if s.is_empty() {
        Err(ParseError::Empty)
    } else {
        Ok(s.len() as i64)
    }
}

#[test]
fn step_errors_name_the_step_and_keep_the_source() {
    let p = add_one(parse(Input::<String>::new())).deploy().unwrap();
    assert_eq!(p.call("abc".into()).unwrap(), 4);
    let err = p.call(String::new()).unwrap_err();
    assert_eq!(err.step(), Some("parse"));
    // This layer's message, then the cause, each once.
    assert_eq!(err.to_string(), "step `parse` failed");
    let source = std::error::Error::source(&err).expect("source kept");
    assert_eq!(source.to_string(), "empty input");
    assert!(source.downcast_ref::<ParseError>().is_some());
}

#[test]
fn failure_in_a_shared_node_reaches_every_consumer_once() {
    let parsed = parse(Input::<String>::new()).shared();
    let p = combine(vec![
        add_one(parsed.clone()).boxed(),
        add_two(parsed).boxed(),
    ])
    .deploy()
    .unwrap();
    let err = p.call(String::new()).unwrap_err();
    assert_eq!(err.step(), Some("parse"));
}

struct Flaky;

#[step]
impl Flaky {
    fn new(fail: bool) -> Result<Self, String> {
        if fail {
            Err("weights not found".to_string())
        } else {
            Ok(Flaky)
        }
    }
    fn call(&mut self, x: i64) -> i64 {
        x
    }
}

#[test]
fn constructor_failure_fails_deploy_naming_the_step() {
    let err = Flaky::bind(true, Input::<i64>::new()).deploy().unwrap_err();
    assert!(matches!(
        err,
        DeployError::Build {
            step: "Flaky",
            replica: 0,
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "step `Flaky`: the constructor of replica 0 failed"
    );
    let cause = std::error::Error::source(&err).expect("the constructor's error");
    assert_eq!(cause.to_string(), "weights not found");
    assert!(Flaky::bind(false, Input::<i64>::new()).deploy().is_ok());
}

#[test]
fn deploy_checks_the_input_count() {
    #[step]
    fn add(a: i64, b: i64) -> i64 {
        a + b
    }
    let err = add(Input::<i64>::new(), Input::<i64>::new())
        .deploy()
        .unwrap_err();
    assert!(matches!(err, DeployError::SeveralInputs { count: 2 }));
    let err = combine(Vec::<Input<i64>>::new()).deploy().unwrap_err();
    assert!(matches!(err, DeployError::NoInput));
}

#[step(mode = "actors", replicas = 2)]
fn heavy(x: i64) -> i64 {
    x
}

#[step(mode = "tasks")]
async fn light(x: i64) -> i64 {
    tokio::task::yield_now().await;
    x
}

#[test]
fn report_says_how_each_step_runs_and_local_forces_inline() {
    let p = light(heavy(Input::<i64>::new())).deploy().unwrap();
    assert_eq!(p.call(7).unwrap(), 7);
    let report = p.report();
    assert_eq!(report.len(), 2);
    assert_eq!(
        (
            report[0].step,
            report[0].requested,
            report[0].running,
            report[0].replicas
        ),
        ("heavy", Mode::Actors, Mode::Actors, 2)
    );
    assert_eq!(report[0].note, None);
    assert_eq!(
        (report[1].step, report[1].requested, report[1].running),
        ("light", Mode::Tasks, Mode::Tasks)
    );

    let p = light(heavy(Input::<i64>::new()))
        .deploy_with(DeployOptions::local())
        .unwrap();
    assert_eq!(p.call(7).unwrap(), 7);
    assert!(p
        .report()
        .iter()
        .all(|r| r.running == Mode::Local && r.replicas == 1));
    assert!(p.report()[0].note.unwrap().contains("DeployOptions::local"));
    assert_eq!(<heavy<()> as StepFn>::INFO.replicas, 2);
}

#[test]
fn graph_prints_as_dot_and_mermaid_before_deploy() {
    let pre = preprocess(Input::<i64>::new()).shared();
    let node = combine([add_one(pre.clone()), add_one(pre)]);
    let graph = node.graph();
    let kinds: Vec<_> = graph.nodes().iter().map(|n| n.label.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "input",
            "preprocess",
            "add_one",
            "add_one_1",
            "gather",
            "combine"
        ]
    );
    assert!(graph.nodes()[1].shared);
    assert!(matches!(graph.nodes()[0].kind, NodeKind::Input));

    let dot = graph.to_dot();
    assert!(dot.starts_with("digraph pipeline {"));
    assert!(
        dot.contains("n1 -> n2;") && dot.contains("n1 -> n3;"),
        "{dot}"
    );
    assert!(dot.contains("label=\"combine\""));
    let mermaid = graph.to_mermaid();
    assert!(
        mermaid.contains("n1 --> n2") && mermaid.contains("n4 --> n5"),
        "{mermaid}"
    );

    // The deployed pipeline keeps the same picture.
    assert_eq!(node.deploy().unwrap().graph(), &graph);
}

#[test]
fn route_graph_labels_branches_with_their_keys() {
    let req = Input::<Request>::new().shared();
    let node = route(pick(req.clone()))
        .branch("small".to_string(), small(req.clone()))
        .otherwise(fallback(req));
    let dot = node.graph().to_dot();
    assert!(
        dot.contains("[label=\"key\"]") && dot.contains("[label=\"\\\"small\\\"\"]"),
        "{dot}"
    );
    assert!(dot.contains("[label=\"otherwise\"]"));
}

#[test]
fn many_threads_call_one_pipeline() {
    let p = add_two(add_one(Input::<i64>::new())).deploy().unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let p = p.clone();
            std::thread::spawn(move || {
                (0..500)
                    .map(|i| p.call(t * 1000 + i).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for (t, h) in threads.into_iter().enumerate() {
        let got = h.join().unwrap();
        let want: Vec<i64> = (0..500).map(|i| t as i64 * 1000 + i + 3).collect();
        assert_eq!(got, want);
    }
}

#[tokio::test]
async fn call_async_from_a_runtime_and_blocking_call_refuses_there() {
    let p = light(add_one(Input::<i64>::new())).deploy().unwrap();
    assert_eq!(p.call_async(1).await.unwrap(), 2);
    assert!(matches!(
        p.call(1),
        Err(PipelineError::BlockingCallInAsyncContext)
    ));
}

struct Counter {
    n: Arc<AtomicUsize>,
}

#[step]
impl Counter {
    fn new(n: Arc<AtomicUsize>) -> Self {
        Counter { n }
    }
    async fn call(&mut self, x: i64) -> i64 {
        self.n.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        x
    }
}

#[test]
fn async_mut_model_keeps_state_between_calls() {
    let n = Arc::new(AtomicUsize::new(0));
    let p = Counter::bind(n.clone(), Input::<i64>::new())
        .deploy()
        .unwrap();
    for i in 0..5 {
        assert_eq!(p.call(i).unwrap(), i);
    }
    assert_eq!(n.load(Ordering::SeqCst), 5);
}

/// Every kind of node can be a route's key: a tuple gather (its `Vec` of
/// outputs), a boxed node, a shared node, a collected stream.
#[test]
fn route_keys_of_every_node_kind() {
    #[step]
    fn parity(x: i64) -> i64 {
        x % 2
    }
    #[step]
    fn negate(x: i64) -> i64 {
        -x
    }
    #[step]
    fn digits(x: i64) -> ItemStream<i64> {
        ItemStream::iter(
            x.to_string()
                .bytes()
                .map(|b| i64::from(b - b'0'))
                .collect::<Vec<_>>(),
        )
    }
    // A shared node belongs to one graph: a fresh input for each.
    let x = Input::<i64>::new().shared();
    let by_tuple = route((parity(x.clone()), parity(x.clone())))
        .branch(vec![0, 0], negate(x.clone()))
        .otherwise(parity(x.clone()))
        .deploy()
        .unwrap();
    assert_eq!(by_tuple.call(4).unwrap(), -4);
    assert_eq!(by_tuple.call(3).unwrap(), 1);
    let x = Input::<i64>::new().shared();
    let by_boxed = route(parity(x.clone()).boxed())
        .branch(0, negate(x.clone()))
        .otherwise(parity(x.clone()))
        .deploy()
        .unwrap();
    assert_eq!(by_boxed.call(6).unwrap(), -6);
    let x = Input::<i64>::new().shared();
    let by_shared = route(parity(x.clone()).shared())
        .branch(1, negate(x.clone()))
        .otherwise(parity(x.clone()))
        .deploy()
        .unwrap();
    assert_eq!(by_shared.call(7).unwrap(), -7);
    let x = Input::<i64>::new().shared();
    let by_collected = route(digits(x.clone()).collect())
        .branch(vec![4, 2], negate(x.clone()))
        .otherwise(parity(x))
        .deploy()
        .unwrap();
    assert_eq!(by_collected.call(42).unwrap(), -42);
    assert_eq!(by_collected.call(43).unwrap(), 1);
}

/// A route key whose `PartialEq` panics fails that call, naming the key
/// node, as a panic in a step would; the route answers the next call.
#[test]
fn a_route_key_panicking_in_eq_fails_the_call_not_the_caller() {
    #[derive(Debug)]
    struct Unlucky(u32);
    impl PartialEq for Unlucky {
        fn eq(&self, other: &Self) -> bool {
            assert!(self.0 != 13 && other.0 != 13, "13 compares with nothing");
            self.0 == other.0
        }
    }
    #[step]
    fn unlucky(x: u32) -> Unlucky {
        Unlucky(x)
    }
    #[step]
    fn one(x: u32) -> u32 {
        x + 100
    }
    #[step]
    fn other(x: u32) -> u32 {
        x
    }
    let x = Input::<u32>::new().shared();
    let p = route(unlucky(x.clone()))
        .branch(Unlucky(1), one(x.clone()))
        .otherwise(other(x))
        .deploy()
        .unwrap();
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.call(13)))
        .expect("the key's panic reached the caller")
        .unwrap_err();
    assert!(
        matches!(&err, PipelineError::Panicked { step: "unlucky", message } if message.contains("13 compares")),
        "{err:?}"
    );
    assert_eq!(p.call(1).unwrap(), 101);
    assert_eq!(p.call(2).unwrap(), 2);
}
