use pipeline_core::prelude::*;

#[step]
fn fail(x: i64) -> ! {
    panic!("bad input {x}")
}

fn main() {
    let _ = fail(Input::<i64>::new()).deploy();
}
