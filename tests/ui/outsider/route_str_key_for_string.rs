use pipeline_core::prelude::*;

#[step]
fn pick(x: i64) -> String {
    if x > 10 { "large".to_string() } else { "small".to_string() }
}

#[step]
fn small(x: i64) -> i64 {
    x
}

#[step]
fn large(x: i64) -> i64 {
    x * 1000
}

fn main() {
    let x = Input::<i64>::new().shared();
    let _ = route(pick(x.clone()))
        .branch("small", small(x.clone()))
        .branch("large", large(x))
        .deploy();
}
