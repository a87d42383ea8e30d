use pipeline_core::prelude::*;
use std::rc::Rc;

#[step]
fn share(x: i64) -> Vec<Rc<i64>> {
    vec![Rc::new(x)]
}

fn main() {
    let _ = share(Input::<i64>::new()).deploy();
}
