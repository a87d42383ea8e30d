//! A mode in the wrong case, next to a key only actors take: one error, with the lower-case spelling.
use pipeline_core::prelude::*;

#[step(mode = "ACTORS", replicas = 2)]
fn add_one(x: i64) -> i64 {
    x + 1
}

fn main() {
    let _ = add_one(Input::<i64>::new()).deploy();
}
