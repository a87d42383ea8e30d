// Should compile: `std::result::Result` is a fallible output like `Result`.
use pipeline_core::prelude::*;

#[step]
fn parse(s: String) -> std::result::Result<i64, std::num::ParseIntError> {
    s.parse()
}

#[step]
fn double(x: i64) -> i64 {
    x * 2
}

fn main() {
    let _ = double(parse(Input::<String>::new())).deploy();
}
