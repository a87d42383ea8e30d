use pipeline_core::prelude::*;
use std::cell::RefCell;

#[step]
fn read(x: RefCell<i64>) -> i64 {
    x.into_inner()
}

fn main() {
    let _ = read(Input::<RefCell<i64>>::new()).deploy();
}
