// Should compile: `Box<dyn Error + Send + Sync>` is BoxError.
use pipeline_core::prelude::*;

#[step]
fn parse(s: String) -> Result<i64, Box<dyn std::error::Error + Send + Sync>> {
    Ok(s.parse()?)
}

fn main() {
    let _ = parse(Input::<String>::new()).deploy();
}
