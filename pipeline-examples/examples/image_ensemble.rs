//! Ensemble on libtorch: preprocess once -> [resnet18, resnet34] run
//! concurrently -> combine (the seed's concatenated top-5 categories).
//! `cargo run -p pipeline-examples --features torch --example image_ensemble [-- WEIGHTS_DIR]`
use pipeline_core::prelude::*;
use pipeline_examples::vision::{ensemble, model_specs, sample_images};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    pipeline_core::torch::tune_malloc(); // before any thread starts
    let dir = std::env::args().nth(1).map(std::path::PathBuf::from);
    let p = ensemble(model_specs(dir.as_deref())).deploy()?;
    for (name, bytes) in sample_images() {
        println!("{name:<28} {:?}", p.call(bytes)?);
    }
    println!("{}", p.graph().to_mermaid());
    Ok(())
}
