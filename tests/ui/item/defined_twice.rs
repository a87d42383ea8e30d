//! The same function step defined twice (a copy-paste): one error, at the
//! second definition.
use pipeline_core::prelude::*;

#[step]
fn add_one(x: i64) -> i64 {
    x + 1
}

#[step]
fn add_one(x: i64) -> i64 {
    x + 2
}

fn main() {
    let _ = add_one(Input::<i64>::new()).deploy();
}
