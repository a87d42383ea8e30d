use pipeline_core::prelude::*;

#[step]
fn plus(x: i64) -> i64 {
    x + 1
}

#[step]
fn sum(xs: Vec<i64>) -> i64 {
    xs.iter().sum()
}

fn main() {
    let x = Input::<i64>::new().shared();
    let nodes = vec![plus(x.clone()), plus(x)];
    let _ = sum(&nodes[..]).deploy();
}
