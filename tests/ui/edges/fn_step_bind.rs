use pipeline_core::prelude::*;

#[step]
fn add_one(x: i64) -> i64 {
    x + 1
}

fn main() {
    let _ = add_one::bind(Input::<i64>::new()).deploy();
}
