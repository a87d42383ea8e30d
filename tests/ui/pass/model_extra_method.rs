// Should compile: a helper method and an associated const beside new/call.
use pipeline_core::prelude::*;

struct Model {
    k: i64,
}

#[step(mode = "actors")]
impl Model {
    const SCALE: i64 = 10;

    fn new(k: i64) -> Self {
        Model { k }
    }
    fn scaled(&self, x: i64) -> i64 {
        x * Self::SCALE
    }
    fn call(&mut self, x: i64) -> i64 {
        self.scaled(x) + self.k
    }
}

fn main() {
    let _ = Model::bind(1, Input::<i64>::new()).deploy();
}
