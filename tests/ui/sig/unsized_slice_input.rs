use pipeline_core::prelude::*;

#[step]
fn total(xs: [i64]) -> i64 {
    xs.iter().sum()
}

fn main() {
    let _ = total(Input::<Vec<i64>>::new()).deploy();
}
