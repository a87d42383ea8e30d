use pipeline_core::prelude::*;
use std::any::Any;

#[step]
fn describe(x: Box<dyn Any>) -> String {
    format!("{:?}", x.type_id())
}

fn main() {
    let _ = describe(Input::<Box<dyn Any>>::new()).deploy();
}
