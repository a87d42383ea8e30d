//! Routing on something that is no node (route(|x: i64| x > 0)): one error at the
//! argument; the `.branch` and `.otherwise` calls chained on it add none.
use pipeline_core::prelude::*;

#[step]
fn pick(x: i64) -> i64 {
    x % 2
}

#[step]
fn small(x: i64) -> i64 {
    x
}

#[step]
fn large(x: i64) -> i64 {
    x * 1000
}

fn main() {
    let x = Input::<i64>::new().shared();

    let _ = route(|x: i64| x > 0)
        .branch(true, small(x.clone()))
        .otherwise(large(x))
        .deploy();
}
