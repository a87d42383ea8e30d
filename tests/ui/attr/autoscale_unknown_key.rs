use pipeline_core::prelude::*;

#[step(mode = "actors", autoscale(max_replica = 4))]
fn add_one(x: i64) -> i64 {
    x + 1
}

#[step(mode = "actors", autoscale(upscale_delay_s = 1))]
fn add_two(x: i64) -> i64 {
    x + 2
}

#[step(mode = "actors", autoscal(max_replicas = 4))]
fn add_three(x: i64) -> i64 {
    x + 3
}

fn main() {
    let _ = add_three(add_two(add_one(Input::<i64>::new()))).deploy();
}
