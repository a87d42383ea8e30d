use pipeline_core::prelude::*;

#[step(remote, replicas = 4)]
fn double(x: u64) -> u64 {
    x * 2
}

fn main() {
    let _ = double(Input::<u64>::new()).deploy();
}
