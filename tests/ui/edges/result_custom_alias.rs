use pipeline_core::prelude::*;

#[derive(Debug)]
pub struct BadNumber;
impl std::fmt::Display for BadNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("bad number")
    }
}
impl std::error::Error for BadNumber {}

type Res<T> = Result<T, BadNumber>;

#[step]
fn parse(s: String) -> Res<i64> {
    s.parse().map_err(|_| BadNumber)
}

#[step]
fn double(x: i64) -> i64 {
    x * 2
}

fn main() {
    let _ = double(parse(Input::<String>::new())).deploy();
}
