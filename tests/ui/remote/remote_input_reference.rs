use pipeline_core::prelude::*;

#[step(remote)]
fn count(s: &str) -> u64 {
    s.len() as u64
}

fn main() {
    let _ = count(Input::<String>::new()).deploy();
}
