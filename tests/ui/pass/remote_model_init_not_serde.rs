use pipeline_core::prelude::*;

#[derive(Clone)]
pub struct Config {
    pub k: u64,
}

pub struct Model {
    k: u64,
}

#[step(mode = "actors", remote)]
impl Model {
    fn new(config: Config) -> Self {
        Model { k: config.k }
    }
    fn call(&mut self, x: u64) -> u64 {
        x * self.k
    }
}

fn main() {
    let _ = Model::bind(Config { k: 2 }, Input::<u64>::new()).deploy();
}
