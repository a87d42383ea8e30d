//! `#[step]` on one method of an impl block: told where it goes.
use pipeline_core::prelude::*;

struct Counter {
    k: i64,
}

impl Counter {
    #[step]
    fn call(&mut self, x: i64) -> i64 {
        x + self.k
    }
}

fn main() {
    let mut c = Counter { k: 1 };
    let _ = c.call(1);
}
