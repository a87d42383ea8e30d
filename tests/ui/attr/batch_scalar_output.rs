use pipeline_core::prelude::*;

#[step(mode = "actors", batch(max_size = 8))]
fn count(xs: Vec<u64>) -> u64 {
    xs.len() as u64
}

fn main() {
    let _ = count(Input::<Vec<u64>>::new()).deploy();
}
