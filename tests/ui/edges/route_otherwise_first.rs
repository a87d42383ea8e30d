use pipeline_core::prelude::*;

#[step]
fn pick(x: i64) -> bool {
    x > 10
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
    let _ = route(pick(x.clone()))
        .otherwise(small(x.clone()))
        .branch(true, large(x))
        .deploy();
}
