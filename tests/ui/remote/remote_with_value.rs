use pipeline_core::prelude::*;

#[step(remote = "nats://127.0.0.1:4222")]
fn double(x: u64) -> u64 {
    x * 2
}

fn main() {}
