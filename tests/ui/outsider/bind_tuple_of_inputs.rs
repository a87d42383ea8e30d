use pipeline_core::prelude::*;

struct Model {
    k: i64,
}

#[step(mode = "actors")]
impl Model {
    fn new(k: i64) -> Self {
        Model { k }
    }
    fn call(&mut self, a: i64, b: i64) -> i64 {
        a + b + self.k
    }
}

fn main() {
    let x = Input::<i64>::new().shared();
    let _ = Model::bind(1, (x.clone(), x)).deploy();
}
