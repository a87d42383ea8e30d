use pipeline_core::prelude::*;

#[step]
fn pick_k(x: i64) -> i64 {
    x % 3
}

struct Model {
    k: i64,
}

#[step(mode = "actors")]
impl Model {
    fn new(k: i64) -> Self {
        Model { k }
    }
    fn call(&mut self, x: i64) -> i64 {
        x + self.k
    }
}

fn main() {
    let x = Input::<i64>::new().shared();
    let _ = Model::bind(pick_k(x.clone()), x).deploy();
}
