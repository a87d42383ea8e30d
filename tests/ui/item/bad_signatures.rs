use pipeline_core::prelude::*;

#[step]
fn by_ref(s: &str) -> usize {
    s.len()
}

#[step]
fn nothing() -> i64 {
    1
}

#[step]
fn generic<T: Clone>(x: T) -> T {
    x
}

fn main() {}
