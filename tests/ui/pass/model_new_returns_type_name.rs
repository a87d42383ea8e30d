// Should compile: `-> Model` is the same as `-> Self`.
use pipeline_core::prelude::*;

struct Model {
    k: i64,
}

#[step(mode = "actors")]
impl Model {
    fn new(k: i64) -> Model {
        Model { k }
    }
    fn call(&mut self, x: i64) -> i64 {
        x + self.k
    }
}

fn main() {
    let _ = Model::bind(1, Input::<i64>::new()).deploy();
}
