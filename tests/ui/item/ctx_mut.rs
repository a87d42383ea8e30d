use pipeline_core::prelude::*;

struct Model {
    k: i64,
}

#[step(mode = "actors")]
impl Model {
    fn new(ctx: &mut ReplicaContext) -> Self {
        let _ = ctx;
        Model { k: 1 }
    }
    fn call(&mut self, x: i64) -> i64 {
        x + self.k
    }
}

fn main() {
    let _ = Model::bind(Input::<i64>::new()).deploy();
}
