//! Stream steps: a step returning `ItemStream<T>` makes a node producing a
//! stream; `.map_each(step)`, `.collect()`, `call_stream` and `call_iter`;
//! order, backpressure, cancellation, errors and panics mid-stream, in
//! local, tasks and actors modes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use pipeline_core::prelude::*;

/// A hang guard, never a timing assertion.
const GUARD: std::time::Duration = std::time::Duration::from_secs(60);

fn wait_until(mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < GUARD, "condition never held");
        std::thread::yield_now();
    }
}

/// What a counting producer shares with the test: how many items it made,
/// and a signal when it was dropped (stopped).
#[derive(Clone, Default)]
struct Probe {
    produced: Arc<AtomicUsize>,
    stopped: Arc<tokio::sync::Notify>,
}

/// Yields `0..n`, counting each item it makes; `fail_at` makes item
/// `fail_at` an error, `panic_at` panics there.
struct Produce {
    next: u64,
    n: u64,
    fail_at: Option<u64>,
    panic_at: Option<u64>,
    probe: Probe,
}

impl Iterator for Produce {
    type Item = Result<u64, String>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.next == self.n {
            return None;
        }
        let i = self.next;
        self.next += 1;
        self.probe.produced.fetch_add(1, Ordering::SeqCst);
        if self.panic_at == Some(i) {
            panic!("item {i} exploded");
        }
        if self.fail_at == Some(i) {
            return Some(Err(format!("item {i} is bad")));
        }
        Some(Ok(i))
    }
}

impl Drop for Produce {
    fn drop(&mut self) {
        self.probe.stopped.notify_one();
    }
}

#[derive(Clone, Copy, Debug)]
struct Ask {
    n: u64,
    fail_at: Option<u64>,
    panic_at: Option<u64>,
}

fn ask(n: u64) -> Ask {
    Ask {
        n,
        fail_at: None,
        panic_at: None,
    }
}

fn produce(probe: &Probe, ask: Ask) -> ItemStream<u64> {
    ItemStream::try_iter(Produce {
        next: 0,
        n: ask.n,
        fail_at: ask.fail_at,
        panic_at: ask.panic_at,
        probe: probe.clone(),
    })
}

macro_rules! producer {
    ($name:ident, $($attr:tt)*) => {
        struct $name {
            probe: Probe,
        }

        #[step($($attr)*)]
        impl $name {
            fn new(probe: Probe) -> Self {
                $name { probe }
            }
            fn call(&self, ask: Ask) -> ItemStream<u64> {
                produce(&self.probe, ask)
            }
        }
    };
}

producer!(InTasks, mode = "tasks");
producer!(OnActors, mode = "actors", replicas = 2);
producer!(OnTaskActors, mode = "actors", placement = "task");

#[step(mode = "actors", replicas = 2)]
fn double(x: u64) -> u64 {
    x * 2
}

#[step(mode = "actors", batch(max_size = 8, wait_ms = 1))]
fn add_one_batched(xs: Vec<u64>) -> Vec<u64> {
    xs.into_iter().map(|x| x + 1).collect()
}

#[step]
fn fail_on_seven(x: u64) -> Result<u64, String> {
    if x == 7 {
        Err("seven is not allowed".into())
    } else {
        Ok(x)
    }
}

/// One pipeline per mode, each `Ask -> stream of u64`.
fn pipelines(probe: &Probe) -> Vec<(&'static str, Pipeline<Ask, ItemStream<u64>>)> {
    let local = InTasks::bind(probe.clone(), Input::<Ask>::new())
        .deploy_with(DeployOptions::local())
        .unwrap();
    let tasks = InTasks::bind(probe.clone(), Input::<Ask>::new())
        .deploy()
        .unwrap();
    let actors = OnActors::bind(probe.clone(), Input::<Ask>::new())
        .deploy()
        .unwrap();
    let task_actors = OnTaskActors::bind(probe.clone(), Input::<Ask>::new())
        .deploy()
        .unwrap();
    vec![
        ("local", local),
        ("tasks", tasks),
        ("actors", actors),
        ("task-placed actors", task_actors),
    ]
}

#[test]
fn items_come_in_order_in_every_mode() {
    let probe = Probe::default();
    for (mode, p) in pipelines(&probe) {
        let items: Vec<u64> = p.call_iter(ask(1000)).map(Result::unwrap).collect();
        assert_eq!(items, (0..1000).collect::<Vec<_>>(), "{mode}");
    }
}

