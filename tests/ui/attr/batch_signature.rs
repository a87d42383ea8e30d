use pipeline_core::prelude::*;

#[step(mode = "actors", batch(max_size = 8, wait_ms = 5))]
fn not_a_vec(x: u64) -> u64 {
    x
}

#[step(mode = "actors", batch(max_size = 8))]
fn vec_in_scalar_out(xs: Vec<u64>) -> u64 {
    xs.len() as u64
}

#[step(batch(max_size = 8))]
fn not_an_actor(xs: Vec<u64>) -> Vec<u64> {
    xs
}

#[step(mode = "actors", batch(max_size = 0, wait = 5))]
fn bad_settings(xs: Vec<u64>) -> Vec<u64> {
    xs
}

fn main() {
    let _ = not_a_vec(Input::<u64>::new()).deploy();
}
