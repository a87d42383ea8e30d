use pipeline_core::prelude::*;

struct Model;

#[step(mode = "actors")]
impl Model {
    fn new() -> Self {
        Model
    }
    fn call(&self, ctx: &ReplicaContext, x: i64) -> i64 {
        let _ = ctx.device();
        x
    }
}

fn main() {
    let _ = Model::bind(Input::<i64>::new()).deploy();
}
