//! A tuple gathers nodes of different steps; outputs of two types are one error naming both.
use pipeline_core::prelude::*;

#[step]
fn plus(x: i64) -> i64 {
    x + 1
}

#[step]
fn times(x: i64) -> u32 {
    x as u32 * 2
}

#[step]
fn sum(xs: Vec<i64>) -> i64 {
    xs.iter().sum()
}

fn main() {
    let x = Input::<i64>::new().shared();
    let _ = sum((plus(x.clone()), times(x))).deploy();
}
