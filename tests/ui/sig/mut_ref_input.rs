use pipeline_core::prelude::*;

#[step]
fn normalize(v: &mut Vec<f32>) -> f32 {
    let n: f32 = v.iter().sum();
    v.iter_mut().for_each(|x| *x /= n);
    n
}

fn main() {
    let _ = normalize(Input::<Vec<f32>>::new()).deploy();
}