#[test]
fn a_slow_consumer_holds_the_producer_within_the_channel_bound() {
    // At every item the consumer takes, the producer is at most one
    // channel (16) plus the item in hand ahead: memory stays bounded
    // however long the stream (10,000 items here).
    let probe = Probe::default();
    for (mode, p) in pipelines(&probe) {
        probe.produced.store(0, Ordering::SeqCst);
        let mut ahead_most = 0;
        for (taken, item) in p.call_iter(ask(10_000)).enumerate() {
            assert_eq!(item.unwrap(), taken as u64);
            let ahead = probe.produced.load(Ordering::SeqCst) - (taken + 1);
            ahead_most = ahead_most.max(ahead);
        }
        assert!(
            ahead_most <= 17,
            "{mode}: the producer ran {ahead_most} items ahead"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_stream_stops_the_producer() {
    let probe = Probe::default();
    for (mode, p) in pipelines(&probe) {
        probe.produced.store(0, Ordering::SeqCst);
        let stopped = probe.stopped.notified();
        let mut items = p.call_stream(ask(1_000_000));
        for i in 0..5 {
            assert_eq!(items.next().await.unwrap().unwrap(), i);
        }
        drop(items);
        stopped.await;
        let produced = probe.produced.load(Ordering::SeqCst);
        assert!(
            produced <= 5 + 17,
            "{mode}: {produced} items made for a consumer that took 5"
        );
    }
}

#[test]
fn an_item_error_ends_the_stream_after_the_items_before_it() {
    let probe = Probe::default();
    for (mode, p) in pipelines(&probe) {
        let got: Vec<_> = p
            .call_iter(Ask {
                fail_at: Some(3),
                ..ask(10)
            })
            .collect();
        assert_eq!(got.len(), 4, "{mode}: {got:?}");
        assert_eq!(
            got[..3]
                .iter()
                .map(|r| *r.as_ref().unwrap())
                .collect::<Vec<_>>(),
            [0, 1, 2]
        );
        let err = got[3].as_ref().unwrap_err();
        assert!(err.step().is_some(), "{mode}: {err}");
        assert_eq!(
            std::error::Error::source(err).unwrap().to_string(),
            "item 3 is bad"
        );
        // The step answered its stream; the error that ended it later
        // counts as the step's.
        let metrics = p.metrics();
        assert_eq!((metrics[0].requests, metrics[0].errors), (1, 1), "{mode}");
    }
}

#[test]
fn a_panic_mid_stream_ends_it_and_the_replica_is_rebuilt() {
    let probe = Probe::default();
    for (mode, p) in pipelines(&probe) {
        let got: Vec<_> = p
            .call_iter(Ask {
                panic_at: Some(2),
                ..ask(10)
            })
            .collect();
        assert_eq!(got.len(), 3, "{mode}: {got:?}");
        match &got[2] {
            Err(PipelineError::Panicked { step, message }) => {
                assert!(!step.is_empty());
                assert!(message.contains("item 2 exploded"), "{mode}: {message}");
            }
            other => panic!("{mode}: expected Panicked, got {other:?}"),
        }
        // The next call is served.
        let items: Vec<u64> = p.call_iter(ask(3)).map(Result::unwrap).collect();
        assert_eq!(items, [0, 1, 2], "{mode}");
        if mode.contains("actors") {
            // The replica rebuilds off the request path, once.
            wait_until(|| p.health().steps[0].rebuilds == 1);
            assert!(p.health().is_healthy(), "{mode}");
        }
    }
}

#[test]
fn map_each_keeps_order_through_actors_and_a_batched_step() {
    let probe = Probe::default();
    let p = OnActors::bind(probe, Input::<Ask>::new())
        .map_each(double)
        .map_each(add_one_batched)
        .deploy()
        .unwrap();
    let items: Vec<u64> = p.call_iter(ask(2000)).map(Result::unwrap).collect();
    assert_eq!(items, (0..2000).map(|x| x * 2 + 1).collect::<Vec<_>>());
    let batched = p
        .health()
        .steps
        .into_iter()
        .find(|s| s.step == "add_one_batched")
        .unwrap();
    assert!(
        batched.batches < batched.batched_calls,
        "items of one stream shared batches: {batched:?}"
    );
}

#[test]
fn collect_gathers_the_items_and_a_failing_item_step_fails_the_call() {
    let probe = Probe::default();
    let p = InTasks::bind(probe.clone(), Input::<Ask>::new())
        .map_each(double)
        .collect()
        .deploy()
        .unwrap();
    assert_eq!(p.call(ask(4)).unwrap(), [0, 2, 4, 6]);

    let p = InTasks::bind(probe, Input::<Ask>::new())
        .map_each(fail_on_seven)
        .collect()
        .deploy()
        .unwrap();
    let err = p.call(ask(20)).unwrap_err();
    assert_eq!(err.step(), Some("fail_on_seven"));
    assert_eq!(p.call(ask(7)).unwrap(), [0, 1, 2, 3, 4, 5, 6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_covers_the_whole_stream() {
    let probe = Probe::default();
    let p = Arc::new(
        OnActors::bind(probe.clone(), Input::<Ask>::new())
            .deploy()
            .unwrap(),
    );
    let stopped = probe.stopped.notified();
    // A consumer that takes one item and then stalls (never asks again)
    // sees the deadline pass: the stream ends with DeadlineExceeded.
    let mut items = p.call_stream_timeout(ask(u64::MAX), std::time::Duration::from_millis(50));
    assert_eq!(items.next().await.unwrap().unwrap(), 0);
    let rest: Vec<_> = items.collect().await;
    let last = rest.last().expect("an error at the end");
    assert!(
        matches!(last, Err(PipelineError::DeadlineExceeded { .. })),
        "{last:?}"
    );
    // And the producer is stopped.
    stopped.await;
}

#[test]
fn the_graph_shows_each_item_and_collect() {
    let graph = InTasks::bind(Probe::default(), Input::<Ask>::new())
        .map_each(double)
        .collect()
        .graph();
    let labels: Vec<&str> = graph.nodes().iter().map(|n| n.label.as_str()).collect();
    assert_eq!(
        labels,
        ["input", "InTasks", "each item", "double", "collect"]
    );
    assert!(
        graph.to_mermaid().contains("n1 --> n2"),
        "{}",
        graph.to_mermaid()
    );
}

#[step(mode = "actors", batch(max_size = 4))]
fn batched_streams(xs: Vec<u64>) -> Vec<ItemStream<u64>> {
    xs.into_iter().map(|x| ItemStream::iter(0..x)).collect()
}

#[test]
fn a_batched_stream_step_is_refused_at_deploy() {
    let err = batched_streams(Input::<u64>::new()).deploy().unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("batched_streams") && text.contains("cannot be batched"),
        "{text}"
    );
}

#[step]
fn split_words(s: String) -> ItemStream<String> {
    let words: Vec<String> = s.split_whitespace().map(String::from).collect();
    ItemStream::iter(words)
}

#[step]
fn pair(a: String, b: String) -> String {
    format!("{a}/{b}")
}

#[test]
fn the_graph_applied_to_each_item_reads_only_the_item() {
    // The pipeline's input and the items are both `String`, so an outer
    // node fits inside the per-item graph by type; it would be computed
    // again for each item from the item. Deploy refuses it, naming it.
    let doc = Input::<String>::new().shared();
    let outer = doc.clone();
    let err = split_words(doc)
        .map_each_with(move |word| pair(word, outer))
        .deploy()
        .unwrap_err();
    assert!(matches!(err, DeployError::OutsideItem { .. }), "{err}");
    assert!(err.to_string().contains("input"), "{err}");

    // A second `Input` inside: the pipeline's input again.
    let err = split_words(Input::<String>::new())
        .map_each_with(move |word| pair(word, Input::<String>::new()))
        .deploy()
        .unwrap_err();
    assert!(matches!(err, DeployError::OutsideItem { .. }), "{err}");

    // A node shared inside the per-item graph is fine.
    let p = split_words(Input::<String>::new())
        .map_each(|word| {
            let word = word.shared();
            pair(word.clone(), word)
        })
        .collect()
        .deploy()
        .unwrap();
    assert_eq!(p.call("a b".into()).unwrap(), ["a/a", "b/b"]);
}

/// Yields `0..n`, then waits for ever (an async producer with nothing more
/// to say yet); tells `stopped` when dropped.
struct Stalls {
    stopped: Arc<tokio::sync::Notify>,
}

impl Stalls {
    fn items(&self, n: u64) -> ItemStream<u64> {
        let guard = NotifyOnDrop(Arc::clone(&self.stopped));
        ItemStream::new(
            futures::stream::iter(0..n).chain(futures::stream::pending().map(move |x: u64| {
                let _keep = &guard;
                x
            })),
        )
    }
}

struct NotifyOnDrop(Arc<tokio::sync::Notify>);

impl Drop for NotifyOnDrop {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

macro_rules! staller {
    ($name:ident, $($attr:tt)*) => {
        struct $name(Stalls);

        #[step($($attr)*)]
        impl $name {
            fn new(stopped: Arc<tokio::sync::Notify>) -> Self {
                $name(Stalls { stopped })
            }
            fn call(&self, n: u64) -> ItemStream<u64> {
                self.0.items(n)
            }
        }
    };
}

staller!(StallTasks, mode = "tasks");
staller!(StallActor, mode = "actors");
staller!(StallTaskActor, mode = "actors", placement = "task");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_waiting_for_its_next_item_stops_when_the_consumer_leaves() {
    // One replica (or one permit in tasks mode): a producer that kept
    // waiting after its consumer left would hold it for ever.
    let stopped = Arc::new(tokio::sync::Notify::new());
    let pipelines: Vec<(&str, Pipeline<u64, ItemStream<u64>>)> = vec![
        (
            "tasks",
            StallTasks::bind(Arc::clone(&stopped), Input::new())
                .deploy_with(DeployOptions::new().queue_bound("StallTasks", 1))
                .unwrap(),
        ),
        (
            "actors",
            StallActor::bind(Arc::clone(&stopped), Input::new())
                .deploy()
                .unwrap(),
        ),
        (
            "task-placed actors",
            StallTaskActor::bind(Arc::clone(&stopped), Input::new())
                .deploy()
                .unwrap(),
        ),
    ];
    for (mode, p) in pipelines {
        for round in 0..3 {
            let notified = stopped.notified();
            // The stopped producer's permit or replica comes free just
            // after it is dropped: until then this call may be refused.
            let start = std::time::Instant::now();
            let mut items = loop {
                let mut items = p.call_stream(2);
                match items.next().await.unwrap() {
                    Ok(first) => {
                        assert_eq!(first, 0, "{mode} round {round}");
                        break items;
                    }
                    Err(PipelineError::Overloaded { .. }) if start.elapsed() < GUARD => {
                        tokio::task::yield_now().await;
                    }
                    Err(e) => panic!("{mode} round {round}: {e}"),
                }
            };
            assert_eq!(
                items.next().await.unwrap().unwrap(),
                1,
                "{mode} round {round}"
            );
            drop(items); // while the producer waits for item 2
            notified.await;
        }
        // And a deadline stops it the same way.
        // (The last round's permit or replica may not be free yet.)
        let notified = stopped.notified();
        let start = std::time::Instant::now();
        let got: Vec<_> = loop {
            let got: Vec<_> = p
                .call_stream_timeout(1, std::time::Duration::from_millis(20))
                .collect()
                .await;
            match got.first() {
                Some(Err(PipelineError::Overloaded { .. })) if start.elapsed() < GUARD => {
                    tokio::task::yield_now().await;
                }
                _ => break got,
            }
        };
        assert_eq!(got.len(), 2, "{mode}: {got:?}");
        assert!(
            matches!(got[1], Err(PipelineError::DeadlineExceeded { .. })),
            "{mode}"
        );
        notified.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_pipeline_mid_stream_ends_the_stream_with_an_error() {
    // The replica (or task) waits for room in the channel of a consumer
    // that still holds the stream: dropping the pipeline (which joins
    // replica threads) must not wait for that consumer, and the consumer
    // learns that its stream was cut short.
    let probe = Probe::default();
    for (mode, p) in pipelines(&probe) {
        if mode == "local" {
            continue; // pulled by the consumer itself: nothing to stop
        }
        let mut items = p.call_stream(ask(1_000_000));
        assert_eq!(items.next().await.unwrap().unwrap(), 0, "{mode}");
        tokio::task::spawn_blocking(move || drop(p)).await.unwrap();
        let rest: Vec<_> = items.collect().await;
        let last = rest.last().expect("an end");
        assert!(
            matches!(last, Err(PipelineError::ReplicaLost { .. })),
            "{mode}: {last:?} after {} items",
            rest.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_already_passed_lets_no_item_through() {
    let probe = Probe::default();
    for (mode, p) in pipelines(&probe) {
        let got: Vec<_> = p
            .call_stream_timeout(ask(10), std::time::Duration::ZERO)
            .collect()
            .await;
        assert_eq!(got.len(), 1, "{mode}: {got:?}");
        assert!(
            matches!(got[0], Err(PipelineError::DeadlineExceeded { .. })),
            "{mode}"
        );
    }
}
