use pipeline_core::prelude::*;

pub struct Frame {
    pub pixels: Vec<u8>,
}

#[step(remote)]
fn brightness(pair: (Frame, u8)) -> u64 {
    pair.0.pixels.iter().map(|&p| u64::from(p)).sum::<u64>() + u64::from(pair.1)
}

fn main() {}
