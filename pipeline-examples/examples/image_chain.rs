//! Chaining on libtorch: preprocess -> resnet18, on the sample images.
//! `cargo run -p pipeline-examples --features torch --example image_chain [-- WEIGHTS_DIR]`
//! (WEIGHTS_DIR holds resnet18.safetensors; without it the weights are seeded).
use pipeline_core::prelude::*;
use pipeline_examples::vision::{chain, model_specs, sample_images};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    pipeline_core::torch::tune_malloc(); // before any thread starts
    let dir = std::env::args().nth(1).map(std::path::PathBuf::from);
    let [resnet18, _] = model_specs(dir.as_deref());
    let p = chain(resnet18).deploy()?;
    for (name, bytes) in sample_images() {
        let top5 = p.call(bytes)?;
        println!("{name:<28} {:?} {:?}", top5.categories, top5.labels());
    }
    println!("{}", p.graph().to_mermaid());
    Ok(())
}
