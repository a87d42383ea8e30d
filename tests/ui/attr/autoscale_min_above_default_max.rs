use pipeline_core::prelude::*;

// The default `max_replicas` is 8.
#[step(mode = "actors", autoscale(min_replicas = 10))]
fn add_one(x: i64) -> i64 {
    x + 1
}

fn main() {
    let _ = add_one(Input::<i64>::new()).deploy();
}
