//! Seed shape: ensemble, preprocess -> [resnet18, resnet34] -> combine.
//! `cargo run -p pipeline-examples --example ensemble`
use pipeline_core::prelude::*;
use pipeline_examples::{combine, preprocess, Classifier};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pre = preprocess(Input::<Vec<u8>>::new()).shared();
    let models = ["resnet18", "resnet34"].map(|m| Classifier::bind(m.to_string(), pre.clone()));
    let ensemble = combine(models).deploy()?;
    let categories = ensemble.call(vec![0, 64, 128, 255])?;
    assert_eq!(categories.len(), 10);
    println!("{categories:?}");
    println!("{}", ensemble.graph().to_mermaid());
    Ok(())
}
