use pipeline_core::prelude::*;

#[step]
fn add_one(x: i64) -> i64 {
    x + 1
}

#[step]
fn shout(s: String) -> String {
    s.to_uppercase()
}

fn main() {
    let _ = Input::<i64>::new().then(add_one).then(shout).deploy();
}
