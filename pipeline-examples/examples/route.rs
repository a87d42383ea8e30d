//! Per-request model choice: a route node picks a model from an attribute
//! of the input; only the chosen model runs.
//! `cargo run -p pipeline-examples --example route`
use pipeline_core::prelude::*;
use pipeline_examples::{Classifier, Top5};

#[derive(Clone, Debug)]
struct Request {
    tier: &'static str,
    features: Vec<f32>,
}

#[step]
fn tier(r: Request) -> &'static str {
    r.tier
}

#[step]
fn features(r: Request) -> Vec<f32> {
    r.features
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let req = Input::<Request>::new().shared();
    let model = |name: &str| Classifier::bind(name.to_string(), features(req.clone()));
    let p = route(tier(req.clone()))
        .branch("free", model("resnet18"))
        .branch("pro", model("resnet34"))
        .deploy()?;
    for t in ["free", "pro"] {
        let top5: Top5 = p.call(Request {
            tier: t,
            features: vec![0.1, -0.2, 0.3],
        })?;
        println!("{t:>5}: {}", top5[0].0);
    }
    println!("{}", p.graph().to_mermaid());
    Ok(())
}
