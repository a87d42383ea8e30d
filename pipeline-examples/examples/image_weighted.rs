//! Business logic: the ensemble's answers weighted by numbers read from a
//! store (a JSON file) on every call; editing the file changes the next
//! answer without a redeploy.
//! `cargo run -p pipeline-examples --features torch --example image_weighted [-- WEIGHTS_DIR]`
use pipeline_core::prelude::*;
use pipeline_examples::vision::{model_specs, sample_images, weighted};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    pipeline_core::torch::tune_malloc(); // before any thread starts
    let dir = std::env::args().nth(1).map(std::path::PathBuf::from);
    let store = std::env::temp_dir().join(format!("ensemble-weights-{}.json", std::process::id()));
    let p = weighted(model_specs(dir.as_deref()), store.clone()).deploy()?;
    let (name, image) = sample_images().remove(0);
    for weights in [
        r#"{"resnet18": 1, "resnet34": 0}"#,
        r#"{"resnet18": 0.2, "resnet34": 0.8}"#,
    ] {
        std::fs::write(&store, weights)?;
        let answer = p.call(image.clone())?;
        println!(
            "{name} with {weights}: {:?} {:?}",
            answer.categories, answer.scores
        );
    }
    std::fs::remove_file(&store)?;
    Ok(())
}
