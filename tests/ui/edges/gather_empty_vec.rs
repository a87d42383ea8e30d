use pipeline_core::prelude::*;

#[step]
fn sum(xs: Vec<i64>) -> i64 {
    xs.iter().sum()
}

fn main() {
    let _ = sum(vec![]).deploy();
}
