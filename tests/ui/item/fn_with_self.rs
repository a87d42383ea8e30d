use pipeline_core::prelude::*;

#[step]
fn add_one(&self, x: i64) -> i64 {
    x + 1
}

fn main() {}
