use pipeline_core::prelude::*;
use std::rc::Rc;

#[step]
fn share(x: i64) -> Rc<i64> {
    Rc::new(x)
}

fn main() {
    let _ = share(Input::<i64>::new()).deploy();
}
