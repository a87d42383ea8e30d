use pipeline_core::prelude::*;

#[step]
fn or_zero(x: Option<i64>) -> i64 {
    x.unwrap_or(0)
}

fn main() {
    let _ = or_zero(Input::<i64>::new()).deploy();
}
