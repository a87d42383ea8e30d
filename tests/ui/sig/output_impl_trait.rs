use pipeline_core::prelude::*;

#[step]
fn show(x: i64) -> impl std::fmt::Display {
    x
}

fn main() {
    let _ = show(Input::<i64>::new()).deploy();
}
