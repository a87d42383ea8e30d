//! Routing on a value known when the graph is built (not a node): one
//! error, at the argument, saying to pick the branch in Rust; the
//! `.branch` calls chained on it add none.
use pipeline_core::prelude::*;

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
    // Routing on a value computed in Rust rather than on a node.
    let use_large = true;
    let _ = route(use_large)
        .branch(false, small(x.clone()))
        .branch(true, large(x))
        .deploy();
}
