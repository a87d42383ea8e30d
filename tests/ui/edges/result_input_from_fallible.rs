use pipeline_core::prelude::*;

#[step]
fn parse(s: String) -> Result<i64, std::num::ParseIntError> {
    s.parse()
}

#[step]
fn handle(r: Result<i64, std::num::ParseIntError>) -> i64 {
    r.unwrap_or(-1)
}

fn main() {
    let _ = handle(parse(Input::<String>::new())).deploy();
}
