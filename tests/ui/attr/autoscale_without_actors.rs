use pipeline_core::prelude::*;

#[step(autoscale)]
fn add_one(x: i64) -> i64 {
    x + 1
}

struct Scaler {
    k: i64,
}

#[step(mode = "tasks", autoscale(max_replicas = 4))]
impl Scaler {
    fn new(k: i64) -> Self {
        Scaler { k }
    }
    fn call(&self, x: i64) -> i64 {
        x * self.k
    }
}

fn main() {
    let _ = Scaler::bind(2, add_one(Input::<i64>::new())).deploy();
}
