use pipeline_core::prelude::*;

#[step(mode = "actors", autoscale(max_replicas = "4"))]
fn add_one(x: i64) -> i64 {
    x + 1
}

#[step(mode = "actors", autoscale(target_ongoing_requests = 1.5))]
fn add_two(x: i64) -> i64 {
    x + 2
}

#[step(mode = "actors", autoscale(min_replicas = -1))]
fn add_three(x: i64) -> i64 {
    x + 3
}

#[step(mode = "actors", autoscale(upscale_delay_ms))]
fn add_four(x: i64) -> i64 {
    x + 4
}

#[step(mode = "actors", autoscale = true)]
fn add_five(x: i64) -> i64 {
    x + 5
}

fn main() {
    let _ = add_five(add_four(add_three(add_two(add_one(Input::<i64>::new()))))).deploy();
}
