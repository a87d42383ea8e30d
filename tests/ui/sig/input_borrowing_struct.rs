use pipeline_core::prelude::*;

#[step]
fn len(v: View<'_>) -> usize {
    v.0.len()
}

#[step]
fn total(x: Vec<u8>) -> usize {
    x.len()
}

struct View<'a>(&'a [u8]);

fn main() {
    let _ = total(Input::<Vec<u8>>::new()).deploy();
}
