use pipeline_core::prelude::*;

#[step(mode = "actors", batch(max_size = 16, wait_ms = 2))]
fn embed(texts: &[String]) -> Vec<usize> {
    texts.iter().map(|t| t.len()).collect()
}

fn main() {
    let _ = embed(Input::<String>::new()).deploy();
}
