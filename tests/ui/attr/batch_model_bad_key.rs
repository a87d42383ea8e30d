//! The step still expands batched (its edges are item edges), so the graph using it adds no error.
use pipeline_core::prelude::*;

struct Model {
    k: i64,
}

#[step(mode = "actors", batch(max_size = 8, wait = 5))]
impl Model {
    fn new(k: i64) -> Self {
        Model { k }
    }
    fn call(&mut self, xs: Vec<i64>) -> Vec<i64> {
        xs.into_iter().map(|x| x + self.k).collect()
    }
}

fn main() {
    let _ = Model::bind(1, Model::bind(2, Input::<i64>::new())).deploy();
}
