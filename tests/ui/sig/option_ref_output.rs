use pipeline_core::prelude::*;

#[step]
fn first(xs: Vec<String>) -> Option<&String> {
    xs.first()
}

fn main() {
    let _ = first(Input::<Vec<String>>::new()).deploy();
}
