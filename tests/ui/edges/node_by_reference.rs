use pipeline_core::prelude::*;

#[step]
fn add_one(x: i64) -> i64 {
    x + 1
}

#[step]
fn square(x: i64) -> i64 {
    x * x
}

fn main() {
    let a = add_one(Input::<i64>::new());
    let _ = square(&a).deploy();
}
