use pipeline_core::prelude::*;

#[step]
fn norm(v: [f32; 3]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

fn main() {
    let _ = norm(Input::<Vec<f32>>::new()).deploy();
}
