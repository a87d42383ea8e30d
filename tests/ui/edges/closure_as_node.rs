use pipeline_core::prelude::*;

#[step]
fn square(x: i64) -> i64 {
    x * x
}

fn main() {
    let _ = square(|x: i64| x + 1).deploy();
}
