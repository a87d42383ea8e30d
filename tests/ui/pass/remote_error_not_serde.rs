use pipeline_core::prelude::*;

#[derive(Debug)]
pub struct BadInput;

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("bad input")
    }
}

impl std::error::Error for BadInput {}

#[step(remote)]
fn parse(s: String) -> Result<u64, BadInput> {
    s.parse().map_err(|_| BadInput)
}

fn main() {
    let _ = parse(Input::<String>::new()).deploy();
}
