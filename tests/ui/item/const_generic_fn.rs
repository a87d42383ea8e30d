use pipeline_core::prelude::*;

#[step]
fn norm<const N: usize>(v: [f32; N]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

fn main() {
    let _ = norm(Input::<[f32; 3]>::new()).deploy();
}
