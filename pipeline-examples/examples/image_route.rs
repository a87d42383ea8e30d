//! Per-request model choice on libtorch: the request names its model and a
//! route node runs only that classifier.
//! `cargo run -p pipeline-examples --features torch --example image_route [-- WEIGHTS_DIR]`
use pipeline_core::prelude::*;
use pipeline_examples::vision::{model_specs, routed, sample_images, Arch, ImageRequest};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    pipeline_core::torch::tune_malloc(); // before any thread starts
    let dir = std::env::args().nth(1).map(std::path::PathBuf::from);
    let [resnet18, resnet34] = model_specs(dir.as_deref());
    let p = routed(resnet18, resnet34).deploy()?;
    let (name, image) = sample_images().remove(0);
    for model in [Arch::Resnet18, Arch::Resnet34] {
        let top5 = p.call(ImageRequest {
            image: image.clone(),
            model,
        })?;
        println!(
            "{name} asked for {model}: answered by {} {:?}",
            top5.model, top5.categories
        );
    }
    println!("{}", p.graph().to_mermaid());
    Ok(())
}
