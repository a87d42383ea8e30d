use pipeline_core::prelude::*;

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

#[step]
fn double(x: i64) -> i64 {
    x * 2
}

fn main() {
    let m = Model::bind(1, Input::<i64>::new());
    let _ = Input::<i64>::new().then(Model).then(double);
    let _ = m;
}
