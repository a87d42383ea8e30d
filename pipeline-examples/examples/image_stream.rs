//! A list of images in, one classification per image streamed out as each
//! is ready: `frames ~> [preprocess -> BatchedClassifier]` (`.map_each`),
//! the frames sharing the model's batches, their answers in order.
//! `cargo run -p pipeline-examples --features torch --example image_stream [-- WEIGHTS_DIR]`
use std::time::Instant;

use pipeline_core::prelude::*;
use pipeline_examples::vision::{frames_classified, model_specs, sample_images};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    pipeline_core::torch::tune_malloc(); // before any thread starts
    let dir = std::env::args().nth(1).map(std::path::PathBuf::from);
    let [resnet18, _] = model_specs(dir.as_deref());
    let p = frames_classified(resnet18).deploy()?;
    // 16 frames: the four sample images, four times over.
    let images = sample_images();
    let frames: Vec<Vec<u8>> = images
        .iter()
        .cycle()
        .take(16)
        .map(|(_, b)| b.clone())
        .collect();
    let start = Instant::now();
    for (i, top5) in p.call_iter(frames).enumerate() {
        let top5 = top5?;
        println!(
            "frame {i:>2} ({:<26}) after {:>6.1} ms: {:?}",
            images[i % images.len()].0,
            start.elapsed().as_secs_f64() * 1000.0,
            top5.categories
        );
    }
    println!("{}", p.graph().to_mermaid());
    Ok(())
}
