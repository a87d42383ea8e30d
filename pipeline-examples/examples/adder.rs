//! Seed: a model step with init args, `Adder(2)`.
//! `cargo run -p pipeline-examples --example adder`
use pipeline_core::prelude::*;

struct Adder {
    increment: i64,
}

#[step]
impl Adder {
    fn new(increment: i64) -> Self {
        Adder { increment }
    }
    fn call(&self, x: i64) -> i64 {
        x + self.increment
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let p = Adder::bind(2, Input::<i64>::new()).deploy()?;
    let out = p.call(2)?;
    assert_eq!(out, 4);
    println!("Adder(2)(2) = {out}");
    Ok(())
}
