use pipeline_core::prelude::*;

#[step]
fn shout(s: String) -> String {
    s.to_uppercase()
}

fn main() {
    let p = shout(Input::new()).deploy().unwrap();
    let _ = p.call("hello");
}
