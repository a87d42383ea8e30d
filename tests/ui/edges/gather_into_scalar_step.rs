use pipeline_core::prelude::*;

#[step]
fn plus(x: i64) -> i64 {
    x + 1
}

#[step]
fn best(x: i64) -> i64 {
    x
}

fn main() {
    let x = Input::<i64>::new().shared();
    let _ = best([plus(x.clone()), plus(x)]).deploy();
}
