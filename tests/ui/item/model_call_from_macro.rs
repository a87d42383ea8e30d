use pipeline_core::prelude::*;

macro_rules! forward_call {
    () => {
        fn call(&mut self, x: i64) -> i64 {
            x + self.k
        }
    };
}

struct Model {
    k: i64,
}

#[step(mode = "actors")]
impl Model {
    fn new(k: i64) -> Self {
        Model { k }
    }
    forward_call!();
}

fn main() {
    let _ = Model::bind(1, Input::<i64>::new()).deploy();
}
