use pipeline_core::prelude::*;

#[step(actors, replicas = 2)]
fn add_one(x: i64) -> i64 {
    x + 1
}

fn main() {
    let _ = add_one(Input::<i64>::new()).deploy();
}
