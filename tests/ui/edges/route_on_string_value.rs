//! Routing on something that is no node (route(lang)): one error at the
//! argument; the `.branch` and `.otherwise` calls chained on it add none.
use pipeline_core::prelude::*;

#[step]
fn pick(x: i64) -> i64 {
    x % 2
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
    let lang = "en".to_string();
    let _ = route(lang)
        .branch("en", small(x.clone()))
        .otherwise(large(x))
        .deploy();
}
