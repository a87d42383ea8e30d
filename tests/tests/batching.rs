//! Dynamic batching: `batch(max_size, wait_ms)` on an actor step whose body
//! takes `Vec<In>` and returns `Vec<Out>`; the graph sees `In -> Out`.

use std::sync::Mutex;

use pipeline_core::prelude::*;

static SIZES: Mutex<Vec<usize>> = Mutex::new(Vec::new());

#[step(mode = "actors", batch(max_size = 8, wait_ms = 50))]
fn double_all(xs: Vec<u64>) -> Vec<u64> {
    SIZES.lock().unwrap().push(xs.len());
    xs.into_iter().map(|x| x * 2).collect()
}

#[test]
fn batches_form_under_concurrency_and_each_caller_gets_its_own_result() {
    let p = double_all(Input::new()).deploy().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let n = 64u64;
    let out: Vec<u64> = rt
        .block_on(futures::future::try_join_all(
            (0..n).map(|i| p.call_async(i)),
        ))
        .unwrap();
    assert_eq!(
        out,
        (0..n).map(|i| i * 2).collect::<Vec<_>>(),
        "each caller got its own"
    );
    let health = &p.health().steps[0];
    assert_eq!(health.batched_calls, n);
    assert!(health.batches < n, "calls shared batches: {health:?}");
    let sizes = SIZES.lock().unwrap();
    assert!(sizes.iter().all(|&s| (1..=8).contains(&s)), "{sizes:?}");
    assert!(sizes.iter().any(|&s| s > 1), "{sizes:?}");
}

struct Scaler {
    factor: i64,
}

#[step(mode = "actors", replicas = 2, batch(max_size = 32, wait_ms = 5))]
impl Scaler {
    fn new(factor: i64) -> Self {
        Scaler { factor }
    }
    fn call(&mut self, xs: Vec<i64>) -> Result<Vec<i64>, String> {
        if xs.contains(&-1) {
            return Err("batch holds -1".into());
        }
        if xs.contains(&-2) {
            panic!("batch holds -2");
        }
        Ok(xs.into_iter().map(|x| x * self.factor).collect())
    }
}

#[test]
fn a_partial_batch_leaves_after_wait_ms() {
    // One call, max_size 32: it must not wait for 31 more.
    let p = Scaler::bind(3, Input::new()).deploy().unwrap();
    assert_eq!(p.call(2).unwrap(), 6);
    let h = &p.health().steps[0];
    assert_eq!((h.batches, h.batched_calls), (1, 1));
}

#[test]
fn an_error_or_panic_fails_only_its_batch() {
    let p = Scaler::bind(10, Input::new()).deploy().unwrap();
    let err = p.call(-1).unwrap_err();
    assert!(
        matches!(err, PipelineError::Step { step: "Scaler", .. }),
        "{err}"
    );
    let err = p.call(-2).unwrap_err();
    assert!(
        matches!(&err, PipelineError::Panicked { step: "Scaler", message } if message == "batch holds -2"),
        "{err}"
    );
    // The next batches are unaffected.
    assert_eq!(p.call(4).unwrap(), 40);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let out = rt
        .block_on(futures::future::try_join_all(
            (0..20).map(|i| p.call_async(i)),
        ))
        .unwrap();
    assert_eq!(out, (0..20).map(|i| i * 10).collect::<Vec<_>>());
}

#[test]
fn the_body_stays_callable_with_a_vec() {
    assert_eq!(double_all::call(vec![1, 2]), vec![2, 4]);
    assert_eq!(Scaler::new(2).call(vec![1, 2]), Ok(vec![2, 4]));
}

#[step(mode = "actors", batch(max_size = 16, wait_ms = 1))]
fn halve_all(xs: Vec<u64>) -> Vec<u64> {
    xs.into_iter().map(|x| x / 2).collect()
}

/// The queue-depth gauge of a batched step counts off every call a batch
/// takes (before, only those that arrived during the batch wait were
/// counted off: after 1,021 calls with nothing queued it read 1021).
#[test]
fn the_batched_queue_gauge_returns_to_zero_after_a_burst() {
    let p = halve_all(Input::new())
        .deploy_with(DeployOptions::new().queue_bound("halve_all", 2_048))
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for burst in [1u64, 7, 64, 1_021] {
        let out: Vec<u64> = rt
            .block_on(futures::future::try_join_all(
                (0..burst).map(|i| p.call_async(2 * i)),
            ))
            .unwrap();
        assert_eq!(out, (0..burst).collect::<Vec<_>>());
        let m = &p.metrics()[0];
        assert_eq!((m.queued, m.in_flight), (0, 0), "after a burst of {burst}");
    }
    assert_eq!(p.health().steps[0].batched_calls, 1 + 7 + 64 + 1_021);
}
