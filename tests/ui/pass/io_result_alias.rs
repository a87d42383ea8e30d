// Should compile: `io::Result<T>` is a step's fallible output; the next step takes `T`.
use pipeline_core::prelude::*;

#[step]
fn read(path: String) -> std::io::Result<String> {
    std::fs::read_to_string(path)
}

#[step]
fn count(s: String) -> usize {
    s.len()
}

fn main() {
    let _ = count(read(Input::<String>::new())).deploy();
}
