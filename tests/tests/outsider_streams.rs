//! An outsider's hostile cases for stream steps: empty, single and very
//! long streams, item errors and panics mid-stream, consumers that leave
//! early (before polling, at the first item, midway, while queued),
//! several consumers of one replica, `.map_each` steps failing for some
//! items, `.collect()` of nothing, dropping the pipeline while streams are
//! read, and deadlines.
//!
//! No test waits with a sleep or asserts on wall-clock time. Where a fault
//! would show as a hang, the test runs on a `current_thread` runtime with
//! tokio's paused clock and every replica on that runtime: a stuck stream
//! then leaves the runtime idle, the clock jumps forward, and the
//! (nominal, one-hour) `stuck` timeout fails the test at once instead.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use pipeline_core::prelude::*;

/// Under a paused clock: fails when `fut` can make no more progress (the
/// runtime went idle and the clock jumped). Never a timing assertion.
async fn stuck<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(3600), fut).await {
        Ok(out) => out,
        Err(_) => panic!("stuck: {what} can make no progress"),
    }
}

/// Deploy options that put tasks and task replicas on the test's runtime.
fn here() -> DeployOptions {
    DeployOptions::new().runtime(tokio::runtime::Handle::current())
}

/// What a producer shares with the test.
#[derive(Clone, Default)]
struct Probe {
    /// Calls of the step's body (streams built).
    bodies: Arc<AtomicUsize>,
    /// Items made.
    produced: Arc<AtomicUsize>,
    /// Producers dropped (stopped).
    dropped: Arc<AtomicUsize>,
    /// Told when a producer is dropped.
    stopped: Arc<tokio::sync::Notify>,
}

impl Probe {
    fn produced(&self) -> usize {
        self.produced.load(Ordering::SeqCst)
    }
    fn bodies(&self) -> usize {
        self.bodies.load(Ordering::SeqCst)
    }
    fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }
}

/// What to produce: items `tag * 1_000_000 + i` for `i in 0..n`.
#[derive(Clone, Copy, Debug, Default)]
#[cfg_attr(feature = "http", derive(serde::Deserialize), serde(default))]
struct Ask {
    tag: u64,
    n: u64,
    fail_at: Option<u64>,
    panic_at: Option<u64>,
    /// Panic with a non-string payload instead.
    panic_any_at: Option<u64>,
    /// Panic in the step's body, before any stream exists.
    panic_in_body: bool,
}

fn ask(n: u64) -> Ask {
    Ask {
        n,
        ..Ask::default()
    }
}

fn tagged(tag: u64, n: u64) -> Ask {
    Ask {
        tag,
        n,
        ..Ask::default()
    }
}

struct Produce {
    next: u64,
    ask: Ask,
    probe: Probe,
}

impl Iterator for Produce {
    type Item = Result<u64, String>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.next == self.ask.n {
            return None;
        }
        let i = self.next;
        self.next += 1;
        self.probe.produced.fetch_add(1, Ordering::SeqCst);
        if self.ask.panic_at == Some(i) {
            panic!("item {i} exploded");
        }
        if self.ask.panic_any_at == Some(i) {
            std::panic::panic_any(i);
        }
        if self.ask.fail_at == Some(i) {
            return Some(Err(format!("item {i} is bad")));
        }
        Some(Ok(self.ask.tag * 1_000_000 + i))
    }
}

impl Drop for Produce {
    fn drop(&mut self) {
        self.probe.dropped.fetch_add(1, Ordering::SeqCst);
        self.probe.stopped.notify_waiters();
    }
}

