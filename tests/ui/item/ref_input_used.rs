//! A reference input: told to take `String`; the graph that uses the step adds no error.
use pipeline_core::prelude::*;

#[step]
fn shout(s: &str) -> String {
    s.to_uppercase()
}

#[step]
fn count(s: String) -> usize {
    s.len()
}

fn main() {
    let _ = count(shout(Input::<String>::new())).deploy();
}
