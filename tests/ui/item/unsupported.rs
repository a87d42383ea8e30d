use pipeline_core::prelude::*;

#[step]
struct Classifier {
    weights: Vec<f32>,
}

#[step]
enum Choice {
    A,
    B,
}

fn main() {}
