use pipeline_core::prelude::*;

struct Model {
    k: i64,
}

#[step(mode = "actors")]
impl Model {
    fn new(k: i64) -> Self {
        Model { k }
    }
    fn call<T: Into<i64>>(&mut self, x: T) -> i64 {
        x.into() + self.k
    }
}

fn main() {
    let _ = Model::bind(1, Input::<i32>::new()).deploy();
}
