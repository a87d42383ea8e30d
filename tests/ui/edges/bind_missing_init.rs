//! The constructor argument left out: only the node is given.
use pipeline_core::prelude::*;

struct Model {
    name: String,
    k: i64,
}

#[step(mode = "actors")]
impl Model {
    fn new(name: String, k: i64) -> Self {
        Model { name, k }
    }
    fn call(&mut self, x: i64) -> i64 {
        x + self.k + self.name.len() as i64
    }
}

fn main() {
    let _ = Model::bind("m".to_string(), Input::<i64>::new()).deploy();
}
