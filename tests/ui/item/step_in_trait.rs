use pipeline_core::prelude::*;

trait Stage {
    #[step]
    fn run(x: i64) -> i64;
}

fn main() {}
