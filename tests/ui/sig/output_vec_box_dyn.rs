use pipeline_core::prelude::*;

#[step]
fn describe(x: i64) -> Vec<Box<dyn std::fmt::Display>> {
    vec![Box::new(x)]
}

fn main() {
    let _ = describe(Input::<i64>::new()).deploy();
}
