//! `Box<dyn Error>` is not `Send`: told to use `BoxError`.
use pipeline_core::prelude::*;

#[step]
fn parse(s: String) -> Result<i64, Box<dyn std::error::Error>> {
    Ok(s.parse()?)
}

fn main() {
    let _ = parse(Input::<String>::new()).deploy();
}
