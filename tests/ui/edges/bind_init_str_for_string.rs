//! A `&str` where the constructor takes a `String`.
use pipeline_core::prelude::*;

struct Model {
    path: String,
}

#[step(mode = "actors")]
impl Model {
    fn new(path: String) -> Self {
        Model { path }
    }
    fn call(&mut self, x: i64) -> i64 {
        x + self.path.len() as i64
    }
}

fn main() {
    let _ = Model::bind("model.pt", Input::<i64>::new()).deploy();
}
