use pipeline_core::prelude::*;

#[step(mode = "actors", batch(max_size = 8, wait_ms = 5))]
fn not_a_vec(x: u64) -> u64 {
    x
}

fn main() {
    let _ = not_a_vec(Input::<u64>::new()).deploy();
}
