use pipeline_core::prelude::*;

#[step(name = "resnet18", mode = "actors")]
fn classify(x: i64) -> i64 {
    x
}

fn main() {
    let _ = classify(Input::<i64>::new()).deploy();
}
