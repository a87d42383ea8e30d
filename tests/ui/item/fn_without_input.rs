use pipeline_core::prelude::*;

#[step]
fn one() -> i64 {
    1
}

#[step]
fn add_one(x: i64) -> i64 {
    x + 1
}

fn main() {
    let p = add_one(one()).deploy().unwrap();
    let _ = p.call(());
}
