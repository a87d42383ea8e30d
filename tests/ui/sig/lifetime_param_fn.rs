use pipeline_core::prelude::*;

#[step]
fn count<'a>(s: &'a str) -> usize {
    s.len()
}

fn main() {
    let _ = count(Input::<String>::new()).deploy();
}
