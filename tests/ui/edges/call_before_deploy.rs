//! Calling a node as if it were the pipeline: told to deploy first.
use pipeline_core::prelude::*;

#[step]
fn add_one(x: i64) -> i64 {
    x + 1
}

fn main() {
    let node = add_one(Input::<i64>::new());
    let answer = node.call(1).unwrap();
    println!("{answer}");
}
