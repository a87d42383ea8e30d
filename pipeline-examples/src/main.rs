//! The main demo: `cargo run --release -p pipeline-examples` (or plain
//! `cargo run` at the repository root). Runs the seed pipelines and the
//! chaining / ensemble shapes, printing answers, graphs and timings.

use std::time::Instant;

use pipeline_core::prelude::*;
use pipeline_examples::{combine, preprocess, Classifier};

#[step]
fn add_one(x: i64) -> i64 {
    x + 1
}

#[step]
fn double(x: i64) -> i64 {
    x * x
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let echo = Input::<i64>::new().deploy()?;
    println!("echo:          42 -> {}", echo.call(42)?);

    let seq = double(add_one(Input::<i64>::new())).deploy()?;
    println!("double(add_one): 1 -> {}", seq.call(1)?);

    let pre = preprocess(Input::<Vec<u8>>::new()).shared();
    let models = ["resnet18", "resnet34"].map(|m| Classifier::bind(m.to_string(), pre.clone()));
    let node = combine(models);
    println!(
        "\nensemble graph (Mermaid), before deploy:\n{}",
        node.graph().to_mermaid()
    );
    let ensemble = node.deploy()?;
    for step in ensemble.report() {
        println!(
            "  step {:<10} requested {:<6} running {:<6} {}",
            step.step,
            step.requested,
            step.running,
            step.note.unwrap_or("")
        );
    }

    let image: Vec<u8> = (0..=255).collect();
    let start = Instant::now();
    let categories = ensemble.call(image.clone())?;
    println!("\nensemble: {:?} ({:?})", &categories[..4], start.elapsed());

    let n = 10_000;
    let start = Instant::now();
    for _ in 0..n {
        ensemble.call(image.clone())?;
    }
    let per_call = start.elapsed() / n;
    println!("ensemble: {n} calls, {per_call:?} per call");
    Ok(())
}
