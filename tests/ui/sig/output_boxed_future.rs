use pipeline_core::prelude::*;
use std::future::Future;
use std::pin::Pin;

#[step]
fn later(x: i64) -> Pin<Box<dyn Future<Output = i64> + Send>> {
    Box::pin(async move { x + 1 })
}

fn main() {
    let p = later(Input::<i64>::new()).deploy().unwrap();
    let _ = p.call(1);
}
