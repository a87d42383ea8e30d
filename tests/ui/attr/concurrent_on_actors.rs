use pipeline_core::prelude::*;

struct Model;

#[step(mode = "actors", replicas = 2, concurrent)]
impl Model {
    fn new() -> Self {
        Model
    }
    fn call(&self, x: u64) -> u64 {
        x
    }
}

fn main() {
    let _ = Model::bind(Input::<u64>::new()).deploy();
}
