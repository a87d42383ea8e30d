use pipeline_core::prelude::*;

const REPLICAS: usize = 2;

#[step(mode = "actors", replicas = REPLICAS)]
fn add_one(x: i64) -> i64 {
    x + 1
}

fn main() {
    let _ = add_one(Input::<i64>::new()).deploy();
}
