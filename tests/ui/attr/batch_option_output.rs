//! A batched signature the macro rejects still expands with item edges.
use pipeline_core::prelude::*;

#[step(mode = "actors", batch(max_size = 8))]
fn embed(xs: Vec<i64>) -> Option<Vec<i64>> {
    Some(xs)
}

#[step]
fn add_one(x: i64) -> i64 {
    x + 1
}

fn main() {
    let _ = add_one(embed(Input::<i64>::new())).deploy();
}
