use pipeline_core::prelude::*;

#[step]
fn add_one(x: i64) -> i64 {
    x + 1
}

fn main() {
    let name = format!("add_{}", 1);
    let _ = add_one(Input::<i64>::new()).named(name).deploy();
}
