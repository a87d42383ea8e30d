use pipeline_core::prelude::*;

#[step]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[step]
fn len(s: String) -> i64 {
    s.len() as i64
}

fn main() {
    // Two different pipeline inputs cannot feed one step.
    let _ = add(Input::<i64>::new(), len(Input::<String>::new())).deploy();
}
