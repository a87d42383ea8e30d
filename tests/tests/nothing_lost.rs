//! 10k concurrent calls mixing good inputs, inputs that make a step return
//! `Err`, and inputs that make it panic: every call returns exactly once,
//! with the right answer or the right error. (Its own test binary: it
//! silences the panic hook, which is process-wide.)

use pipeline_core::prelude::*;

#[step]
fn parse(x: i64) -> i64 {
    x
}

#[step(mode = "actors", replicas = 4)]
fn judge(x: i64) -> Result<i64, String> {
    match x % 10 {
        3 => Err(format!("bad input {x}")),
        7 => panic!("panic on {x}"),
        _ => Ok(x * 2),
    }
}

#[step(mode = "tasks")]
async fn finish(x: i64) -> i64 {
    x + 1
}

#[test]
fn ten_thousand_mixed_calls_each_return_once_with_the_right_outcome() {
    std::panic::set_hook(Box::new(|_| {}));
    let n = 10_000i64;
    let p = finish(judge(parse(Input::new())))
        .deploy_with(DeployOptions::new().default_queue_bound(n as usize))
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let results = rt.block_on(async {
        let calls = (0..n).map(|x| {
            let p = p.clone();
            tokio::spawn(async move { (x, p.call_async(x).await) })
        });
        futures::future::join_all(calls).await
    });
    let _ = std::panic::take_hook();

    assert_eq!(results.len(), n as usize);
    let (mut ok, mut err, mut panicked) = (0, 0, 0);
    for joined in results {
        let (x, result) = joined.expect("the call's task itself never fails");
        match (x % 10, result) {
            (
                3,
                Err(PipelineError::Step {
                    step: "judge",
                    error,
                }),
            ) => {
                assert_eq!(error.to_string(), format!("bad input {x}"));
                err += 1;
            }
            (
                7,
                Err(PipelineError::Panicked {
                    step: "judge",
                    message,
                }),
            ) => {
                assert_eq!(message, format!("panic on {x}"));
                panicked += 1;
            }
            (_, Ok(out)) => {
                assert_eq!(out, x * 2 + 1);
                ok += 1;
            }
            (_, other) => panic!("input {x}: unexpected {other:?}"),
        }
    }
    assert_eq!((ok, err, panicked), (8_000, 1_000, 1_000));
    // Each panic rebuilt its replica; the last rebuild may finish just
    // after its call answered, so wait for the counter (with a guard).
    let rebuilds = || {
        p.health()
            .steps
            .iter()
            .find(|s| s.step == "judge")
            .unwrap()
            .rebuilds
    };
    let start = std::time::Instant::now();
    while rebuilds() < 1_000 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "rebuilds stuck at {}",
            rebuilds()
        );
        std::thread::yield_now();
    }
    assert_eq!(rebuilds(), 1_000);
}
