//! `autoscale(..)` on function and model steps: the keys left out take
//! `AutoscalePolicy::DEFAULT`'s values, and `replicas` is `min_replicas`.
use pipeline_core::prelude::*;
use pipeline_core::{AutoscalePolicy, StepFn};

#[step(
    mode = "actors",
    autoscale(
        min_replicas = 2,
        max_replicas = 6,
        target_ongoing_requests = 4,
        upscale_delay_ms = 500,
        downscale_delay_ms = 60_000,
    )
)]
fn every_key(x: i64) -> i64 {
    x + 1
}

#[step(mode = "actors", autoscale)]
fn bare(x: i64) -> i64 {
    x + 2
}

#[step(autoscale(), mode = "actors")]
async fn empty_parens(x: i64) -> i64 {
    x + 3
}

struct Scaler {
    k: i64,
}

#[step(mode = "actors", autoscale(max_replicas = 3, downscale_delay_ms = 0))]
impl Scaler {
    fn new(k: i64) -> Self {
        Scaler { k }
    }
    fn call(&self, x: i64) -> i64 {
        x * self.k
    }
}

#[step(mode = "actors", replicas = 2)]
fn fixed(x: i64) -> i64 {
    x
}

fn main() {
    let info = <every_key<()> as StepFn>::INFO;
    assert_eq!(
        info.autoscale,
        Some(AutoscalePolicy {
            min_replicas: 2,
            max_replicas: 6,
            target_ongoing_requests: 4,
            upscale_delay_ms: 500,
            downscale_delay_ms: 60_000,
        })
    );
    assert_eq!(info.replicas, 2);

    // The macro's defaults are pipeline-core's.
    for info in [
        <bare<()> as StepFn>::INFO,
        <empty_parens<()> as StepFn>::INFO,
    ] {
        assert_eq!(info.autoscale, Some(AutoscalePolicy::DEFAULT));
        assert_eq!(info.replicas, AutoscalePolicy::DEFAULT.min_replicas);
    }

    let info = <Scaler as StepFn>::INFO;
    assert_eq!(
        info.autoscale,
        Some(AutoscalePolicy {
            max_replicas: 3,
            downscale_delay_ms: 0,
            ..AutoscalePolicy::DEFAULT
        })
    );
    assert_eq!(info.replicas, AutoscalePolicy::DEFAULT.min_replicas);

    let info = <fixed<()> as StepFn>::INFO;
    assert_eq!((info.autoscale, info.replicas), (None, 2));

    let node = Scaler::bind(10, empty_parens(bare(every_key(Input::<i64>::new()))));
    let p = fixed(node).deploy().unwrap();
    assert_eq!(p.call(1).unwrap(), 70); // (1 + 1 + 2 + 3) * 10
}
