//! Two steps given the same name, with different types: one error.
use pipeline_core::prelude::*;

#[step]
fn parse(s: String) -> i64 {
    s.trim().parse().unwrap_or(0)
}

#[step]
fn parse(n: i64) -> String {
    n.to_string()
}

fn main() {
    let _ = parse(Input::<String>::new()).deploy();
}
