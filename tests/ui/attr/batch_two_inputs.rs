use pipeline_core::prelude::*;

#[step(mode = "actors", batch(max_size = 8))]
fn add(a: Vec<i64>, b: Vec<i64>) -> Vec<i64> {
    a.into_iter().zip(b).map(|(a, b)| a + b).collect()
}

fn main() {
    let x = Input::<i64>::new();
    let _ = add(x.clone(), x).deploy();
}
