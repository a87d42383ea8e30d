use pipeline_core::prelude::*;

struct Counter {
    n: u64,
}

#[step(mode = "tasks", concurrent)]
impl Counter {
    fn new() -> Self {
        Counter { n: 0 }
    }
    fn call(&mut self, x: u64) -> u64 {
        self.n += x;
        self.n
    }
}

fn main() {
    let _ = Counter::bind(Input::<u64>::new()).deploy();
}
