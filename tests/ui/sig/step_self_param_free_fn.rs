use pipeline_core::prelude::*;

#[step]
fn add_one(x: Self) -> i64 {
    x + 1
}

fn main() {
    let _ = add_one(Input::<i64>::new()).deploy();
}
