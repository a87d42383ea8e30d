use pipeline_core::prelude::*;

#[step]
fn score(x: i64) -> f32 {
    x as f32
}

#[step]
fn label(x: i64) -> String {
    x.to_string()
}

#[step]
fn combine(scores: Vec<f32>) -> f32 {
    scores.iter().sum()
}

fn main() {
    let x = Input::<i64>::new().shared();
    let _ = combine([label(x.clone()), label(x)]).deploy();
}
