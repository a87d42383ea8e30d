use pipeline_core::prelude::*;

#[step]
fn len(s: String) -> usize {
    s.len()
}

fn main() {
    let p: Pipeline<String, i64> = len(Input::new()).deploy().unwrap();
    let _ = p;
}
