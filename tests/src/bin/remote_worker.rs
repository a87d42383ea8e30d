//! A worker process for the remote-step tests:
//! `remote_worker NATS_URL STEP[,STEP..] [QUEUE_BOUND]` serves the named
//! steps of `pipeline_examples::remote_steps`, prints `ready` once the
//! server routes calls to it, `start ID` as each `work` call starts (with `REMOTE_WORKER_TRACE` set), and on SIGTERM drains, then prints
//! `executed N` (the `work` calls it ran) and exits (with status 1 when
//! its connection was lost for good rather than told to stop).

use std::io::Write;

use pipeline_core::remote::Worker;
use pipeline_core::StepOptions;
use pipeline_examples::remote_steps::{bytes_sum, checked, crunch, executed, inc, on_start, work};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(steps)) = (args.next(), args.next()) else {
        eprintln!("usage: remote_worker NATS_URL STEP[,STEP..] [QUEUE_BOUND]");
        std::process::exit(2);
    };
    let options = StepOptions {
        queue_bound: args
            .next()
            .map(|b| b.parse().expect("QUEUE_BOUND is a number")),
        ..StepOptions::default()
    };
    // With REMOTE_WORKER_TRACE set, tests read these to know which calls
    // are running.
    if std::env::var_os("REMOTE_WORKER_TRACE").is_some() {
        on_start(|job| {
            println!("start {}", job.id);
            std::io::stdout().flush().unwrap();
        });
    }
    let mut worker = Worker::connect(&url).await.expect("connect");
    for step in steps.split(',') {
        let served = match step {
            "work" => worker.serve_with::<work<()>>(step, (), options).await,
            "crunch" => worker.serve_with::<crunch<()>>(step, (), options).await,
            "checked" => worker.serve_with::<checked<()>>(step, (), options).await,
            "bytes_sum" => worker.serve_with::<bytes_sum<()>>(step, (), options).await,
            "inc" => worker.serve_with::<inc<()>>(step, (), options).await,
            // The wrong step under `work`'s name: a fingerprint mismatch.
            "inc_as_work" => worker.serve_with::<inc<()>>("work", (), options).await,
            other => panic!("unknown step {other}"),
        };
        served.expect("serve");
    }
    println!("ready");
    std::io::stdout().flush().unwrap();
    let run = worker.run().await;
    println!("executed {}", executed());
    // A worker whose connection was lost for good exits with an error, as
    // a supervisor (systemd, Kubernetes) needs to see to restart it.
    if let Err(e) = run {
        eprintln!("remote_worker: {e}");
        std::process::exit(1);
    }
}
