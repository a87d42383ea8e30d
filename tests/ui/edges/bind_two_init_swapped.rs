use pipeline_core::prelude::*;

struct Model {
    name: String,
    k: i64,
}

#[step(mode = "actors")]
impl Model {
    fn new(name: String, k: i64) -> Self {
        Model { name, k }
    }
    fn call(&mut self, x: i64) -> String {
        format!("{}: {}", self.name, x + self.k)
    }
}

fn main() {
    let _ = Model::bind(Input::<i64>::new(), "m".to_string(), 1).deploy();
}
