//! Cloning a node (to share it) whose output is not `Clone`: one error that names the output type.
use pipeline_core::prelude::*;

pub struct Big(Vec<u8>);

#[step]
fn make(x: i64) -> Big {
    Big(vec![0; x as usize])
}

#[step]
fn size(b: Big) -> usize {
    b.0.len()
}

#[step]
fn add(a: usize, b: usize) -> usize {
    a + b
}

fn main() {
    let m = make(Input::<i64>::new());
    let _ = add(size(m.clone()), size(m)).deploy();
}
