use pipeline_core::prelude::*;

#[step]
fn shout(s: str) -> String {
    s.to_uppercase()
}

fn main() {
    let _ = shout(Input::<String>::new()).deploy();
}
