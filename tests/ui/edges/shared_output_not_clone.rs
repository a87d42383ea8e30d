//! `.shared()` on a node whose output is not `Clone`: one error, at `.shared()`, not one per consumer.
use pipeline_core::prelude::*;

struct Big(i64);

#[step]
fn make(x: i64) -> Big {
    Big(x)
}

#[step]
fn left(b: Big) -> i64 {
    b.0
}

#[step]
fn right(b: Big) -> i64 {
    -b.0
}

#[step]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

fn main() {
    let big = make(Input::<i64>::new()).shared();
    let _ = add(left(big.clone()), right(big)).deploy();
}
