//! Seed 001 over HTTP: Preprocessor -> Model -> Postprocessor behind
//! `POST /predict`, plus /healthz, /readyz, /metrics and /graph.
//!
//! ```text
//! cargo run -p pipeline-examples --features http --example http_seed -- [ADDR]
//! curl -s -d '{"values": [1, 2, 3]}' http://127.0.0.1:8000/predict
//! ```
//! `RUST_LOG=info` (or `debug` for per-step spans) controls the logs; each
//! request's span carries its id (`x-request-id`, or a generated one).
use pipeline_core::http::{Ingress, DEFAULT_ADDR};
use pipeline_core::prelude::*;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_ADDR.to_string());
    let pipeline = pipeline_examples::seed001::graph().deploy()?;
    println!("{}", pipeline.graph().to_mermaid());
    Ingress::new()
        .request("/predict", pipeline)
        .serve(&addr)
        .await?;
    Ok(())
}
