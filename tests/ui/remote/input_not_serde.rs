use pipeline_core::prelude::*;

/// Not serde: it cannot cross to a worker.
pub struct Frame {
    pub pixels: Vec<u8>,
}

#[step(remote)]
fn brightness(frame: Frame) -> u64 {
    frame.pixels.iter().map(|&p| u64::from(p)).sum()
}

fn main() {}
