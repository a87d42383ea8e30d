use pipeline_core::prelude::*;

#[step]
fn pick(x: i64) -> bool {
    x > 10
}

fn main() {
    let x = Input::<i64>::new();
    let _ = route(pick(x)).deploy();
}
