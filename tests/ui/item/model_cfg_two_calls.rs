use pipeline_core::prelude::*;

struct Model {
    k: i64,
}

#[step(mode = "actors")]
impl Model {
    fn new(k: i64) -> Self {
        Model { k }
    }
    #[cfg(feature = "gpu")]
    fn call(&mut self, x: i64) -> i64 {
        x * self.k
    }
    #[cfg(not(feature = "gpu"))]
    fn call(&mut self, x: i64) -> i64 {
        x + self.k
    }
}

fn main() {
    let _ = Model::bind(1, Input::<i64>::new()).deploy();
}
