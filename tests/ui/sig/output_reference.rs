use pipeline_core::prelude::*;

#[step]
fn first(xs: Vec<String>) -> &String {
    &xs[0]
}

fn main() {
    let _ = first(Input::<Vec<String>>::new()).deploy();
}
