use pipeline_core::prelude::*;

struct Adder {
    increment: i64,
}

#[step]
impl Adder {
    fn new(increment: i64) -> Self {
        Adder { increment }
    }
    fn forward(&self, x: i64) -> i64 {
        x + self.increment
    }
}

fn main() {}
