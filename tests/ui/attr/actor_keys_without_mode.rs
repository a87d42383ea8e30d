//! Several keys that need actors, and no mode: one error naming them.
use pipeline_core::prelude::*;

#[step(replicas = 2, batch(max_size = 8))]
fn embed(xs: Vec<i64>) -> Vec<i64> {
    xs
}

#[step]
fn add_one(x: i64) -> i64 {
    x + 1
}

fn main() {
    let _ = add_one(embed(Input::<i64>::new())).deploy();
}
