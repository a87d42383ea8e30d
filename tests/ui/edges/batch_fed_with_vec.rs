use pipeline_core::prelude::*;

#[step(mode = "actors", batch(max_size = 16, wait_ms = 2))]
fn embed(texts: Vec<String>) -> Vec<usize> {
    texts.iter().map(|t| t.len()).collect()
}

fn main() {
    // The user feeds the batch themselves, as in the signature.
    let _ = embed(Input::<Vec<String>>::new()).deploy();
}
