//! The input used twice: one error, whose help (`x.clone()`) is the fix: clones of an `Input` are the same input.
use pipeline_core::prelude::*;

#[step]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

fn main() {
    let x = Input::<i64>::new();
    let _ = add(x, x).deploy();
}
