use pipeline_core::prelude::*;

#[step]
fn describe(x: i64) -> Box<dyn std::fmt::Display> {
    Box::new(x)
}

fn main() {
    let _ = describe(Input::<i64>::new()).deploy();
}
