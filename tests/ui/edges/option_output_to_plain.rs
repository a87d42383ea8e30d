use pipeline_core::prelude::*;

#[step]
fn parse(s: String) -> Option<i64> {
    s.parse().ok()
}

#[step]
fn double(x: i64) -> i64 {
    x * 2
}

fn main() {
    let _ = double(parse(Input::<String>::new())).deploy();
}
