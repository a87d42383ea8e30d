use pipeline_core::prelude::*;

struct Ensemble;

#[step(mode = "actors")]
impl Ensemble {
    fn new() -> Self {
        Ensemble
    }
    fn call(&mut self, a: f32, b: f32, c: f32) -> f32 {
        (a + b + c) / 3.0
    }
}

#[step]
fn score(x: i64) -> f32 {
    x as f32
}

fn main() {
    let x = Input::<i64>::new().shared();
    let scores = vec![score(x.clone()), score(x.clone()), score(x)];
    let _ = Ensemble::bind(scores).deploy();
}
