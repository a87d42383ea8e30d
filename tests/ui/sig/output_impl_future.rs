//! Returning `impl Future`: told to write `async fn`.
use pipeline_core::prelude::*;

struct Model {
    k: i64,
}

#[step(mode = "tasks")]
impl Model {
    fn new(k: i64) -> Self {
        Model { k }
    }
    fn call(&self, x: i64) -> impl std::future::Future<Output = i64> {
        let k = self.k;
        async move { x + k }
    }
}

fn main() {
    let _ = Model::bind(1, Input::<i64>::new()).deploy();
}
