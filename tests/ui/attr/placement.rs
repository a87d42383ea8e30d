use pipeline_core::prelude::*;

#[step(mode = "actors", placement = "threads")]
fn add_one(x: i64) -> i64 {
    x + 1
}

#[step(placement = "task")]
fn add_two(x: i64) -> i64 {
    x + 2
}

fn main() {
    let _ = add_two(add_one(Input::<i64>::new())).deploy();
}
