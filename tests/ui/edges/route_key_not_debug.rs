//! A route key without `Debug`: one error at `route(..)`, not one per branch.
use pipeline_core::prelude::*;

#[derive(Clone, Copy, PartialEq)]
enum Size {
    Small,
    Large,
}

#[step]
fn pick(x: i64) -> Size {
    if x > 10 { Size::Large } else { Size::Small }
}

#[step]
fn small(x: i64) -> i64 {
    x
}

#[step]
fn large(x: i64) -> i64 {
    x * 10
}

fn main() {
    let x = Input::<i64>::new().shared();
    let _ = route(pick(x.clone()))
        .branch(Size::Small, small(x.clone()))
        .branch(Size::Large, large(x))
        .deploy();
}
