//! The image ensemble over HTTP: POST an image's bytes, get the combined
//! top-5 categories of resnet18 and resnet34.
//!
//! ```text
//! cargo run -p pipeline-examples --features http,torch --example http_ensemble -- [ADDR] [WEIGHTS_DIR]
//! curl -s --data-binary @target/fixture/images/landscape-320x240.png http://127.0.0.1:8000/classify
//! ```
//!
//! `PIPELINE_DEPLOY=deploy.toml` deploys with the options in that file, e.g.
//! the models served by `vision_worker` processes (built with the `remote`
//! feature; see the README's "Remote steps").
use pipeline_core::http::{Ingress, DEFAULT_ADDR};
use pipeline_core::prelude::*;
use pipeline_examples::vision::{served, PreprocessError};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Before the runtime's threads start: model replicas then reuse freed
    // activations (see `torch::tune_malloc`).
    pipeline_core::torch::tune_malloc();
    tokio::runtime::Runtime::new()?.block_on(serve())
}

async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| DEFAULT_ADDR.to_string());
    let dir = args.next().map(std::path::PathBuf::from);
    let options = match std::env::var_os("PIPELINE_DEPLOY") {
        Some(path) => DeployOptions::from_file(path)?,
        None => DeployOptions::new(),
    };
    let pipeline = served::ensemble(dir.as_deref()).deploy_with(options)?;
    Ingress::new()
        .request("/classify", pipeline)
        // Bytes that are no image are the client's fault: 422, not 500.
        .client_error::<PreprocessError>(422)
        .body_limit(10 * 1024 * 1024)
        .serve(&addr)
        .await?;
    Ok(())
}
