// Should it compile? `Box<dyn Fn + Send + Sync>` is a sendable value.
use pipeline_core::prelude::*;

type Op = Box<dyn Fn(i64) -> i64 + Send + Sync>;

#[step]
fn apply(f: Op) -> i64 {
    f(1)
}

fn main() {
    let p = apply(Input::<Op>::new()).deploy().unwrap();
    let _ = p.call(Box::new(|x| x + 1));
}
