use pipeline_core::prelude::*;

struct Encoder {
    dim: usize,
}

#[step(mode = "actors", batch(max_size = 16, wait_ms = 2))]
impl Encoder {
    fn new(dim: usize) -> Self {
        Encoder { dim }
    }
    fn call(&mut self, text: String) -> Vec<f32> {
        vec![text.len() as f32; self.dim]
    }
}

fn main() {
    let _ = Encoder::bind(8, Input::<String>::new()).deploy();
}
