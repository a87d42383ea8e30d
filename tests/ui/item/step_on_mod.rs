use pipeline_core::prelude::*;

#[step]
mod steps {
    pub fn add_one(x: i64) -> i64 {
        x + 1
    }
}

fn main() {
    let _ = steps::add_one(1);
}
