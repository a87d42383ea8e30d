//! `#[step]` on the model struct: told to move it, with the attribute as written.
use pipeline_core::prelude::*;

#[step(mode = "actors", replicas = 2)]
struct Model {
    k: i64,
}

impl Model {
    fn new(k: i64) -> Self {
        Model { k }
    }
    fn call(&mut self, x: i64) -> i64 {
        x + self.k
    }
}

fn main() {
    let _ = Model::new(1).call(2);
}
