use pipeline_core::prelude::*;

#[step(mode = "tasks")]
fn add_one(ctx: &ReplicaContext, x: i64) -> i64 {
    let _ = ctx;
    x + 1
}

fn main() {
    let _ = add_one(Input::<i64>::new()).deploy();
}
