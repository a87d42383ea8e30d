use pipeline_core::prelude::*;

#[step(mode = "actors", replicas = 2, autoscale(max_replicas = 4))]
fn add_one(x: i64) -> i64 {
    x + 1
}

struct Scaler {
    k: i64,
}

#[step(mode = "actors", autoscale, replicas = 3)]
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
