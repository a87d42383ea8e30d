use pipeline_core::prelude::*;

#[step]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

fn main() {
    let _ = Input::<i64>::new().then(add).deploy();
}
