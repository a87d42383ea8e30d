use pipeline_core::prelude::*;

#[step]
fn add_one(x: i64) -> i64 {
    x + 1
}

fn main() {
    let p = add_one(Input::<i64>::new()).deploy().unwrap();
    let y: i64 = p.call(1);
    println!("{y}");
}
