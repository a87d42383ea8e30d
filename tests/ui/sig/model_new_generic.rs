use pipeline_core::prelude::*;

struct Model {
    path: String,
}

#[step(mode = "actors")]
impl Model {
    fn new(path: impl Into<String>) -> Self {
        Model { path: path.into() }
    }
    fn call(&mut self, x: i64) -> String {
        format!("{}: {x}", self.path)
    }
}

fn main() {
    let _ = Model::bind("m.pt", Input::<i64>::new()).deploy();
}
