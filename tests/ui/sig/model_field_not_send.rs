//! A model holding an `Rc`: one error, at the model type.
use pipeline_core::prelude::*;
use std::rc::Rc;

struct Model {
    k: Rc<i64>,
}

#[step(mode = "tasks")]
impl Model {
    fn new(k: i64) -> Self {
        Model { k: Rc::new(k) }
    }
    fn call(&self, x: i64) -> i64 {
        x * *self.k
    }
}

fn main() {
    let _ = Model::bind(2, Input::<i64>::new()).deploy();
}
