use pipeline_core::prelude::*;

#[step]
fn apply(f: Box<dyn Fn(i64) -> i64>) -> i64 {
    f(1)
}

#[step]
fn add_one(x: i64) -> i64 {
    x + 1
}

fn main() {
    let _ = add_one(Input::<i64>::new()).deploy();
}
