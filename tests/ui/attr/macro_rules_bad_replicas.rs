//! A bad value passed through `macro_rules!` is reported at the caller's token.
use pipeline_core::prelude::*;

macro_rules! scaled {
    ($name:ident, $mode:literal, $n:expr) => {
        #[step(mode = $mode, replicas = $n)]
        fn $name(x: i64) -> i64 {
            x + 1
        }
    };
}

scaled!(add_one, "actors", 0);

fn main() {
    let _ = add_one(Input::<i64>::new()).deploy();
}
