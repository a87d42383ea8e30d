// Should compile: a tuple pattern as a model input.
use pipeline_core::prelude::*;

struct Model;

#[step(mode = "actors")]
impl Model {
    fn new() -> Self {
        Model
    }
    fn call(&mut self, (a, b): (i64, i64)) -> i64 {
        a + b
    }
}

fn main() {
    let p = Model::bind(Input::<(i64, i64)>::new()).deploy().unwrap();
    let _ = p.call((1, 2));
}
