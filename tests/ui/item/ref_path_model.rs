use std::path::Path;

use pipeline_core::prelude::*;

struct Sizer;

#[step(mode = "tasks")]
impl Sizer {
    fn new() -> Self {
        Sizer
    }
    fn call(&self, p: &Path) -> u64 {
        p.metadata().map(|m| m.len()).unwrap_or(0)
    }
}

fn main() {
    let _ = Sizer::bind(Input::<std::path::PathBuf>::new()).deploy();
}
