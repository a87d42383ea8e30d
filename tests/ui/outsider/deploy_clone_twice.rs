use pipeline_core::prelude::*;

#[step]
fn add_one(x: i64) -> i64 {
    x + 1
}

fn main() {
    // A node and its clones belong to one graph: deploying it twice.
    let n = add_one(Input::<i64>::new());
    let first = n.clone().deploy().unwrap();
    let second = n.deploy().unwrap();
    let _ = (first.call(1), second.call(1));
}
