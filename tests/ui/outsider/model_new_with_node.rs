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
    // Ray users write `Model.bind(...)`; here the constructor is called instead.
    let _ = Model::new(1, Input::<i64>::new()).deploy();
}
