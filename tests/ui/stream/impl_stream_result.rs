// `impl Iterator` of `Result` items: the advice names `try_iter`.
use pipeline_core::prelude::*;

#[step]
fn numbers(n: u32) -> impl Iterator<Item = Result<u32, String>> {
    (0..n).map(Ok)
}

#[step]
fn double(x: u32) -> u32 { x * 2 }

fn main() {
    let _ = numbers(Input::<u32>::new()).map_each(double).collect();
}
