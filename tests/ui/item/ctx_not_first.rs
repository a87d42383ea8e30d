use pipeline_core::prelude::*;

struct Model {
    name: String,
}

#[step(mode = "actors")]
impl Model {
    fn new(name: String, ctx: &ReplicaContext) -> Self {
        let _ = ctx.device();
        Model { name }
    }
    fn call(&self, x: i64) -> String {
        format!("{}: {x}", self.name)
    }
}

fn main() {
    let _ = Model::bind("m".to_string(), Input::<i64>::new()).deploy();
}
