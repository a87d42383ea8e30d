//! Seed shape: chaining, preprocess -> classifier, written with `.then()`.
//! `cargo run -p pipeline-examples --example chain`
use pipeline_core::prelude::*;
use pipeline_examples::{preprocess, Classifier};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let features = Input::<Vec<u8>>::new().then(preprocess);
    let p = Classifier::bind("resnet18".to_string(), features).deploy()?;
    let top5 = p.call(vec![0, 64, 128, 255])?;
    assert_eq!(top5.len(), 5);
    for (category, score) in &top5 {
        println!("{category:>20}  {score:+.4}");
    }
    println!("{}", p.graph().to_dot());
    Ok(())
}
