//! Ray Serve's name for the batch size: told where it goes; the step still expands batched.
use pipeline_core::prelude::*;

#[step(mode = "actors", max_batch_size = 8)]
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
