use pipeline_core::prelude::*;
use std::rc::Rc;

#[step]
fn read(x: Rc<i64>) -> i64 {
    *x
}

fn main() {
    let _ = read(Input::<i64>::new()).deploy();
}
