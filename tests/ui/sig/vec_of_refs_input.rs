use pipeline_core::prelude::*;

#[step]
fn count(words: Vec<&str>) -> usize {
    words.len()
}

fn main() {
    let _ = count(Input::<Vec<String>>::new()).deploy();
}
