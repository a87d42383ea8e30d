//! Each autoscaling decision is a tracing event naming the step, the load
//! and the change. Its own test binary: the subscriber is process-wide
//! (a thread-local one misses events while other tests hit the same
//! callsites on other threads).

use std::time::Duration;

use pipeline_core::prelude::*;
use pipeline_core::AutoscalePolicy;

mod support;
use support::{Capture, Gate, Held};

#[tokio::test(start_paused = true)]
async fn each_decision_is_a_tracing_event() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let gate = Gate::closed();
    let policy = AutoscalePolicy {
        min_replicas: 1,
        max_replicas: 3,
        target_ongoing_requests: 1,
        upscale_delay_ms: 100,
        downscale_delay_ms: 1_000,
    };
    let options = DeployOptions::new()
        .runtime(tokio::runtime::Handle::current())
        .autoscale("Held", policy);
    let p = Held::bind(gate.clone(), Input::<u64>::new())
        .deploy_with(options)
        .unwrap();
    let calls: Vec<_> = (0..3)
        .map(|i| {
            let p = p.clone();
            tokio::spawn(async move { p.call_async(i).await.unwrap() })
        })
        .collect();
    let scaled = |n| p.health().steps[0].replicas == n;
    while !scaled(3) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gate.0.add_permits(3);
    for call in calls {
        call.await.unwrap();
    }
    while !scaled(1) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let log = capture.text();
    let decisions: Vec<&str> = log.lines().filter(|l| l.contains("autoscaling")).collect();
    assert_eq!(decisions.len(), 2, "{log}");
    assert!(decisions[0].contains("step=\"Held\""), "{log}");
    assert!(decisions[0].contains("load=3 from=1 to=3"), "{log}");
    assert!(decisions[1].contains("load=0 from=3 to=1"), "{log}");
}
