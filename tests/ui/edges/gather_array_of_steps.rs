//! An array holds one type: nodes of two steps are rustc's one mismatch (a tuple gathers them).
use pipeline_core::prelude::*;

#[step]
fn plus(x: i64) -> i64 {
    x + 1
}

#[step]
fn times(x: i64) -> i64 {
    x * 2
}

#[step]
fn sum(xs: Vec<i64>) -> i64 {
    xs.iter().sum()
}

fn main() {
    let x = Input::<i64>::new().shared();
    let _ = sum([plus(x.clone()), times(x)]).deploy();
}
