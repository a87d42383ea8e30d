use pipeline_core::prelude::*;

struct Adder {
    increment: i64,
}

#[step]
impl Adder {
    fn call(&self, x: i64) -> i64 {
        x + self.increment
    }
}

fn main() {}
