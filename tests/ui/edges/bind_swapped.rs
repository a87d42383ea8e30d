//! Constructor arguments and input nodes swapped: one error saying what `bind` takes.
use pipeline_core::prelude::*;

struct Model {
    k: i64,
}

#[step(mode = "actors")]
impl Model {
    fn new(k: i64) -> Self {
        Model { k }
    }
    fn call(&mut self, x: i64) -> i64 {
        x + self.k
    }
}

fn main() {
    let _ = Model::bind(Input::<i64>::new(), 1).deploy();
}
