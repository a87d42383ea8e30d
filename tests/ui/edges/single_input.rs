use pipeline_core::prelude::*;

#[step]
fn shout(s: String) -> String {
    s.to_uppercase()
}

#[step]
fn square(x: i64) -> i64 {
    x * x
}

fn main() {
    let input = Input::<String>::new();
    let _ = square(shout(input)).deploy();
}
