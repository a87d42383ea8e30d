use pipeline_core::prelude::*;

#[step]
fn keep<T: Clone + Send + 'static>(x: T) -> T {
    x
}

fn main() {
    let _ = keep(Input::<i64>::new()).deploy();
}
