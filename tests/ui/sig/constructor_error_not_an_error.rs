use pipeline_core::prelude::*;

struct Model {
    k: i64,
}

#[derive(Debug)]
struct NotAnError;

#[step(mode = "actors")]
impl Model {
    fn new(k: i64) -> Result<Self, NotAnError> {
        if k > 0 { Ok(Model { k }) } else { Err(NotAnError) }
    }
    fn call(&mut self, x: i64) -> i64 {
        x + self.k
    }
}

fn main() {
    let _ = Model::bind(1, Input::<i64>::new()).deploy();
}