fn produce(probe: &Probe, ask: Ask) -> ItemStream<u64> {
    probe.bodies.fetch_add(1, Ordering::SeqCst);
    if ask.panic_in_body {
        panic!("the body exploded");
    }
    ItemStream::try_iter(Produce {
        next: 0,
        ask,
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

producer!(Tasks, mode = "tasks");
producer!(OneThread, mode = "actors", replicas = 1);
producer!(OneTask, mode = "actors", replicas = 1, placement = "task");

/// One pipeline per mode, each with a single replica where it has any.
fn pipelines(probe: &Probe) -> Vec<(&'static str, Pipeline<Ask, ItemStream<u64>>)> {
    vec![
        (
            "local",
            Tasks::bind(probe.clone(), Input::<Ask>::new())
                .deploy_with(DeployOptions::local())
                .unwrap(),
        ),
        (
            "tasks",
            Tasks::bind(probe.clone(), Input::<Ask>::new())
                .deploy()
                .unwrap(),
        ),
        (
            "one thread replica",
            OneThread::bind(probe.clone(), Input::<Ask>::new())
                .deploy()
                .unwrap(),
        ),
        (
            "one task replica",
            OneTask::bind(probe.clone(), Input::<Ask>::new())
                .deploy()
                .unwrap(),
        ),
    ]
}

fn items(p: &Pipeline<Ask, ItemStream<u64>>, a: Ask) -> Vec<u64> {
    p.call_iter(a).map(Result::unwrap).collect()
}

// ---------------------------------------------------------------------
// Sizes: nothing, one, many.

#[step]
fn plus_one(x: u64) -> u64 {
    x + 1
}

#[test]
fn an_empty_stream_ends_at_once_in_every_mode_and_collects_to_nothing() {
    let probe = Probe::default();
    for (mode, p) in pipelines(&probe) {
        let got: Vec<_> = p.call_iter(ask(0)).collect();
        assert!(got.is_empty(), "{mode}: {got:?}");
        // Asked again after the end: still the end, no error appears.
        let mut it = p.call_iter(ask(0));
        assert!(it.next().is_none(), "{mode}");
        assert!(it.next().is_none(), "{mode}");
        let m = &p.metrics()[0];
        assert_eq!((m.requests, m.errors), (2, 0), "{mode}");
    }
    // `.collect()` and `.map_each` of an empty stream, in each mode.
    for options in [DeployOptions::local(), DeployOptions::new()] {
        let p = OneThread::bind(probe.clone(), Input::<Ask>::new())
            .map_each(plus_one)
            .collect()
            .deploy_with(options)
            .unwrap();
        assert_eq!(p.call(ask(0)).unwrap(), Vec::<u64>::new());
        assert_eq!(p.call(ask(2)).unwrap(), [1, 2]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_async_stream_ends_at_once() {
    #[step(mode = "actors", placement = "task")]
    async fn nothing(_x: u8) -> ItemStream<u8> {
        ItemStream::new(futures::stream::empty())
    }
    let p = nothing(Input::<u8>::new()).deploy().unwrap();
    for _ in 0..3 {
        let got: Vec<_> = p.call_stream(0).collect().await;
        assert!(got.is_empty(), "{got:?}");
    }
}

#[test]
fn a_single_item_stream_gives_exactly_that_item() {
    let probe = Probe::default();
    for (mode, p) in pipelines(&probe) {
        assert_eq!(items(&p, tagged(3, 1)), [3_000_000], "{mode}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_items_arrive_once_each_and_in_order() {
    const N: u64 = 100_000;
    let probe = Probe::default();
    for (mode, p) in pipelines(&probe) {
        probe.produced.store(0, Ordering::SeqCst);
        let mut expected = 0u64;
        let mut s = p.call_stream(ask(N));
        while let Some(item) = s.next().await {
            let item = item.unwrap_or_else(|e| panic!("{mode}: {e} at {expected}"));
            assert_eq!(item, expected, "{mode}");
            expected += 1;
        }
        assert_eq!(expected, N, "{mode}");
        assert_eq!(probe.produced(), N as usize, "{mode}: made more than asked");
    }
}

// ---------------------------------------------------------------------
// An item's error, a panic mid-stream.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_error_ends_the_stream_and_later_items_are_never_made_or_seen() {
    let probe = Probe::default();
    for (mode, p) in pipelines(&probe) {
        probe.produced.store(0, Ordering::SeqCst);
        let stopped = probe.stopped.notified();
        let mut s = p.call_stream(Ask {
            fail_at: Some(5),
            ..ask(1000)
        });
        for i in 0..5 {
            assert_eq!(s.next().await.unwrap().unwrap(), i, "{mode}");
        }
        let err = s.next().await.unwrap().unwrap_err();
        assert!(
            matches!(&err, PipelineError::Step { .. }),
            "{mode}: {err:?}"
        );
        assert!(err.to_string().contains("OneThread") || err.step().is_some());
        // Polled again and again: the end, never the items after it.
        for _ in 0..3 {
            assert!(s.next().await.is_none(), "{mode}");
        }
        // The producer stopped on its own at the error (the consumer
        // still holds the stream): nothing after item 5 was made.
        if mode != "local" {
            stopped.await;
        }
        assert_eq!(probe.produced(), 6, "{mode}");
        drop(s);
    }
}

#[test]
fn a_panic_mid_stream_fails_that_stream_and_the_only_replica_serves_the_next() {
    let probe = Probe::default();
    for (mode, p) in pipelines(&probe) {
        for round in 0..3 {
            let got: Vec<_> = p
                .call_iter(Ask {
                    panic_at: Some(4),
                    ..ask(100)
                })
                .collect();
            assert_eq!(got.len(), 5, "{mode} round {round}: {got:?}");
            match &got[4] {
                Err(PipelineError::Panicked { message, .. }) => {
                    assert!(message.contains("item 4 exploded"), "{mode}: {message}")
                }
                other => panic!("{mode}: {other:?}"),
            }
            // A panic with a payload that is not a string.
            let got: Vec<_> = p
                .call_iter(Ask {
                    panic_any_at: Some(1),
                    ..ask(100)
                })
                .collect();
            assert_eq!(got.len(), 2, "{mode} round {round}: {got:?}");
            assert!(
                matches!(got[1], Err(PipelineError::Panicked { .. })),
                "{mode}: {:?}",
                got[1]
            );
            // A panic before the stream exists: one error, no item.
            let got: Vec<_> = p
                .call_iter(Ask {
                    panic_in_body: true,
                    ..ask(100)
                })
                .collect();
            assert_eq!(got.len(), 1, "{mode} round {round}: {got:?}");
            assert!(
                matches!(&got[0], Err(PipelineError::Panicked { message, .. }) if message.contains("the body exploded")),
                "{mode}: {:?}",
                got[0]
            );
            // The single replica (rebuilt) serves a whole stream next.
            assert_eq!(
                items(&p, ask(40)),
                (0..40).collect::<Vec<_>>(),
                "{mode} round {round}"
            );
        }
        if mode.contains("replica") {
            let health = p.health();
            assert_eq!(health.steps[0].rebuilds, 9, "{mode}: {health:?}");
            assert!(health.is_healthy(), "{mode}");
        }
    }
}

// ---------------------------------------------------------------------
// Consumers leaving early.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_dropped_before_it_is_polled_never_runs_the_step() {
    let probe = Probe::default();
    for (mode, p) in pipelines(&probe) {
        probe.bodies.store(0, Ordering::SeqCst);
        for _ in 0..10 {
            drop(p.call_stream(ask(1_000_000)));
            drop(p.call_iter(ask(1_000_000)));
            drop(p.call_stream_timeout(ask(1_000_000), Duration::from_secs(3600)));
        }
        // With one replica, a call that had been queued would run first.
        let got: Vec<u64> = p.call_stream(ask(3)).map(Result::unwrap).collect().await;
        assert_eq!(got, [0, 1, 2], "{mode}");
        assert_eq!(probe.bodies(), 1, "{mode}: a dropped stream ran its step");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_leaving_at_the_first_item_or_midway_free_the_only_replica() {
    let probe = Probe::default();
    for (mode, p) in pipelines(&probe) {
        for take in [0usize, 1, 2, 15, 16, 17, 33, 100] {
            probe.produced.store(0, Ordering::SeqCst);
            let dropped_before = probe.dropped();
            let stopped = probe.stopped.notified();
            let mut s = p.call_stream(ask(1_000_000));
            if take == 0 {
                // Polled once (the call is made and answered), no item taken.
                let first = s.next().await;
                assert!(matches!(first, Some(Ok(0))), "{mode}: {first:?}");
            } else {
                for i in 0..take {
                    assert_eq!(s.next().await.unwrap().unwrap(), i as u64, "{mode}");
                }
            }
            drop(s);
            if probe.dropped() == dropped_before {
                stopped.await;
            }
            let taken = take.max(1);
            let produced = probe.produced();
            assert!(
                produced <= taken + 17,
                "{mode}: {produced} made for a consumer that took {taken}"
            );
            // The replica is free: a whole stream comes next.
            let next: Vec<u64> = p.call_stream(ask(20)).map(Result::unwrap).collect().await;
            assert_eq!(next, (0..20).collect::<Vec<_>>(), "{mode} after {take}");
        }
    }
}

/// A producer that yields `n` items and then waits for ever.
struct Stalls {
    probe: Probe,
}

#[step(mode = "actors", placement = "task")]
impl Stalls {
    fn new(probe: Probe) -> Self {
        Stalls { probe }
    }
    fn call(&self, n: u64) -> ItemStream<u64> {
        // The guard counts a drop as a stopped producer.
        let guard = Produce {
            next: 0,
            ask: ask(0),
            probe: self.probe.clone(),
        };
        self.probe.bodies.fetch_add(1, Ordering::SeqCst);
        ItemStream::new(
            futures::stream::iter(0..n).chain(futures::stream::pending().map(move |x: u64| {
                let _keep = &guard;
                x
            })),
        )
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_stream_call_dropped_while_queued_behind_another_is_skipped() {
    let probe = Probe::default();
    let p = OneTask::bind(probe.clone(), Input::<Ask>::new())
        .deploy_with(here())
        .unwrap();
    // A holds the only replica (it reads one item and keeps the stream).
    let mut a = p.call_stream(ask(1_000_000));
    assert_eq!(stuck("A's first item", a.next()).await.unwrap().unwrap(), 0);
    // B's call is queued behind A, then B leaves.
    let mut b = p.call_stream(tagged(9, 10));
    assert!(futures::poll!(b.next()).is_pending());
    assert_eq!(p.metrics()[0].queued, 1, "B is queued");
    drop(b);
    drop(a);
    // C is served; B's body never ran.
    let c: Vec<u64> = stuck("C", p.call_stream(tagged(2, 3)).collect::<Vec<_>>())
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(c, [2_000_000, 2_000_001, 2_000_002]);
    assert_eq!(probe.bodies(), 2, "B's dropped call ran its step");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_producer_with_nothing_to_say_is_stopped_when_its_consumer_leaves() {
    let probe = Probe::default();
    let p = Stalls::bind(probe.clone(), Input::<u64>::new())
        .deploy_with(here())
        .unwrap();
    for round in 0..5u64 {
        let mut s = p.call_stream(round);
        for i in 0..round {
            assert_eq!(stuck("an item", s.next()).await.unwrap().unwrap(), i);
        }
        // The next item never comes; the consumer leaves.
        assert!(futures::poll!(s.next()).is_pending());
        drop(s);
    }
    // The one replica is free for the next stream, and every producer
    // built before it was stopped (round 0's call may have been dropped
    // before it was answered: then no producer was built for it).
    let mut s = p.call_stream(1);
    assert_eq!(stuck("last call", s.next()).await.unwrap().unwrap(), 0);
    assert!(probe.bodies() >= 5, "{}", probe.bodies());
    assert_eq!(
        probe.dropped(),
        probe.bodies() - 1,
        "a waiting producer lives on"
    );
}

// ---------------------------------------------------------------------
// Several consumers of one replica.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_consumers_of_one_replica_each_get_exactly_their_items() {
    let probe = Probe::default();
    for (mode, p) in pipelines(&probe) {
        let p = Arc::new(p);
        let consumers: Vec<_> = (1..=8u64)
            .map(|tag| {
                let p = Arc::clone(&p);
                tokio::spawn(async move {
                    let got: Vec<u64> = p
                        .call_stream(tagged(tag, 500 + tag))
                        .map(|r| r.unwrap())
                        .collect()
                        .await;
                    (tag, got)
                })
            })
            .collect();
        for consumer in consumers {
            let (tag, got) = consumer.await.unwrap();
            let want: Vec<u64> = (0..500 + tag).map(|i| tag * 1_000_000 + i).collect();
            assert_eq!(got, want, "{mode}: consumer {tag}");
        }
    }
}

#[test]
fn blocking_consumers_on_threads_share_one_replica_without_mixing() {
    let probe = Probe::default();
    let p = OneThread::bind(probe, Input::<Ask>::new())
        .deploy()
        .unwrap();
    std::thread::scope(|scope| {
        let threads: Vec<_> = (1..=6u64)
            .map(|tag| {
                let p = &p;
                scope.spawn(move || {
                    // Some consumers leave early, the others read it all.
                    if tag % 2 == 0 {
                        let mut it = p.call_iter(tagged(tag, 1_000_000));
                        assert_eq!(it.next().unwrap().unwrap(), tag * 1_000_000);
                        assert_eq!(it.next().unwrap().unwrap(), tag * 1_000_000 + 1);
                        return;
                    }
                    let got = items(p, tagged(tag, 300));
                    let want: Vec<u64> = (0..300).map(|i| tag * 1_000_000 + i).collect();
                    assert_eq!(got, want, "consumer {tag}");
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    });
}

// ---------------------------------------------------------------------
// `.map_each` with a step that fails for some items.

#[step(mode = "actors", replicas = 2)]
fn reject_multiples_of_thirteen(x: u64) -> Result<u64, String> {
    if x > 0 && x % 13 == 0 {
        Err(format!("{x} is unlucky"))
    } else {
        Ok(x * 10)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_each_failing_for_some_items_ends_at_the_first_in_order() {
    let probe = Probe::default();
    let p = OneThread::bind(probe.clone(), Input::<Ask>::new())
        .map_each(reject_multiples_of_thirteen)
        .deploy()
        .unwrap();
    let got: Vec<_> = p.call_stream(ask(1000)).collect().await;
    assert_eq!(got.len(), 14, "{got:?}");
    for (i, item) in got[..13].iter().enumerate() {
        assert_eq!(*item.as_ref().unwrap(), i as u64 * 10);
    }
    let err = got[13].as_ref().unwrap_err();
    assert_eq!(err.step(), Some("reject_multiples_of_thirteen"), "{err}");
    assert_eq!(
        std::error::Error::source(err).unwrap().to_string(),
        "13 is unlucky"
    );
    // Collected: the call fails with that first error.
    let p = OneThread::bind(probe, Input::<Ask>::new())
        .map_each(reject_multiples_of_thirteen)
        .collect()
        .deploy()
        .unwrap();
    let err = p.call_async(ask(1000)).await.unwrap_err();
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "13 is unlucky"
    );
    assert_eq!(p.call_async(ask(13)).await.unwrap().len(), 13);
}

#[step(mode = "actors", replicas = 1)]
fn explode_on_five(x: u64) -> u64 {
    if x == 5 {
        panic!("five exploded");
    }
    x
}

#[test]
fn map_each_panicking_for_an_item_ends_the_stream_and_its_replica_is_rebuilt() {
    let p = OneThread::bind(Probe::default(), Input::<Ask>::new())
        .map_each(explode_on_five)
        .deploy()
        .unwrap();
    for round in 0..3 {
        let got: Vec<_> = p.call_iter(ask(1000)).collect();
        assert_eq!(got.len(), 6, "round {round}: {got:?}");
        match &got[5] {
            Err(PipelineError::Panicked { step, message }) => {
                assert_eq!(*step, "explode_on_five");
                assert!(message.contains("five exploded"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        // Items before the one that panicked, and a whole stream after.
        let firsts: Vec<u64> = got[..5].iter().map(|r| *r.as_ref().unwrap()).collect();
        assert_eq!(firsts, [0, 1, 2, 3, 4]);
        assert_eq!(items(&p, ask(5)), [0, 1, 2, 3, 4], "round {round}");
    }
}

/// Item 3 waits until item 9 has failed: a later item failing first must
/// not be reported before the earlier items.
#[derive(Clone, Default)]
struct Order {
    nine_failed: Arc<tokio::sync::Notify>,
    nine_done: Arc<std::sync::atomic::AtomicBool>,
}

struct SlowThree {
    order: Order,
}

/// `concurrent`: a model step's calls otherwise take turns.
#[step(mode = "tasks", concurrent)]
impl SlowThree {
    fn new(order: Order) -> Self {
        SlowThree { order }
    }
    async fn call(&self, x: u64) -> Result<u64, String> {
        match x {
            3 => {
                let waited = self.order.nine_failed.notified();
                if !self.order.nine_done.load(Ordering::SeqCst) {
                    waited.await;
                }
                Ok(3)
            }
            9 => {
                self.order.nine_done.store(true, Ordering::SeqCst);
                self.order.nine_failed.notify_waiters();
                Err("nine fails".into())
            }
            x => Ok(x),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_item_failing_first_is_reported_after_the_earlier_items() {
    let p = OneThread::bind(Probe::default(), Input::<Ask>::new())
        .map_each_with(|x| SlowThree::bind(Order::default(), x))
        .deploy()
        .unwrap();
    let got: Vec<_> = p.call_stream(ask(20)).collect().await;
    let ok: Vec<u64> = got
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    assert_eq!(ok, (0..9).collect::<Vec<_>>(), "{got:?}");
    assert_eq!(got.len(), 10);
    assert!(got[9].is_err());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_stream_ended_by_a_failing_item_step_frees_its_producer_replica() {
    // One replica produces; the per-item step fails at item 3. The
    // consumer reads the items, the error and the end, and, still holding
    // the finished stream, calls again: the replica must not be held by a
    // stream that has ended.
    #[step]
    fn fail_at_three(x: u64) -> Result<u64, String> {
        if x == 3 {
            Err("three".into())
        } else {
            Ok(x)
        }
    }
    let probe = Probe::default();
    let p = OneTask::bind(probe.clone(), Input::<Ask>::new())
        .map_each(fail_at_three)
        .deploy_with(here())
        .unwrap();
    let mut first = p.call_stream(ask(1_000_000));
    let mut got = Vec::new();
    while let Some(item) = stuck("the first stream", first.next()).await {
        got.push(item);
    }
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(got[3].is_err());
    // `first` has ended (it said so) but is still in scope.
    let second: Vec<_> = stuck(
        "a second call while the ended stream is still held",
        p.call_stream(ask(2)).collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(second.len(), 2, "{second:?}");
    drop(first);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_stream_ended_by_a_failing_item_step_and_dropped_frees_its_producer_replica() {
    // The same as above, the finished stream dropped before the second
    // call: this works (the contrast that locates the fault above).
    #[step]
    fn fail_at_three(x: u64) -> Result<u64, String> {
        if x == 3 {
            Err("three".into())
        } else {
            Ok(x)
        }
    }
    let probe = Probe::default();
    let p = OneTask::bind(probe.clone(), Input::<Ask>::new())
        .map_each(fail_at_three)
        .deploy_with(here())
        .unwrap();
    let got: Vec<_> = stuck(
        "the first stream",
        p.call_stream(ask(1_000_000)).collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(got.len(), 4, "{got:?}");
    let second: Vec<_> = stuck("the second call", p.call_stream(ask(2)).collect::<Vec<_>>()).await;
    assert_eq!(second.len(), 2, "{second:?}");
    assert!(second.iter().all(Result::is_ok), "{second:?}");
}

// ---------------------------------------------------------------------
// Dropping the pipeline while streams are read.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_pipeline_while_map_each_streams_are_read_ends_them_with_an_error() {
    #[step(mode = "actors", placement = "task")]
    async fn add_ten(x: u64) -> u64 {
        x + 10
    }
    let probe = Probe::default();
    let p = OneThread::bind(probe.clone(), Input::<Ask>::new())
        .map_each(add_ten)
        .deploy()
        .unwrap();
    let mut s = p.call_stream(ask(1_000_000));
    for i in 0..5 {
        assert_eq!(s.next().await.unwrap().unwrap(), i + 10);
    }
    tokio::task::spawn_blocking(move || drop(p)).await.unwrap();
    let rest: Vec<_> = s.collect().await;
    let last = rest.last().expect("an end");
    assert!(
        last.is_err(),
        "the stream just ended after {} items",
        rest.len()
    );
    for item in &rest[..rest.len() - 1] {
        assert!(item.is_ok(), "{item:?}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn dropping_the_pipeline_on_a_current_thread_runtime_mid_stream_does_not_hang() {
    // The pipeline is dropped on the very thread that reads the stream
    // (no spawn_blocking): the drop joins the replica thread, which is
    // waiting for room in this consumer's channel.
    let probe = Probe::default();
    let p = OneThread::bind(probe.clone(), Input::<Ask>::new())
        .deploy()
        .unwrap();
    let mut s = p.call_stream(ask(1_000_000));
    assert_eq!(s.next().await.unwrap().unwrap(), 0);
    drop(p);
    let rest: Vec<_> = s.collect().await;
    assert!(
        matches!(rest.last(), Some(Err(PipelineError::ReplicaLost { .. }))),
        "{:?}",
        rest.last()
    );
    assert!(probe.dropped() >= 1, "the producer still lives");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_pipeline_with_a_stream_call_queued_answers_every_consumer() {
    // Consumer A reads from the only replica; B's call is queued behind
    // it. The user drops their pipeline handle: nobody hangs, A sees its
    // items then an end or an error, B gets items or an error.
    let probe = Probe::default();
    let p = OneThread::bind(probe.clone(), Input::<Ask>::new())
        .deploy()
        .unwrap();
    let mut a = p.call_stream(tagged(1, 100));
    assert_eq!(a.next().await.unwrap().unwrap(), 1_000_000);
    let b = tokio::spawn({
        let b = p.call_stream(tagged(2, 50));
        async move { b.collect::<Vec<_>>().await }
    });
    tokio::task::spawn_blocking(move || drop(p)).await.unwrap();
    let rest: Vec<_> = a.collect().await;
    let ok = rest.iter().take_while(|r| r.is_ok()).count();
    assert!(ok == rest.len() || ok == rest.len() - 1, "{rest:?}");
    if ok == rest.len() {
        assert_eq!(ok, 99, "A just ended early");
    }
    let b = b.await.unwrap();
    let b_ok = b.iter().take_while(|r| r.is_ok()).count();
    assert!(b_ok == b.len() || b_ok == b.len() - 1, "{b:?}");
    if b_ok == b.len() {
        assert_eq!(b_ok, 50, "B just ended early");
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn shutdown_with_a_stream_being_read_returns_and_the_stream_reads_on() {
    // Documented: a stream call is in flight until answered, not while
    // read. So shutdown returns while A is read; A still gets every item;
    // new calls are refused with ShuttingDown.
    let probe = Probe::default();
    let p = OneTask::bind(probe.clone(), Input::<Ask>::new())
        .deploy_with(here())
        .unwrap();
    let mut a = p.call_stream(ask(100));
    assert_eq!(stuck("A's first item", a.next()).await.unwrap().unwrap(), 0);
    stuck("shutdown", p.shutdown_async()).await;
    let refused: Vec<_> = stuck(
        "a call after shutdown",
        p.call_stream(ask(3)).collect::<Vec<_>>(),
    )
    .await;
    assert!(
        matches!(refused[..], [Err(PipelineError::ShuttingDown)]),
        "{refused:?}"
    );
    let rest: Vec<u64> = stuck("A's other items", a.map(Result::unwrap).collect::<Vec<_>>()).await;
    assert_eq!(rest, (1..100).collect::<Vec<_>>());
}

// ---------------------------------------------------------------------
// Deadlines.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_deadline_is_no_deadline() {
    let probe = Probe::default();
    for (mode, p) in pipelines(&probe) {
        let got: Vec<u64> = p
            .call_stream_timeout(ask(100), Duration::MAX)
            .map(|r| r.unwrap_or_else(|e| panic!("{mode}: {e}")))
            .collect()
            .await;
        assert_eq!(got, (0..100).collect::<Vec<_>>(), "{mode}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_passing_while_queued_behind_another_stream_skips_that_call() {
    // A holds the only replica; B's stream call, queued behind it, has a
    // short deadline: B fails with DeadlineExceeded and its step never
    // runs; A then reads on undisturbed and the replica serves C.
    let probe = Probe::default();
    let p = OneThread::bind(probe.clone(), Input::<Ask>::new())
        .deploy()
        .unwrap();
    let mut a = p.call_stream(tagged(1, 200));
    assert_eq!(a.next().await.unwrap().unwrap(), 1_000_000);
    let b: Vec<_> = p
        .call_stream_timeout(tagged(2, 5), Duration::from_millis(1))
        .collect()
        .await;
    assert_eq!(b.len(), 1, "{b:?}");
    assert!(
        matches!(b[0], Err(PipelineError::DeadlineExceeded { .. })),
        "{b:?}"
    );
    let rest: Vec<u64> = a.map(Result::unwrap).collect().await;
    assert_eq!(rest, (1..200).map(|i| 1_000_000 + i).collect::<Vec<_>>());
    let c: Vec<u64> = p
        .call_stream(tagged(3, 2))
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(c, [3_000_000, 3_000_001]);
    assert_eq!(probe.bodies(), 2, "B's step ran after its deadline");
}

// ---------------------------------------------------------------------
// A producer whose drop panics (a guard asserting on drop).

struct PanicsOnDrop {
    left: u64,
}

impl Iterator for PanicsOnDrop {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        self.left = self.left.checked_sub(1)?;
        Some(self.left)
    }
}

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("the producer's guard failed");
        }
    }
}

#[step(mode = "actors", replicas = 1)]
fn bad_guard(n: u64) -> ItemStream<u64> {
    if n == 0 {
        return ItemStream::iter(Vec::new());
    }
    ItemStream::iter(PanicsOnDrop { left: n })
}

#[test]
fn a_producer_panicking_as_it_is_dropped_does_not_kill_the_only_replica() {
    let p = bad_guard(Input::<u64>::new()).deploy().unwrap();
    let got: Vec<_> = p.call_iter(3).collect();
    assert_eq!(got.iter().filter(|r| r.is_ok()).count(), 3, "{got:?}");
    // The panic in the producer's `Drop` is the step's panic: the stream
    // ends with it, after the items, as a panic producing an item would.
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(
        matches!(
            &got[3],
            Err(PipelineError::Panicked {
                step: "bad_guard",
                ..
            })
        ),
        "{got:?}"
    );
    // The replica (rebuilt if need be) answers the next calls.
    for round in 0..5 {
        let next: Vec<_> = p.call_iter(0).collect();
        assert!(next.is_empty(), "round {round}: {next:?}; {:?}", p.health());
    }
    // And a consumer that leaves early (the producer dropped mid-way).
    let mut it = p.call_iter(1000);
    assert!(it.next().unwrap().is_ok());
    drop(it);
    let next: Vec<_> = p.call_iter(0).collect();
    assert!(next.is_empty(), "{next:?}; {:?}", p.health());
    assert!(p.health().is_healthy(), "{:?}", p.health());
}

// ---------------------------------------------------------------------
// Over HTTP (`--features http`).

#[cfg(feature = "http")]
mod support;

#[cfg(feature = "http")]
mod over_http {
    use std::collections::BTreeMap;
    use std::io::{BufRead, BufReader};

    use pipeline_core::http::Ingress;
    use pipeline_core::prelude::*;

    use super::support::http::{agent, Server};
    use super::{Ask, OneThread, Probe};

    fn open(server: &Server, path: &str, body: &str, sse: bool) -> (u16, Vec<String>) {
        let mut request = agent()
            .post(&server.url(path))
            .header("content-type", "application/json");
        if sse {
            request = request.header("accept", "text/event-stream");
        }
        let response = request.send(body.as_bytes()).expect("request");
        let status = response.status().as_u16();
        let reader = BufReader::new(response.into_body().into_reader());
        let lines = reader
            .lines()
            .map(|l| l.expect("a line"))
            .filter(|l| !l.is_empty())
            .collect();
        (status, lines)
    }

    #[step(mode = "tasks")]
    fn nothing(_n: u64) -> ItemStream<u64> {
        ItemStream::iter(Vec::new())
    }

    #[test]
    fn an_empty_stream_is_answered_done_with_no_items() {
        let p = nothing(Input::<u64>::new()).deploy().unwrap();
        let server = Server::start(Ingress::new().stream("/none", p));
        let (status, lines) = open(&server, "/none", "0", false);
        assert_eq!(status, 200);
        assert_eq!(lines, [r#"{"done":true,"items":0}"#], "{lines:?}");
        let (status, lines) = open(&server, "/none", "0", true);
        assert_eq!(status, 200);
        assert_eq!(lines, ["event: done", r#"data: {"items":0}"#], "{lines:?}");
    }

    /// Item 0 serializes (`{}`), item 1 cannot (a map with non-string
    /// keys), then endless more.
    #[step(mode = "actors")]
    fn unserializable(_n: u64) -> ItemStream<BTreeMap<Vec<u8>, u8>> {
        ItemStream::iter((0u8..).map(|i| {
            let mut m = BTreeMap::new();
            if i > 0 {
                m.insert(vec![i], i);
            }
            m
        }))
    }

    #[test]
    fn an_item_that_cannot_be_serialized_ends_the_stream_with_an_error_line() {
        let p = unserializable(Input::<u64>::new()).deploy().unwrap();
        let server = Server::start(Ingress::new().stream("/maps", p));
        for sse in [false, true] {
            let (status, lines) = open(&server, "/maps", "0", sse);
            assert_eq!(status, 200);
            let last = lines.last().unwrap();
            let json: serde_json::Value =
                serde_json::from_str(last.strip_prefix("data: ").unwrap_or(last)).unwrap();
            assert_eq!(json["kind"], "serialize", "{lines:?}");
            assert!(json["request_id"].is_string(), "{json}");
            if sse {
                assert_eq!(lines, ["data: {}", "event: error", last.as_str()]);
            } else {
                assert_eq!(lines[0], r#"{"item":{}}"#);
                assert_eq!(lines.len(), 2, "{lines:?}");
            }
        }
        // The endless producer was stopped: the only replica serves again.
        let (status, lines) = open(&server, "/maps", "0", false);
        assert_eq!((status, lines.len()), (200, 2));
    }

    #[test]
    fn clients_leaving_right_after_the_head_free_the_only_replica() {
        let probe = Probe::default();
        let p = OneThread::bind(probe.clone(), Input::<Ask>::new())
            .deploy()
            .unwrap();
        let server = Server::start(Ingress::new().stream("/count", p));
        for _ in 0..5 {
            let response = agent()
                .post(&server.url("/count"))
                .send(br#"{"tag":0,"n":1000000000}"#.as_slice())
                .expect("request");
            assert_eq!(response.status().as_u16(), 200);
            drop(response); // closes the connection before reading
        }
        let (status, lines) = open(&server, "/count", r#"{"tag":1,"n":3}"#, false);
        assert_eq!(status, 200);
        assert_eq!(
            lines,
            [
                r#"{"item":1000000}"#,
                r#"{"item":1000001}"#,
                r#"{"item":1000002}"#,
                r#"{"done":true,"items":3}"#
            ]
        );
        assert!(probe.produced() < 1_000_000, "{}", probe.produced());
    }
}
