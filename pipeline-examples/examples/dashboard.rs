//! The live dashboard: seed 001 (`POST /predict`) and the seed's image
//! ensemble (`POST /classify`) served together, with traffic, so that
//! `http://127.0.0.1:8000/dashboard` shows both graphs with moving figures.
//!
//! ```text
//! cargo run -p pipeline-examples --features http,torch --example dashboard -- [ADDR] [WEIGHTS_DIR] [--no-load]
//! # then open http://127.0.0.1:8000/dashboard
//! ```
//!
//! Without `--no-load` it calls both pipelines itself: seed 001 about 50
//! times a second, the ensemble back to back on the sample images (one
//! call in five is a file that is no image, so the preprocess step's error
//! counter moves too).
use std::time::Duration;

use pipeline_core::http::{HttpRequest, Ingress, DEFAULT_ADDR};
use pipeline_core::prelude::*;
use pipeline_examples::vision::{sample_images, served, PreprocessError};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    pipeline_core::torch::tune_malloc();
    tokio::runtime::Runtime::new()?.block_on(serve())
}

async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut load = true;
    let mut positional = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--no-load" => load = false,
            _ => positional.push(arg),
        }
    }
    let addr = positional
        .first()
        .cloned()
        .unwrap_or_else(|| DEFAULT_ADDR.to_string());
    let dir = positional.get(1).map(std::path::PathBuf::from);
    let seed = pipeline_examples::seed001::graph().deploy()?;
    let ensemble = served::ensemble(dir.as_deref()).deploy()?;
    if load {
        tokio::spawn(seed_traffic(seed.clone()));
        tokio::spawn(ensemble_traffic(ensemble.clone()));
    }
    println!("dashboard: http://{addr}/dashboard");
    Ingress::new()
        .request("/predict", seed)
        .request("/classify", ensemble)
        .client_error::<PreprocessError>(422)
        .body_limit(10 * 1024 * 1024)
        .serve(&addr)
        .await?;
    Ok(())
}

async fn seed_traffic(p: Pipeline<HttpRequest, pipeline_examples::seed001::Prediction>) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for i in 0u64.. {
        tick.tick().await;
        let body = format!(r#"{{"values": [{}, 2, 3]}}"#, i % 7);
        if stopping(
            p.call_async(HttpRequest::builder().body(body).build())
                .await,
        ) {
            return;
        }
    }
}

/// Whether the server is shutting down (the traffic then stops, else a
/// loop of calls answered at once would keep the runtime from ending).
fn stopping<T>(answer: Result<T, PipelineError>) -> bool {
    matches!(answer, Err(PipelineError::ShuttingDown))
}

async fn ensemble_traffic(p: Pipeline<HttpRequest, Vec<i64>>) {
    let mut images: Vec<Vec<u8>> = sample_images().into_iter().map(|(_, b)| b).collect();
    images.push(b"no image".to_vec());
    for i in 0usize.. {
        let body = images[i % images.len()].clone();
        if stopping(
            p.call_async(HttpRequest::builder().body(body).build())
                .await,
        ) {
            return;
        }
    }
}
