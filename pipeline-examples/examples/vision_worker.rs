//! A worker process serving the vision steps to pipelines over NATS.
//!
//! ```text
//! cargo run -p pipeline-examples --features torch,remote --example vision_worker -- \
//!     --nats nats://127.0.0.1:4222 --steps preprocess,resnet18 [--weights DIR] [--replicas N]
//! ```
//!
//! Steps: `preprocess` (image bytes -> normalized tensor), `resnet18` and
//! `resnet34` (tensor -> top-5; weights from `DIR/<name>.safetensors`, else
//! seeded). It serves until SIGTERM or Ctrl-C, then leaves without losing
//! a call. A pipeline sends those steps here when deployed with, e.g.,
//! `DeployOptions::new().remote("resnet18", "nats://127.0.0.1:4222")`.
use std::path::PathBuf;

use pipeline_core::remote::Worker;
use pipeline_core::StepOptions;
use pipeline_examples::vision::{model_specs, preprocess, Classifier};

fn usage() -> ! {
    eprintln!(
        "usage: vision_worker --nats URL --steps preprocess,resnet18,resnet34 [--weights DIR] [--replicas N]"
    );
    std::process::exit(2)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    pipeline_core::torch::tune_malloc(); // before any thread starts
    let (mut url, mut steps, mut weights, mut replicas) = (None, None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--nats" => url = Some(value()),
            "--steps" => steps = Some(value()),
            "--weights" => weights = Some(PathBuf::from(value())),
            "--replicas" => replicas = Some(value().parse().unwrap_or_else(|_| usage())),
            _ => usage(),
        }
    }
    let (Some(url), Some(steps)) = (url, steps) else {
        usage()
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    // One thread for NATS and the answers; the model replicas have their
    // own threads (see the README's "Remote steps").
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut worker = Worker::connect(&url).await?;
        let [resnet18, resnet34] = model_specs(weights.as_deref());
        let options = StepOptions {
            replicas,
            ..StepOptions::default()
        };
        for step in steps.split(',') {
            match step {
                // A tasks step in a pipeline; on a worker, actor replicas.
                "preprocess" => {
                    worker
                        .serve_with::<preprocess<()>>(step, (), options)
                        .await?
                }
                "resnet18" => {
                    worker
                        .serve_with::<Classifier>(step, (resnet18.clone(),), options)
                        .await?
                }
                "resnet34" => {
                    worker
                        .serve_with::<Classifier>(step, (resnet34.clone(),), options)
                        .await?
                }
                other => {
                    eprintln!("unknown step `{other}`: preprocess, resnet18 or resnet34");
                    usage()
                }
            }
        }
        worker.run().await?;
        Ok(())
    })
}
