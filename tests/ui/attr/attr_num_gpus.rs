use pipeline_core::prelude::*;

#[step(mode = "actors", replicas = 2, ray_actor_options(num_gpus = 1))]
fn add_one(x: i64) -> i64 {
    x + 1
}

fn main() {
    let _ = add_one(Input::<i64>::new()).deploy();
}
