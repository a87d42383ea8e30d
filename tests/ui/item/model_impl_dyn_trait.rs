use pipeline_core::prelude::*;

trait Backend {}

#[step(mode = "actors")]
impl dyn Backend {
    fn new() -> Box<Self> {
        unimplemented!()
    }
    fn call(&mut self, x: i64) -> i64 {
        x
    }
}

fn main() {}
