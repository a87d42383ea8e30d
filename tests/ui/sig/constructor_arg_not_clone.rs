use pipeline_core::prelude::*;

struct Config {
    k: i64,
}

struct Model {
    k: i64,
}

#[step(mode = "actors")]
impl Model {
    fn new(config: Config) -> Self {
        Model { k: config.k }
    }
    fn call(&mut self, x: i64) -> i64 {
        x + self.k
    }
}

fn main() {
    let _ = Model::bind(Config { k: 1 }, Input::<i64>::new()).deploy();
}
