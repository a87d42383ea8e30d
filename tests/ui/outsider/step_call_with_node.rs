use pipeline_core::prelude::*;

#[step]
fn add_one(x: i64) -> i64 {
    x + 1
}

fn main() {
    // `::call` runs the body directly; the user meant to build a node.
    let _ = add_one::call(Input::<i64>::new()).deploy();
}
