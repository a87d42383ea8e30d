use pipeline_core::prelude::*;

#[step]
fn shout(s: &'static str) -> String {
    s.to_uppercase()
}

fn main() {
    let _ = shout(Input::<&'static str>::new()).deploy();
}
