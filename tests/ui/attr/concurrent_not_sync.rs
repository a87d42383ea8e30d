use std::cell::Cell;

use pipeline_core::prelude::*;

struct Tally {
    seen: Cell<u64>,
}

#[step(mode = "tasks", concurrent)]
impl Tally {
    fn new() -> Self {
        Tally { seen: Cell::new(0) }
    }
    fn call(&self, x: u64) -> u64 {
        self.seen.set(self.seen.get() + 1);
        x
    }
}

fn main() {
    let _ = Tally::bind(Input::<u64>::new()).deploy();
}
