use pipeline_core::prelude::*;

#[step]
fn show(x: impl std::fmt::Display) -> String {
    x.to_string()
}

fn main() {
    let _ = show(Input::<i64>::new()).deploy();
}
