use pipeline_core::prelude::*;

struct Model {
    path: String,
}

#[step(mode = "actors")]
impl Model {
    fn new(path: &str) -> Self {
        Model { path: path.to_string() }
    }
    fn call(&mut self, x: i64) -> String {
        format!("{}: {x}", self.path)
    }
}

fn main() {
    let _ = Model::bind("m.pt", Input::<i64>::new()).deploy();
}
