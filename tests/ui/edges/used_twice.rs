//! A node used twice: rustc's one "use of moved value", whose help (`d.clone()`) is the fix: a cloned node is shared, as `.shared()` makes it.
use pipeline_core::prelude::*;

#[step]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[step]
fn double(x: i64) -> i64 {
    x * 2
}

fn main() {
    let d = double(Input::<i64>::new());
    let _ = add(d, d).deploy();
}
