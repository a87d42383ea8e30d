use pipeline_core::prelude::*;

#[step(mode = "actors", autoscale(min_replicas = 4, max_replicas = 2))]
fn add_one(x: i64) -> i64 {
    x + 1
}

// The default `max_replicas` is 8.
#[step(mode = "actors", autoscale(min_replicas = 10))]
fn add_two(x: i64) -> i64 {
    x + 2
}

// The default `min_replicas` is 1.
#[step(mode = "actors", autoscale(max_replicas = 0))]
fn add_three(x: i64) -> i64 {
    x + 3
}

fn main() {
    let _ = add_three(add_two(add_one(Input::<i64>::new()))).deploy();
}
