use pipeline_core::prelude::*;

#[step]
fn square(x: i64) -> i64 {
    x * x
}

fn main() {
    let _ = Input::<i64>::new().then(|x| x + 1).then(square).deploy();
}
