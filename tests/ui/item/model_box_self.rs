use pipeline_core::prelude::*;

struct Model {
    k: i64,
}

#[step(mode = "actors")]
impl Model {
    fn new(k: i64) -> Self {
        Model { k }
    }
    fn call(self: Box<Self>, x: i64) -> i64 {
        x + self.k
    }
}

fn main() {
    let _ = Model::bind(1, Input::<i64>::new()).deploy();
}
